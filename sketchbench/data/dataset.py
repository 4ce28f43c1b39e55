"""What a dataset plugin returns: sketches paired with photos, split into train and test.

A sketch is a vector :class:`~sketchbench.data.sketch.Sketch`, a raster (QMUL-V1 ships only
rasters), or both. Photos are one uint8 array per split, already square at the requested size.
"""

from __future__ import annotations

import hashlib
import warnings
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from sketchbench.base.artifacts import atomic_write_bytes, default_cache_dir, stable_hash
from sketchbench.base.errors import DataError
from sketchbench.data.limits import PointBudget, data_limits
from sketchbench.data.sketch import BadSketch, Sketch


@dataclass
class SketchItem:
    id: str
    photo: int  # index into the split's photos
    vector: Sketch | None = None
    raster: np.ndarray | None = None  # uint8 (H, W), black strokes on white


@dataclass
class Split:
    sketches: list[SketchItem]
    photo_ids: list[str]
    #: uint8 (P, S, S, 3); ``None`` when the photos are not available (e.g. a pickle without photos)
    photos: np.ndarray | None = None
    #: optional per-sketch candidate negatives (photo indices), e.g. QMUL-V1's triplet annotations
    hard_negatives: list[list[int]] | None = None

    @property
    def pairs(self) -> np.ndarray:
        return np.array([s.photo for s in self.sketches], dtype=np.int64)


@dataclass
class FGSBIRDataset:
    name: str
    train: Split
    test: Split
    #: loader facts worth recording in results, e.g. ``{"skipped_sketches": 3}``
    meta: dict[str, Any] = field(default_factory=dict)
    #: a hash of everything the content depends on (files, generator parameters)
    fingerprint: str = ""

    @property
    def has_vectors(self) -> bool:
        return all(s.vector is not None for s in self.train.sketches + self.test.sketches)

    @property
    def has_photos(self) -> bool:
        return self.train.photos is not None and self.test.photos is not None

    def split(self, name: str) -> Split:
        if name not in ("train", "test"):
            raise ValueError(f"unknown split {name!r}")
        return self.train if name == "train" else self.test


@dataclass(frozen=True)
class DatasetOptions:
    """What the runner tells a loader."""

    root: Path | None = None
    photo_size: int = 256
    seed: int = 0
    #: the preset's size knobs (used by generated datasets, e.g. ``{"instances": 60}``)
    size: dict[str, Any] = field(default_factory=dict)
    #: False for ``data info``: loaders may then skip decoding photos
    need_photos: bool = True
    #: the run's artifact cache directory, for loaders that cache slow parsing (``None``: no cache)
    cache_dir: Path | None = None

    @classmethod
    def for_preset(cls, preset: Any, *, root: Path | str | None = None, seed: int = 0, need_photos: bool = True,
                   cache_dir: Path | None = None) -> DatasetOptions:
        """The options a run at ``preset`` gives a loader: its photo size and generated-dataset sizes."""
        return cls(root=Path(root) if root else None, photo_size=preset.photo_size, seed=seed,
                   size={"instances": preset.instances, "sketches_per_instance": preset.sketches_per_instance},
                   need_photos=need_photos, cache_dir=cache_dir)


class DatasetSource(ABC):
    """Base class of dataset plugins. Register the class with ``register_datasets``."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    #: False for datasets that are generated and need no files
    needs_root: ClassVar[bool] = True
    #: the environment variable / CLI help shows this as the expected layout
    layout: ClassVar[str] = ""

    @abstractmethod
    def load(self, options: DatasetOptions) -> FGSBIRDataset:
        """Read (or generate) the dataset. Raise :class:`~sketchbench.base.errors.DataError` with one
        line naming the file and what was expected when the input is wrong."""

    def resolve_root(self, options: DatasetOptions) -> Path:
        """The data root, or a one-line error when it is missing."""
        if options.root is None:
            raise DataError(
                f"dataset {self.name!r} needs its files: pass {{data_root}} DIR or set SKETCHBENCH_DATA"
                + (f" (expected layout: {self.layout})" if self.layout else ""), settings=("data_root",)
            )
        root = Path(options.root).expanduser()
        if not root.exists():
            raise DataError(f"data root {str(root)!r} does not exist")
        return root


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fingerprint_files(paths: Iterable[Path], extra: str = "") -> str:
    """A content address of data files: their names, sizes and the sha256 of their bytes.

    Every cache entry of a dataset (renders, checkpoints) is keyed by it, so it must not change when
    the data does not: an earlier version used modification times, and a re-copy of the same files
    (rsync without ``-t``, a re-download, a restored share) invalidated every trained model. Hashing
    the bytes is memoised in the user cache per set of (path, size, mtime), so an unchanged dataset
    costs one ``stat`` per file and a re-copied one is hashed once."""
    files = sorted(Path(x) for x in paths)
    stats = []
    for p in files:
        try:
            st = p.stat()
        except OSError as exc:
            raise DataError(f"cannot read {str(p)!r}: {exc.strerror or exc}") from None
        stats.append((str(p.resolve()), st.st_size, st.st_mtime_ns))
    memo = default_cache_dir() / "fingerprints" / f"{stable_hash([extra, stats], 32)}.txt"
    try:
        known = memo.read_text().strip()
        if len(known) == 16 and all(c in "0123456789abcdef" for c in known):
            return known
    except OSError:  # no memo yet (or an unreadable one): hash the files below
        pass
    h = hashlib.sha256(extra.encode())
    for p, (_, size, _) in zip(files, stats, strict=True):
        try:
            digest = _file_sha256(p)
        except OSError as exc:
            raise DataError(f"cannot read {str(p)!r}: {exc.strerror or exc}") from None
        h.update(f"{p.name}:{size}:{digest}".encode(errors="surrogateescape"))  # a name's own bytes, UTF-8 or not
    fingerprint = h.hexdigest()[:16]
    try:
        atomic_write_bytes(memo, fingerprint.encode())
    except OSError:  # a read-only cache: hashed again next time, nothing lost
        pass
    return fingerprint


class SkipCounter:
    """Collects bad sketches: each is skipped with one warning, and the count goes to metadata."""

    def __init__(self, dataset: str, budget: PointBudget | None = None) -> None:
        self.dataset = dataset
        self.count = 0
        #: the points all sketches of one file may hold together (see :mod:`sketchbench.data.limits`)
        self.budget = budget
        self._limits = data_limits()

    def skip(self, key: str, reason: str) -> None:
        """Count one unusable sketch and warn once about it."""
        self.count += 1
        warnings.warn(f"{self.dataset}: skipping sketch {key!r}: {reason}", stacklevel=3)

    def vector(self, key: str, array: np.ndarray, **kwargs: Any) -> Sketch | None:
        """``array`` as a :class:`Sketch`, or ``None`` (counted) when it is unusable or over the
        per-sketch point limit. Past the file's point budget the whole file is refused (DataError)."""
        # counted from the length alone (an array's or a list's), before any conversion allocates
        n_points = len(array) if isinstance(array, list | tuple) or getattr(array, "ndim", 0) else 0
        try:
            self._limits.check_sketch(n_points, key)
        except BadSketch as exc:
            self.skip(key, str(exc))
            return None
        if self.budget is not None:  # before converting: the conversion is what costs the memory
            self.budget.add(n_points)
        try:
            return Sketch.from_xyp(array, **kwargs)
        except BadSketch as exc:
            self.skip(key, str(exc))
        except (TypeError, ValueError, RecursionError):
            self.skip(key, f"value is a {type(array).__name__} that is not an (N, 3) array of numbers")
        return None
