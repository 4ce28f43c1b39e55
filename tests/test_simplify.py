"""RDP to a point budget by the compiled ``simplification`` package (sketchbench_query.rdp) against
the numpy implementation sketchbench used before (kept here as the oracle), on hand-made, random
and every real ChairV2 and Sketchy sketch; then what the change does to a trained selector's
chosen canvases and to the ranks (docs/deploy.md, "The selection path")."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from sketchbench import DatasetOptions, Sketch, load_svg_sketch
from sketchbench.method.registries import get_host
from sketchbench.testing import run_cli
from sketchbench_query import RECIPES, SketchInputError, render_points, selector_input, simplify, stroke5


# -- the oracle: sketchbench's RDP until the compiled path replaced it (numpy, one split at a time)
def _importance(points: np.ndarray) -> np.ndarray:
    n = len(points)
    imp = np.full(n, np.inf)
    if n <= 2:
        return imp
    imp[1:-1] = -np.inf
    stack = [(0, n - 1, np.inf)]
    while stack:
        i, j, bound = stack.pop()
        if j <= i + 1:
            continue
        a, b = points[i], points[j]
        seg = points[i + 1 : j]
        ab = b - a
        norm2 = float(ab @ ab)
        t = np.zeros(len(seg)) if norm2 == 0 else np.clip((seg - a) @ ab / norm2, 0.0, 1.0)
        dist = np.hypot(*(seg - a - t[:, None] * ab).T)
        k = int(np.argmax(dist))
        m = i + 1 + k
        value = min(bound, float(dist[k]))
        imp[m] = value
        stack.append((i, m, value))
        stack.append((m, j, value))
    return imp


def oracle(points: np.ndarray, max_points: int | None = None, epsilon: float = 0.002) -> np.ndarray:
    ends = np.nonzero(points[:, 2] > 0.5)[0]
    strokes = [s.astype(np.float64) for s in np.split(points[:, :2], ends[:-1] + 1)]
    lo, hi = points[:, :2].min(axis=0), points[:, :2].max(axis=0)
    eps = float(epsilon)
    eps_max = max(float(np.hypot(float(hi[0]) - float(lo[0]), float(hi[1]) - float(lo[1]))), eps) * 1.01
    importance = [_importance(s) for s in strokes]
    while True:
        masks = [imp > eps for imp in importance]
        total = sum(int(m.sum()) for m in masks)
        if max_points is None or total <= max_points or eps >= eps_max:
            break
        eps = min(eps * 1.5, eps_max)
    kept = [s[m] for s, m in zip(strokes, masks)]
    if max_points is not None and total > max_points:
        lengths = [float(np.hypot(*np.diff(s, axis=0).T).sum()) if len(s) > 1 else 0.0 for s in strokes]
        keep, budget = np.zeros(len(kept), dtype=bool), max_points
        for i in np.argsort(lengths, kind="stable")[::-1]:
            if len(kept[i]) <= budget:
                keep[i], budget = True, budget - len(kept[i])
        kept = [k for k, flag in zip(kept, keep) if flag]
    return Sketch.from_strokes(kept, normalise=False).points


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and bool(np.array_equal(a, b))


def _random_sketch(rng: np.random.Generator, strokes: int) -> Sketch:
    parts = []
    for _ in range(strokes):
        n = int(rng.integers(1, 60))
        parts.append(np.cumsum(rng.normal(0, 0.02, (n, 2)), axis=0) + rng.uniform(0, 1, 2))
    return Sketch.from_strokes(parts)


# -- hand-made and random sketches --------------------------------------------------------------
@pytest.mark.parametrize("seed", range(6))
def test_simplify_equals_the_previous_rdp_on_random_sketches(seed):
    rng = np.random.default_rng(seed)
    for strokes in (1, 3, 12, 40):
        sketch = _random_sketch(rng, strokes)
        for budget in (None, 2, 3, 10, 25, 60, 100, 10_000):
            assert _same(simplify(sketch.points, budget), oracle(sketch.points, budget)), (strokes, budget)
        for eps in (1e-5, 0.01, 0.3):
            assert _same(simplify(sketch.points, 30, eps), oracle(sketch.points, 30, eps)), eps
        assert _same(simplify(sketch.points, None, 0.0), oracle(sketch.points, None, 0.0))


def test_equally_distant_farthest_points_split_at_the_first():
    # both middle points are 0.25 from the chord (exact in binary): the first one is kept, as before
    stroke = np.array([[0.0, 0.0], [0.25, 0.25], [0.5, 0.0], [0.75, 0.25], [1.0, 0.0]])
    points = Sketch.from_strokes([stroke], normalise=False).points
    for budget in (3, 4):
        assert _same(simplify(points, budget), oracle(points, budget))
    assert simplify(points, 3)[1, :2].tolist() == [0.25, 0.25]


def test_simplify_keeps_order_pens_budget_and_refuses_bad_budgets():
    sketch = _random_sketch(np.random.default_rng(7), 25)
    for budget in (2, 5, 17, 80):
        out = simplify(sketch.points, budget)
        assert len(out) <= budget and out.dtype == np.float32 and out[-1, 2] == 1
        rows = [int(np.flatnonzero((sketch.points == r).all(1))[0]) for r in out]
        assert rows == sorted(rows)  # drawing order, rows of the input
    with pytest.raises(SketchInputError, match="at least 2"):
        simplify(sketch.points, 1)
    for eps in (float("nan"), -0.1, float("inf")):
        with pytest.raises(SketchInputError, match="epsilon"):
            simplify(sketch.points, None, eps)
    with pytest.raises(SketchInputError, match="epsilon"):
        simplify(sketch.points, 10, 0.0)  # cannot grow: the numpy RDP looped forever here


def test_recipes_are_the_selectors_inputs():
    sketch = _random_sketch(np.random.default_rng(3), 6)
    seq = selector_input(sketch.points, {"kind": "stroke5", "max_points": 20, "coords": "absolute"})
    rows = stroke5(oracle(sketch.points, 20)).astype(np.float32)
    assert seq.shape == (1, len(rows), 5) and seq.dtype == np.float32
    assert np.array_equal(seq[0, :, 2:], rows[:, 2:])
    np.testing.assert_allclose((seq[0, :-1, :2] + 1) / 2, oracle(sketch.points, 20)[:, :2], atol=1e-6)
    off = selector_input(sketch.points, {"kind": "stroke5", "max_points": 20, "coords": "offset", "offset_scale": 0.5})
    np.testing.assert_allclose(off[0, 1:, :2], rows[1:, :2] / np.float32(0.5), rtol=1e-6)
    thumb = selector_input(sketch.points, {"kind": "thumbnail", "size": 32})
    assert thumb.shape == (1, 32, 32) and np.array_equal(thumb[0], render_points(sketch.points, 32))
    assert set(RECIPES) >= {"stroke5", "thumbnail"}
    with pytest.raises(SketchInputError, match="unknown selector input kind"):
        selector_input(sketch.points, {"kind": "histogram"})
    with pytest.raises(SketchInputError, match="incomplete"):
        selector_input(sketch.points, {"kind": "stroke5"})
    with pytest.raises(SketchInputError, match="unknown coords"):
        selector_input(sketch.points, {"kind": "stroke5", "max_points": 9, "coords": "polar"})


# -- every real sketch ----------------------------------------------------------------------------
def _load(name: str, root, need_photos: bool = False):
    source = get_host().datasets.get(name)()
    return source.load(DatasetOptions(root=root, photo_size=32, need_photos=need_photos))


SHARED = Path(os.environ.get("SKETCHBENCH_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


@pytest.fixture(scope="module")
def real_sketches():
    """Every ChairV2 sketch (train and test, by id) and every Sketchy SVG of the sample."""
    if not (SHARED / "chairv2").is_dir() or not (SHARED / "sketchy-sample").is_dir():
        pytest.skip(f"real data not found at {SHARED} (set SKETCHBENCH_SHARED_DATA)")
    chair = _load("chairv2", SHARED / "chairv2")
    sketchy = [load_svg_sketch(f) for f in sorted((SHARED / "sketchy-sample" / "sketch").glob("*/*.svg"))]
    return {i.id: i.vector for i in chair.train.sketches + chair.test.sketches}, sketchy


@pytest.mark.realdata
def test_simplify_on_every_real_chairv2_and_sketchy_sketch(real_sketches):
    """Identical on every Sketchy SVG; on ChairV2, whose integer pixel coordinates make exactly
    equal distances common, all but the ≤ 3 sketches where the old and the new distance formula
    round such a tie differently (2 of 1,275 at 100 points on the development machine: one point
    more or fewer)."""
    chair, sketchy = list(real_sketches[0].values()), real_sketches[1]
    assert (len(chair), len(sketchy)) == (1275, 199)
    for budget in (100, 50):
        assert all(_same(simplify(s.points, budget), oracle(s.points, budget)) for s in sketchy), budget
        differ = [(oracle(s.points, budget), simplify(s.points, budget)) for s in chair]
        differ = [(a, b) for a, b in differ if not _same(a, b)]
        assert len(differ) <= 3, (budget, len(differ))
        assert all(abs(len(a) - len(b)) <= 1 for a, b in differ)


@pytest.mark.realdata
def test_chosen_canvases_and_ranks_old_vs_new_on_real_sketches(real_sketches, tmp_path):
    """A SketchyNetV2 trained (smoke) on the real ChairV2 chooses the same canvas for every real
    ChairV2 and Sketchy sketch from the old and the new selector input, so its test ranks are
    the same too."""
    from sketchbench.measure.metrics import ranks
    from sketchbench.method.training import embed_in_batches
    from sketchbench.run.trained import load_trained
    from sketchbench_query.recipes import sequence_rows

    results, cache = tmp_path / "r.json", tmp_path / "cache"
    # the poster's GRU: the selector whose input the simplification makes
    code, _, err = run_cli("run", "-m", "sketchynet-v2", "-d", "chairv2", "--data-root", str(SHARED / "chairv2"),
                           "-p", "smoke", "--param", "encoder=gru", "--param", "val_fraction=0",
                           "-o", str(results), "--cache-dir", str(cache))
    assert code == 0, err
    model = load_trained(results, method="sketchynet-v2", data_root=SHARED / "chairv2", cache_dir=cache)
    method, data = model.method.eval(), model.data
    selector = method.selector
    recipe = selector.input_recipe()
    ids, sketchy = list(real_sketches[0]), real_sketches[1]
    chair = [real_sketches[0][i] for i in ids]

    def choices(make) -> list[int]:
        inputs = [sequence_rows(make(s), recipe["coords"], recipe["offset_scale"])[None] for s in chair + sketchy]
        return selector.predict(inputs)

    old = choices(lambda s: stroke5(oracle(s.points, recipe["max_points"])))
    new = choices(lambda s: stroke5(simplify(s.points, recipe["max_points"])))
    assert old == new
    # the test ranks at the chosen canvases, from the old and the new choice
    items = data.items("test")
    photos = embed_in_batches(method.encode_photo, data.photos("test"), 64)
    at = {c: embed_in_batches(method.encode_sketch, data.sketches("test", c), 64) for c in selector.canvases}
    index = {sid: k for k, sid in enumerate(ids)}

    def test_ranks(chosen: list[int]) -> list[int]:
        emb = torch.stack([at[chosen[index[it.id]]][i] for i, it in enumerate(items)])
        return ranks(method.distance(emb, photos), data.pairs("test")).tolist()

    assert test_ranks(old) == test_ranks(new)
    # and the method's own choice (through its plugin) is the new input's
    assert [int(c) for c in method.choose_canvases(data, "test")] == [new[index[it.id]] for it in items]


# -- the thumbnail selector's cheaper drawing -------------------------------------------------------
def test_thumbnail_recipe_draws_the_same_sketch_at_its_own_supersampling(real_sketches):
    """The ``thumbnail`` recipe's ``supersample`` (SketchyNetV2's default selector: 2×) changes only the
    anti-aliasing: on every real ChairV2 and Sketchy sketch the ink lies where the canvas renderer's
    32 px (8×) puts it; a recipe without the key is the renderer's own drawing, so exports made
    before it keep their input."""
    from sketchbench_query.recipes import selector_input
    from sketchbench_query.render import render_points

    chair, sketchy = real_sketches
    corr, ink = [], []
    for sketch in list(chair.values()) + sketchy:
        ref = render_points(sketch.points, 32)
        old = selector_input(sketch.points, {"kind": "thumbnail", "size": 32})[0]
        new = selector_input(sketch.points, {"kind": "thumbnail", "size": 32, "supersample": 2})[0]
        assert np.array_equal(old, ref) and new.shape == ref.shape and new.dtype == np.uint8
        a, b = 255.0 - ref.astype(np.float64), 255.0 - new.astype(np.float64)
        corr.append(np.corrcoef(a.ravel(), b.ravel())[0, 1])
        ink.append(b.sum() / a.sum())
    assert len(corr) == len(chair) + len(sketchy) > 1400
    # measured on ChairV2: correlation of the ink ≥ 0.78 (median 0.90), ink mass 0.81-1.06 of 8x's
    assert min(corr) > 0.7 and np.median(corr) > 0.85
    assert 0.7 < min(ink) and max(ink) < 1.3


@pytest.mark.parametrize("factor", [0, 9, -1])
def test_render_refuses_a_supersampling_factor_out_of_range(factor):
    from sketchbench_query.points import SketchInputError
    from sketchbench_query.render import render_points

    with pytest.raises(SketchInputError, match="supersampling factor"):
        render_points(np.array([[0.1, 0.1, 0.0], [0.9, 0.9, 1.0]], dtype=np.float32), 32, factor)


@pytest.mark.parametrize("recipe, says", [
    ({"kind": "thumbnail", "size": 32, "supersample": "x"}, "malformed"),  # a manifest's recipe is untrusted
    ({"kind": "thumbnail", "size": "big"}, "malformed"),
    ({"kind": "thumbnail", "size": 100_000}, "at most 8192"),  # bounded before Pillow allocates the drawing
    ({"kind": "thumbnail", "size": 2048, "supersample": 8}, "at most 8192"),
])
def test_a_hostile_thumbnail_recipe_is_one_line_before_anything_is_drawn(recipe, says):
    from sketchbench_query.points import SketchInputError
    from sketchbench_query.recipes import selector_input

    with pytest.raises(SketchInputError, match=says) as err:
        selector_input(np.array([[0.1, 0.1, 0.0], [0.9, 0.9, 1.0]], dtype=np.float32), recipe)
    assert "\n" not in str(err.value)
