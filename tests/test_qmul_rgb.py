"""QMUL-V1 with RGB photos (``qmul-v1-<cat>-rgb``, the lyd911/Deep_SBIR_tf images/sketches layout)
against the ``.mat`` release (edge maps as photos): same sketches, ids, pairing and hard negatives.
Plus the resource limit on ``.mat`` files. Real-data tests are skipped when ../shared/data is absent."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy.io import savemat
from sketchbench_datasets._photos import load_photo

from sketchbench import DatasetOptions
from sketchbench.base.errors import DataError
from sketchbench.method.registries import get_host
from sketchbench.testing import run_cli


def load(name: str, root: Path | None, photo_size: int = 32, need_photos: bool = True):
    source = get_host().datasets.get(name)()
    return source.load(DatasetOptions(root=root, photo_size=photo_size, need_photos=need_photos))


# -- real data: RGB layout vs the .mat release ------------------------------------------------
@pytest.mark.realdata
@pytest.mark.parametrize("cat,counts", [("shoes", (304, 115)), ("chairs", (200, 97))])
def test_rgb_matches_mat_release(shared_data, cat, counts):
    rgb = load(f"qmul-v1-{cat}-rgb", shared_data / "qmul-v1-jpg")
    mat = load(f"qmul-v1-{cat}", shared_data / "qmul-v1", need_photos=False)
    assert rgb.meta["photo_modality"] == "RGB photos" and mat.meta["photo_modality"] == "edge maps"
    for split, n in zip(("train", "test"), counts):
        r, m = rgb.split(split), mat.split(split)
        assert len(r.sketches) == n and len(r.photo_ids) == n
        assert r.photos.shape == (n, 32, 32, 3) and r.photos.dtype == np.uint8
        # RGB, not grey edge maps replicated to 3 channels
        diff = np.abs(r.photos[..., 0].astype(int) - r.photos[..., 2].astype(int))
        assert diff.mean() > 3 and (diff > 20).mean() > 0.05
        # same ids, same sketch -> photo pairing, same hard negatives as the .mat dataset
        assert [s.id for s in r.sketches] == [s.id for s in m.sketches]
        assert r.photo_ids == m.photo_ids
        assert np.array_equal(r.pairs, m.pairs) and np.array_equal(r.pairs, np.arange(n))
        assert r.hard_negatives == m.hard_negatives and r.hard_negatives is not None
        # sketch i of the PNGs is, pixel for pixel, row i of the .mat sketches (all rows; spot checks below)
        for i in (0, 1, n // 2, n - 1):
            a, b = r.sketches[i].raster, m.sketches[i].raster
            assert a.shape == (256, 256) and a.dtype == np.uint8 and np.array_equal(a, b), (split, i)
        assert all(np.array_equal(a.raster, b.raster) for a, b in zip(r.sketches, m.sketches))
        assert r.sketches[0].vector is None
    # photo i of a split is the file named by the sketch's id: test/<N> -> test/images/<N>.jpg
    first = rgb.test.sketches[0].id.split("/")[1]
    want = load_photo(shared_data / "qmul-v1-jpg" / cat / "test" / "images" / f"{first}.jpg", 32)
    assert np.array_equal(rgb.test.photos[0], want)
    # the category folder is accepted as the root too; data info decodes no photos
    same = load(f"qmul-v1-{cat}-rgb", shared_data / "qmul-v1-jpg" / cat, need_photos=False)
    assert same.fingerprint == rgb.fingerprint
    assert same.train.photos.shape == (counts[0], 0, 0, 3)


@pytest.mark.realdata
def test_rgb_cli_and_wrong_release(shared_data):
    code, out, _ = run_cli("data", "info", "qmul-v1-shoes-rgb", "--data-root", str(shared_data / "qmul-v1-jpg"))
    assert code == 0, out
    assert "304 sketches, 304 photos" in out and "115 sketches, 115 photos" in out
    assert "photo_modality: RGB photos" in out and "hard_negatives: annotation triplets" in out
    code, out, _ = run_cli("list", "datasets")
    assert code == 0 and "qmul-v1-shoes-rgb" in out and "qmul-v1-chairs-rgb" in out
    # each release given to the other modality's dataset: one line that names the right dataset
    with pytest.raises(DataError, match=r"annotation/shoes_annotation\.json.*use dataset qmul-v1-shoes\)") as err:
        load("qmul-v1-shoes-rgb", shared_data / "qmul-v1")
    assert "\n" not in str(err.value)
    with pytest.raises(DataError, match=r"chairs_sketch_db_train\.mat.*use dataset qmul-v1-chairs-rgb") as err:
        load("qmul-v1-chairs", shared_data / "qmul-v1-jpg")
    assert "\n" not in str(err.value)


# -- fixtures in the RGB layout (no real data needed) ------------------------------------------
def _rgb_layout(root: Path, cat: str = "shoes", counts=(2, 1)) -> Path:
    folder = root / cat
    rng = np.random.default_rng(0)
    ann: dict = {}
    start = 1
    for split, n in zip(("train", "test"), counts):
        numbers = list(range(start, start + n))
        start += n
        for k in numbers:
            (folder / split / "images").mkdir(parents=True, exist_ok=True)
            (folder / split / "sketches").mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)).save(folder / split / "images" / f"{k}.jpg")
            sk = np.full((256, 256, 4), 255, np.uint8)
            sk[100 + k, 20:200, :3] = 0  # one black line per sketch, at a row that names it
            Image.fromarray(sk, "RGBA").save(folder / split / "sketches" / f"{k}.png")
        ann[split] = {"images": [f"{k}.jpg" for k in numbers], "sketches": [f"{k}.png" for k in numbers],
                      "triplets": [[[i, (i + 1) % n]] for i in range(n)]}
    (folder / "annotation").mkdir()
    (folder / "annotation" / f"{cat}_annotation.json").write_text(json.dumps(ann))
    return folder


def test_rgb_fixture_layout(tmp_path):
    folder = _rgb_layout(tmp_path)
    ds = load("qmul-v1-shoes-rgb", tmp_path)
    assert [s.id for s in ds.train.sketches] == ["train/1", "train/2"] and ds.test.photo_ids == ["test/3"]
    assert ds.train.photos.shape == (2, 32, 32, 3)
    assert ds.train.sketches[1].raster.shape == (256, 256) and ds.train.sketches[1].raster[102, 50] == 0
    assert ds.train.sketches[1].raster[101, 50] == 255  # alpha composited over white, grey
    assert ds.train.hard_negatives == [[1], [0]] and ds.test.hard_negatives == [[]]
    assert load("qmul-v1-shoes-rgb", folder).fingerprint == ds.fingerprint


def test_rgb_missing_root_and_files(tmp_path):
    with pytest.raises(DataError, match="pass data_root DIR"):
        load("qmul-v1-chairs-rgb", None)
    with pytest.raises(DataError, match="does not exist"):
        load("qmul-v1-chairs-rgb", tmp_path / "nope")
    with pytest.raises(DataError, match=r"no annotation/chairs_annotation\.json under .*expected layout") as err:
        load("qmul-v1-chairs-rgb", tmp_path)
    assert "\n" not in str(err.value)

    folder = _rgb_layout(tmp_path)
    (folder / "test" / "images" / "3.jpg").unlink()
    for need in (True, False):
        with pytest.raises(DataError, match=r"photo .*test/images/3\.jpg.* does not exist"):
            load("qmul-v1-shoes-rgb", tmp_path, need_photos=need)
    (folder / "train" / "sketches" / "2.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"sketch .*train/sketches/2\.png.* does not decode"):
        load("qmul-v1-shoes-rgb", tmp_path)
    ann_path = folder / "annotation" / "shoes_annotation.json"
    ann = json.loads(ann_path.read_text())
    ann["train"]["sketches"] = ["2.png", "1.png"]
    ann_path.write_text(json.dumps(ann))
    with pytest.raises(DataError, match="pairs with photo N.jpg"):
        load("qmul-v1-shoes-rgb", tmp_path)


# -- resource limits: an oversize .mat / annotation is refused before it is read -----------------
def test_oversize_mat_refused(tmp_path, monkeypatch):
    folder = tmp_path / "chairs"
    folder.mkdir()
    for split in ("train", "test"):
        for kind in ("sketch", "edge"):
            savemat(folder / f"chairs_{kind}_db_{split}.mat", {"data": np.full((2, 64, 64), 255, np.uint8)})
    assert len(load("qmul-v1-chairs", tmp_path).train.sketches) == 2
    monkeypatch.setenv("SKETCHBENCH_MAX_FILE_BYTES", "100")
    with pytest.raises(DataError, match=r"chairs_sketch_db_train\.mat.*over the limit of 100.*SKETCHBENCH_MAX_FILE_BYTES") as err:
        load("qmul-v1-chairs", tmp_path)
    assert "\n" not in str(err.value)
    # the annotation JSON of the RGB layout is checked the same way
    _rgb_layout(tmp_path / "rgb")
    with pytest.raises(DataError, match=r"shoes_annotation\.json.*over the limit"):
        load("qmul-v1-shoes-rgb", tmp_path / "rgb")


@pytest.mark.realdata
def test_oversize_real_mat_refused(shared_data, tmp_path, monkeypatch):
    # the real .mat files without the (bigger, 4 MB) annotation, which is checked first
    folder = tmp_path / "shoes"
    folder.mkdir()
    for f in (shared_data / "qmul-v1" / "shoes").glob("*.mat"):
        (folder / f.name).symlink_to(f)
    monkeypatch.setenv("SKETCHBENCH_MAX_FILE_BYTES", str(1_000_000))
    with pytest.raises(DataError, match=r"shoes_sketch_db_train\.mat' is [\d,]+ bytes, over the limit of 1,000,000") as err:
        load("qmul-v1-shoes", tmp_path)
    assert "\n" not in str(err.value)
    monkeypatch.setenv("SKETCHBENCH_MAX_FILE_BYTES", str(5_000_000))
    assert len(load("qmul-v1-shoes", tmp_path, need_photos=False).train.sketches) == 304
