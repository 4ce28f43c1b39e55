"""The Sketch type: construction, validation, conversions, prefixes and RDP simplification."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from sketchbench import DataError, Sketch
from sketchbench.data.sketch import BadSketch


def _xyp(rng: np.random.Generator, strokes: int = 4, points: int = 6, scale: float = 200.0) -> np.ndarray:
    rows = []
    for _ in range(strokes):
        pts = rng.uniform(0, scale, (points, 2))
        pen = np.zeros((points, 1))
        pen[-1] = 1
        rows.append(np.hstack([pts, pen]))
    return np.vstack(rows)


class _ArraysOnly(pickle.Unpickler):
    """Admits numpy's array reconstruction only: the ChairV2 pickle is a dict of float arrays."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str):  # noqa: ANN201
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing {module}.{name}")


def test_from_xyp_normalises_into_unit_box_centred():
    rng = np.random.default_rng(0)
    arr = _xyp(rng)
    arr[:, 0] = arr[:, 0] * 0.5 + 40  # a tall sketch: y spans more than x
    s = Sketch.from_xyp(arr, margin=0.1)
    x0, y0, x1, y1 = s.bbox()
    assert s.points.dtype == np.float32 and s.points.shape == arr.shape
    assert max(x1 - x0, y1 - y0) == pytest.approx(0.8, abs=1e-5)
    assert (x0 + x1) / 2 == pytest.approx(0.5, abs=1e-5) and (y0 + y1) / 2 == pytest.approx(0.5, abs=1e-5)
    # uniform scaling: aspect ratio is kept
    ratio_in = np.ptp(arr[:, 0]) / np.ptp(arr[:, 1])
    assert (x1 - x0) / (y1 - y0) == pytest.approx(ratio_in, rel=1e-4)
    assert s.num_strokes == 4


def test_pen_column_is_thresholded_and_last_stroke_closed():
    arr = np.array([[0, 0, 0.2], [1, 0, 0.9], [1, 1, 0], [0, 1, 0]], dtype=float)
    s = Sketch.from_xyp(arr)
    assert s.points[:, 2].tolist() == [0, 1, 0, 1]
    # direct construction with an open last stroke must not lose its trailing points
    direct = Sketch(np.array([[0, 0, 0], [0.5, 0.5, 1], [1, 1, 0], [1, 0, 0]], dtype=np.float32))
    assert direct.num_strokes == 2
    assert [len(k) for k in direct.strokes()] == [2, 2]
    assert np.array_equal(np.vstack(direct.strokes()), direct.points[:, :2])


@pytest.mark.parametrize(
    "bad",
    [np.zeros((0, 3)), np.zeros((5, 2)), np.array([[0, 0, 0], [np.nan, 1, 1]]), np.ones((4, 3))],
)
def test_bad_sketches_raise_one_clear_error(bad):
    with pytest.raises(BadSketch) as info:
        Sketch.from_xyp(bad)
    # a DataError for the CLI, a ValueError for older callers
    assert isinstance(info.value, DataError) and isinstance(info.value, ValueError)
    assert "\n" not in str(info.value)


def test_direct_construction_is_validated():
    with pytest.raises(BadSketch):
        Sketch(np.zeros((0, 3), dtype=np.float32))
    with pytest.raises(BadSketch):
        Sketch(np.array([[0.0, np.inf, 1.0]]))


def test_equality_and_hash_are_by_value():
    rng = np.random.default_rng(1)
    a = Sketch.from_xyp(_xyp(rng))
    b = Sketch(a.points.copy())
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1
    c = Sketch(a.points * np.array([1, 0.5, 1], dtype=np.float32))
    assert a != c


def test_xyp_stroke5_round_trip():
    rng = np.random.default_rng(2)
    arr = _xyp(rng, strokes=5, points=7)
    s = Sketch.from_xyp(arr)
    s5 = s.to_stroke5()
    assert s5.shape == (len(s) + 1, 5)
    assert np.array_equal(s5[:, 2:].sum(axis=1), np.ones(len(s) + 1))  # one-hot pen state
    assert s5[-1, 4] == 1 and s5[:-1, 4].sum() == 0
    assert s5[:-1, 3].sum() == s.num_strokes
    back = Sketch.from_stroke5(s5)
    np.testing.assert_allclose(back.points, s.points, atol=1e-5)
    raw = Sketch.from_xyp(arr, normalise=False)
    np.testing.assert_allclose(Sketch.from_stroke5(raw.to_stroke5(), normalise=False).points, raw.points, atol=1e-3)
    np.testing.assert_allclose(raw.to_xyp(), arr, atol=1e-3)
    np.testing.assert_allclose(s.to_xyp(256.0)[:, :2], s.points[:, :2] * 256.0, atol=1e-4)


def test_from_stroke5_ignores_rows_after_the_end_token():
    s = Sketch.from_strokes([np.array([[0, 0], [1, 0]]), np.array([[0, 1], [1, 1]])])
    padded = np.vstack([s.to_stroke5(), np.tile([[0.3, 0.3, 0, 0, 1]], (6, 1))])
    np.testing.assert_allclose(Sketch.from_stroke5(padded).points, s.points, atol=1e-6)
    with pytest.raises(BadSketch):
        Sketch.from_stroke5(np.zeros((3, 4)))


def test_real_chairv2_round_trip(shared_data):
    path = shared_data / "chairv2" / "ChairV2_Coordinate"
    if not path.is_file():
        pytest.skip("ChairV2_Coordinate not present")
    with path.open("rb") as fh:
        coords = _ArraysOnly(fh).load()
    for key in sorted(coords)[:40]:
        s = Sketch.from_xyp(coords[key])
        assert 0 <= s.points[:, :2].min() and s.points[:, :2].max() <= 1 + 1e-6
        assert s.num_strokes == int((coords[key][:, 2] > 0.5).sum())
        np.testing.assert_allclose(Sketch.from_stroke5(s.to_stroke5()).points, s.points, atol=1e-5)


def test_strokes_and_prefix():
    strokes = [np.array([[0, 0], [1, 0], [1, 1]]), np.array([[0.2, 0.2]]), np.array([[0, 1], [0.5, 0.5]])]
    s = Sketch.from_strokes(strokes, normalise=False)
    assert s.num_strokes == 3
    for got, want in zip(s.strokes(), strokes):
        np.testing.assert_allclose(got, want)
    p = s.prefix(2)
    assert p.num_strokes == 2 and len(p) == 4 and np.array_equal(p.points, s.points[:4])
    assert s.prefix(0).num_strokes == 1  # clipped: a sketch has at least one stroke
    assert s.prefix(99) == s


def test_simplify_drops_collinear_points_and_keeps_corners():
    line = np.stack([np.linspace(0, 1, 50), np.zeros(50)], axis=1)
    corner = np.vstack([line, np.stack([np.ones(30), np.linspace(0, 1, 30)], axis=1)[1:]])
    s = Sketch.from_strokes([corner], normalise=False).simplify()
    np.testing.assert_allclose(s.points[:, :2], [[0, 0], [1, 0], [1, 1]], atol=1e-6)


def test_simplify_keeps_the_far_point_of_a_stroke_that_doubles_back():
    # with the distance to the infinite line the point (1, 0) lies on the chord's line and
    # would be dropped, shortening the stroke from 1.5 to 0.5
    s = Sketch.from_strokes([np.array([[0, 0], [1, 0], [0.5, 0]])], normalise=False).simplify(epsilon=0.01)
    assert len(s) == 3


def test_simplify_respects_max_points_even_with_many_strokes():
    rng = np.random.default_rng(3)
    curves = [np.cumsum(rng.normal(0, 0.05, (40, 2)), axis=0) + rng.uniform(0, 1, 2) for _ in range(12)]
    s = Sketch.from_strokes(curves)
    for budget in (200, 60, 30, 10, 2):
        out = s.simplify(max_points=budget)
        assert len(out) <= budget
        assert out.num_strokes >= 1
    # 10 points cannot hold 12 two-point strokes: the longest strokes are the ones kept
    lengths = [float(np.hypot(*np.diff(c, axis=0).T).sum()) for c in s.strokes()]
    kept = s.simplify(max_points=10)
    assert kept.num_strokes == 5
    kept_starts = {tuple(np.round(k[0], 5)) for k in kept.strokes()}
    longest = {tuple(np.round(s.strokes()[i][0], 5)) for i in np.argsort(lengths)[-5:]}
    assert kept_starts == longest
    with pytest.raises(BadSketch):
        s.simplify(max_points=1)
