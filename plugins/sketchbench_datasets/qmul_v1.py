"""QMUL Shoe-V1 / Chair-V1 / Handbag-V1 ("Sketch Me That Shoe", CVPR 2016), in two photo modalities.

Edge maps as photos (``qmul-v1-<cat>``): the ``.mat`` release, as in the public Deep_SBIR_tf ``data/``
folder::

    <root>/<cat>/<cat>_sketch_db_{train,test}.mat   key 'data': uint8 N x 256 x 256 sketches
    <root>/<cat>/<cat>_edge_db_{train,test}.mat     key 'data': uint8 N x 256 x 256 photo edge maps
    <root>/<cat>/<cat>_annotation.json              relative-similarity triplets per sketch

with ``<cat>`` one of shoes, chairs, handbags. ``--data-root`` may be ``<root>`` or ``<root>/<cat>``.

RGB photos (``qmul-v1-<cat>-rgb``, shoes and chairs): the file layout of the lyd911/Deep_SBIR_tf fork::

    <root>/<cat>/{train,test}/images/<N>.jpg        RGB photos, 256 x 256
    <root>/<cat>/{train,test}/sketches/<N>.png      the same sketches as the .mat rows, as PNG
    <root>/<cat>/annotation/<cat>_annotation.json   the same annotation as the .mat release

Row *i* of a split is entry *i* of the annotation's ``images`` list (``N.jpg``; N counts on across the
splits: shoes test starts at 305); sketch ``N.png`` is pixel for pixel row *i* of the ``.mat`` sketches,
so ids, the sketch -> photo pairing and the hard negatives are exactly those of ``qmul-v1-<cat>``.
The handbags category exists only in the ``.mat`` release (no RGB layout is published for it).

* Sketch *i* pairs with edge map *i* of the same split. The edge maps are the photo modality (as in
  Triplet-SN and DSSA); they are replicated to 3 channels and resized to the preset's photo size.
* Sketches are raster only (black on white, 256 x 256); ``RunData.vectors`` vectorises them on demand.
* Hard negatives: ``triplets[i]`` lists pairs ``[a, b]`` meaning "for sketch *i*, photo *a* looked
  more like it than photo *b*". Every ``b`` other than the true match is a photo an annotator judged a
  near miss, so ``Split.hard_negatives[i]`` = the sorted distinct ``b`` values minus *i*. (The original
  sampler draws an annotated ``(a, b)`` pair as (positive, negative); sketchbench always uses the true
  match as the positive and takes hard negatives from this list: an interpretation.)
* Limits: each ``.mat`` and annotation file is checked against :func:`sketchbench.data_limits`
  (``SKETCHBENCH_MAX_FILE_BYTES``) before it is read, and a ``.mat`` variable's size against
  ``SKETCHBENCH_MAX_DECODED_BYTES`` before it is inflated (``_mat.py``); an oversize one is a
  one-line ``DataError``.
* Handbags: the release's ``handbags_annotation.json`` is a byte copy of the shoes one (a "pseudo
  annotation"), so handbags get ``hard_negatives=None`` (random negatives), as the original code does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from PIL import Image

from sketchbench import (
    DataError,
    DatasetOptions,
    DatasetSource,
    FGSBIRDataset,
    SketchItem,
    Split,
    data_limits,
    fingerprint_files,
    grey_on_white,
    read_json,
)

from ._mat import read_mat_variable
from ._photos import load_photos

SPLITS = ("train", "test")


def read_mat_images(path: Path, what: str) -> np.ndarray:
    """The ``data`` array of a QMUL-V1 ``.mat`` file, checked to be uint8 ``(N, H, W)``."""
    if not path.is_file():
        raise DataError(f"missing file {str(path)!r} ({what})")
    # within DataLimits: file_bytes before it is read, decoded_bytes before it is inflated
    arr = read_mat_variable(path, "data", what)
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


def read_annotation(path: Path) -> dict[str, Any]:
    """The release's ``<cat>_annotation.json``: ``{'train': {...}, 'test': {...}}`` (a regular file
    within ``file_bytes``, nesting at most 64 levels)."""
    annotation = read_json(path, data_limits().file_bytes, repr(str(path)), "SKETCHBENCH_MAX_FILE_BYTES")
    if not isinstance(annotation, dict) or not all(isinstance(annotation.get(s), dict) for s in SPLITS):
        raise DataError(f"{str(path)!r}: expected {{'train': {{...}}, 'test': {{...}}}} with 'triplets' lists")
    return annotation


def split_hard_negatives(annotation: dict[str, Any], split: str, n: int, path: Path) -> list[list[int]]:
    """``Split.hard_negatives`` of one split of the annotation (one ``triplets`` entry per sketch)."""
    triplets = annotation[split].get("triplets")
    if not isinstance(triplets, list) or len(triplets) != n:
        got = len(triplets) if isinstance(triplets, list) else type(triplets).__name__
        raise DataError(f"{str(path)!r}: {split} 'triplets' has {got} entries, expected {n} (one per sketch)")
    return hard_negatives_from_triplets(triplets, n, path, split)


def read_png_sketch(path: Path) -> np.ndarray:
    """One sketch PNG of the RGB layout as a uint8 ``(H, W)`` black-on-white raster (alpha over white)."""
    try:
        with data_limits().open_image(path, f"sketch {str(path)!r}") as img:  # pixels checked before decoding
            grey = grey_on_white(img)
        arr = np.asarray(grey, dtype=np.uint8)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"sketch {str(path)!r} does not decode as an image ({msg})") from None
    if arr.shape[0] < 8 or arr.shape[1] < 8:
        raise DataError(f"sketch {str(path)!r} is {arr.shape[1]}x{arr.shape[0]}, expected a 256x256 raster")
    return arr


def _hard_negatives_meta(annotation: Any, real_annotation: bool) -> str:
    if annotation is not None:
        return "annotation triplets"
    return "none (pseudo annotation: random negatives)" if not real_annotation else "none (no annotation file)"


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
        hint = ""
        for folder in (root / cat, root):
            if (folder / "annotation" / f"{cat}_annotation.json").is_file() and (folder / "train" / "images").is_dir():
                hint = f" ({str(folder)!r} holds the RGB-photo layout: use dataset {self.name}-rgb)"
                break
        raise DataError(
            f"{self.name}: no {marker} under {str(root)!r}{hint}; expected layout: {self.layout}"
        )

    def load(self, options: DatasetOptions) -> FGSBIRDataset:
        root = self.resolve_root(options)
        folder = self._folder(root)
        cat = self.category
        ann_path = folder / f"{cat}_annotation.json"
        annotation = read_annotation(ann_path) if self.real_annotation and ann_path.is_file() else None

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
                hard = split_hard_negatives(annotation, split, n, ann_path)
                images = annotation[split].get("images")
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
            "hard_negatives": _hard_negatives_meta(annotation, self.real_annotation),
        }
        return FGSBIRDataset(self.name, splits["train"], splits["test"], meta=meta,
                             fingerprint=fingerprint_files(files, extra=f"{self.name}-v1"))


class _QMULV1RGB(DatasetSource):
    """The RGB-photo layout: ``{train,test}/images/N.jpg`` + ``sketches/N.png`` + ``annotation/``."""

    category: ClassVar[str] = ""

    def _folder(self, root: Path) -> Path:
        cat = self.category
        marker = f"annotation/{cat}_annotation.json"
        for folder in (root / cat, root):
            if (folder / marker).is_file():
                return folder
        edge_name = self.name.removesuffix("-rgb")
        hint = ""
        for folder in (root / cat, root):
            if (folder / f"{cat}_sketch_db_train.mat").is_file():
                hint = f" ({str(folder)!r} holds the .mat release with edge maps as photos: use dataset {edge_name})"
                break
        raise DataError(f"{self.name}: no {marker} under {str(root)!r}{hint}; expected layout: {self.layout}")

    def load(self, options: DatasetOptions) -> FGSBIRDataset:
        root = self.resolve_root(options)
        folder = self._folder(root)
        ann_path = folder / "annotation" / f"{self.category}_annotation.json"
        annotation = read_annotation(ann_path)

        splits: dict[str, Split] = {}
        files = [ann_path]
        for split in SPLITS:
            images = annotation[split].get("images")
            if not isinstance(images, list) or not images or not all(isinstance(x, str) for x in images):
                raise DataError(f"{str(ann_path)!r}: {split} 'images' must be a non-empty list of photo file names "
                                "(row i of the split is photo images[i])")
            n = len(images)
            files_named = [Path(x).name for x in images]  # a bare file name: never a path out of images/
            names = [Path(x).stem for x in files_named]
            listed = annotation[split].get("sketches")
            if isinstance(listed, list):  # the release lists N.png next to N.jpg: check they agree
                for i, (img, sk) in enumerate(zip(images, listed)):
                    if Path(str(sk)).stem != names[i]:
                        raise DataError(f"{str(ann_path)!r}: {split} sketch {i} is {sk!r} but image {i} is {img!r} "
                                        "(sketch N.png pairs with photo N.jpg)")
                if len(listed) != n:
                    raise DataError(f"{str(ann_path)!r}: {split} lists {len(listed)} sketches but {n} images")
            hard = split_hard_negatives(annotation, split, n, ann_path)

            sk_paths = [folder / split / "sketches" / f"{x}.png" for x in names]
            photo_paths = [folder / split / "images" / x for x in files_named]
            files += sk_paths + photo_paths
            items = [SketchItem(f"{split}/{names[i]}", i, raster=read_png_sketch(p)) for i, p in enumerate(sk_paths)]
            if options.need_photos:
                photos = load_photos(photo_paths, options.photo_size, desc=f"{self.name}/{split} photos")
            else:  # data info: check the files are there, decode nothing (a (P, 0, 0, 3) placeholder)
                missing = [p for p in photo_paths if not p.is_file()]
                if missing:
                    raise DataError(f"photo {str(missing[0])!r} does not exist"
                                    + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
                photos = np.zeros((n, 0, 0, 3), dtype=np.uint8)
            splits[split] = Split(items, [f"{split}/{x}" for x in names], photos, hard)
        meta: dict[str, Any] = {"photo_modality": "RGB photos", "hard_negatives": _hard_negatives_meta(annotation, True)}
        return FGSBIRDataset(self.name, splits["train"], splits["test"], meta=meta,
                             fingerprint=fingerprint_files(files, extra=f"{self.name}-v1"))


_LAYOUT = "<root>/{cat}/{cat}_sketch_db_{train,test}.mat, {cat}_edge_db_{train,test}.mat, {cat}_annotation.json"
_RGB_LAYOUT = ("<root>/{cat}/{train,test}/images/<N>.jpg, {train,test}/sketches/<N>.png, "
               "annotation/{cat}_annotation.json")


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


class QMULV1ShoesRGB(_QMULV1RGB):
    name = "qmul-v1-shoes-rgb"
    description = "QMUL Shoe-V1 with RGB photos (images/*.jpg + sketches/*.png layout)"
    category = "shoes"
    layout = _RGB_LAYOUT.replace("{cat}", "shoes")


class QMULV1ChairsRGB(_QMULV1RGB):
    name = "qmul-v1-chairs-rgb"
    description = "QMUL Chair-V1 with RGB photos (images/*.jpg + sketches/*.png layout)"
    category = "chairs"
    layout = _RGB_LAYOUT.replace("{cat}", "chairs")
