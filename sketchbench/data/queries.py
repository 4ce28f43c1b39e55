"""Files a person brings to a trained model: query sketches and a folder of gallery photos.

Queries (:func:`read_query`), by extension:

* ``.png`` ``.jpg`` ``.jpeg`` ``.bmp`` ``.gif`` ``.webp``: a raster sketch, dark strokes on a light
  background (a transparent background counts as white; a mostly dark image is inverted). It stays a
  raster, as QMUL-V1's sketches do: it is downscaled to the canvas with the ink-preserving filter and
  vectorised only for selectors that read strokes.
* ``.svg``: vector strokes (:mod:`sketchbench.data.svg`: checked with defusedxml, read by svgelements).
* ``.npy`` / ``.json``: a stroke file. Either an ``(N, 3)`` array of absolute ``x, y, pen`` rows
  (``pen == 1`` on the last point of each stroke, the ShoeV2/ChairV2/FS-COCO convention; ``.npy`` is
  read with ``allow_pickle=False``), or (JSON) ``{"strokes": [[[x, y], ...], ...]}``, one polyline per
  stroke (what ``sketchbench demo`` records). Coordinates that all lie in ``[0, 1]`` are taken as a
  sketch already in the unit box (as :attr:`Sketch.points` stores it); any others (pixels) are scaled
  uniformly into the unit box, as the dataset loaders do.

Every failure is one :class:`~sketchbench.base.errors.DataError` line naming the file.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from sketchbench.base.bounded import loads_json, read_bounded
from sketchbench.base.errors import DataError
from sketchbench.data.dataset import SketchItem
from sketchbench.data.limits import data_limits, env_name
from sketchbench.data.sketch import BadSketch, Sketch

RASTER_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
STROKE_SUFFIXES = (".npy", ".json")
QUERY_SUFFIXES = (*RASTER_SUFFIXES, ".svg", *STROKE_SUFFIXES)
#: what a gallery folder's photos may be
PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png")


def display_name(name: str) -> str:
    """A file name as printable text: bytes that are not UTF-8 (kept by Python as lone surrogates,
    which no terminal or JSON encoder writes) shown as ``\\xNN`` escapes."""
    return os.fsencode(name).decode("utf-8", errors="backslashreplace")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# -- queries -------------------------------------------------------------------------------------
def sketch_from_array(array: np.ndarray) -> Sketch:
    """An ``(N, 3)`` ``x, y, pen`` array as a :class:`Sketch`: kept as is when every coordinate lies
    in ``[0, 1]``, else scaled into the unit box. Raises :class:`BadSketch`."""
    arr = np.asarray(array, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != 3:
        raise BadSketch(f"expected an (N, 3) array of x, y, pen, got shape {arr.shape}")
    if len(arr) and np.isfinite(arr).all() and arr[:, :2].min() >= 0.0 and arr[:, :2].max() <= 1.0:
        return Sketch.from_xyp(arr, normalise=False)
    return Sketch.from_xyp(arr, normalise=True)


def sketch_from_polylines(strokes: Sequence[Sequence[Sequence[float]]]) -> Sketch:
    """A list of polylines (``[[x, y], ...]`` per stroke, e.g. pointer positions in pixels) as a
    :class:`Sketch`, by the same rule as :func:`sketch_from_array`. Raises :class:`BadSketch`."""
    if not isinstance(strokes, list | tuple):
        raise BadSketch("strokes must be a list of polylines")
    parts = []
    for k, stroke in enumerate(strokes):
        try:
            s = np.asarray(stroke, dtype=np.float64)
        except (TypeError, ValueError):
            raise BadSketch(f"stroke {k} is not a list of [x, y] points") from None
        if s.size == 0:
            continue
        if s.ndim != 2 or s.shape[1] != 2:
            raise BadSketch(f"stroke {k} is not a list of [x, y] points (shape {s.shape})")
        pen = np.zeros((len(s), 1))
        pen[-1] = 1
        parts.append(np.hstack([s, pen]))
    if not parts:
        raise BadSketch("the sketch has no points")
    return sketch_from_array(np.vstack(parts))


def grey_on_white(img: Image.Image) -> Image.Image:
    """A sketch image in grey (mode ``L``), any transparency composited over white: drawing tools
    save strokes on a transparent background, which a plain ``convert("L")`` would turn black."""
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("L")
    return img.convert("L")


def read_raster(path: Path, data: bytes | None = None) -> np.ndarray:
    """A raster sketch as uint8 ``(H, W)`` black on white (see the module docstring). ``data``: the
    file's bytes when they are read already (within the query byte limit)."""
    where = f"query {str(path)!r}"
    limits = data_limits()
    if data is None:
        data = read_bounded(path, limits.query_bytes, where, env_name("query_bytes"))
    with limits.open_image(data, where) as img:  # pixels counted from the header, before decoding
        try:
            img.load()
            gray = grey_on_white(img)
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
            raise DataError(f"{where} does not decode as an image ({_first_line(exc)})") from None
    arr = np.asarray(gray, dtype=np.uint8)
    if arr.size == 0:
        raise DataError(f"{where} is an empty image")
    if arr.mean() < 128:  # light strokes on a dark background
        arr = 255 - arr
    if int(arr.min()) > 200:
        raise DataError(f"{where} holds no strokes (no pixel darker than light grey)")
    return np.ascontiguousarray(arr)


def _count_points(data: object) -> int:
    """Points of a parsed stroke file, counted before anything is converted."""
    if isinstance(data, dict):
        strokes = data.get("strokes")
        return sum(len(s) for s in strokes if isinstance(s, list)) if isinstance(strokes, list) else 0
    return len(data) if isinstance(data, list) else 0


def read_stroke_file(path: Path, data: bytes | None = None) -> Sketch:
    """A ``.npy`` or ``.json`` stroke file as a :class:`Sketch` (see the module docstring). ``data``:
    the file's bytes when they are read already (within the query byte limit)."""
    limits = data_limits()
    where = f"query {str(path)!r}"
    try:
        if data is None:
            data = read_bounded(path, limits.query_bytes, where, env_name("query_bytes"))
        if path.suffix.lower() == ".npy":
            limits.check_npy(path, kind="query")  # the header alone first: it can claim terabytes
            parsed: object = np.load(io.BytesIO(data), allow_pickle=False)
        else:
            parsed = loads_json(data, where)
        limits.check_sketch(parsed.shape[0] if isinstance(parsed, np.ndarray) and parsed.ndim else _count_points(parsed),
                            where)
        if isinstance(parsed, dict):
            if "strokes" not in parsed:
                raise DataError(f"{where}: a JSON object needs a 'strokes' list of polylines")
            return sketch_from_polylines(parsed["strokes"])
        return sketch_from_array(np.asarray(parsed, dtype=np.float64))
    except DataError as exc:
        if isinstance(exc, BadSketch):
            raise DataError(f"{where} is not a usable sketch ({exc})") from None
        raise
    except (OSError, ValueError, TypeError, UnicodeDecodeError) as exc:
        raise DataError(f"{where} is not a stroke file ({_first_line(exc)})") from None


def read_query(path: Path | str, item_id: str | None = None) -> SketchItem:
    """One query file as a :class:`SketchItem` (``photo`` is meaningless: 0). The file must be a
    regular file within its byte limit (``svg_bytes`` for SVG, ``query_bytes`` otherwise), read once."""
    path = Path(path)
    suffix = path.suffix.lower()
    where = f"query {str(path)!r}"
    if path.is_dir():
        raise DataError(f"{where} is a folder, not a sketch file")
    if suffix not in QUERY_SUFFIXES:
        raise DataError(f"{where}: unknown file type {suffix or '(none)'!r} (expected {', '.join(QUERY_SUFFIXES)})")
    name = item_id or display_name(path.name)
    if suffix == ".svg":
        from sketchbench.data.svg import read_svg_sketch

        return SketchItem(id=name, photo=0, vector=read_svg_sketch(path))
    data = read_bounded(path, data_limits().query_bytes, where, env_name("query_bytes"))
    if suffix in RASTER_SUFFIXES:
        return SketchItem(id=name, photo=0, raster=read_raster(path, data))
    return SketchItem(id=name, photo=0, vector=read_stroke_file(path, data))


def write_stroke_file(path: Path, sketch: Sketch) -> None:
    """Save a sketch as a stroke file :func:`read_stroke_file` reads back exactly."""
    path = Path(path)
    if path.suffix.lower() == ".npy":
        np.save(path, sketch.points)
    else:
        path.write_text(json.dumps(sketch.points.astype(np.float64).tolist()))


# -- gallery folders -----------------------------------------------------------------------------
def list_photos(folder: Path | str) -> list[Path]:
    """The photos of a gallery folder (``.jpg``/``.jpeg``/``.png``, recursively, sorted by relative path)."""
    folder = Path(folder)
    if not folder.exists():
        raise DataError(f"gallery folder {str(folder)!r} does not exist")
    if not folder.is_dir():
        raise DataError(f"gallery {str(folder)!r} is not a folder (pass a folder of photos or 'test')")
    paths = sorted((p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in PHOTO_SUFFIXES),
                   key=lambda p: p.relative_to(folder).as_posix())
    if not paths:
        raise DataError(f"gallery folder {str(folder)!r} holds no photos ({', '.join(PHOTO_SUFFIXES)})")
    return paths


def load_photo(path: Path, size: int) -> np.ndarray:
    """Decode one photo to uint8 ``(size, size, 3)`` RGB, resized straight to the square (as the
    dataset loaders do, without EXIF rotation); a file that does not decode, is not a regular file or
    is over the photo pixel limit is a :class:`DataError` naming it."""
    where = f"photo {str(path)!r}"
    with data_limits().open_image(path, where, photo=True) as img:
        try:
            img.draft("RGB", (size, size))  # JPEG: decode at a reduced scale that is still >= size
            rgb = img.convert("RGB")
            if rgb.size != (size, size):
                rgb = rgb.resize((size, size), Image.BICUBIC)
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
            raise DataError(f"{where} does not decode as an image ({_first_line(exc)})") from None
    return np.asarray(rgb, dtype=np.uint8)


def load_photos(paths: Sequence[Path], size: int) -> np.ndarray:
    """Decode photos into one uint8 ``(P, size, size, 3)`` array."""
    out = np.empty((len(paths), size, size, 3), dtype=np.uint8)
    for i, p in enumerate(paths):
        out[i] = load_photo(p, size)
    return out
