"""The renderer, the ink-preserving raster downscale and the skeleton vectoriser."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw
from scipy import ndimage

from sketchbench import Sketch, downscale_raster, render_item, render_sketch, stroke_width, vectorise
from sketchbench.data.render import MARGIN
from sketchbench.data.sketch import BadSketch
from sketchbench.data.vectorise import thin

CANVASES = (32, 64, 128, 256)


def _known_sketch() -> Sketch:
    """Four strokes that do not touch: a closed loop, a line, a zig-zag and an arc."""
    t = np.linspace(0, 2 * np.pi, 41)
    loop = np.stack([0.3 + 0.22 * np.cos(t), 0.3 + 0.22 * np.sin(t)], axis=1)
    line = np.array([[0.7, 0.1], [0.95, 0.6]])
    zigzag = np.array([[0.05, 0.8], [0.25, 0.97], [0.45, 0.8], [0.65, 0.97]])
    a = np.linspace(0, np.pi, 20)
    arc = np.stack([0.8 + 0.15 * np.cos(a), 0.72 + 0.15 * np.sin(a)], axis=1)
    return Sketch.from_strokes([loop, line, zigzag, arc])


def _qmul(shared_data, n: int) -> np.ndarray:
    import scipy.io

    path = shared_data / "qmul-v1" / "shoes" / "shoes_sketch_db_test.mat"
    if not path.is_file():
        pytest.skip("QMUL-V1 shoes test .mat not present")
    data = scipy.io.loadmat(path)["data"]
    assert data.dtype == np.uint8 and data.shape[1:] == (256, 256)
    return data[:n]


def _dilated_iou(a: np.ndarray, b: np.ndarray, iterations: int = 2) -> float:
    da = ndimage.binary_dilation(a < 128, iterations=iterations)
    db = ndimage.binary_dilation(b < 128, iterations=iterations)
    return float((da & db).sum() / (da | db).sum())


def test_stroke_width_rule():
    assert [stroke_width(c) for c in CANVASES] == [1.0, 1.0, 1.5, 3.0]
    widths = [stroke_width(c) for c in range(8, 513, 8)]
    assert widths == sorted(widths) and min(widths) == 1.0


@pytest.mark.parametrize("canvas", CANVASES)
def test_render_shape_ink_antialiasing_and_determinism(canvas):
    s = _known_sketch()
    img = render_sketch(s, canvas)
    assert img.shape == (canvas, canvas) and img.dtype == np.uint8
    assert img.min() < 64  # strokes reach (near) black: a 1-px line is rarely pixel-aligned
    assert img[0, 0] == img[-1, -1] == 255  # white background, margin kept blank
    ink = (img < 128).mean()
    assert 0.005 < ink < 0.4
    grey = ((img > 0) & (img < 255)).sum()
    assert grey >= 0.2 * (img < 255).sum()  # anti-aliased edges, not a binary image
    assert np.array_equal(img, render_sketch(s, canvas))
    assert np.array_equal(img, render_item(s, None, canvas))


@pytest.mark.parametrize("canvas", CANVASES)
def test_line_width_follows_the_rule(canvas):
    # a horizontal line of known length: the ink mass per pixel of length is the line width
    s = Sketch.from_strokes([np.array([[0.0, 0.5], [1.0, 0.5]])], normalise=False)
    img = render_sketch(s, canvas)
    ink = (255 - img.astype(np.float64)) / 255
    length = canvas * (1 - 2 * MARGIN)
    mid = ink[:, canvas // 4 : 3 * canvas // 4]  # away from the round caps
    assert mid.sum() / mid.shape[1] == pytest.approx(stroke_width(canvas), rel=0.1)
    assert ink.sum() == pytest.approx(stroke_width(canvas) * (length + stroke_width(canvas) * np.pi / 4), rel=0.15)


def test_small_canvases_are_drawn_directly_not_shrunk():
    s = _known_sketch()
    direct = render_sketch(s, 32).astype(np.float64)
    shrunk = np.asarray(Image.fromarray(render_sketch(s, 256)).resize((32, 32), Image.BOX), dtype=np.float64)
    # the 3 px lines of 256 shrink to 3/8 px: grey; drawn at 32 they are 1 px: darker, more ink
    assert (255 - direct).sum() > 2 * (255 - shrunk).sum()
    assert direct.min() < 40 < shrunk.min()
    # but the same drawing, in the same place
    assert _dilated_iou(direct.astype(np.uint8), np.where(shrunk < 240, 0, 255).astype(np.uint8), 1) > 0.5


def test_dots_and_points_outside_the_box():
    dot = Sketch(np.array([[0.5, 0.5, 1.0]], dtype=np.float32))
    for canvas in (32, 256):
        img = render_sketch(dot, canvas)
        assert (img < 255).any() and (img < 255).sum() <= (stroke_width(canvas) + 2) ** 2
    far = Sketch(np.array([[-3.0, -3.0, 0.0], [5.0, 5.0, 1.0]], dtype=np.float32))
    assert render_sketch(far, 32).shape == (32, 32)  # clipped, no error


def _one_px_raster() -> np.ndarray:
    img = Image.new("L", (256, 256), 255)
    xs = np.linspace(20, 236, 200)
    ys = 128 + 90 * np.sin(xs / 30.0)
    ImageDraw.Draw(img).line(np.stack([xs, ys], 1).ravel().tolist(), fill=0, width=1)
    return np.asarray(img)


def test_downscale_keeps_one_pixel_lines_connected_at_32():
    raster = _one_px_raster()
    out = downscale_raster(raster, 32)
    assert out.shape == (32, 32) and out.dtype == np.uint8
    dark = out < 128
    labels, n = ndimage.label(dark, structure=np.ones((3, 3)))
    assert n == 1  # one connected dark line
    cols = np.flatnonzero(dark.any(axis=0))
    assert cols.min() <= 3 and cols.max() >= 28  # spanning the whole width
    # a plain area average fades the same line to a light grey
    plain = np.asarray(Image.fromarray(raster).resize((32, 32), Image.BOX))
    assert (plain < 128).sum() < 0.5 * dark.sum()
    # intermediate canvases too, and the identity at the native size
    for canvas in (48, 64, 128):
        lab, n = ndimage.label(downscale_raster(raster, canvas) < 128, structure=np.ones((3, 3)))
        assert n == 1
    assert np.array_equal(downscale_raster(raster, 256), raster)


def test_downscale_input_forms():
    raster = _one_px_raster()
    wide = np.full((128, 256), 255, dtype=np.uint8)
    wide[64, 10:246] = 0
    out = downscale_raster(wide, 32)
    assert out.shape == (32, 32) and (out[16] < 128).sum() >= 25  # padded, not squashed
    assert np.array_equal(downscale_raster(raster < 128, 32), downscale_raster(np.where(raster < 128, 0, 255), 32))
    assert np.array_equal(downscale_raster(np.stack([raster] * 3, -1), 32), downscale_raster(raster, 32))
    assert np.array_equal(render_item(None, raster, 32), downscale_raster(raster, 32))
    with pytest.raises(BadSketch):
        downscale_raster(np.zeros((4, 4, 4, 4)), 32)
    with pytest.raises(BadSketch):
        render_item(None, None, 32)


def test_downscale_real_qmul_ink_fraction(shared_data):
    data = _qmul(shared_data, 30)
    for raster in data:
        ink256 = (255 - raster.astype(np.float64)).mean() / 255
        out = downscale_raster(raster, 32)
        ink32 = (255 - out.astype(np.float64)).mean() / 255
        # QMUL lines are ~1.25 px; each becomes ~1 output px at 32, so the ink fraction grows by
        # up to the shrink factor 8 (x 1/line width) -- never shrinks, never explodes
        assert ink32 / ink256 > 1.0 and ink32 / ink256 < 12.0
        assert out.min() < 64  # dark lines survive


def test_thin_gives_a_one_pixel_connected_skeleton():
    bar = np.zeros((20, 60), dtype=bool)
    bar[8:13, 5:55] = True
    skel = thin(bar)
    assert skel[:, 10:50].sum(axis=0).tolist() == [1] * 40
    assert ndimage.label(skel, structure=np.ones((3, 3)))[1] == 1
    # Zhang-Suen erases 2-px diagonal lines; the thinning used must keep both diagonals of an X
    x = Sketch.from_strokes([np.array([[0, 0], [1, 1]]), np.array([[0, 1], [1, 0]])])
    skel = thin(render_sketch(x, 256) < 128)
    assert skel.sum() > 1.8 * 225  # two diagonals of ~225 px


def test_vectorise_known_sketch_round_trip():
    known = _known_sketch()
    raster = render_sketch(known, 256)
    v = vectorise(raster)
    assert v.num_strokes == known.num_strokes  # four separate strokes stay four strokes
    assert 0 <= v.points[:, :2].min() and v.points[:, :2].max() <= 1
    assert len(v) < 0.5 * (raster < 128).sum() ** 0.5 * 4  # simplified, not one point per pixel
    again = render_sketch(v, 256)
    assert _dilated_iou(raster, again) > 0.5
    # strokes that cross are joined straight through the junction: an X is two strokes
    x = Sketch.from_strokes([np.array([[0, 0], [1, 1]]), np.array([[0, 1], [1, 0]])])
    vx = vectorise(render_sketch(x, 256))
    assert vx.num_strokes == 2
    for stroke in vx.strokes():
        d = stroke[-1] - stroke[0]
        assert abs(abs(d[0]) - 1) < 0.05 and abs(abs(d[1]) - 1) < 0.05


def test_vectorise_rejects_blank_rasters():
    with pytest.raises(BadSketch):
        vectorise(np.full((64, 64), 255, dtype=np.uint8))
    speck = np.full((64, 64), 255, dtype=np.uint8)
    speck[30, 30] = 0
    with pytest.raises(BadSketch):
        vectorise(speck)


def test_vectorise_real_qmul(shared_data):
    data = _qmul(shared_data, 6)
    for raster in data:
        v = vectorise(raster)
        assert v.num_strokes > 1
        lengths = [float(np.hypot(*np.diff(s, axis=0).T).sum()) for s in v.strokes()]
        assert lengths == sorted(lengths, reverse=True)  # longest strokes first
        # the vector re-render covers about the same area as the raster's own downscale
        ink_v = (render_sketch(v, 64) < 128).mean()
        ink_r = (downscale_raster(raster, 64) < 128).mean()
        assert 0.3 < ink_v / ink_r < 3.0
