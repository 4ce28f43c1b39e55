"""The embedded ``synthetic`` dataset: deterministic, sized by the preset, dense photos, abstract
human-like vector sketches whose detail level varies, and fine-grained instances."""

from __future__ import annotations

import time
from collections import defaultdict

import numpy as np
import pytest
from PIL import Image, ImageFilter
from sketchbench_datasets.synthetic import (
    FAMILY_SIZE,
    SyntheticDataset,
    make_specs,
    reference_sketch,
    sketch_detail,
    sketch_style,
)

from sketchbench import DataError, DatasetOptions, render_sketch
from sketchbench.method.registries import get_host
from sketchbench.run.presets import load_preset
from sketchbench.testing import tiny_data


def _load(instances: int = 12, spi: int = 3, seed: int = 0, photo_size: int = 48, **kw):
    return SyntheticDataset().load(DatasetOptions(photo_size=photo_size, seed=seed,
                                                  size={"instances": instances, "sketches_per_instance": spi}, **kw))


@pytest.fixture(scope="module")
def ds():
    return _load(instances=24, spi=3, photo_size=64)


def _all_items(ds):
    return ds.train.sketches + ds.test.sketches


def _ink(sketch, canvas: int = 128) -> np.ndarray:
    """Ink mask of a render, dilated by one pixel so that jittered lines can overlap."""
    img = Image.fromarray(render_sketch(sketch, canvas)).filter(ImageFilter.MinFilter(3))
    return np.asarray(img) < 160


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max(1, (a | b).sum()))


def test_registered_and_loads_through_the_runner_helpers():
    assert get_host().datasets.get("synthetic") is SyntheticDataset
    data = tiny_data("synthetic", preset="smoke")
    p = load_preset("smoke")
    assert data.photos("test").shape[1:] == (3, p.photo_size, p.photo_size)
    assert data.sketches("train", 32).shape[1:] == (32, 32)
    assert data.dataset.fingerprint == f"synthetic-v1-{p.instances}-{p.sketches_per_instance}-0-{p.photo_size}"
    assert len(data.dataset.train.photo_ids) + len(data.dataset.test.photo_ids) == p.instances


def test_deterministic_from_the_seed():
    a, b, c = _load(seed=3), _load(seed=3), _load(seed=4)
    for split in ("train", "test"):
        assert np.array_equal(a.split(split).photos, b.split(split).photos)
        for x, y in zip(a.split(split).sketches, b.split(split).sketches):
            assert x.id == y.id and np.array_equal(x.vector.points, y.vector.points)
    assert not np.array_equal(a.train.photos, c.train.photos)
    assert any(x.vector.points.shape != y.vector.points.shape or not np.allclose(x.vector.points, y.vector.points)
               for x, y in zip(a.train.sketches, c.train.sketches))
    assert a.fingerprint == b.fingerprint != c.fingerprint


def test_counts_follow_the_size_knobs_and_split_by_instance():
    ds = _load(instances=12, spi=3, photo_size=40)
    assert len(ds.train.photo_ids) + len(ds.test.photo_ids) == 12
    assert len(ds.test.photo_ids) == 3  # 25 %
    assert not set(ds.train.photo_ids) & set(ds.test.photo_ids)  # test photos are a separate gallery
    for split in (ds.train, ds.test):
        assert split.photos.shape == (len(split.photo_ids), 40, 40, 3) and split.photos.dtype == np.uint8
        assert len(split.sketches) == 3 * len(split.photo_ids)
        assert np.bincount(split.pairs).tolist() == [3] * len(split.photo_ids)
    ids = [s.id for s in _all_items(ds)]
    assert len(set(ids)) == len(ids)
    assert ds.meta["generator"]["instances"] == 12 and ds.meta["generator"]["sketches_per_instance"] == 3
    big = _load(instances=40, spi=1, photo_size=16)
    assert len(big.train.sketches) == 30 and len(big.test.sketches) == 10


def test_specs_do_not_depend_on_the_instance_count():
    assert make_specs(8, 5) == make_specs(13, 5)[:8]


def test_families_share_a_silhouette_and_differ_in_details():
    specs = make_specs(4 * FAMILY_SIZE, 0)
    for f in range(4):
        members = [s for s in specs if s.family == f]
        assert len({m.shape for m in members}) == 1
        assert len({m.details for m in members}) == FAMILY_SIZE


def test_sketches_are_vector_in_the_unit_box_with_enough_strokes(ds):
    for item in _all_items(ds):
        pts = item.vector.points
        assert item.vector.num_strokes >= 3, item.id
        assert pts[:, :2].min() >= -1e-6 and pts[:, :2].max() <= 1 + 1e-6
        assert np.isfinite(pts).all()


def test_photos_are_dense_and_coloured(ds):
    photos = ds.train.photos.astype(np.int32)
    sketch_ink = np.mean([np.mean(render_sketch(s.vector, 64) < 230) for s in ds.train.sketches[:20]])
    photo_ink = np.mean(photos.min(axis=3) < 230)
    assert photo_ink > 0.8 and photo_ink > 4 * sketch_ink
    saturation = (photos.max(axis=3) - photos.min(axis=3)).mean()
    assert saturation > 20
    # not a flat fill: every photo has texture, shading and clutter
    assert all(p.reshape(-1, 3).std(axis=0).mean() > 15 for p in photos)


def test_instances_are_fine_grained(ds):
    photos = ds.train.photos.astype(np.int32)
    for i in range(len(photos)):
        for j in range(i + 1, len(photos)):
            assert np.abs(photos[i] - photos[j]).mean() > 3
    by_photo = defaultdict(list)
    for s in ds.train.sketches:
        by_photo[s.photo].append(_ink(s.vector))
    rng = np.random.default_rng(0)
    same, other = [], []
    keys = sorted(by_photo)
    for p in keys:
        inks = by_photo[p]
        same += [_iou(inks[a], inks[b]) for a in range(len(inks)) for b in range(a + 1, len(inks))]
        q = int(rng.choice([k for k in keys if k != p]))
        other += [_iou(a, b) for a in inks for b in by_photo[q]]
    assert np.mean(same) > np.mean(other) + 0.02


def test_sketches_match_their_own_reference_drawing(ds):
    specs = make_specs(24, 0)
    refs = {i: _ink(reference_sketch(specs[int(pid[4:])])) for i, pid in enumerate(ds.test.photo_ids)}
    own, others = [], []
    for s in ds.test.sketches:
        ink = _ink(s.vector)
        own.append(_iou(ink, refs[s.photo]))
        others.append(np.mean([_iou(ink, r) for k, r in refs.items() if k != s.photo]))
    assert np.mean(own) > np.mean(others)


def test_abstraction_varies_per_sketch(ds):
    items = _all_items(ds)
    levels = np.array([sketch_detail(s.id) for s in items])
    strokes = np.array([s.vector.num_strokes for s in items])
    assert len(set(levels.tolist())) >= 2
    assert len(set(strokes.tolist())) >= 3
    assert len({sketch_style(s.id) for s in items}) >= 2
    # more detail means more strokes: the level is what a canvas selector can exploit
    assert strokes[levels == levels.max()].mean() > strokes[levels == levels.min()].mean()
    assert sum(ds.meta["detail_levels"].values()) == len(items)


def test_no_photos_when_not_needed_and_same_sketches():
    a = _load(instances=8, spi=2, need_photos=False)
    b = _load(instances=8, spi=2)
    assert a.train.photos is None and a.test.photos is None
    assert all(np.array_equal(x.vector.points, y.vector.points) for x, y in zip(_all_items(a), _all_items(b)))


@pytest.mark.parametrize("size", [{"instances": 2, "sketches_per_instance": 2},
                                  {"instances": 8, "sketches_per_instance": 0}])
def test_bad_sizes_are_one_line_errors(size):
    with pytest.raises(DataError, match="synthetic"):
        SyntheticDataset().load(DatasetOptions(photo_size=32, size=size))


def test_cpu_preset_is_fast():
    t = time.process_time()  # CPU time: the test machine is shared
    _load(instances=60, spi=3, photo_size=96)
    assert time.process_time() - t < 4.0
