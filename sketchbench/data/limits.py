"""What one data file may cost: limits every loader applies before it allocates.

A hostile or corrupt file can ask for far more memory or time than its size suggests: a 19 MB
single-path SVG expands to 1.7 GB of points, a 6 MB pickle whose keys all share one array is copied
once per key, an ``.npy`` header can claim a 2 TiB shape. Loaders check these limits *before* doing
the expensive work and refuse what exceeds them in one line naming the file:

* a whole file over its byte limit, or a dataset over the total point budget -> :class:`DataError`
  (the dataset cannot be trusted as a whole);
* one sketch over the per-sketch point limit -> :class:`BadSketch` (that sketch is skipped and
  counted, like any other unusable sketch; the dataset still loads).

The defaults are far above every real file we know (the largest real Sketchy SVG is ~150 kB, the
longest ChairV2 sketch has ~1,000 points, all of ChairV2 has ~0.4 M); each can be raised through an
environment variable for a genuinely bigger dataset.
"""

from __future__ import annotations

import io
import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sketchbench.base.bounded import check_regular
from sketchbench.base.errors import DataError
from sketchbench.data.sketch import BadSketch


def env_name(field_name: str) -> str:
    """The environment variable that raises one limit: ``SKETCHBENCH_MAX_<FIELD>``."""
    return f"SKETCHBENCH_MAX_{field_name.upper()}"


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise DataError(f"{name}={raw!r} is not an integer") from None
    if value <= 0:
        raise DataError(f"{name}={raw!r} must be positive")
    return value


@dataclass(frozen=True)
class DataLimits:
    """Upper bounds on what reading one data file may cost (see the module docstring)."""

    #: bytes of one SVG sketch file
    svg_bytes: int = 8 * 2**20
    #: bytes of one query file of ``retrieve`` / ``demo`` (a stroke file or a raster sketch): a drawing is kilobytes
    query_bytes: int = 8 * 2**20
    #: bytes of one other data file (a coordinate pickle, an .npy, a .mat, an annotation JSON)
    file_bytes: int = 256 * 2**20
    #: pixels of one raster sketch (a query, a dataset's sketch PNG): 4096 x 4096
    image_pixels: int = 4096 * 4096
    #: pixels of one photo (a gallery or dataset photo): a 50-megapixel camera
    photo_pixels: int = 50_000_000
    #: memory one data file may decode to: a pickle's objects (counted as it is unpickled), a .mat's
    #: inflated variable (checked from its header before it is inflated)
    decoded_bytes: int = 256 * 2**20
    #: points of one sketch (after parsing, before simplification)
    points_per_sketch: int = 200_000
    #: points of all sketches of one dataset file together (ShoeV2, the largest pickle we know, has ~1.5 M)
    total_points: int = 5_000_000

    @classmethod
    def from_env(cls) -> DataLimits:
        """The defaults, each overridable by ``SKETCHBENCH_MAX_<FIELD>`` (e.g. ``SKETCHBENCH_MAX_SVG_BYTES``)."""
        d = cls()
        return cls(**{f: _env_int(env_name(f), getattr(d, f)) for f in d.__dataclass_fields__})

    def check_file(self, path: Path, *, svg: bool = False, kind: str = "file") -> int:
        """The size of a regular file within its byte limit; :class:`DataError` when it is over the limit,
        unreadable, or not a regular file (a folder, a FIFO, ``/dev/zero``). ``kind``: ``"file"`` (a data
        file), ``"svg"`` (same as ``svg=True``) or ``"query"``."""
        kind = "svg" if svg else kind
        field_name = {"svg": "svg_bytes", "query": "query_bytes", "file": "file_bytes"}[kind]
        what = {"svg": "SVG sketch", "query": "query file", "file": "data file"}[kind]
        limit = getattr(self, field_name)
        size = check_regular(path, repr(str(path)))
        if size > limit:
            raise DataError(f"{str(path)!r} is {size:,} bytes, over the limit of {limit:,} for one {what} "
                            f"(raise it with {env_name(field_name)})")
        return size

    def check_pixels(self, width: int, height: int, where: str, *, photo: bool = False) -> None:
        """:class:`DataError` when an image's header claims more pixels than its kind may have (read
        before it is decoded: a 1 kB PNG can claim 144 megapixels)."""
        field_name = "photo_pixels" if photo else "image_pixels"
        limit = getattr(self, field_name)
        if int(width) * int(height) > limit:
            raise DataError(f"{where} is {width} x {height} pixels, over the limit of {limit:,} for one "
                            f"{'photo' if photo else 'raster sketch'} (raise it with {env_name(field_name)})")

    def open_image(self, source: Path | bytes, where: str, *, photo: bool = False) -> Any:
        """A PIL image (not yet decoded; close it, or use it in a ``with``) whose header was checked
        against the pixel limit of its kind. A path must be a regular file within :attr:`file_bytes`.
        Anything that does not open as an image is a :class:`DataError` naming ``where``."""
        from PIL import Image

        if not isinstance(source, bytes):
            size = check_regular(source, where)
            if size > self.file_bytes:
                raise DataError(f"{where} is {size:,} bytes, over the limit of {self.file_bytes:,} for one data file "
                                f"(raise it with {env_name('file_bytes')})")
        field_name = "photo_pixels" if photo else "image_pixels"
        try:
            with warnings.catch_warnings():  # PIL's own warning past 89 Mpx: the check below says more
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                img = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
        except Image.DecompressionBombError:  # past PIL's hard limit (179 Mpx), far past ours
            raise DataError(f"{where} is over the limit of {getattr(self, field_name):,} pixels for one "
                            f"{'photo' if photo else 'raster sketch'} (raise it with {env_name(field_name)})") from None
        except (OSError, SyntaxError, ValueError) as exc:
            msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise DataError(f"{where} does not decode as an image ({msg})") from None
        try:
            self.check_pixels(*img.size, where, photo=photo)
        except DataError:
            img.close()
            raise
        return img

    def check_sketch(self, n_points: int, where: str) -> None:
        """:class:`BadSketch` when one sketch has more points than :attr:`points_per_sketch`."""
        if n_points > self.points_per_sketch:
            raise BadSketch(f"{where}: {n_points:,} points, over the limit of {self.points_per_sketch:,} per sketch "
                            f"(raise it with SKETCHBENCH_MAX_POINTS_PER_SKETCH)")

    def budget(self, source: str, file_bytes: int | None = None) -> PointBudget:
        """A running count of the points one dataset file has produced, refused past :attr:`total_points`.

        With ``file_bytes`` (the file's size) the budget is also at most one point per byte: every
        format we read stores a point in at least 3 bytes, so more points than bytes means arrays
        shared between keys (a pickle's memo), which would be copied once per key."""
        if file_bytes is not None and file_bytes < self.total_points:
            return PointBudget(source, max(int(file_bytes), 1), shared_hint=True)
        return PointBudget(source, self.total_points)

    def check_npy(self, path: Path, kind: str = "file") -> tuple[tuple[int, ...], np.dtype]:
        """Read only the header of an ``.npy`` file; :class:`DataError` when it is not a plain numeric
        array or claims more bytes than the file holds (a header can claim terabytes). ``kind`` as for
        :meth:`check_file`."""
        size = self.check_file(path, kind=kind)
        try:
            with open(path, "rb") as fh:
                version = np.lib.format.read_magic(fh)
                read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
                shape, _fortran, dtype = read_header(fh)
                offset = fh.tell()
        except (OSError, ValueError) as exc:
            raise DataError(f"{str(path)!r} is not a readable .npy file ({exc})") from None
        if dtype.hasobject:
            raise DataError(f"{str(path)!r} holds Python objects (a pickle inside), refused")
        need = math.prod(int(d) for d in shape) * dtype.itemsize  # Python ints: a hostile shape cannot overflow
        if need > size - offset:
            raise DataError(f"{str(path)!r}: its header claims a {shape} {dtype} array ({need:,} bytes) "
                            f"but the file holds {size - offset:,} bytes of data (truncated or corrupt)")
        return tuple(shape), dtype


@dataclass
class PointBudget:
    """Points produced so far by one dataset file; :meth:`add` raises :class:`DataError` past ``limit``."""

    source: str
    limit: int
    #: the limit is the file's size: going past it means arrays shared between keys, not a big file
    shared_hint: bool = False
    used: int = 0

    def add(self, n_points: int) -> None:
        self.used += int(n_points)
        if self.used > self.limit:
            if self.shared_hint:
                raise DataError(f"{self.source}: its sketches hold more points than the file has bytes "
                                f"({self.used:,} > {self.limit:,}): arrays shared between keys, refused")
            raise DataError(f"{self.source}: its sketches hold more than {self.limit:,} points in all "
                            f"(raise it with SKETCHBENCH_MAX_TOTAL_POINTS)")


def data_limits() -> DataLimits:
    """The limits in force: the defaults with the environment's overrides."""
    return DataLimits.from_env()
