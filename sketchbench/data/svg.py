"""SVG sketches → :class:`~sketchbench.data.sketch.Sketch`, for query files (``sketchbench retrieve``)
and the Sketchy loader (which reads its SVGs through :func:`load_svg_sketch`).

Reading one file goes through four steps, each bounded before the next one allocates:

1. **Size.** :meth:`~sketchbench.data.limits.DataLimits.check_file` refuses a file over
   ``SKETCHBENCH_MAX_SVG_BYTES`` before a byte of it is read (a :class:`DataError` naming the file).
2. **Safety.** The raw bytes are parsed with ``defusedxml``: a document that declares entities (the
   "billion laughs" family) or references external entities is refused with a one-line
   :class:`DataError` naming the file; malformed XML raises ``ParseError``. SVG is untrusted input.
3. **Cost.** The path data (every ``d`` and ``points`` attribute) is counted, not parsed: each
   command letter with its numbers gives at least one segment per full set of arguments, and each
   segment at least one point; any other element (a ``<circle>``, a ``<g>``) counts one. A file
   whose count is over ``SKETCHBENCH_MAX_POINTS_PER_SKETCH`` is a :class:`BadSketch` before
   svgelements builds any geometry (which costs ~40 µs and ~400 bytes per segment). An element is
   counted in place and once per ``<use>`` that copies it, so nested ``<use>``s (the SVG form of
   "billion laughs", over shapes of any kind) are refused too, and a ``<use>`` inside what it
   copies is a ValueError.
4. **Geometry** comes from `svgelements <https://pypi.org/project/svgelements/>`_: every
   ``<path>``, ``<polyline>``, ``<polygon>`` and ``<line>`` that is rendered (not under
   ``display="none"``, ``<defs>``, ``<clipPath>``, ``<symbol>``, ``<mask>``, ``<marker>`` or
   ``<pattern>``; ``<use>`` of a shape is resolved), with every ``transform`` (and the ``viewBox``)
   applied. svgelements reads the document as defusedxml parsed it, re-serialised (no DOCTYPE).
   Other shapes (``<rect>``, ``<circle>``, ...) are not strokes: drawing tools write them as
   backgrounds and frames (Sketchy's hidden ``bbox`` rectangle).

Each sub-path is one stroke. Lines keep their end points; curves (cubic and quadratic Béziers, arcs
as svgelements' cubic approximation) are sampled every :data:`CURVE_STEP` of the sketch's longer
side along their control polygon, at least once and at most :data:`MAX_SAMPLES_PER_SEGMENT` times
per segment (so huge coordinates cannot ask for unbounded samples). The total is checked against the
per-sketch point limit before the samples are computed. Points within 0.2 % of the sketch's size of
their neighbours' chord are then dropped and the sketch is scaled into the unit box (``docs/datasets.md``).
"""

from __future__ import annotations

import io
import math
import re
from pathlib import Path
from xml.etree.ElementTree import Element, ParseError

import numpy as np

from sketchbench.base.bounded import read_bounded
from sketchbench.base.errors import DataError
from sketchbench.data.limits import data_limits, env_name
from sketchbench.data.sketch import BadSketch, Sketch

#: Ramer–Douglas–Peucker-like tolerance, in units of the sketch's longer side
SIMPLIFY_EPSILON = 0.002
#: curve sampling step along the control polygon, in units of the sketch's longer side (a chord of
#: this length on a curve of radius 1 % of the sketch strays 0.02 %: far below SIMPLIFY_EPSILON)
CURVE_STEP = 0.004
#: samples of one curve segment at most, whatever its coordinates
MAX_SAMPLES_PER_SEGMENT = 64

#: the numbers of path data, only counted (for the cost bound of step 3); svgelements parses
_NUM = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
#: one command letter and the arguments that follow it (implicit repeats included)
_RUN = re.compile(r"([MmLlHhVvCcSsQqTtAaZz])([^MmLlHhVvCcSsQqTtAaZz]*)")
#: numbers one segment of each command takes
_ARGS = {"M": 2, "L": 2, "T": 2, "H": 1, "V": 1, "C": 6, "S": 4, "Q": 4, "A": 7, "Z": 0}

#: nesting depth of elements (and of ``<use>`` copies) at most; real sketches have a handful
MAX_DEPTH = 256
_XLINK_HREF = "{http://www.w3.org/1999/xlink}href"

# segment kinds in the control-point table
_POINT, _LINE, _CURVE = 0, 1, 2


# -- reading and checking the bytes ---------------------------------------------------------
def _read(path: Path) -> bytes:
    """The bytes of a regular file within ``SKETCHBENCH_MAX_SVG_BYTES`` (a FIFO or /dev/zero is refused)."""
    return read_bounded(path, data_limits().svg_bytes, repr(str(path)), env_name("svg_bytes"))


def _safe_tree(data: bytes, path: Path) -> Element:
    """The document parsed by defusedxml; :class:`DataError` for entities or external references."""
    import defusedxml.ElementTree as DET
    from defusedxml import DefusedXmlException

    try:
        return DET.fromstring(data)
    except DefusedXmlException as exc:
        raise DataError(f"refused to parse {str(path)!r}: {type(exc).__name__} (unsafe XML)") from None


def _own_points(el: Element) -> int:
    """A lower bound on the points of one element's own path data; at least 1 for any element, since
    each one parsed costs svgelements time and memory whether or not it is a stroke (10⁶ ``<circle>``
    copies made by nested ``<use>`` take a minute and gigabytes)."""
    total = 0
    d = el.get("d")
    if d:  # each command gives one segment per full set of arguments (at least one), each >= 1 point
        for cmd, args in _RUN.findall(d):
            per = _ARGS[cmd.upper()]
            total += max(1, len(_NUM.findall(args)) // per) if per else 1
    pts = el.get("points")
    if pts:
        total += len(_NUM.findall(pts)) // 2
    return max(total, 1)


def _min_points(root: Element) -> int:
    """A lower bound on the points the file's path data gives (see step 3 of the module docstring),
    counting an element once per ``<use>`` that copies it, as svgelements does: nested ``<use>``s
    multiply (the "billion laughs" of SVG), and a ``<use>`` inside what it copies never ends
    (ValueError). Linear in the document's size."""
    ids = {el.get("id"): el for el in root.iter() if el.get("id") is not None}
    memo: dict[int, int] = {}
    visiting: set[int] = set()

    def cost(el: Element, depth: int) -> int:
        key = id(el)
        if key in memo:
            return memo[key]
        if key in visiting:
            raise ValueError(f"a <use> copies {el.get('id')!r} into itself (endless copy)")
        if depth > MAX_DEPTH:
            raise ValueError(f"elements (or <use> copies) nested deeper than {MAX_DEPTH}")
        visiting.add(key)
        total = _own_points(el) + sum(cost(child, depth + 1) for child in el)
        if el.tag.rpartition("}")[2] == "use":
            href = el.get(_XLINK_HREF) or el.get("href") or ""
            target = ids.get(href[1:]) if href.startswith("#") else None
            if target is not None:
                total += cost(target, depth + 1)
        visiting.discard(key)
        memo[key] = total
        return total

    return cost(root, 0)


#: containers whose content is never drawn in place (svgelements itself skips ``defs`` and ``clipPath``)
_NOT_RENDERED = ("symbol", "mask", "marker", "pattern")


def _for_svgelements(root: Element) -> bytes:
    """The checked document, re-serialised for svgelements: no DOCTYPE left for the standard
    library's parser to read, and the containers of :data:`_NOT_RENDERED` turned into ``defs``."""
    from xml.etree.ElementTree import tostring

    for el in root.iter():
        ns, _, local = el.tag.rpartition("}")
        if local in _NOT_RENDERED:
            el.tag = f"{ns}}}defs" if ns else "defs"
    return tostring(root)


# -- geometry (svgelements) -----------------------------------------------------------------
def _shapes(data: bytes) -> list:
    """The rendered stroke shapes of a document from :func:`_for_svgelements`."""
    from svgelements import SVG, Polygon, Polyline, SimpleLine
    from svgelements import Path as SvgPath

    svg = SVG.parse(io.BytesIO(data), on_error="raise")
    if svg is None:  # the whole document is display="none"
        return []
    return [e for e in svg.elements() if isinstance(e, (SvgPath, Polyline, Polygon, SimpleLine))]


def _geometry(root: Element) -> tuple[list[tuple[float, ...]], list[int], list[bool]]:
    """The control-point table of a checked document. What svgelements raises on malformed input
    (ValueError, IndexError on a short ``transform``, ...) becomes one ValueError line."""
    if root.tag.rpartition("}")[2] != "svg":
        raise ValueError(f"the root element is <{root.tag.rpartition('}')[2]}>, not <svg>")
    try:
        return _control_table(_shapes(_for_svgelements(root)))
    except (ValueError, IndexError, KeyError, TypeError, AttributeError, ArithmeticError, RecursionError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else "malformed"
        raise ValueError(f"the SVG does not parse ({type(exc).__name__}: {msg})") from None


def _control_table(shapes: list) -> tuple[list[tuple[float, ...]], list[int], list[bool]]:
    """Every segment as 4 cubic control points ``(x0, y0, ..., x3, y3)``, with its kind and whether
    it starts a stroke. A stroke's start point is a :data:`_POINT` row, a line the degenerate cubic
    of its end points; quadratics are elevated to the equivalent cubic and arcs replaced by
    svgelements' cubic approximation."""
    from svgelements import Arc, Close, CubicBezier, Line, Move, Point, QuadraticBezier

    rows: list[tuple[float, ...]] = []
    kinds: list[int] = []
    starts: list[bool] = []

    def begin(x: float, y: float) -> None:
        rows.append((x, y, x, y, x, y, x, y))
        kinds.append(_POINT)
        starts.append(True)

    def cubic(seg) -> None:
        a, b, c, e = seg.start, seg.control1, seg.control2, seg.end
        rows.append((a.x, a.y, b.x, b.y, c.x, c.y, e.x, e.y))
        kinds.append(_CURVE)
        starts.append(False)

    for shape in shapes:
        open_stroke = False
        for seg in shape.segments(transformed=True):
            if isinstance(seg, Move):
                begin(seg.end.x, seg.end.y)
                open_stroke = True
                continue
            start = seg.start if seg.start is not None else Point(0, 0)  # drawing before any moveto
            if not open_stroke:
                begin(start.x, start.y)
                open_stroke = True
            if isinstance(seg, CubicBezier):
                cubic(seg)
            elif isinstance(seg, QuadraticBezier):
                q, e = seg.control, seg.end
                rows.append((start.x, start.y, start.x + 2 / 3 * (q.x - start.x), start.y + 2 / 3 * (q.y - start.y),
                             e.x + 2 / 3 * (q.x - e.x), e.y + 2 / 3 * (q.y - e.y), e.x, e.y))
                kinds.append(_CURVE)
                starts.append(False)
            elif isinstance(seg, Arc):
                for part in seg.as_cubic_curves():
                    cubic(part)
            elif isinstance(seg, (Line, Close)) or seg.end is not None:
                e = seg.end
                if isinstance(seg, Close) and (e.x, e.y) == (start.x, start.y):
                    continue  # already back at the sub-path's start
                rows.append((start.x, start.y, start.x, start.y, e.x, e.y, e.x, e.y))
                kinds.append(_LINE)
                starts.append(False)
    return rows, kinds, starts


def _sample(rows: list[tuple[float, ...]], kinds: list[int], starts: list[bool], where: str) -> list[np.ndarray]:
    """The polylines of a control-point table (see the module docstring for the sampling rule)."""
    if not rows:
        return []
    ctrl = np.asarray(rows, dtype=np.float64).reshape(-1, 4, 2)
    if not np.isfinite(ctrl).all():
        raise BadSketch(f"{where}: the SVG has non-finite coordinates")
    flat = ctrl.reshape(-1, 2)
    with np.errstate(over="ignore", invalid="ignore"):
        extent = float((flat.max(axis=0) - flat.min(axis=0)).max())
        curve = np.asarray(kinds) == _CURVE
        n = np.ones(len(ctrl), dtype=np.int64)
        if not math.isfinite(extent):
            raise BadSketch(f"{where}: the SVG's coordinates are too large to measure")
        if extent > 0 and curve.any():
            c = ctrl[curve]
            polygon = np.hypot(*(c[:, 1:] - c[:, :-1]).transpose(2, 0, 1)).sum(axis=1)
            steps = np.nan_to_num(polygon / (CURVE_STEP * extent), nan=MAX_SAMPLES_PER_SEGMENT,
                                  posinf=MAX_SAMPLES_PER_SEGMENT)
            n[curve] = np.clip(np.ceil(steps), 1, MAX_SAMPLES_PER_SEGMENT)
    total = int(n.sum())
    data_limits().check_sketch(total, where)  # before the samples are allocated
    seg_of = np.repeat(np.arange(len(ctrl)), n)
    t = (np.arange(total) - np.repeat(np.cumsum(n) - n, n) + 1) / n[seg_of]  # k / n, k = 1..n
    u = 1 - t
    basis = np.stack([u**3, 3 * u * u * t, 3 * u * t * t, t**3], axis=1)  # cubic Bernstein, (total, 4)
    with np.errstate(over="ignore", invalid="ignore"):
        pts = np.einsum("pk,pkd->pd", basis, ctrl[seg_of])
    stroke_of = (np.cumsum(starts) - 1)[seg_of]
    return np.split(pts, np.flatnonzero(np.diff(stroke_of)) + 1)


def parse_path_d(d: str, where: str = "path data") -> list[np.ndarray]:
    """An SVG path ``d`` string as polylines (one ``(n, 2)`` array per sub-path), sampled like a file."""
    from svgelements import Path as SvgPath

    try:
        table = _control_table([SvgPath(d)])
    except (ValueError, IndexError) as exc:
        raise ValueError(f"path data does not parse ({str(exc) or 'malformed'})") from None
    return _sample(*table, where)


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


def svg_strokes(path: Path) -> list[np.ndarray]:
    """Polylines of an SVG sketch file, in the document's coordinates (transforms applied).

    Raises :class:`DataError` for a file over the byte limit or refused by defusedxml (entities,
    external references), :class:`BadSketch` for one over the point limit or with non-finite
    coordinates, and ValueError/ParseError for a file that does not parse."""
    where = str(path)
    data = _read(Path(path))
    root = _safe_tree(data, Path(path))
    data_limits().check_sketch(_min_points(root), where)
    return _sample(*_geometry(root), where)


def load_svg_sketch(path: Path) -> Sketch:
    """One SVG file as a :class:`Sketch`, thinned and scaled into the unit box.

    Raises :class:`BadSketch` (no strokes, non-finite coordinates, over the point limit) or
    ValueError/ParseError (does not parse) for an unusable sketch, which a loader skips and counts,
    and a plain :class:`DataError` for a file that must not be read at all (over the byte limit,
    unsafe XML), which a loader does not skip."""
    strokes = [s for s in svg_strokes(path) if len(s)]
    if not strokes:
        raise BadSketch("no strokes in the SVG")
    allpts = np.vstack(strokes)
    if not np.isfinite(allpts).all():
        raise BadSketch("the SVG has non-finite coordinates")
    extent = float((allpts.max(axis=0) - allpts.min(axis=0)).max())
    return Sketch.from_strokes(thin(strokes, SIMPLIFY_EPSILON * extent) if extent > 0 else strokes)


def read_svg_sketch(path: Path) -> Sketch:
    """:func:`load_svg_sketch` with every failure as one :class:`DataError` line naming the file."""
    try:
        return load_svg_sketch(Path(path))
    except DataError as exc:
        if isinstance(exc, BadSketch):
            raise DataError(f"SVG {str(path)!r} holds no usable sketch ({exc})") from None
        raise
    except (ParseError, ValueError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"SVG {str(path)!r} does not parse ({msg})") from None
    except OSError as exc:
        raise DataError(f"cannot read {str(path)!r}: {exc.strerror or exc}") from None
