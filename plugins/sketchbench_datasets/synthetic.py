"""``synthetic``: an embedded, procedural fine-grained shoe dataset (no files needed).

Every instance is a side-view shoe built from shape parameters (toe shape, heel type and height,
sole thickness, shaft height, throat position, ...) plus small part details (lace count and
eyelets, buckles, stitching lines, logo stripes, toe perforations, toe cap, heel counter, pull
tab). Instances come in *families* of :data:`FAMILY_SIZE` that share one silhouette and differ
only in their details, so retrieval inside a family depends on details that vanish at 32 px.

Per instance the generator draws
- one dense "photo": filled, shaded, textured and coloured parts on a cluttered background,
  drawn directly at ``options.photo_size`` with PIL (2× supersampled, then reduced);
- ``sketches_per_instance`` abstract vector sketches in one of three styles (``careful``,
  ``sloppy``, ``minimal``: jitter, wobble, overshoot, over-tracing, outlines drawn in pieces,
  forgotten parts, a miscounted lace, a global rotation/shear) with a per-sketch *detail level*
  that decides which parts are drawn and how much they are enlarged: 0 = silhouette, sole, heel;
  1 = + big parts (logo, straps, toe cap, heel counter, lace panel), enlarged 1.35×; 2 = + laces,
  buckles, stitching lines, pull tab (1.15×); 3 = + eyelets, perforations, buckle prongs and
  stitching dashes at their true, small size. Level and style are kept in the sketch id:
  ``"test/shoe0042_1.sloppy.d3"`` (see :func:`sketch_detail`).

The sketches are a hand-written procedural model of abstraction, not learned from human data.

The split is 75/25 by instance (whole families where the count allows), so the test photos are
a separate gallery (instance-level retrieval). Everything is deterministic from ``options.seed``;
each instance draws from its own seeded generator. Design notes and measured numbers:
``docs/synthetic.md``.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import asdict, dataclass, field, replace

import numpy as np
from PIL import Image, ImageChops, ImageDraw, ImageFilter

from sketchbench import DataError, DatasetOptions, DatasetSource, FGSBIRDataset, Sketch, SketchItem, Split

#: bump when the generator's output changes (it is part of the fingerprint)
VERSION = "v1"
#: instances per family: they share a silhouette and differ in details
FAMILY_SIZE = 4
TEST_FRACTION = 0.25
#: photos are drawn at this multiple of the photo size, then reduced (anti-aliasing)
SUPERSAMPLE = 2
STYLES = ("careful", "sloppy", "minimal")
STYLE_PROBS = (0.4, 0.35, 0.25)
#: per style: the probabilities of detail levels 0..3
LEVEL_PROBS = {
    "careful": (0.0, 0.2, 0.35, 0.45),
    "sloppy": (0.15, 0.3, 0.35, 0.2),
    "minimal": (0.55, 0.45, 0.0, 0.0),
}
#: per detail level: how much a sketch enlarges the details it draws (abstract sketches exaggerate)
EXAGGERATION = (1.6, 1.35, 1.15, 1.0)
#: per style: resampling step, wobble and noise amplitudes, overshoot, over-trace probability,
#: how many pieces the silhouette is drawn in, chance of omitting a drawn part
STYLE_PARAMS = {
    "careful": dict(step=0.05, wobble=0.004, noise=0.0012, overshoot=0.006, retrace=0.0, pieces=(1, 2), omit=0.05),
    "sloppy": dict(step=0.055, wobble=0.007, noise=0.0025, overshoot=0.02, retrace=0.45, pieces=(2, 4), omit=0.15),
    "minimal": dict(step=0.07, wobble=0.007, noise=0.0015, overshoot=0.01, retrace=0.0, pieces=(1, 2), omit=0.1),
}
#: which details a family member changes from its family's base (two of them), and how likely each
#: is picked: mostly small parts, so that telling members apart needs resolution
VARIANT_WEIGHTS = {"laces": 3, "perforations": 3, "stitching": 2, "pull_tab": 2, "buckles": 2, "logo": 1,
                   "toe_cap": 1, "heel_counter": 1}
TOES = ("round", "pointed", "square")
HEELS = ("flat", "block", "stiletto", "wedge")
SHAFTS = ("low", "mid", "high")
LOGOS = ("none", "swoosh", "stripes2", "stripes3", "band", "circle")
MATERIALS = ("leather", "canvas", "knit", "suede")


# -- instance specification ----------------------------------------------------------------
@dataclass(frozen=True)
class ShoeShape:
    """Family-level shape parameters (object frame: toe at x≈0, back at x≈1, ground y=0, y up)."""

    toe: str
    heel: str
    heel_h: float
    sole_t: float
    toe_h: float
    instep: float
    shaft: str
    collar_h: float
    throat_x: float
    toe_spring: float
    back_slope: float


@dataclass(frozen=True)
class ShoeDetails:
    """Instance-level part details: what tells the members of a family apart."""

    laces: int
    perforations: int
    buckles: int
    stitching: int
    logo: str
    toe_cap: bool
    heel_counter: bool
    pull_tab: bool


@dataclass(frozen=True)
class ShoeSpec:
    index: int
    family: int
    shape: ShoeShape
    details: ShoeDetails
    upper_rgb: tuple[int, int, int]
    sole_rgb: tuple[int, int, int]
    detail_rgb: tuple[int, int, int]
    material: str


def _shape(rng: np.random.Generator) -> ShoeShape:
    heel = str(rng.choice(HEELS, p=(0.4, 0.25, 0.2, 0.15)))
    shaft = str(rng.choice(SHAFTS, p=(0.6, 0.25, 0.15)))
    toe = str(rng.choice(TOES, p=(0.45, 0.3, 0.25)))
    heel_h = {"flat": rng.uniform(0.0, 0.02), "block": rng.uniform(0.1, 0.2),
              "stiletto": rng.uniform(0.18, 0.28), "wedge": rng.uniform(0.1, 0.2)}[heel]
    sole_t = rng.uniform(0.045, 0.08) if heel == "flat" else rng.uniform(0.018, 0.03)
    collar = {"low": rng.uniform(0.18, 0.26), "mid": rng.uniform(0.33, 0.42), "high": rng.uniform(0.55, 0.75)}[shaft]
    return ShoeShape(
        toe=toe, heel=heel, heel_h=float(heel_h), sole_t=float(sole_t),
        toe_h=float(rng.uniform(0.09, 0.12) if toe == "pointed" else rng.uniform(0.12, 0.17)),
        instep=float(rng.uniform(0.06, 0.12)), shaft=shaft, collar_h=float(collar),
        throat_x=float(rng.uniform(0.4, 0.5)), toe_spring=float(rng.uniform(0.0, 0.03)),
        back_slope=float(rng.uniform(0.0, 0.03)),
    )


def _details(rng: np.random.Generator, shape: ShoeShape) -> ShoeDetails:
    laced = shape.heel in ("flat", "block") and rng.random() < 0.75
    return ShoeDetails(
        laces=int(rng.integers(3, 8)) if laced else 0,
        perforations=int(rng.choice([0, 0, 4, 5, 6, 7, 8])),
        buckles=int(rng.choice([0, 0, 1, 2])),
        stitching=int(rng.choice([0, 1, 2])),
        logo=str(rng.choice(LOGOS)),
        toe_cap=bool(rng.random() < 0.5),
        heel_counter=bool(rng.random() < 0.5),
        pull_tab=bool(rng.random() < 0.4),
    )


def _variant(base: ShoeDetails, shape: ShoeShape, rng: np.random.Generator) -> ShoeDetails:
    """A family member: the family's base details with a few of them changed, mostly small ones."""
    weights = dict(VARIANT_WEIGHTS)
    if shape.heel not in ("flat", "block"):
        weights["laces"] = 0  # never laced: changing the lace count would change nothing
    names = list(weights)
    p = np.array([weights[n] for n in names], dtype=np.float64)
    chosen = rng.choice(names, size=2, replace=False, p=p / p.sum())
    fresh = asdict(_details(rng, shape))
    return replace(base, **{str(n): fresh[str(n)] for n in chosen})


def _colour(rng: np.random.Generator, lo: int, hi: int) -> tuple[int, int, int]:
    return tuple(int(v) for v in rng.integers(lo, hi, 3))  # type: ignore[return-value]


def make_specs(instances: int, seed: int) -> list[ShoeSpec]:
    """The instances' specifications: family shapes and base details from ``[seed, family]``; each
    member changes two details (:func:`_variant`) and draws its colours from ``[seed, instance]``.
    Members of a family never share the same details."""
    specs: list[ShoeSpec] = []
    for f in range(math.ceil(instances / FAMILY_SIZE)):
        frng = np.random.default_rng([seed, f, 11])
        shape = _shape(frng)
        base = _details(frng, shape)
        seen: set[ShoeDetails] = set()
        for i in range(f * FAMILY_SIZE, min(instances, (f + 1) * FAMILY_SIZE)):
            rng = np.random.default_rng([seed, i, 12])
            details = _variant(base, shape, rng)
            while details in seen:
                details = _variant(base, shape, rng)
            seen.add(details)
            dark = rng.random() < 0.35
            upper = _colour(rng, 20, 110) if dark else _colour(rng, 90, 245)
            specs.append(ShoeSpec(
                index=i, family=f, shape=shape, details=details, upper_rgb=upper,
                sole_rgb=_colour(rng, 200, 255) if rng.random() < 0.5 else _colour(rng, 20, 90),
                detail_rgb=_colour(rng, 0, 256), material=str(rng.choice(MATERIALS)),
            ))
    return specs


# -- geometry ------------------------------------------------------------------------------
@dataclass
class Part:
    """One drawable piece in the object frame (y up). ``level``: the lowest sketch detail level
    that draws it; ``size``: its extent, which scales a sketch's jitter on it."""

    name: str
    pts: np.ndarray
    closed: bool = False
    level: int = 0
    size: float = 1.0
    group: str = ""  # parts of one group are exaggerated about a common centre


@dataclass
class Shoe:
    upper: np.ndarray
    sole: np.ndarray
    heel: np.ndarray | None
    silhouette: np.ndarray
    parts: list[Part] = field(default_factory=list)
    height: float = 0.0
    interior: np.ndarray | None = None  # the lining seen through the collar opening


def _smoothstep(t: np.ndarray) -> np.ndarray:
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3 - 2 * t)


def _spline(points: list[tuple[float, float]] | np.ndarray, n: int = 8) -> np.ndarray:
    """Catmull-Rom through the points (open), ``n`` samples per segment."""
    p = np.asarray(points, dtype=np.float64)
    if len(p) < 3:
        return p
    ext = np.vstack([2 * p[0] - p[1], p, 2 * p[-1] - p[-2]])
    t = np.linspace(0, 1, n, endpoint=False)[:, None]
    out = []
    for i in range(1, len(ext) - 2):
        p0, p1, p2, p3 = ext[i - 1], ext[i], ext[i + 1], ext[i + 2]
        out.append(0.5 * (2 * p1 + (-p0 + p2) * t + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t**2 + (-p0 + 3 * p1 - 3 * p2 + p3) * t**3))
    out.append(p[-1:])
    return np.vstack(out)


def _circle(cx: float, cy: float, r: float, n: int = 10) -> np.ndarray:
    a = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.stack([cx + r * np.cos(a), cy + r * np.sin(a)], axis=1)


def _normals(poly: np.ndarray) -> np.ndarray:
    d = np.gradient(poly, axis=0)
    n = np.stack([-d[:, 1], d[:, 0]], axis=1)
    return n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-9)


def _resample(poly: np.ndarray, step: float, closed: bool = False) -> np.ndarray:
    """Points along the polyline, ``step`` apart (end points kept)."""
    p = np.vstack([poly, poly[:1]]) if closed else poly
    seg = np.linalg.norm(np.diff(p, axis=0), axis=1)
    s = np.concatenate([[0.0], np.cumsum(seg)])
    if s[-1] <= 0:
        return p[:1].copy()
    n = max(2, int(math.ceil(s[-1] / step)) + 1)
    t = np.linspace(0, s[-1], n)
    return np.stack([np.interp(t, s, p[:, 0]), np.interp(t, s, p[:, 1])], axis=1)


def _sub(poly: np.ndarray, a: float, b: float) -> np.ndarray:
    """The piece of a polyline between arc-length fractions ``a`` < ``b``."""
    seg = np.linalg.norm(np.diff(poly, axis=0), axis=1)
    s = np.concatenate([[0.0], np.cumsum(seg)]) / max(seg.sum(), 1e-9)
    t = np.concatenate([[a], s[(s > a) & (s < b)], [b]])
    return np.stack([np.interp(t, s, poly[:, 0]), np.interp(t, s, poly[:, 1])], axis=1)


def build_shoe(spec: ShoeSpec) -> Shoe:
    """The shoe's filled regions (for photos) and drawable parts with detail levels (for sketches)."""
    sh, de = spec.shape, spec.details
    heeled = sh.heel != "flat"

    def bottom(x: np.ndarray | float) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        toe = sh.toe_spring * np.clip((0.18 - x) / 0.18, 0, 1) ** 2
        rise = sh.heel_h * _smoothstep((x - 0.32) / 0.48) if heeled else sh.heel_h * _smoothstep((x - 0.6) / 0.3)
        return toe + rise

    def st(x: float) -> float:  # sole top
        return float(bottom(x) + sh.sole_t)

    tip_x = -0.06 if sh.toe == "pointed" else 0.0
    th = sh.toe_h
    front = {
        "round": [(0.0, st(0) + 0.02), (0.012, st(0) + 0.6 * th), (0.08, st(0.08) + 0.95 * th)],
        "pointed": [(tip_x, st(0) + 0.012), (0.05, st(0.05) + 0.6 * th)],
        "square": [(0.0, st(0) + 0.02), (0.003, st(0) + 0.75 * th), (0.05, st(0.05) + 0.97 * th)],
    }[sh.toe]
    vamp_a = (0.2, st(0.2) + th)
    throat = (sh.throat_x, st(sh.throat_x) + th + sh.instep)
    back_x = 1.0
    sb = st(back_x)
    if sh.shaft == "low":
        top_back = sb + sh.collar_h
        rest = [(sh.throat_x + 0.1, st(sh.throat_x + 0.1) + th + sh.instep * 0.4),
                (0.78, st(0.78) + sh.collar_h * 0.85), (0.96, top_back),
                (back_x + sh.back_slope, sb + sh.collar_h * 0.5), (back_x, sb + 0.01)]
        shaft_front = None
    else:
        top_back = sb + sh.collar_h
        shaft_front = (sh.throat_x + 0.07, top_back)
        rest = [(sh.throat_x + 0.035, (throat[1] + top_back) / 2), shaft_front, (0.97, top_back + 0.01),
                (back_x + sh.back_slope, sb + sh.collar_h * 0.45), (back_x, sb + 0.01)]
    mid_vamp = ((vamp_a[0] + throat[0]) / 2, (vamp_a[1] + throat[1]) / 2)
    top = _spline(front + [vamp_a, mid_vamp, throat] + rest, 8)
    xs = np.linspace(back_x, 0.0, 24)
    sole_top = np.stack([xs, bottom(xs) + sh.sole_t], axis=1)
    sole_bot = np.stack([xs[::-1], bottom(xs[::-1])], axis=1)
    toe_cap_pt = np.array([[tip_x - 0.004 if sh.toe != "pointed" else tip_x + 0.01, st(0) - sh.sole_t * 0.5]])
    upper = np.vstack([top, sole_top])
    sole = np.vstack([sole_top[::-1], [[back_x + 0.004, sb - sh.sole_t * 0.5]], sole_bot[::-1], toe_cap_pt])
    hh = sh.heel_h
    heel = None
    if sh.heel == "block":
        heel = np.array([(0.79, bottom(0.79)), (back_x, hh), (back_x - 0.015, 0.0), (0.85, 0.0)])
    elif sh.heel == "stiletto":
        heel = np.vstack([_spline([(0.78, bottom(0.78)), (0.9, hh * 0.5), (0.95, 0.0)], 6), [(0.975, 0.0), (back_x, hh)]])
    elif sh.heel == "wedge":
        wx = np.linspace(0.3, back_x, 14)
        heel = np.vstack([np.stack([wx, bottom(wx)], axis=1), [(back_x - 0.01, 0.0), (0.3, 0.0)]])
    # the silhouette humans trace: top outline, down the back, along the ground, round the toe
    silhouette = np.vstack([top, [[back_x + 0.004, sb - sh.sole_t * 0.5]], sole_bot[::-1], toe_cap_pt])
    shoe = Shoe(upper=upper, sole=sole, heel=heel, silhouette=silhouette, height=float(top[:, 1].max()))
    parts = shoe.parts
    parts.append(Part("silhouette", silhouette, closed=True, level=0))
    parts.append(Part("sole-line", sole_top[1:-1], level=0))
    if heel is not None:
        parts.append(Part("heel", heel, closed=True, level=0))
    # the collar opening and, inside it, the lining a photo shows
    if sh.shaft != "low":  # a boot, seen from the side
        opening = _spline([(shaft_front[0] + 0.02, top_back - 0.015), (0.75, top_back - 0.035),
                           (0.95, top_back - 0.01)], 6)
        parts.append(Part("opening", opening, level=1, size=0.3))
        rim = top[8 * (len(front) + 4):]
    else:
        opening = _spline([(throat[0] + 0.04, throat[1] - 0.03), (0.7, st(0.7) + sh.collar_h * 0.6),
                           (0.93, top_back - 0.03)], 6)
        parts.append(Part("opening", opening, level=0, size=0.5))
        rim = top[8 * (len(front) + 2):]
    rim = rim[(rim[:, 0] >= opening[0, 0] - 0.04) & (rim[:, 0] <= opening[-1, 0] + 0.03)]
    shoe.interior = np.vstack([opening, rim[::-1]])

    # laces: eyelets along the vamp edge (and up the shaft front of a boot), bars over the edge
    edge = _resample(np.array([vamp_a, throat] + ([shaft_front] if shaft_front else [])), 0.005)
    edge = _sub(edge, 0.08, 0.9 if shaft_front else 0.97)
    nrm = _normals(edge)
    nrm *= np.sign(np.mean(nrm[:, 1])) * -1  # point into the upper (downwards)
    if de.laces:
        parts.append(Part("facing", edge + nrm * 0.06, level=1, size=0.3))
        for k, t in enumerate(np.linspace(0.06, 0.94, de.laces)):
            j = int(round(t * (len(edge) - 1)))
            c = edge[j] + nrm[j] * 0.032
            parts.append(Part(f"eyelet{k}", _circle(c[0], c[1], 0.008, 8), closed=True, level=3, size=0.016, group="laces"))
            tang = np.array([nrm[j, 1], -nrm[j, 0]])
            parts.append(Part(f"lace{k}", np.array([c + tang * 0.012, edge[j] - nrm[j] * 0.01 - tang * 0.01]), level=2,
                              size=0.04, group="laces"))
    # toe cap seam and perforations on it
    if de.toe_cap:
        parts.append(Part("toe-cap", _spline([(0.24, st(0.24) + 0.004), (0.225, st(0.22) + 0.55 * th),
                                              (0.17, st(0.17) + 0.97 * th)], 6), level=1, size=0.15))
    if de.perforations:
        cx, cy = 0.12, st(0.12) + 0.45 * th
        for k, a in enumerate(np.linspace(-1.0, 1.0, de.perforations)):
            px, py = cx + 0.07 * math.sin(a * 0.9), cy + 0.04 * math.cos(a * 0.9) - 0.02
            parts.append(Part(f"perf{k}", _circle(px, py, 0.0055, 6), closed=True, level=3, size=0.011, group="perf"))
    if de.heel_counter:
        ch = min(sh.collar_h, 0.2)
        parts.append(Part("heel-counter", _spline([(0.7, st(0.7) + 0.003), (0.76, st(0.76) + 0.6 * ch),
                                                   (0.9, st(0.9) + 0.85 * ch), (0.99, sb + 0.8 * ch)], 6), level=1, size=0.2))
    if de.pull_tab:
        y0 = top_back - 0.02
        parts.append(Part("pull-tab", np.array([(0.97, y0), (0.975, y0 + 0.045), (1.005, y0 + 0.045), (1.01, y0)]),
                          level=2, size=0.045))
    # buckle straps: over the instep of a low shoe, round the shaft of a boot
    for k in range(de.buckles):
        if shaft_front is None:
            x0 = sh.throat_x - 0.06 + 0.1 * k
            a, b = (x0, st(x0) + th + sh.instep * (0.75 - 0.3 * k)), (x0 + 0.08, st(x0 + 0.08) + 0.2 * th)
        else:
            y = sb + sh.collar_h * (0.35 + 0.35 * k)
            a, b = (sh.throat_x + 0.03 + 0.04 * (y - sb) / sh.collar_h, y), (0.99, y + 0.01)
        a_, b_ = np.array(a), np.array(b)
        d = (b_ - a_) / np.linalg.norm(b_ - a_)
        n = np.array([-d[1], d[0]]) * 0.022
        parts.append(Part(f"strap{k}a", np.array([a_ + n, b_ + n]), level=1, size=0.2, group=f"strap{k}"))
        parts.append(Part(f"strap{k}b", np.array([a_ - n, b_ - n]), level=1, size=0.2, group=f"strap{k}"))
        c = a_ + (b_ - a_) * 0.4
        box = np.array([c + n * 1.5 + d * 0.022, c + n * 1.5 - d * 0.022, c - n * 1.5 - d * 0.022, c - n * 1.5 + d * 0.022])
        parts.append(Part(f"buckle{k}", box, closed=True, level=2, size=0.05, group=f"buckle{k}"))
        parts.append(Part(f"prong{k}", np.array([c - d * 0.022, c + d * 0.012]), level=3, size=0.03, group=f"buckle{k}"))
    # stitching: lines parallel to the sole top
    for k in range(de.stitching):
        off = 0.018 + 0.014 * k
        line = sole_top[2:-3][::-1] + np.array([0.0, off])
        parts.append(Part(f"stitch{k}", line, level=2, size=0.06, group=f"stitch{k}"))
    # logo on the side
    lx, ly = 0.55, st(0.55) + 0.45 * min(sh.collar_h + 0.02, th + sh.instep)
    if de.logo == "swoosh":
        up = _spline([(lx - 0.16, ly + 0.01), (lx - 0.02, ly - 0.04), (lx + 0.15, ly + 0.05)], 6)
        lo = _spline([(lx + 0.15, ly + 0.05), (lx - 0.03, ly - 0.01), (lx - 0.16, ly + 0.01)], 6)
        parts.append(Part("logo", np.vstack([up, lo[1:-1]]), closed=True, level=1, size=0.12, group="logo"))
    elif de.logo.startswith("stripes"):
        for k in range(int(de.logo[-1])):
            x = lx - 0.05 + 0.045 * k
            quad = np.array([(x, ly - 0.045), (x + 0.022, ly - 0.045), (x + 0.062, ly + 0.05), (x + 0.04, ly + 0.05)])
            parts.append(Part(f"stripe{k}", quad, closed=True, level=1, size=0.08, group="logo"))
    elif de.logo == "band":
        for k, dy in enumerate((-0.02, 0.02)):
            parts.append(Part(f"band{k}", np.array([(0.3, st(0.3) + 0.45 * th + dy), (0.75, ly + dy)]), level=1,
                              size=0.2, group="logo"))
    elif de.logo == "circle":
        parts.append(Part("logo", _circle(0.8, st(0.8) + 0.55 * min(sh.collar_h, 0.2), 0.024, 10), closed=True,
                          level=2, size=0.05, group="logo"))
    return shoe


# -- photos --------------------------------------------------------------------------------
def _textures(size: int, rng: np.random.Generator) -> dict[str, Image.Image]:
    """One grey texture per material at the drawing size (values ~190..255: multiplied in)."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    small = rng.random((size // 8 + 1, size // 8 + 1)).astype(np.float32)
    blotch = np.asarray(Image.fromarray((small * 255).astype(np.uint8)).resize((size, size), Image.BICUBIC), np.float32) / 255
    fine = rng.random((size, size)).astype(np.float32)
    period = max(3.0, size / 90)
    tex = {
        "leather": 0.86 + 0.1 * blotch + 0.04 * fine,
        "canvas": 0.82 + 0.08 * np.sin(2 * np.pi * x * size / period) * np.sin(2 * np.pi * y * size / period) + 0.1 * fine,
        "knit": 0.8 + 0.12 * (np.sin(2 * np.pi * (x + 0.3 * y) * size / (period * 1.3)) > 0) + 0.08 * fine,
        "suede": 0.8 + 0.12 * blotch + 0.08 * fine,
    }
    return {k: Image.fromarray(np.clip(v * 255, 0, 255).astype(np.uint8)).convert("RGB") for k, v in tex.items()}


class _PhotoPainter:
    """Draws photos of one size; textures and gradients are made once and shared."""

    def __init__(self, photo_size: int, seed: int) -> None:
        self.out = photo_size
        self.size = photo_size * SUPERSAMPLE
        self.textures = _textures(self.size, np.random.default_rng([seed, 99]))
        self.grad = Image.linear_gradient("L")
        self.vgrad_small = Image.linear_gradient("L").resize((max(8, self.size // 4),) * 2)
        self._light_lut = [255 - v // 3 for v in range(256)]
        self._body_lut = [150 + int(v * 0.42) for v in range(256)]

    def paint(self, spec: ShoeSpec, shoe: Shoe, rng: np.random.Generator) -> np.ndarray:
        W = self.size
        # object frame → pixels: fit the shoe, random scale and offset
        xs = np.concatenate([shoe.silhouette[:, 0], [0.0, 1.0]])
        w_obj, h_obj = float(xs.max() - xs.min()), shoe.height
        scale = W * rng.uniform(0.7, 0.86) / max(w_obj, h_obj)
        cx = W / 2 + rng.uniform(-0.05, 0.05) * W
        ground = W / 2 + h_obj * scale / 2 + rng.uniform(-0.04, 0.04) * W
        x_mid = (xs.max() + xs.min()) / 2
        # the object's own layers are made only inside its bounding box (cheaper than full size)
        pad = 0.06 * scale
        bx0 = int(max(0, (xs.min() - x_mid) * scale + cx - pad))
        bx1 = int(min(W, (xs.max() - x_mid) * scale + cx + pad))
        by0 = int(max(0, ground - h_obj * scale - pad))
        by1 = int(min(W, ground + pad))
        bw, bh = bx1 - bx0, by1 - by0

        def px(p: np.ndarray, f: float = 1.0, local: bool = True) -> list[tuple[float, float]]:
            ox, oy = (bx0, by0) if local else (0, 0)
            return [(((x - x_mid) * scale + cx - ox) * f, (ground - y * scale - oy) * f) for x, y in p]

        # the background, with a soft contact shadow under the sole
        sx = (np.array([xs.min(), xs.max()]) - x_mid) * scale + cx
        img = self._background(rng, ground, (sx[0], ground - 0.03 * scale, sx[1], ground + 0.05 * scale))
        up_mask = Image.new("L", (bw, bh), 0)
        ImageDraw.Draw(up_mask).polygon(px(shoe.upper), fill=255)
        tex = self.textures[spec.material]
        tx, ty = int(rng.integers(W - bw + 1)), int(rng.integers(W - bh + 1))
        upper = ImageChops.multiply(Image.new("RGB", (bw, bh), spec.upper_rgb), tex.crop((tx, ty, tx + bw, ty + bh)))
        draw = ImageDraw.Draw(upper)
        if shoe.interior is not None:  # the dark lining inside the collar
            draw.polygon(px(shoe.interior), fill=tuple(int(c * 0.3) + 15 for c in spec.sole_rgb))
        self._details(upper, spec, shoe, px, scale, rng)
        # shading, made at a quarter of the size (it is smooth) and scaled up once: a rounded body
        # (blurred mask), light from above, and a soft highlight (screen blend)
        qw, qh = (bw + 3) // 4, (bh + 3) // 4
        body = Image.new("L", (qw, qh), 0)
        ImageDraw.Draw(body).polygon(px(shoe.upper, 0.25), fill=255)
        body = body.filter(ImageFilter.BoxBlur(max(1, int(0.0125 * scale)))).point(self._body_lut)
        light = self.grad.resize((qw, int(0.7 * h_obj * scale) + qh)).crop((0, 0, qw, qh)).point(self._light_lut)
        hl = Image.new("L", (qw, qh), 0)
        hx, hy = px(np.array([[0.3 + rng.uniform(-0.1, 0.2), shoe.height * 0.55]]), 0.25)[0]
        q = 0.25 * scale
        ImageDraw.Draw(hl).ellipse([hx - 0.2 * q, hy - 0.05 * q, hx + 0.2 * q, hy + 0.05 * q], fill=90)
        hl = hl.filter(ImageFilter.BoxBlur(max(1, int(0.06 * q))))
        box = (0, 0, bw / 4, bh / 4)
        shade = ImageChops.multiply(body, light).resize((bw, bh), Image.BILINEAR, box=box).convert("RGB")
        upper = ImageChops.screen(ImageChops.multiply(upper, shade),
                                  hl.resize((bw, bh), Image.BILINEAR, box=box).convert("RGB"))
        img.paste(upper, (bx0, by0), mask=up_mask)

        draw = ImageDraw.Draw(img)
        edge_w = max(1, int(0.006 * scale))
        dark = tuple(int(c * 0.45) for c in spec.upper_rgb)
        for poly in (shoe.sole, shoe.heel):
            if poly is not None:
                draw.polygon(px(poly, local=False), fill=spec.sole_rgb)
        # side light on the sole: its lower half is darker
        low = shoe.sole.copy()
        low[:, 1] = np.minimum(low[:, 1], np.maximum(low[:, 1] - spec.shape.sole_t, 0) + spec.shape.sole_t * 0.45)
        draw.polygon(px(low, local=False), fill=tuple(int(c * 0.82) for c in spec.sole_rgb))
        for poly in (shoe.sole, shoe.heel):
            if poly is not None:
                draw.line(px(np.vstack([poly, poly[:1]]), local=False), fill=tuple(int(c * 0.6) for c in spec.sole_rgb),
                          width=edge_w, joint="curve")
        draw.line(px(np.vstack([shoe.upper, shoe.upper[:1]]), local=False), fill=dark, width=edge_w, joint="curve")
        for p in shoe.parts:
            if p.name in ("opening", "toe-cap", "heel-counter"):
                draw.line(px(p.pts, local=False), fill=dark, width=edge_w, joint="curve")
        return np.asarray(img.reduce(SUPERSAMPLE), dtype=np.uint8)

    def _background(self, rng: np.random.Generator, ground: float, shadow: tuple[float, float, float, float]
                    ) -> Image.Image:
        """Gradient, random shapes, a table edge and the object's soft shadow (an ellipse box in
        pixels), drawn at a quarter size and scaled up: an out-of-focus background (and cheap)."""
        W = self.size
        q = max(8, W // 4)
        a, b = _colour(rng, 120, 250), _colour(rng, 80, 230)
        img = Image.composite(Image.new("RGB", (q, q), a), Image.new("RGB", (q, q), b),
                              self.vgrad_small.rotate(float(rng.uniform(0, 360))))
        draw = ImageDraw.Draw(img)
        base = np.array(a, dtype=np.float64)
        for _ in range(int(rng.integers(4, 10))):
            col = tuple(min(255, int(v)) for v in base * rng.uniform(0.3, 0.7) + rng.integers(0, 256, 3) * 0.5)
            x0, y0 = rng.uniform(-0.2, 1.0, 2) * q
            w, h = rng.uniform(0.1, 0.5, 2) * q
            kind = int(rng.integers(4))
            if kind == 0:
                draw.rectangle([x0, y0, x0 + w, y0 + h], fill=col)
            elif kind == 1:
                draw.ellipse([x0, y0, x0 + w, y0 + h], fill=col)
            elif kind == 2:
                draw.line([(x0, y0), (x0 + w, y0 + h * rng.choice([-1, 1]))], fill=col, width=int(rng.integers(1, max(2, q // 40))))
            else:
                pts = [(x0 + rng.uniform(0, w), y0 + rng.uniform(0, h)) for _ in range(int(rng.integers(3, 6)))]
                draw.polygon(pts, fill=col)
        if rng.random() < 0.7:  # a table / floor edge behind the object
            fy = (ground - rng.uniform(0.0, 0.15) * W) / 4
            draw.rectangle([0, fy, q, q], fill=_colour(rng, 90, 230))
        shade = Image.new("L", (q, q), 0)
        ImageDraw.Draw(shade).ellipse([v * q / W for v in shadow], fill=150)
        img.paste((20, 20, 20), mask=shade.filter(ImageFilter.BoxBlur(max(1, q // 60))))
        # defocus: hides the aliased edges of shapes drawn at a quarter size
        return img.filter(ImageFilter.BoxBlur(1)).resize((W, W), Image.BILINEAR)

    def _details(self, img: Image.Image, spec: ShoeSpec, shoe: Shoe, px, scale: float, rng: np.random.Generator) -> None:
        draw = ImageDraw.Draw(img)
        dcol = spec.detail_rgb
        metal = (200, 170, 60) if rng.random() < 0.5 else (190, 190, 200)
        darker = tuple(int(c * 0.35) for c in spec.upper_rgb)
        w = lambda f: max(1, int(f * scale))  # noqa: E731
        for p in shoe.parts:
            n = p.name
            if n.startswith("eyelet") or n.startswith("perf"):
                draw.polygon(px(p.pts), fill=(25, 20, 20) if n.startswith("perf") else metal)
            elif n.startswith("lace"):
                draw.line(px(p.pts), fill=dcol, width=w(0.012))
            elif n == "facing":
                draw.line(px(p.pts), fill=darker, width=w(0.005))
            elif n.startswith("stitch"):
                pts = _resample(p.pts, 0.012)
                for k in range(0, len(pts) - 1, 2):
                    draw.line(px(pts[k:k + 2]), fill=tuple(255 - c for c in darker), width=w(0.004))
            elif n.startswith("strap"):
                draw.line(px(p.pts), fill=darker, width=w(0.005))
            elif n.startswith("buckle"):
                draw.polygon(px(p.pts), outline=metal, width=w(0.008))
            elif n.startswith("prong"):
                draw.line(px(p.pts), fill=metal, width=w(0.005))
            elif n in ("logo",) or n.startswith("stripe"):
                draw.polygon(px(p.pts), fill=dcol)
            elif n.startswith("band"):
                draw.line(px(p.pts), fill=dcol, width=w(0.014))
            elif n == "pull-tab":
                draw.line(px(p.pts), fill=darker, width=w(0.01))
        # fill the strap bands between their two edges
        for k in range(spec.details.buckles):
            a = next(p for p in shoe.parts if p.name == f"strap{k}a").pts
            b = next(p for p in shoe.parts if p.name == f"strap{k}b").pts
            draw.polygon(px(np.vstack([a, b[::-1]])), fill=tuple(int(c * 0.75) for c in spec.upper_rgb), outline=darker)
            box = next(p for p in shoe.parts if p.name == f"buckle{k}").pts
            draw.polygon(px(box), outline=metal, width=w(0.008))


# -- sketches ------------------------------------------------------------------------------
def _humanise(items: list[tuple[np.ndarray, bool, float, bool]], sp: dict, rng: np.random.Generator) -> list[np.ndarray]:
    """Resample clean polylines and make them human: wobble (smooth, low frequency, along the
    normal), noise and overshoot at the ends. ``items`` are ``(points, closed, amp, overshoot)``;
    ``amp`` scales the step and the noise (small parts are drawn with proportionally small errors).

    All strokes of a sketch are done in one batch of numpy calls: thousands of sketches a second
    matter more here than readability (a per-stroke loop was 10× slower)."""
    K = len(items)
    pts = [np.vstack([p, p[:1]]) if closed else p for p, closed, _, _ in items]
    sizes = np.array([len(p) for p in pts])
    P = np.vstack(pts)
    seg = np.hypot(*np.diff(P, axis=0).T)
    first = np.concatenate(([0], np.cumsum(sizes)[:-1]))
    seg[first[1:] - 1] = 0.0  # no length across stroke boundaries
    cum = np.concatenate(([0.0], np.cumsum(seg)))
    totals = cum[first + sizes - 1] - cum[first]
    # a monotone arc parameter over all strokes, strokes 1.0 apart so interp never mixes them
    offsets = np.concatenate(([0.0], np.cumsum(totals + 1.0)[:-1]))
    S = cum - np.repeat(cum[first] - offsets, sizes)
    amp = np.array([a for _, _, a, _ in items])
    closed = np.array([c for _, c, _, _ in items])
    n = np.maximum(np.where(closed, 7, 2), np.round(totals / (sp["step"] * np.clip(amp, 0.25, 1.0))).astype(int) + 1)
    N = int(n.sum())
    start = np.concatenate(([0], np.cumsum(n)[:-1]))
    idx = np.arange(N) - np.repeat(start, n)
    local = idx / np.repeat(n - 1, n) * np.repeat(totals, n)
    t = local + np.repeat(offsets, n)
    x, y = np.interp(t, S, P[:, 0]), np.interp(t, S, P[:, 1])
    # tangents: central differences inside a stroke, one-sided at its ends
    fx, fy = np.append(np.diff(x), 0.0), np.append(np.diff(y), 0.0)
    bx, by = np.insert(np.diff(x), 0, 0.0), np.insert(np.diff(y), 0, 0.0)
    ends = start + n - 1
    fx[ends], fy[ends] = bx[ends], by[ends]
    bx[start], by[start] = fx[start], fy[start]
    dx, dy = fx + bx, fy + by
    norm = np.hypot(dx, dy) + 1e-12
    r = rng.random((4, K))
    w = rng.normal(0.0, 1.0, (2, K)) * sp["wobble"] * amp
    # wavelengths of at least a few steps: a wobble sampled too coarsely would turn into a zigzag
    lam = 2 * np.pi / (max(0.15, 5 * sp["step"]) + 0.35 * r[:2])
    wob = (np.repeat(w[0], n) * np.sin(local * np.repeat(lam[0], n) + np.repeat(6.3 * r[2], n))
           + np.repeat(w[1], n) * np.sin(local * np.repeat(lam[1], n) + np.repeat(6.3 * r[3], n)))
    noise = rng.normal(0.0, 1.0, (2, N)) * np.repeat(sp["noise"] * amp, n)
    x = x - dy / norm * wob + noise[0]
    y = y + dx / norm * wob + noise[1]
    # overshoot: the first and last points slide outwards along the stroke (or fall short)
    o = np.array([sp["overshoot"] * a if (over and not c) else 0.0 for _, c, a, over in items])
    e = rng.uniform(-0.3, 1.0, (2, K)) * o
    x[start] -= dx[start] / norm[start] * e[0]
    y[start] -= dy[start] / norm[start] * e[0]
    x[ends] += dx[ends] / norm[ends] * e[1]
    y[ends] += dy[ends] / norm[ends] * e[1]
    return np.split(np.stack([x, y], axis=1), start[1:])


def draw_sketch(shoe: Shoe, spec: ShoeSpec, style: str, level: int, rng: np.random.Generator,
                clean: bool = False) -> Sketch:
    """A human-like sketch of the shoe at a detail level (0 = silhouette only .. 3 = everything).

    ``clean=True`` gives the noise-free reference drawing (no jitter, omission or distortion)."""
    sp = dict(STYLE_PARAMS[style])
    if clean:
        sp.update(wobble=0.0, noise=0.0, overshoot=0.0, retrace=0.0, omit=0.0, pieces=(1, 1))
    ex = 1.0 if clean else EXAGGERATION[level]
    # humans miscount: a sketch may draw one lace (and its eyelet) fewer
    laces = spec.details.laces
    skip = {f"lace{laces - 1}", f"eyelet{laces - 1}"} if (
        not clean and laces > 2 and rng.random() < (0.3 if level < 3 else 0.1)) else set()
    parts = []
    groups_omitted: set[str] = set()
    for p in shoe.parts:
        if p.level > level or p.name in skip or (p.group and p.group in groups_omitted):
            continue
        if p.level > 0 and rng.random() < sp["omit"]:  # a forgotten part (a whole group goes)
            if p.group:
                groups_omitted.add(p.group)
            continue
        parts.append(p)
    parts = [p for p in parts if not (p.group and p.group in groups_omitted)]
    # exaggeration: details grow about their group's centre
    centres: dict[str, np.ndarray] = {}
    for p in parts:
        if p.group and p.group not in centres:
            centres[p.group] = np.vstack([q.pts for q in parts if q.group == p.group]).mean(axis=0)
    items: list[tuple[np.ndarray, bool, float, bool]] = []
    for p in parts:
        pts = p.pts
        if p.level > 0 and ex != 1.0:
            c = centres.get(p.group, pts.mean(axis=0))
            if p.group in ("laces", "perf"):  # each eyelet / bar grows about itself, the row keeps its place
                c = pts.mean(axis=0)
            pts = c + (pts - c) * ex
        amp = 1.0 if p.name == "silhouette" else min(1.0, 0.25 + p.size * 3)
        if p.name == "silhouette" and not clean:
            # drawn in a few pieces starting anywhere, with small overlaps
            k = int(rng.integers(sp["pieces"][0], sp["pieces"][1] + 1))
            loop = _resample(pts, 0.01, closed=True)
            shift = int(rng.uniform(0, 1) * (len(loop) - 1))
            loop = np.vstack([loop[shift:], loop[1:shift + 1]])
            bounds = np.concatenate([[0.0], np.sort(rng.uniform(0, 1, k - 1)), [1.0]])
            for a, b in zip(bounds[:-1], bounds[1:]):
                if b - a >= 0.02:
                    items.append((_sub(loop, max(0.0, a - 0.01), min(1.0, b + 0.01)), False, amp, True))
        elif p.name.startswith("stitch") and level >= 3:
            # stitching as dashes, along part of the line (people tire of dashes)
            dots = _resample(pts, 0.03)
            stop = len(dots) if clean else int(len(dots) * rng.uniform(0.55, 1.0))
            items.extend((dots[j:j + 2], False, 0.3, False) for j in range(0, stop - 1, 2))
        else:
            items.append((pts, p.closed, amp, True))
        if sp["retrace"] and p.size >= 0.15 and rng.random() < sp["retrace"]:
            # over-tracing: the pen goes over (most of) the line again, slightly off
            again = _sub(pts if not p.closed else np.vstack([pts, pts[:1]]), rng.uniform(0, 0.3), 1.0)
            items.append((again + rng.normal(0, 0.006, 2), False, 0.6, False))
    strokes = _humanise(items, sp, rng)
    while len(strokes) < 3:  # a pen lift in the longest stroke
        i = max(range(len(strokes)), key=lambda j: len(strokes[j]))
        s = strokes.pop(i)
        if len(s) < 4:
            s = _resample(s, 0.005)
        h = len(s) // 2
        strokes[i:i] = [s[: h + 1], s[h:]]
    # whole-sketch distortion: rotation, aspect, shear; then to canvas coordinates (y down)
    m = np.array([[1.0, 0.0], [0.0, -1.0]])
    if not clean:
        th = math.radians(rng.normal(0, 3))
        rot = np.array([[math.cos(th), -math.sin(th)], [math.sin(th), math.cos(th)]])
        m = m @ rot @ np.array([[1.0, rng.normal(0, 0.04)], [0.0, rng.uniform(0.9, 1.12)]])
    xy = np.vstack(strokes) @ m.T
    pen = np.zeros((len(xy), 1))
    pen[np.cumsum([len(s) for s in strokes]) - 1] = 1.0
    return Sketch.from_xyp(np.hstack([xy, pen]))


def sketch_detail(item_id: str) -> int:
    """The detail level (0..3) recorded in a synthetic sketch id such as ``"test/shoe0042_1.sloppy.d3"``."""
    return int(item_id.rsplit(".d", 1)[1])


def sketch_style(item_id: str) -> str:
    """The drawing style recorded in a synthetic sketch id."""
    return item_id.rsplit(".", 2)[1]


def reference_sketch(spec: ShoeSpec) -> Sketch:
    """The clean, fully detailed drawing of an instance (for non-learned retrieval checks)."""
    return draw_sketch(build_shoe(spec), spec, "careful", 3, np.random.default_rng(0), clean=True)


# -- the dataset ---------------------------------------------------------------------------
class SyntheticDataset(DatasetSource):
    name = "synthetic"
    description = "embedded procedural fine-grained shoes: dense photos, abstract vector sketches (no files)"
    needs_root = False

    def load(self, options: DatasetOptions) -> FGSBIRDataset:
        size = options.size or {}
        n = int(size.get("instances", 60))
        spi = int(size.get("sketches_per_instance", 3))
        if n < 4:
            raise DataError(f"synthetic: instances must be at least 4 (got {n}): set 'instances' in the preset")
        if spi < 1:
            raise DataError(f"synthetic: sketches_per_instance must be at least 1 (got {spi})")
        if options.photo_size < 8:
            raise DataError(f"synthetic: photo_size must be at least 8 (got {options.photo_size})")
        seed = int(options.seed)
        specs = make_specs(n, seed)
        n_test = min(n - 1, max(1, round(n * TEST_FRACTION)))
        # whole families to test where possible: a seeded order of families, the last ones are test
        order = np.random.default_rng([seed, 7]).permutation(math.ceil(n / FAMILY_SIZE))
        ordered = [s.index for f in order for s in specs if s.family == f]
        test_ids = set(ordered[-n_test:])
        painter = _PhotoPainter(options.photo_size, seed) if options.need_photos else None
        styles: Counter[str] = Counter()
        levels: Counter[int] = Counter()
        splits = {}
        for split_name in ("train", "test"):
            chosen = [specs[i] for i in sorted(test_ids if split_name == "test" else set(range(n)) - test_ids)]
            items, photos = [], []
            for p_idx, spec in enumerate(chosen):
                shoe = build_shoe(spec)
                if painter is not None:
                    photos.append(painter.paint(spec, shoe, np.random.default_rng([seed, spec.index, 21])))
                for k in range(spi):
                    rng = np.random.default_rng([seed, spec.index, k, 31])
                    style = str(rng.choice(STYLES, p=STYLE_PROBS))
                    level = int(rng.choice(4, p=LEVEL_PROBS[style]))
                    sketch = draw_sketch(shoe, spec, style, level, rng)
                    styles[style] += 1
                    levels[level] += 1
                    items.append(SketchItem(f"{split_name}/shoe{spec.index:04d}_{k}.{style}.d{level}", p_idx, vector=sketch))
            splits[split_name] = Split(items, [f"shoe{s.index:04d}" for s in chosen],
                                       np.stack(photos) if photos else None)
        meta = {
            "generator": {
                "version": VERSION, "instances": n, "sketches_per_instance": spi, "seed": seed,
                "photo_size": options.photo_size, "family_size": FAMILY_SIZE, "test_fraction": TEST_FRACTION,
                "photo_supersample": SUPERSAMPLE, "styles": dict(zip(STYLES, STYLE_PROBS)),
                "exaggeration_by_level": list(EXAGGERATION),
            },
            "sketch_styles": dict(sorted(styles.items())),
            "detail_levels": {str(k): v for k, v in sorted(levels.items())},
        }
        return FGSBIRDataset("synthetic", splits["train"], splits["test"], meta=meta,
                             fingerprint=f"synthetic-{VERSION}-{n}-{spi}-{seed}-{options.photo_size}")


__all__ = ["ShoeSpec", "SyntheticDataset", "build_shoe", "draw_sketch", "make_specs", "reference_sketch",
           "sketch_detail", "sketch_style"]
