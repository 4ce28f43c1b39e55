"""Sketchy (the "Sketchy Database", SIGGRAPH 2016) as an instance-level FG-SBIR set, from its SVG sketches.

Layout (the official archives unpacked side by side)::

    <root>/sketches/<category>/<photoid>-<n>.svg                 # sketches-06-04.7z: vector sketches
    <root>/256x256/photo/tx_000000000000/<category>/<photoid>.jpg  # rendered_256x256.7z (or <root>/photo/...)
    <root>/info/testset.txt                                      # info-06-04.7z, optional: held-out photos
    <root>/info/invalid-{ambiguous,context,error,pose}.txt       # optional: sketches to exclude

* Sketches: every ``<path>`` (also ``<polyline>``/``<line>``) of the SVG, parsed with ``defusedxml``
  (no entity expansion, no external resources). Each sub-path is one stroke; lines keep their end
  points, Bézier curves (C/S/Q/T) are sampled at 8 points per segment, arcs are replaced by their
  chord, and ``transform`` attributes are applied. Points lying within 0.2 % of the sketch's size of
  the chord of their neighbours are then dropped (a vectorised Ramer–Douglas–Peucker stand-in) and the
  sketch is scaled uniformly into the unit box. A sketch whose SVG does not parse or has no points is
  skipped with a warning and counted in ``meta["skipped_sketches"]``; an SVG that declares entities
  (the "billion laughs" family) is refused with a :class:`DataError`.
* Photo of a sketch: its file name before the last ``-`` (``n02691156_58-1.svg`` -> ``n02691156_58``),
  in the same category.
* Split: photos listed in ``info/testset.txt`` (``<category>/<photoid>.jpg``; the official 10 per
  category) are test, all others train; their sketches follow their photo. Without ``testset.txt``,
  10 photos per category are held out at random with a fixed seed (0), as Adaptive-FGSBIR does.
* Invalid sketches listed in ``info/invalid-*.txt`` are excluded (count in ``meta["excluded_invalid"]``).
* Retrieval is over the whole test gallery (all categories, 1,250 photos with the official split),
  not within the category: stricter than the within-category protocol some papers report.
"""

from __future__ import annotations

import math
import re
import warnings
from pathlib import Path
from typing import Any
from xml.etree.ElementTree import Element, ParseError

import numpy as np

from sketchbench import (
    ArtifactCache,
    BadSketch,
    DataError,
    DatasetOptions,
    DatasetSource,
    FGSBIRDataset,
    Sketch,
    SketchbenchError,
    SketchItem,
    Split,
    default_cache_dir,
    fingerprint_files,
    progress_bar,
    stable_hash,
)

from ._photos import load_photos

PHOTO_FOLDERS = ("256x256/photo/tx_000000000000", "rendered_256x256/256x256/photo/tx_000000000000",
                 "photo/tx_000000000000")
#: photos held out per category when info/testset.txt is absent
HELD_OUT_PER_CATEGORY = 10
SPLIT_SEED = 0
#: Ramer–Douglas–Peucker tolerance, in units of the sketch's longer side
SIMPLIFY_EPSILON = 0.002

_TOKEN = re.compile(r"[MmLlHhVvCcSsQqTtAaZz]|[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
_TRANSFORM = re.compile(r"(matrix|translate|scale|rotate|skewX|skewY)\s*\(([^)]*)\)")
_NUM = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
_ARGS = {"M": 2, "L": 2, "H": 1, "V": 1, "C": 6, "S": 4, "Q": 4, "T": 2, "A": 7, "Z": 0}


# -- SVG geometry --------------------------------------------------------------------------
#: samples per Bézier segment (Sketchy strokes are chains of short segments; thinning follows)
CURVE_SAMPLES = 8
_T = np.linspace(0, 1, CURVE_SAMPLES + 1)[1:]
#: cubic Bernstein basis at the sample parameters, (CURVE_SAMPLES, 4)
_BASIS = np.stack([(1 - _T) ** 3, 3 * (1 - _T) ** 2 * _T, 3 * (1 - _T) * _T**2, _T**3], axis=1)


def _sample(segments: list[list[float]], lines: list[bool]) -> np.ndarray:
    """Points of one sub-path. Every segment is stored as a cubic ``[x0, y0, ..., x3, y3]`` (a line
    as the degenerate cubic of its end points); all are evaluated in one product, and a line keeps
    only its end point."""
    ctrl = np.asarray(segments, dtype=np.float64).reshape(-1, 4, 2)
    pts = np.einsum("sk,nkd->nsd", _BASIS, ctrl)  # (K, CURVE_SAMPLES, 2)
    keep = np.ones(pts.shape[:2], dtype=bool)
    keep[np.asarray(lines), :-1] = False
    return np.vstack([ctrl[0, 0][None], pts[keep]])


def parse_path_d(d: str) -> list[np.ndarray]:
    """An SVG path ``d`` string as polylines (one ``(n, 2)`` array per sub-path).

    The command loop is plain Python on floats (Sketchy paths are long chains of tiny segments,
    where per-segment NumPy calls would dominate); sampling is one NumPy product per sub-path.
    """
    tokens = _TOKEN.findall(d)
    out: list[np.ndarray] = []
    segs: list[list[float]] = []
    lines: list[bool] = []
    x = y = sx = sy = 0.0
    px = py = None  # the previous control point, reflected by S / T
    prev = ""  # "C" or "Q": the family of the previous segment
    cmd = ""
    i, n_tok = 0, len(tokens)
    pending_start: tuple[float, float] | None = None  # a moveto with no segment yet

    def flush() -> None:
        if segs:
            out.append(_sample(segs, lines))
        elif pending_start is not None:
            out.append(np.array([pending_start]))
        segs.clear()
        lines.clear()

    def seg(c1x: float, c1y: float, c2x: float, c2y: float, ex: float, ey: float, line: bool) -> None:
        segs.append([x, y, c1x, c1y, c2x, c2y, ex, ey])
        lines.append(line)

    while i < n_tok:
        tok = tokens[i]
        if tok.isalpha():
            cmd = tok
            i += 1
            if cmd in "Zz":
                if (x, y) != (sx, sy) and (segs or pending_start is not None):
                    seg(x, y, sx, sy, sx, sy, True)
                x, y, px, prev = sx, sy, None, ""
                continue
        elif not cmd or cmd in "Zz":
            raise ValueError(f"a number where a command was expected in {d[:40]!r}")
        up = cmd.upper()
        n = _ARGS[up]
        if i + n > n_tok:
            raise ValueError(f"command {cmd!r} needs {n} numbers in {d[:40]!r}")
        try:
            v = [float(t) for t in tokens[i : i + n]]
        except ValueError:
            raise ValueError(f"command {cmd!r} needs {n} numbers in {d[:40]!r}") from None
        i += n
        ox, oy = (x, y) if cmd.islower() else (0.0, 0.0)
        if up == "M":
            flush()
            x, y = ox + v[0], oy + v[1]
            sx, sy = x, y
            pending_start = (x, y)
            cmd = "l" if cmd == "m" else "L"  # further pairs after a moveto are linetos
            px, prev = None, ""
            continue
        if not segs and pending_start is None:  # drawing before any moveto starts at the origin
            pending_start = (x, y)
        if up in ("L", "H", "V", "A"):  # an arc is replaced by its chord (sketch strokes do not use arcs)
            if up == "L":
                ex, ey = ox + v[0], oy + v[1]
            elif up == "H":
                ex, ey = ox + v[0], y
            elif up == "V":
                ex, ey = x, oy + v[0]
            else:
                ex, ey = ox + v[5], oy + v[6]
            seg(x, y, ex, ey, ex, ey, True)
            x, y, px, prev = ex, ey, None, ""
        elif up in ("C", "S"):
            if up == "C":
                c1x, c1y, c2x, c2y, ex, ey = ox + v[0], oy + v[1], ox + v[2], oy + v[3], ox + v[4], oy + v[5]
            else:
                c1x, c1y = (2 * x - px, 2 * y - py) if prev == "C" and px is not None else (x, y)
                c2x, c2y, ex, ey = ox + v[0], oy + v[1], ox + v[2], oy + v[3]
            seg(c1x, c1y, c2x, c2y, ex, ey, False)
            x, y, px, py, prev = ex, ey, c2x, c2y, "C"
        else:  # Q / T, elevated to the equivalent cubic
            if up == "Q":
                qx, qy, ex, ey = ox + v[0], oy + v[1], ox + v[2], oy + v[3]
            else:
                qx, qy = (2 * x - px, 2 * y - py) if prev == "Q" and px is not None else (x, y)
                ex, ey = ox + v[0], oy + v[1]
            seg(x + 2 / 3 * (qx - x), y + 2 / 3 * (qy - y), ex + 2 / 3 * (qx - ex), ey + 2 / 3 * (qy - ey), ex, ey, False)
            x, y, px, py, prev = ex, ey, qx, qy, "Q"
    flush()
    return out


def thin(strokes: list[np.ndarray], epsilon: float) -> list[np.ndarray]:
    """Drop points that lie within ``epsilon`` of the chord of their neighbours, in vectorised
    passes over all strokes at once (stroke ends always stay). A cheap stand-in for
    Ramer–Douglas–Peucker: removals alternate between odd and even points, so no two neighbours go
    in the same pass and each decision is made against the current neighbours."""
    lengths = [len(s) for s in strokes]
    pts = np.vstack(strokes)
    fixed = np.zeros(len(pts), dtype=bool)
    ends = np.cumsum(lengths)
    fixed[ends - 1] = True
    fixed[ends - np.asarray(lengths)] = True
    stroke_of = np.repeat(np.arange(len(strokes)), lengths)
    idle = 0
    for k in range(400):
        if len(pts) < 3:
            break
        a, m, b = pts[:-2], pts[1:-1], pts[2:]
        ab = b - a
        norm = np.hypot(ab[:, 0], ab[:, 1])
        cross = np.abs(ab[:, 0] * (m[:, 1] - a[:, 1]) - ab[:, 1] * (m[:, 0] - a[:, 0]))
        dist = np.where(norm > 0, cross / np.maximum(norm, 1e-12), np.hypot(*(m - a).T))
        drop = np.zeros(len(pts), dtype=bool)
        drop[1:-1] = (dist < epsilon) & ~fixed[1:-1]
        drop &= (np.arange(len(pts)) % 2) == (k % 2)
        if not drop.any():
            idle += 1
            if idle >= 2:  # neither parity removes anything: done
                break
            continue
        idle = 0
        keep = ~drop
        pts, fixed, stroke_of = pts[keep], fixed[keep], stroke_of[keep]
    return [pts[stroke_of == i] for i in range(len(strokes))]


def _transform_matrix(text: str | None) -> np.ndarray:
    m = np.eye(3)
    if not text:
        return m
    for name, args in _TRANSFORM.findall(text):
        v = [float(x) for x in _NUM.findall(args)]
        t = np.eye(3)
        if name == "matrix" and len(v) == 6:
            t = np.array([[v[0], v[2], v[4]], [v[1], v[3], v[5]], [0, 0, 1]])
        elif name == "translate" and v:
            t[0, 2], t[1, 2] = v[0], v[1] if len(v) > 1 else 0.0
        elif name == "scale" and v:
            t[0, 0], t[1, 1] = v[0], v[1] if len(v) > 1 else v[0]
        elif name == "rotate" and v:
            a = math.radians(v[0])
            r = np.array([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]])
            if len(v) == 3:
                pre, post = np.eye(3), np.eye(3)
                pre[:2, 2], post[:2, 2] = v[1:3], [-v[1], -v[2]]
                r = pre @ r @ post
            t = r
        elif name == "skewX" and v:
            t[0, 1] = math.tan(math.radians(v[0]))
        elif name == "skewY" and v:
            t[1, 0] = math.tan(math.radians(v[0]))
        m = m @ t
    return m


def _collect(el: Element, matrix: np.ndarray, out: list[np.ndarray]) -> None:
    matrix = matrix @ _transform_matrix(el.get("transform"))
    tag = el.tag.rsplit("}", 1)[-1]
    strokes: list[np.ndarray] = []
    if tag == "path" and el.get("d"):
        strokes = parse_path_d(el.get("d", ""))
    elif tag in ("polyline", "polygon") and el.get("points"):
        pts = np.array([float(x) for x in _NUM.findall(el.get("points", ""))])
        if len(pts) >= 2:
            pts = pts[: len(pts) // 2 * 2].reshape(-1, 2)
            strokes = [np.vstack([pts, pts[:1]]) if tag == "polygon" else pts]
    elif tag == "line":
        strokes = [np.array([[float(el.get(k, 0)) for k in ("x1", "y1")], [float(el.get(k, 0)) for k in ("x2", "y2")]])]
    for s in strokes:
        out.append(s @ matrix[:2, :2].T + matrix[:2, 2])
    for child in el:
        if child.tag.rsplit("}", 1)[-1] not in ("defs", "clipPath", "mask", "symbol", "title", "desc", "metadata"):
            _collect(child, matrix, out)


def svg_strokes(path: Path) -> list[np.ndarray]:
    """Polylines of an SVG sketch file. Raises ValueError/ParseError for a bad file and
    DataError when defusedxml refuses it (entities, external references)."""
    import defusedxml.ElementTree as DET
    from defusedxml import DefusedXmlException

    try:
        root = DET.parse(str(path)).getroot()
    except DefusedXmlException as exc:
        raise DataError(f"refused to parse {str(path)!r}: {type(exc).__name__} (unsafe XML)") from None
    out: list[np.ndarray] = []
    _collect(root, np.eye(3), out)
    return out


def load_svg_sketch(path: Path) -> Sketch:
    """One Sketchy SVG as a :class:`Sketch` (raises BadSketch/ValueError/ParseError when unusable)."""
    strokes = [s for s in svg_strokes(path) if len(s)]
    if not strokes:
        raise BadSketch("no strokes in the SVG")
    allpts = np.vstack(strokes)
    if not np.isfinite(allpts).all():
        raise BadSketch("the SVG has non-finite coordinates")
    extent = float((allpts.max(axis=0) - allpts.min(axis=0)).max())
    return Sketch.from_strokes(thin(strokes, SIMPLIFY_EPSILON * extent) if extent > 0 else strokes)


# -- lists ---------------------------------------------------------------------------------
def _id_lines(path: Path) -> list[str]:
    """Non-empty lines of a list file, as names without folder or extension."""
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        raise DataError(f"cannot read {str(path)!r}: {exc.strerror or exc}") from None
    out = []
    for line in text.splitlines():
        line = line.strip().replace("\\", "/")
        if line:
            out.append(line)
    return out


def _stem(name: str) -> str:
    base = name.rsplit("/", 1)[-1]
    return base.rsplit(".", 1)[0] if "." in base else base


#: bump when the SVG parsing changes, to invalidate cached parses
PARSER_VERSION = "1"


def parse_all(sketch_root: Path, files: list[Path], cache_dir: Path | None = None) -> dict[str, Sketch | str]:
    """Every SVG as a Sketch, or the reason it is unusable, keyed ``<category>/<file name>``.

    Parsing 75k SVGs takes minutes, so the result is kept in the run's artifact cache (``cache_dir``,
    else the default: ``SKETCHBENCH_CACHE_DIR`` or ``~/.cache/sketchbench``), keyed by the files' names,
    sizes and modification times and by :data:`PARSER_VERSION`.
    """
    try:
        cache = ArtifactCache(cache_dir or default_cache_dir())
    except SketchbenchError:  # an unwritable cache only costs time
        cache = ArtifactCache(None)
    names = [f"{f.parent.name}/{f.name}" for f in files]
    key = stable_hash([PARSER_VERSION, SIMPLIFY_EPSILON, CURVE_SAMPLES, str(sketch_root),
                       fingerprint_files(files, extra="\n".join(names))])
    cached = cache.load("sketchy-svg", key)
    if isinstance(cached, dict) and cached.get("names") == names:
        out: dict[str, Sketch | str] = {}
        points = cached["points"].numpy()
        bounds = np.concatenate([[0], np.cumsum(cached["lengths"].numpy())])
        for j, name in enumerate(names):
            err = cached["errors"][j]
            out[name] = err if err else Sketch(points[bounds[j] : bounds[j + 1]].copy())
        return out
    out = {}
    for name, f in zip(names, progress_bar(files, desc="sketchy SVGs", leave=False, hide=len(files) < 500)):
        try:
            out[name] = load_svg_sketch(f)
        except (BadSketch, ValueError, ParseError, IndexError, UnicodeDecodeError) as exc:
            out[name] = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    import torch

    sketches = [v for v in out.values() if not isinstance(v, str)]
    cache.save("sketchy-svg", key, {
        "names": names,
        "errors": [v if isinstance(v, str) else "" for v in out.values()],
        "lengths": torch.tensor([0 if isinstance(v, str) else len(v) for v in out.values()], dtype=torch.long),
        "points": torch.from_numpy(np.concatenate([v.points for v in sketches]) if sketches else np.zeros((0, 3), np.float32)),
    })
    return out


class Sketchy(DatasetSource):
    name = "sketchy"
    description = "Sketchy Extended: SVG sketches + photos, fine-grained split"
    layout = ("<root>/sketches/<category>/<photoid>-<n>.svg, <root>/256x256/photo/tx_000000000000/<category>/<photoid>.jpg, "
              "optional <root>/info/testset.txt and info/invalid-*.txt")

    def load(self, options: DatasetOptions) -> FGSBIRDataset:
        root = self.resolve_root(options)
        sketch_root = root / "sketches"
        if not sketch_root.is_dir():
            raise DataError(f"{self.name}: no folder {str(sketch_root)!r}; expected layout: {self.layout}")
        categories = sorted(p.name for p in sketch_root.iterdir() if p.is_dir())
        if not categories:
            raise DataError(f"{self.name}: {str(sketch_root)!r} has no category folders; expected layout: {self.layout}")
        photo_root = next((root / f for f in PHOTO_FOLDERS if (root / f).is_dir()), None)

        # photos per category: the photo files when present, else the ids the sketches name
        svgs = {c: sorted((sketch_root / c).glob("*.svg")) for c in categories}
        photos: dict[str, list[str]] = {}
        for c in categories:
            if photo_root is not None and (photo_root / c).is_dir():
                photos[c] = sorted(p.stem for p in (photo_root / c).glob("*.jpg"))
            else:
                photos[c] = sorted({s.stem.rsplit("-", 1)[0] for s in svgs[c]})

        info = root / "info"
        test_ids = self._test_photos(info, photos)
        invalid: set[str] = set()
        for f in sorted(info.glob("invalid-*.txt")) if info.is_dir() else []:
            invalid |= {_stem(x) for x in _id_lines(f)}

        split_photos: dict[str, list[str]] = {"train": [], "test": []}
        for c in categories:
            for p in photos[c]:
                split_photos["test" if f"{c}/{p}" in test_ids else "train"].append(f"{c}/{p}")
        index = {s: {pid: i for i, pid in enumerate(ids)} for s, ids in split_photos.items()}

        all_svgs = [f for c in categories for f in svgs[c]]
        parsed = parse_all(sketch_root, all_svgs, options.cache_dir)
        items: dict[str, list[SketchItem]] = {"train": [], "test": []}
        skipped = excluded = 0
        for f in all_svgs:
            c = f.parent.name
            if f.stem in invalid:
                excluded += 1
                continue
            pid = f"{c}/{f.stem.rsplit('-', 1)[0]}"
            split = "test" if pid in index["test"] else "train"
            result = parsed[f"{c}/{f.name}"]
            problem = result if isinstance(result, str) else (None if pid in index[split] else f"no photo {pid}.jpg")
            if problem is not None:
                skipped += 1
                warnings.warn(f"{self.name}: skipping sketch {str(f)!r}: {problem}", stacklevel=2)
                continue
            items[split].append(SketchItem(f"{c}/{f.stem}", index[split][pid], vector=result))

        meta: dict[str, Any] = {
            "split": "info/testset.txt" if test_ids and (info / "testset.txt").is_file()
            else f"{HELD_OUT_PER_CATEGORY} random photos per category held out (seed {SPLIT_SEED})",
            "gallery": "all test photos of all categories",
            "skipped_sketches": skipped,
            "excluded_invalid": excluded,
        }
        splits: dict[str, Split] = {}
        photo_files: list[Path] = []
        for s in ("train", "test"):
            if not items[s]:
                raise DataError(f"{self.name}: no usable {s} sketches under {str(sketch_root)!r}")
            arr = None
            if photo_root is not None:
                paths = [photo_root / f"{pid}.jpg" for pid in split_photos[s]]
                photo_files += paths
                arr = (load_photos(paths, options.photo_size, desc=f"sketchy/{s} photos") if options.need_photos
                       else np.zeros((len(paths), 0, 0, 3), dtype=np.uint8))  # data info: not decoded
            splits[s] = Split(items[s], split_photos[s], arr)
        if photo_root is None:
            meta["photos"] = (f"no folder {str(root / PHOTO_FOLDERS[0])!r}: unpack rendered_256x256.7z in the data root")
        lists = sorted(info.glob("*.txt")) if info.is_dir() else []
        fp = fingerprint_files([*all_svgs, *photo_files, *lists], extra=f"{self.name}-v1-photos:{photo_root is not None}")
        return FGSBIRDataset(self.name, splits["train"], splits["test"], meta=meta, fingerprint=fp)

    def _test_photos(self, info: Path, photos: dict[str, list[str]]) -> set[str]:
        listed = info / "testset.txt"
        if listed.is_file():
            out = set()
            for line in _id_lines(listed):
                parts = line.split("/")
                if len(parts) < 2:
                    raise DataError(f"{str(listed)!r}: line {line!r} is not '<category>/<photoid>.jpg'")
                out.add(f"{parts[-2]}/{_stem(parts[-1])}")
            return out
        rng = np.random.default_rng(SPLIT_SEED)
        out = set()
        for c, ids in photos.items():
            if len(ids) <= HELD_OUT_PER_CATEGORY:
                raise DataError(f"{self.name}: category {c!r} has {len(ids)} photos; a held-out split needs more than "
                                f"{HELD_OUT_PER_CATEGORY} (or provide info/testset.txt)")
            out |= {f"{c}/{ids[i]}" for i in rng.choice(len(ids), HELD_OUT_PER_CATEGORY, replace=False)}
        return out
