"""QMUL Shoe-V1 / Chair-V1 / Handbag-V1: the "Sketch Me That Shoe" (CVPR 2016) ``.mat`` release.

Layout (as in the public Deep_SBIR_tf ``data/`` folder)::

    <root>/<cat>/<cat>_sketch_db_{train,test}.mat   key 'data': uint8 N x 256 x 256 sketches
    <root>/<cat>/<cat>_edge_db_{train,test}.mat     key 'data': uint8 N x 256 x 256 photo edge maps
    <root>/<cat>/<cat>_annotation.json              relative-similarity triplets per sketch

with ``<cat>`` one of shoes, chairs, handbags. ``--data-root`` may be ``<root>`` or ``<root>/<cat>``.

* Sketch *i* pairs with edge map *i* of the same split. The edge maps are the photo modality (as in
  Triplet-SN and DSSA); they are replicated to 3 channels and resized to the preset's photo size.
* Sketches are raster only (black on white, 256 x 256); ``RunData.vectors`` vectorises them on demand.
* Hard negatives: ``triplets[i]`` lists pairs ``[a, b]`` meaning "for sketch *i*, photo *a* looked
  more like it than photo *b*". Every ``b`` other than the true match is a photo an annotator judged a
  near miss, so ``Split.hard_negatives[i]`` = the sorted distinct ``b`` values minus *i*. (The original
  sampler draws an annotated ``(a, b)`` pair as (positive, negative); sketchbench always uses the true
  match as the positive and takes hard negatives from this list: an interpretation.)
* Handbags: the release's ``handbags_annotation.json`` is a byte copy of the shoes one (a "pseudo
  annotation"), so handbags get ``hard_negatives=None`` (random negatives), as the original code does.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from PIL import Image

from sketchbench import DataError, DatasetOptions, DatasetSource, FGSBIRDataset, SketchItem, Split, fingerprint_files

SPLITS = ("train", "test")


def read_mat_images(path: Path, what: str) -> np.ndarray:
    """The ``data`` array of a QMUL-V1 ``.mat`` file, checked to be uint8 ``(N, H, W)``."""
    from scipy.io import loadmat
    from scipy.io.matlab import MatReadError

    if not path.is_file():
        raise DataError(f"missing file {str(path)!r} ({what})")
    try:
        mat = loadmat(str(path), variable_names=["data"])
    except NotImplementedError:  # scipy's answer to MATLAB v7.3 (HDF5) files
        raise DataError(f"{str(path)!r} is a MATLAB v7.3 (HDF5) file; re-save it in MATLAB with -v7") from None
    except (MatReadError, ValueError, TypeError, OSError, EOFError, KeyError, IndexError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"{str(path)!r} is not a readable .mat file (truncated or corrupt: {msg})") from None
    if "data" not in mat:
        raise DataError(f"{str(path)!r} has no variable 'data' ({what} are stored under 'data')")
    arr = mat["data"]
    if arr.ndim == 4 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim != 3 or arr.shape[0] == 0 or arr.shape[1] < 8 or arr.shape[2] < 8:
        raise DataError(f"{str(path)!r}: 'data' has shape {arr.shape}, expected N x H x W grey images ({what})")
    if arr.dtype != np.uint8:
        raise DataError(f"{str(path)!r}: 'data' is {arr.dtype}, expected uint8 ({what})")
    return arr


def hard_negatives_from_triplets(triplets: list[Any], num_photos: int, path: Path, split: str) -> list[list[int]]:
    """Per sketch, the photos annotators judged less similar than another candidate (minus the match)."""
    out = []
    for i, pairs in enumerate(triplets):
        negs: set[int] = set()
        try:
            for a, b in pairs:
                a, b = int(a), int(b)
                if not (0 <= a < num_photos and 0 <= b < num_photos):
                    raise DataError(f"{str(path)!r}: {split} triplet [{a}, {b}] of sketch {i} is outside 0..{num_photos - 1}")
                negs.add(b)
        except (TypeError, ValueError):
            raise DataError(f"{str(path)!r}: {split} triplets of sketch {i} are not [a, b] index pairs") from None
        negs.discard(i)
        out.append(sorted(negs))
    return out


def edges_to_photos(edges: np.ndarray, size: int) -> np.ndarray:
    """Grey edge maps (N, H, W) -> uint8 (N, size, size, 3)."""
    if edges.shape[1:] == (size, size):
        grey = edges
    else:
        grey = np.stack([np.asarray(Image.fromarray(e).resize((size, size), Image.BICUBIC)) for e in edges])
    return np.repeat(grey[..., None], 3, axis=-1)


class _QMULV1(DatasetSource):
    category: ClassVar[str] = ""
    #: the release's annotation for this category is real (handbags' is a copy of the shoes' one)
    real_annotation: ClassVar[bool] = True

    def _folder(self, root: Path) -> Path:
        cat = self.category
        marker = f"{cat}_sketch_db_train.mat"
        for folder in (root / cat, root):
            if (folder / marker).is_file():
                return folder
        raise DataError(
            f"{self.name}: no {marker} under {str(root)!r}; expected layout: {self.layout}"
        )

    def load(self, options: DatasetOptions) -> FGSBIRDataset:
        root = self.resolve_root(options)
        folder = self._folder(root)
        cat = self.category
        ann_path = folder / f"{cat}_annotation.json"
        annotation = None
        if self.real_annotation and ann_path.is_file():
            try:
                annotation = json.loads(ann_path.read_text())
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise DataError(f"{str(ann_path)!r} is not valid JSON ({exc})") from None
            if not isinstance(annotation, dict) or not all(isinstance(annotation.get(s), dict) for s in SPLITS):
                raise DataError(f"{str(ann_path)!r}: expected {{'train': {{...}}, 'test': {{...}}}} with 'triplets' lists")

        splits: dict[str, Split] = {}
        files = []
        for split in SPLITS:
            sk_path = folder / f"{cat}_sketch_db_{split}.mat"
            ed_path = folder / f"{cat}_edge_db_{split}.mat"
            files += [sk_path, ed_path]
            sketches = read_mat_images(sk_path, "sketches")
            edges = read_mat_images(ed_path, "photo edge maps")
            if len(edges) != len(sketches):
                raise DataError(
                    f"{str(ed_path)!r} has {len(edges)} edge maps but {sk_path.name} has {len(sketches)} sketches "
                    "(sketch i pairs with edge map i)"
                )
            n = len(sketches)
            names = [str(i + 1) for i in range(n)]
            hard = None
            if annotation is not None:
                entry = annotation[split]
                triplets = entry.get("triplets")
                if not isinstance(triplets, list) or len(triplets) != n:
                    got = len(triplets) if isinstance(triplets, list) else type(triplets).__name__
                    raise DataError(f"{str(ann_path)!r}: {split} 'triplets' has {got} entries, expected {n} (one per sketch)")
                hard = hard_negatives_from_triplets(triplets, n, ann_path, split)
                images = entry.get("images")
                if isinstance(images, list) and len(images) == n:
                    names = [Path(str(x)).stem for x in images]
            items = [SketchItem(f"{split}/{names[i]}", i, raster=sketches[i]) for i in range(n)]
            if edges.shape[1] != edges.shape[2]:
                raise DataError(f"{str(ed_path)!r}: edge maps are {edges.shape[1]}x{edges.shape[2]}, expected square")
            if options.need_photos:
                photos = edges_to_photos(edges, options.photo_size)
            else:  # data info: a read-only 3-channel view at the stored size, no resizing or copying
                photos = np.broadcast_to(edges[..., None], (*edges.shape, 3))
            splits[split] = Split(items, [f"{split}/{x}" for x in names], photos, hard)
        if annotation is not None:
            files.append(ann_path)
        meta: dict[str, Any] = {
            "photo_modality": "edge maps",
            "hard_negatives": "annotation triplets" if annotation is not None else
            ("none (pseudo annotation: random negatives)" if not self.real_annotation else "none (no annotation file)"),
        }
        return FGSBIRDataset(self.name, splits["train"], splits["test"], meta=meta,
                             fingerprint=fingerprint_files(files, extra=f"{self.name}-v1"))


_LAYOUT = "<root>/{cat}/{cat}_sketch_db_{train,test}.mat, {cat}_edge_db_{train,test}.mat, {cat}_annotation.json"


class QMULV1Shoes(_QMULV1):
    name = "qmul-v1-shoes"
    description = "QMUL Shoe-V1 .mat release (edge maps as photos)"
    category = "shoes"
    layout = _LAYOUT.replace("{cat}", "shoes")


class QMULV1Chairs(_QMULV1):
    name = "qmul-v1-chairs"
    description = "QMUL Chair-V1 .mat release (edge maps as photos)"
    category = "chairs"
    layout = _LAYOUT.replace("{cat}", "chairs")


class QMULV1Handbags(_QMULV1):
    name = "qmul-v1-handbags"
    description = "QMUL Handbag-V1 .mat release (edge maps as photos; pseudo annotation: random negatives)"
    category = "handbags"
    real_annotation = False
    layout = "<root>/handbags/handbags_sketch_db_{train,test}.mat, handbags_edge_db_{train,test}.mat"
