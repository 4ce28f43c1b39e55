"""SVG reading (sketchbench.data.svg: defusedxml check, svgelements geometry, resource limits) on
the real Sketchy sample in ../shared/data/sketchy-sample, and on small hand-made files."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

from sketchbench import BadSketch, DataError, DatasetOptions, load_svg_sketch, render_sketch
from sketchbench.data import svg as svg_mod
from sketchbench.data.svg import MAX_SAMPLES_PER_SEGMENT, read_svg_sketch, svg_strokes
from sketchbench.method.registries import get_host

CATEGORIES = {"elephant", "pig"}
NS = 'xmlns="http://www.w3.org/2000/svg"'


def _load(root: Path, cache_dir: Path, need_photos: bool = True):
    source = get_host().datasets.get("sketchy")()
    return source.load(DatasetOptions(root=root, photo_size=32, need_photos=need_photos, cache_dir=cache_dir))


@pytest.fixture(scope="module")
def sample() -> Path:
    """The real Sketchy sample (module scope, so parsed once: the ``shared_data`` fixture's rule)."""
    shared = Path(os.environ.get("SKETCHBENCH_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
    if not shared.is_dir():
        pytest.skip(f"real data not found at {shared} (set SKETCHBENCH_SHARED_DATA)")
    root = shared / "sketchy-sample"
    if not root.is_dir():
        pytest.skip(f"real Sketchy sample not found at {root}")
    return root


@pytest.fixture(scope="module")
def sample_sketches(sample):
    files = sorted((sample / "sketch").glob("*/*.svg"))
    return files, [load_svg_sketch(f) for f in files]


@pytest.fixture(scope="module")
def sample_dataset(sample, tmp_path_factory):
    cache = tmp_path_factory.mktemp("sketchy-cache")  # explicit: a module fixture runs before the per-test cache
    return cache, _load(sample, cache)


# -- the real sample ---------------------------------------------------------------------------
def test_all_sample_svgs_parse(sample_sketches):
    files, sketches = sample_sketches
    assert len(files) == 199
    for f, s in zip(files, sketches):
        assert len(s.points) >= 10 and s.num_strokes >= 1, f
        assert np.isfinite(s.points).all(), f
        assert s.points[:, :2].min() >= -1e-6 and s.points[:, :2].max() <= 1 + 1e-6, f


def test_sample_loads_as_a_dataset(sample, sample_dataset):
    cache, ds = sample_dataset
    assert ds.meta["layout"] == "photo2sketch sample"
    assert ds.meta["skipped_sketches"] == 0 and ds.meta["excluded_invalid"] == 0
    assert "held out" in ds.meta["split"]
    assert len(ds.train.sketches) + len(ds.test.sketches) == 199
    for split in (ds.train, ds.test):
        assert {pid.split("/")[0] for pid in split.photo_ids} == CATEGORIES
        assert split.photos.shape == (len(split.photo_ids), 32, 32, 3)
        for s in split.sketches:  # each sketch is paired with its own photo, which exists
            pid = split.photo_ids[s.photo]
            assert s.id.rsplit("-", 1)[0] == pid
            assert (sample / "photos" / f"{pid}.jpg").is_file()
    assert len(ds.test.photo_ids) == 20  # 10 per category
    assert not set(ds.train.photo_ids) & set(ds.test.photo_ids)
    assert len(set(map(bytes, ds.test.photos))) > 1  # real, distinct photos
    again = _load(sample, cache, need_photos=False)  # deterministic (and served from the parse cache)
    assert again.test.photo_ids == ds.test.photo_ids
    assert [s.id for s in again.test.sketches] == [s.id for s in ds.test.sketches]


def test_a_sample_sketch_renders_with_ink(sample_sketches):
    _files, sketches = sample_sketches
    img = render_sketch(sketches[0], 128)
    assert img.shape[:2] == (128, 128)
    ink = (np.asarray(img) < 128).mean()
    assert 0.005 < ink < 0.5


# -- geometry on a hand-made file ----------------------------------------------------------------
_GEOMETRY = f"""<?xml version="1.0"?>
<!DOCTYPE svg PUBLIC "-//W3C//DTD SVG 1.1//EN" "http://www.w3.org/Graphics/SVG/1.1/DTD/svg11.dtd">
<svg {NS} width="100" height="100">
 <g transform="translate(10,20) scale(2)"><line x1="0" y1="0" x2="1" y2="0"/></g>
 <path transform="rotate(90)" d="M1 0 L2 0"/>
 <polyline transform="matrix(1 0 0 -1 5 5)" points="0,0 1,1"/>
 <path d="M0,0 C0,10 10,10 10,0"/>
 <path d="M0 0 c 0 10 10 10 10 0 s 10 -10 10 0"/>
 <path d="M0 0 Q 5 10 10 0"/>
 <path d="M0 0 A 5 5 0 0 1 10 0"/>
 <path d="m 1 1 2 0 z"/>
 <rect x="0" y="0" width="90" height="90"/>
 <defs><path d="M 50 50 L 60 60"/></defs>
 <g display="none"><path d="M 70 70 L 80 80"/></g>
</svg>
"""


def test_transforms_and_curves(tmp_path):
    f = tmp_path / "g.svg"
    f.write_text(_GEOMETRY)
    line, rotated, poly, cubic, smooth, quad, arc, closed = svg_strokes(f)  # rect, defs, hidden: not strokes
    np.testing.assert_allclose(line, [[10, 20], [12, 20]], atol=1e-9)
    np.testing.assert_allclose(rotated, [[0, 1], [0, 2]], atol=1e-9)
    np.testing.assert_allclose(poly, [[5, 5], [6, 4]], atol=1e-9)
    np.testing.assert_allclose(cubic[[0, -1]], [[0, 0], [10, 0]], atol=1e-9)
    assert 8 < len(cubic) <= 1 + MAX_SAMPLES_PER_SEGMENT
    assert cubic[:, 1].max() == pytest.approx(7.5, abs=0.01)  # the apex, at t = 1/2
    np.testing.assert_allclose(smooth[-1], [20, 0], atol=1e-9)
    assert smooth[:, 1].min() == pytest.approx(-7.5, abs=0.01)  # S reflects the previous control point
    assert smooth[np.argmin(smooth[:, 1]), 0] == pytest.approx(15, abs=0.5)
    assert quad[:, 1].max() == pytest.approx(5, abs=0.01)
    np.testing.assert_allclose(np.hypot(arc[:, 0] - 5, arc[:, 1]), 5, atol=0.01)  # on the circle
    assert arc[:, 1].min() == pytest.approx(-5, abs=0.01)  # sweep 1: through (5, -5)
    np.testing.assert_allclose(closed, [[1, 1], [3, 1], [1, 1]], atol=1e-9)  # relative moveto + implicit lineto + z


def test_huge_coordinates_cannot_explode_the_samples(tmp_path):
    f = tmp_path / "huge.svg"
    f.write_text(f'<svg {NS}><path d="M-1e300 0 C 1e300 1e300 -1e300 1e300 1e300 0 c 1 1 2 2 3 3 l 1e299 0"/></svg>')
    (stroke,) = svg_strokes(f)
    assert len(stroke) <= 1 + 2 * MAX_SAMPLES_PER_SEGMENT + 1 and np.isfinite(stroke).all()
    f.write_text(f'<svg {NS}><path d="M-1e308 0 L 1e308 0"/></svg>')  # the extent overflows
    with pytest.raises(BadSketch, match="huge.svg"):
        svg_strokes(f)


# -- safety and limits ---------------------------------------------------------------------------
_LAUGHS = ('<?xml version="1.0"?><!DOCTYPE svg [<!ENTITY a "aaaaaaaaaa">'
           + "".join(f'<!ENTITY {chr(98 + i)} "{("&" + chr(97 + i) + ";") * 10}">' for i in range(8))
           + f']><svg {NS}><path d="M0 0 L1 1"/><desc>&i;</desc></svg>')
_EXTERNAL = (f'<?xml version="1.0"?><!DOCTYPE svg [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
             f'<svg {NS}><path d="M0 0 L1 1"/><desc>&x;</desc></svg>')


@pytest.mark.parametrize("text", [_LAUGHS, _EXTERNAL], ids=["billion-laughs", "external-entity"])
def test_unsafe_xml_is_refused(tmp_path, text):
    f = tmp_path / "evil.svg"
    f.write_text(text)
    for read in (svg_strokes, load_svg_sketch, read_svg_sketch):
        with pytest.raises(DataError, match="evil.svg") as err:
            read(f)
        assert not isinstance(err.value, BadSketch) and "\n" not in str(err.value)
        assert "unsafe XML" in str(err.value)


def test_svg_over_the_byte_limit_is_refused_before_parsing(tmp_path, monkeypatch):
    monkeypatch.setenv("SKETCHBENCH_MAX_SVG_BYTES", "100")
    f = tmp_path / "big.svg"
    f.write_text(f'<svg {NS}><path d="M0 0' + " l1 1" * 50 + '"/></svg>')
    monkeypatch.setattr(Path, "read_bytes", lambda self: pytest.fail("read before the size check"))
    with pytest.raises(DataError, match="big.svg.*SKETCHBENCH_MAX_SVG_BYTES") as err:
        read_svg_sketch(f)
    assert "\n" not in str(err.value)


def test_path_data_over_the_point_limit_is_refused_before_svgelements(tmp_path, monkeypatch):
    monkeypatch.setenv("SKETCHBENCH_MAX_POINTS_PER_SKETCH", "100")
    real_shapes = svg_mod._shapes
    monkeypatch.setattr(svg_mod, "_shapes", lambda data: pytest.fail("svgelements ran"))
    f = tmp_path / "long.svg"
    f.write_text(f'<svg {NS}><path d="M0 0 l' + " 1 1" * 300 + '"/></svg>')  # implicit repeats count too
    t = time.perf_counter()
    with pytest.raises(BadSketch, match="long.svg.*SKETCHBENCH_MAX_POINTS_PER_SKETCH"):
        load_svg_sketch(f)
    assert time.perf_counter() - t < 1
    monkeypatch.setattr(svg_mod, "_shapes", real_shapes)
    monkeypatch.setenv("SKETCHBENCH_MAX_POINTS_PER_SKETCH", "10")
    f.write_text(f'<svg {NS}><path d="M0 0 C 0 10 10 10 10 0"/></svg>')  # 2 points of path data, 65 samples
    with pytest.raises(BadSketch, match=r"long.svg: 65 points"):
        load_svg_sketch(f)


def test_use_bombs_and_use_cycles_are_refused_before_svgelements(tmp_path, monkeypatch):
    monkeypatch.setattr(svg_mod, "_shapes", lambda data: pytest.fail("svgelements ran"))
    xlink = 'xmlns:xlink="http://www.w3.org/1999/xlink"'
    levels = '<g id="g0"><path d="M0 0 L1 1"/></g>' + "".join(
        f'<g id="g{i}">' + f'<use xlink:href="#g{i - 1}"/>' * 10 + "</g>" for i in range(1, 9))
    f = tmp_path / "bomb.svg"
    f.write_text(f"<svg {NS} {xlink}><defs>{levels}</defs><use xlink:href='#g8'/></svg>")  # 4e8 points (defs + copies) in 1 kB
    t = time.perf_counter()
    with pytest.raises(BadSketch, match=r"bomb.svg: 891,358,015 points"):  # every element copy counts, <use> and <g> too
        load_svg_sketch(f)
    assert time.perf_counter() - t < 1
    f.write_text(f'<svg {NS} {xlink}><g id="a"><path d="M0 0 L1 1"/><use xlink:href="#a"/></g></svg>')
    with pytest.raises(DataError, match="bomb.svg.*does not parse.*endless copy"):
        read_svg_sketch(f)


def _sketchy_tree(root: Path, n_photos: int = 12) -> list[Path]:
    """A release-layout Sketchy tree: one category, one small sketch per photo."""
    files = []
    for p in range(n_photos):
        f = root / "sketches" / "cat" / f"n0_{p}-1.svg"
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(f'<svg {NS}><path d="M0 0 C 0 {10 + p} 10 {10 + p} 10 0 L 20 5"/></svg>')
        files.append(f)
    return files


def test_sketch_over_the_point_limit_is_skipped_and_counted(tmp_path, monkeypatch):
    files = _sketchy_tree(tmp_path / "data")
    many = " ".join(f"{i},{(i * 7) % 13}" for i in range(300))  # 300 points: under 100 bytes per point
    files[3].write_text(f'<svg {NS}><polyline points="{many}"/></svg>')
    monkeypatch.setenv("SKETCHBENCH_MAX_POINTS_PER_SKETCH", "200")
    with pytest.warns(UserWarning, match="n0_3-1.svg.*over the limit"):
        ds = _load(tmp_path / "data", tmp_path / "cache", need_photos=False)
    assert ds.meta["skipped_sketches"] == 1
    assert len(ds.train.sketches) + len(ds.test.sketches) == 11
    assert "cat/n0_3-1" not in {s.id for s in ds.train.sketches + ds.test.sketches}
    monkeypatch.setenv("SKETCHBENCH_MAX_POINTS_PER_SKETCH", "1000")  # the limit is part of the parse cache key
    ds = _load(tmp_path / "data", tmp_path / "cache", need_photos=False)
    assert ds.meta["skipped_sketches"] == 0


def test_unsafe_svg_fails_the_whole_load(tmp_path):
    files = _sketchy_tree(tmp_path / "data")
    files[0].write_text(_LAUGHS)
    with pytest.raises(DataError, match="n0_0-1.svg"):
        _load(tmp_path / "data", tmp_path / "cache", need_photos=False)
