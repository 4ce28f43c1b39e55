"""QMUL-ShoeV2 / QMUL-ChairV2: the SketchX vector-sketch pickle plus a photo folder.

Layout (Baseline_FGSBIR / StyleMeUp / on-the-fly-FGSBIR)::

    <root>/Dataset/ChairV2/ChairV2_Coordinate     # pickle: {'/train/<photo>_<k>': (N, 3) float64 x, y, pen}
    <root>/Dataset/ChairV2/photo/<photo>.png

``--data-root`` may be ``<root>``, ``<root>/Dataset``, ``<root>/ChairV2`` (StyleMeUp drops the
``Dataset`` level) or the folder holding the pickle itself.

* The pickle is read with :func:`sketchbench.data.safe_pickle.load_pickle` only (a restricted unpickler),
  after its size is checked against :class:`~sketchbench.DataLimits`; its sketches together may hold
  at most one point per byte of the file (more means arrays shared between keys), and one sketch at
  most ``points_per_sketch`` points (a longer one is skipped and counted).
* Split = the ``train``/``test`` part of each key; photo name = the key's basename without its last
  ``_<k>`` (photo names may contain ``_``). Each split's gallery = its sorted unique photo names, so
  a photo whose sketches were all skipped stays in the gallery as a distractor.
* Points are absolute canvas coordinates with ``pen == 1`` on each stroke's last point; they become
  :class:`~sketchbench.Sketch` objects (uniformly scaled into the unit box). A sketch that cannot be
  used (NaN, no points, wrong shape) is skipped with a warning and counted in
  ``meta["skipped_sketches"]``.
* Photos: when ``photo/`` is absent the split's photos are ``None`` (vector/rendering work still
  runs; retrieval fails with a one-line error) and ``meta["photos"]`` says what is missing. A photo
  file that is missing or does not decode is a :class:`DataError` naming it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

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
    load_pickle,
)

from ._photos import load_photos

SPLITS = ("train", "test")


def parse_key(key: Any, path: Path) -> tuple[str, str]:
    """``'/train/finbo_10'`` -> ``('train', 'finbo')``. Raises DataError for a key of another form."""
    if isinstance(key, bytes):
        key = key.decode("latin1")
    if not isinstance(key, str):
        raise DataError(f"{str(path)!r}: key {key!r} is not a string like '/train/<photo>_<k>'")
    parts = [p for p in key.replace("\\", "/").split("/") if p]
    split = next((p.lower() for p in parts[:-1] if p.lower() in SPLITS), None)
    if split is None or not parts or "_" not in parts[-1]:
        raise DataError(f"{str(path)!r}: key {key!r} is not of the form '/train/<photo>_<k>' or '/test/<photo>_<k>'")
    return split, parts[-1].rsplit("_", 1)[0]


class _QMULV2(DatasetSource):
    #: release name as spelled in its files: "ShoeV2" / "ChairV2"
    release: ClassVar[str] = ""
    photo_ext: ClassVar[str] = ".png"

    def _folder(self, root: Path) -> Path:
        fname = f"{self.release}_Coordinate"
        if root.is_file() and root.name == fname:
            return root.parent
        candidates = [root, root / self.release, root / "Dataset" / self.release]
        for folder in candidates:
            if (folder / fname).is_file():
                return folder
        raise DataError(f"{self.name}: no {fname} in {str(root)!r} (nor in its {self.release}/ or Dataset/{self.release}/); "
                        f"expected layout: {self.layout}")

    def load(self, options: DatasetOptions) -> FGSBIRDataset:
        root = self.resolve_root(options)
        folder = self._folder(root)
        pickle_path = folder / f"{self.release}_Coordinate"
        limits = data_limits()
        size = limits.check_file(pickle_path)  # before unpickling: the size bounds what it can cost
        data = load_pickle(pickle_path)
        if not isinstance(data, dict) or not data:
            raise DataError(f"{str(pickle_path)!r}: expected a non-empty dict of '/train|test/<photo>_<k>' -> (N, 3) arrays, "
                            f"got {type(data).__name__}")

        # a pickle's memo lets many keys share one array, copied once per key: the budget refuses that
        skipper = SkipCounter(self.name, limits.budget(repr(str(pickle_path)), file_bytes=size))
        by_split: dict[str, list[tuple[str, str, Any]]] = {s: [] for s in SPLITS}
        for key in data:
            split, photo = parse_key(key, pickle_path)
            by_split[split].append((str(key), photo, data[key]))

        photo_dir = folder / "photo"
        splits: dict[str, Split] = {}
        meta: dict[str, Any] = {}
        photo_files: list[Path] = []
        missing = 0
        for split in SPLITS:
            entries = sorted(by_split[split], key=lambda e: e[0])
            if not entries:
                raise DataError(f"{str(pickle_path)!r} has no '/{split}/...' sketches")
            photo_ids = sorted({photo for _, photo, _ in entries})
            index = {p: i for i, p in enumerate(photo_ids)}
            items = []
            for key, photo, value in entries:
                sketch = skipper.vector(key, value)  # counted before it is converted
                if sketch is not None:
                    items.append(SketchItem(key.strip("/"), index[photo], vector=sketch))
            files = [photo_dir / f"{p}{self.photo_ext}" for p in photo_ids]
            photos = None
            if photo_dir.is_dir():
                photo_files += files
                if options.need_photos:
                    photos = load_photos(files, options.photo_size, desc=f"{self.name}/{split} photos")
                else:  # data info: check the files are there, decode nothing (a (P, 0, 0, 3) placeholder)
                    missing += sum(1 for f in files if not f.is_file())
                    photos = np.zeros((len(files), 0, 0, 3), dtype=np.uint8)
            splits[split] = Split(items, photo_ids, photos)
        if photo_dir.is_dir() and not options.need_photos and missing:
            meta["photos"] = f"{missing} of {len(photo_files)} files missing in {str(photo_dir)!r}"
        if not photo_dir.is_dir():
            meta["photos"] = (f"no folder {str(photo_dir)!r}: the {self.release} photos are not in the pickle, "
                              f"put them there as <photo>{self.photo_ext}")
        meta["skipped_sketches"] = skipper.count
        fp = fingerprint_files([pickle_path, *[f for f in photo_files if f.is_file()]],
                               extra=f"{self.name}-v1-photos:{photo_dir.is_dir()}")
        return FGSBIRDataset(self.name, splits["train"], splits["test"], meta=meta, fingerprint=fp)


class ShoeV2(_QMULV2):
    name = "shoev2"
    description = "QMUL-ShoeV2: ShoeV2_Coordinate pickle + photo/"
    release = "ShoeV2"
    layout = "<root>/Dataset/ShoeV2/ShoeV2_Coordinate + <root>/Dataset/ShoeV2/photo/<photo>.png"


class ChairV2(_QMULV2):
    name = "chairv2"
    description = "QMUL-ChairV2: ChairV2_Coordinate pickle + photo/"
    release = "ChairV2"
    layout = "<root>/Dataset/ChairV2/ChairV2_Coordinate + <root>/Dataset/ChairV2/photo/<photo>.png"
