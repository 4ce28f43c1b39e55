"""FS-COCO (ECCV 2022): freehand scene sketches of MS-COCO photos, with vector strokes.

Layout (as every loader in pinakinathc/fscoco expects)::

    <root>/images/<user>/<cocoid>.jpg
    <root>/vector_sketches/<user>/<cocoid>.npy     # (N, 3) float: absolute x, y, pen (1 = end of stroke)
    <root>/val_normal.txt                          # the test ids, one per line

* One sketch per photo; the id is the file name (the MS-COCO image id). Train = every id with a vector
  sketch that is not in ``val_normal.txt``; test = the listed ids (the release's split; ids listed
  but absent on disk are counted in ``meta["missing_test_ids"]``).
* ``.npy`` files are read with ``np.load(allow_pickle=False)`` after their header is checked
  against the file's size (a header can claim a 2 TiB shape): an object array (a pickle inside) or
  a header that does not fit is refused. One sketch may hold at most ``points_per_sketch`` points
  and all of them together ``total_points`` (:class:`~sketchbench.DataLimits`). An unreadable or degenerate sketch is skipped with a warning and counted in
  ``meta["skipped_sketches"]``; its photo stays in the gallery.
* Sketches are scaled uniformly into the unit box from their own bounding box (the drawing canvas
  size is not stored in the ``.npy``): an interpretation.
* Photos are letterboxed to a square (longer side fitted, black padding, as ``ImageOps.pad`` in the
  reference loaders) at the preset's photo size. ``images/`` absent -> photos ``None`` with a
  ``meta["photos"]`` note; a photo missing for a sketch or not decoding -> :class:`DataError`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from sketchbench import (
    DataError,
    DatasetOptions,
    DatasetSource,
    FGSBIRDataset,
    SketchItem,
    SkipCounter,
    Split,
    data_limits,
    fingerprint_files,
    read_bounded,
)

from ._photos import load_photos


def _norm_id(name: str) -> str:
    """Ids compare as COCO ids: ``'000000123'`` and ``'123'`` are the same image."""
    return (name.lstrip("0") or "0") if name.isdigit() else name


class FSCOCO(DatasetSource):
    name = "fscoco"
    description = "FS-COCO: vector .npy scene sketches + COCO photos, val lists"
    layout = ("<root>/images/<user>/<id>.jpg, <root>/vector_sketches/<user>/<id>.npy, "
              "<root>/val_normal.txt (test ids)")

    def load(self, options: DatasetOptions) -> FGSBIRDataset:
        root = self.resolve_root(options)
        vec_root = root / "vector_sketches"
        val_file = root / "val_normal.txt"
        if not vec_root.is_dir():
            raise DataError(f"{self.name}: no folder {str(vec_root)!r}; expected layout: {self.layout}")
        if not val_file.is_file():
            raise DataError(f"{self.name}: missing file {str(val_file)!r} (the test ids); expected layout: {self.layout}")
        text = read_bounded(val_file, data_limits().file_bytes, repr(str(val_file)), "SKETCHBENCH_MAX_FILE_BYTES")
        val_ids = {_norm_id(x.strip()) for x in text.decode("utf-8", errors="replace").split() if x.strip()}

        sketches: dict[str, Path] = {}
        for f in sorted(vec_root.glob("*/*.npy")):
            key = _norm_id(f.stem)
            if key in sketches:
                raise DataError(f"{self.name}: sketch id {f.stem!r} appears twice ({sketches[key]} and {f})")
            sketches[key] = f
        if not sketches:
            raise DataError(f"{self.name}: no <user>/<id>.npy files under {str(vec_root)!r}")

        img_root = root / "images"
        images: dict[str, Path] = {}
        if img_root.is_dir():
            images = {_norm_id(f.stem): f for f in img_root.glob("*/*.jpg")}

        limits = data_limits()
        skipper = SkipCounter(self.name, limits.budget(f"{self.name} at {str(vec_root)!r}"))
        meta: dict[str, Any] = {"missing_test_ids": len(val_ids - sketches.keys())}
        splits: dict[str, Split] = {}
        files: list[Path] = []
        for split in ("train", "test"):
            ids = sorted((k for k in sketches if (k in val_ids) == (split == "test")), key=lambda k: sketches[k].stem)
            if not ids:
                raise DataError(f"{self.name}: no {split} sketches (val_normal.txt lists {len(val_ids)} ids, "
                                f"{len(sketches)} sketches found)")
            items = []
            for i, k in enumerate(ids):
                path = sketches[k]
                files.append(path)
                try:
                    limits.check_npy(path)  # the header alone: it can claim terabytes
                    arr = np.load(path, allow_pickle=False)
                except DataError as exc:
                    skipper.skip(str(path), str(exc))
                    continue
                except (ValueError, OSError, EOFError) as exc:  # object arrays, truncated or foreign files
                    skipper.skip(str(path), f"not a plain .npy array ({exc})")
                    continue
                sketch = skipper.vector(str(path), arr)
                if sketch is not None:
                    items.append(SketchItem(f"{path.parent.name}/{path.stem}", i, vector=sketch))
            photo_ids = [sketches[k].stem for k in ids]
            photos = None
            if img_root.is_dir():
                missing = [sketches[k].stem for k in ids if k not in images]
                if missing:
                    raise DataError(f"{self.name}: no photo images/<user>/{missing[0]}.jpg for sketch {missing[0]!r} "
                                    f"({len(missing)} {split} photos missing in {str(img_root)!r})")
                paths = [images[k] for k in ids]
                files += paths
                photos = (load_photos(paths, options.photo_size, pad=True, desc=f"fscoco/{split} photos")
                          if options.need_photos else np.zeros((len(paths), 0, 0, 3), dtype=np.uint8))
            splits[split] = Split(items, photo_ids, photos)
        if not img_root.is_dir():
            meta["photos"] = f"no folder {str(img_root)!r}: put the COCO photos there as <user>/<id>.jpg"
        meta["skipped_sketches"] = skipper.count
        return FGSBIRDataset(self.name, splits["train"], splits["test"], meta=meta,
                             fingerprint=fingerprint_files([*files, val_file], extra=f"{self.name}-v1"))
