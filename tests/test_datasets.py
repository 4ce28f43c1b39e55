"""Dataset loaders on the real QMUL data (../shared/data) and on small fixtures built in exactly
the published layouts (ShoeV2, Handbag-V1, Sketchy, FS-COCO), plus their bad-input behaviour."""

from __future__ import annotations

import json
import os
import pickle
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy.io import savemat

from sketchbench import DatasetOptions, RunData
from sketchbench.base.errors import DataError
from sketchbench.method.registries import get_host
from sketchbench.run.presets import load_preset
from sketchbench.testing import run_cli


def load(name: str, root: Path | None, photo_size: int = 32, need_photos: bool = True):
    source = get_host().datasets.get(name)()
    return source.load(DatasetOptions(root=root, photo_size=photo_size, need_photos=need_photos))


def _png(path: Path, size=(40, 40), colour=(200, 30, 30)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)


def _jpg(path: Path, size=(24, 24), colour=(30, 200, 30)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path, "JPEG")


def _xyp(rng: np.random.Generator, strokes: int = 3) -> np.ndarray:
    """An absolute (N, 3) x, y, pen sketch in the SketchX convention (canvas 256)."""
    rows = []
    for _ in range(strokes):
        pts = rng.uniform(33, 223, (int(rng.integers(3, 8)), 2))
        pen = np.zeros((len(pts), 1))
        pen[-1] = 1
        rows.append(np.hstack([pts, pen]))
    return np.vstack(rows)


# -- QMUL-V1 (real data) --------------------------------------------------------------------
@pytest.mark.realdata
@pytest.mark.parametrize("name,cat,counts", [("qmul-v1-shoes", "shoes", (304, 115)), ("qmul-v1-chairs", "chairs", (200, 97))])
def test_qmul_v1_real(shared_data, name, cat, counts):
    ds = load(name, shared_data / "qmul-v1")
    for split, n in zip(("train", "test"), counts):
        s = ds.split(split)
        assert len(s.sketches) == n and len(s.photo_ids) == n
        assert s.photos.shape == (n, 32, 32, 3) and s.photos.dtype == np.uint8
        assert np.array_equal(s.pairs, np.arange(n))  # sketch i pairs with edge map i
        r = s.sketches[0].raster
        assert r.shape == (256, 256) and r.dtype == np.uint8 and r.mean() > 200  # black on white
        assert s.sketches[0].vector is None
        # hard negatives: annotated near misses, never the true match, within the split
        assert s.hard_negatives is not None and len(s.hard_negatives) == n
        assert all(i not in negs and all(0 <= j < n for j in negs) for i, negs in enumerate(s.hard_negatives))
        assert np.mean([len(x) for x in s.hard_negatives]) > 7  # ~9 of the 10 candidates
    # the category folder itself is accepted as the root, and gives the same content
    same = load(name, shared_data / "qmul-v1" / cat, need_photos=False)
    assert same.fingerprint == ds.fingerprint
    assert same.train.photos.shape == (counts[0], 256, 256, 3)  # data info: not resized


# -- ChairV2 (real pickle + the 400 real photos) ---------------------------------------------
@pytest.mark.realdata
def test_chairv2_real(shared_data):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no sketch of the real file is skipped
        ds = load("chairv2", shared_data / "chairv2")
    assert (len(ds.train.sketches), len(ds.test.sketches)) == (952, 323)
    assert (len(ds.train.photo_ids), len(ds.test.photo_ids)) == (300, 100)
    assert ds.meta["skipped_sketches"] == 0
    assert not set(ds.train.photo_ids) & set(ds.test.photo_ids)
    # every photo id of the pickle has its photo: the dataset is complete, retrieval works
    assert ds.has_photos and "photos" not in ds.meta
    assert ds.train.photos.shape == (300, 32, 32, 3) and ds.test.photos.shape == (100, 32, 32, 3)
    assert ds.test.photos.dtype == np.uint8 and ds.test.photos.std() > 10  # real photos, not a blank fill
    item = next(s for s in ds.test.sketches if s.id == "test/9910-02-carbon_1")
    assert ds.test.photo_ids[item.photo] == "9910-02-carbon"
    with Image.open(shared_data / "chairv2" / "photo" / "9910-02-carbon.png") as img:
        own = np.asarray(img.convert("RGB").resize((32, 32), Image.BICUBIC))
    assert np.array_equal(ds.test.photos[item.photo], own)  # the sketch's photo is its own file
    # photo names containing '_' keep it (only the trailing _<k> is dropped)
    assert any("_" in p for p in ds.train.photo_ids + ds.test.photo_ids)
    pts = item.vector.points
    assert pts[:, :2].min() >= -1e-6 and pts[:, :2].max() <= 1 + 1e-6 and pts[-1, 2] == 1
    data = RunData(ds, load_preset("cpu"))  # no sketch limit: the whole gallery
    assert tuple(data.photos("test").shape) == (100, 3, 32, 32)


@pytest.mark.realdata
def test_chairv2_roots_and_cli(shared_data, tmp_path):
    real = shared_data / "chairv2" / "ChairV2_Coordinate"
    for layout in ("Dataset/ChairV2", "ChairV2"):
        folder = tmp_path / layout.replace("/", "_") / layout
        folder.mkdir(parents=True)
        os.symlink(real, folder / "ChairV2_Coordinate")
        ds = load("chairv2", tmp_path / layout.replace("/", "_"), need_photos=False)
        assert len(ds.train.sketches) == 952
    code, out, _ = run_cli("data", "info", "chairv2", "--data-root", str(shared_data / "chairv2"))
    assert code == 0
    assert "952 sketches, 300 photos" in out and "323 sketches, 100 photos" in out and "points/sketch" in out


# -- ShoeV2 fixture -------------------------------------------------------------------------
def _shoev2(root: Path, photos: bool = True, extra: dict | None = None) -> Path:
    folder = root / "Dataset" / "ShoeV2"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    data = {}
    for split, names in (("train", ["2429245009", "1031000079", "CHABRA003GRY-UK_v1_Pearl"]), ("test", ["1445100078", "2600000001"])):
        for name in names:
            for k in (1, 2):
                data[f"/{split}/{name}_{k}"] = _xyp(rng)
            if photos:
                _png(folder / "photo" / f"{name}.png", colour=tuple(int(x) for x in rng.integers(0, 255, 3)))
    data.update(extra or {})
    (folder / "ShoeV2_Coordinate").write_bytes(pickle.dumps(data, protocol=2))
    return folder


def test_shoev2_layout(tmp_path):
    folder = _shoev2(tmp_path)
    ds = load("shoev2", tmp_path)
    assert (len(ds.train.sketches), len(ds.test.sketches)) == (6, 4)
    assert ds.train.photo_ids == sorted(["2429245009", "1031000079", "CHABRA003GRY-UK_v1_Pearl"])
    assert ds.train.photos.shape == (3, 32, 32, 3)
    for s in ds.train.sketches:  # each sketch points at its own photo
        assert s.id.rsplit("_", 1)[0].split("/")[1] == ds.train.photo_ids[s.photo]
    # photo pixels come from the right file
    idx = ds.test.photo_ids.index("1445100078")
    expected = np.asarray(Image.open(folder / "photo" / "1445100078.png"))[0, 0]
    assert np.abs(ds.test.photos[idx, 16, 16].astype(int) - expected).max() <= 2
    assert ds.meta["skipped_sketches"] == 0
    # the other accepted roots
    assert len(load("shoev2", tmp_path / "Dataset").train.sketches) == 6
    assert len(load("shoev2", folder, need_photos=False).test.sketches) == 4


def test_shoev2_bad_sketch_skipped_and_counted(tmp_path):
    bad = np.array([[1.0, 2.0, 0.0], [np.nan, 5.0, 1.0]])
    _shoev2(tmp_path, extra={"/train/2429245009_3": bad, "/test/1445100078_9": np.zeros((0, 3)),
                             "/train/1031000079_7": "not an array"})
    with pytest.warns(UserWarning, match="skipping sketch"):
        ds = load("shoev2", tmp_path)
    assert ds.meta["skipped_sketches"] == 3
    assert (len(ds.train.sketches), len(ds.test.sketches)) == (6, 4)
    assert all(np.isfinite(s.vector.points).all() for s in ds.train.sketches)


def test_shoev2_photo_errors(tmp_path):
    folder = _shoev2(tmp_path)
    (folder / "photo" / "1031000079.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(DataError, match="1031000079.png") as err:
        load("shoev2", tmp_path)
    assert "decode" in str(err.value)
    (folder / "photo" / "1031000079.png").unlink()
    with pytest.raises(DataError, match="1031000079.png"):
        load("shoev2", tmp_path)


def test_shoev2_missing_photo_folder(tmp_path):
    _shoev2(tmp_path, photos=False)
    ds = load("shoev2", tmp_path)
    assert ds.train.photos is None and not ds.has_photos
    assert "photo" in ds.meta["photos"]


def test_shoev2_bad_pickles(tmp_path):
    folder = tmp_path / "ShoeV2"
    folder.mkdir()
    target = folder / "ShoeV2_Coordinate"
    target.write_bytes(pickle.dumps({"/train/a_1": np.zeros((3, 3))})[:10])
    with pytest.raises(DataError, match="ShoeV2_Coordinate"):
        load("shoev2", tmp_path)
    target.write_bytes(pickle.dumps({"/train/a_1": np.zeros((3, 3)), "/val/b_1": np.zeros((3, 3))}))
    with pytest.raises(DataError, match="/val/b_1"):
        load("shoev2", tmp_path)
    target.write_bytes(pickle.dumps([1, 2, 3]))
    with pytest.raises(DataError, match="dict"):
        load("shoev2", tmp_path)
    target.write_bytes(b"cposix\nsystem\n(S'true'\ntR.")
    with pytest.raises(DataError, match="system"):
        load("shoev2", tmp_path)


def test_missing_root_and_wrong_layout(tmp_path):
    with pytest.raises(DataError, match="pass data_root DIR"):
        load("shoev2", None)
    with pytest.raises(DataError, match="does not exist"):
        load("chairv2", tmp_path / "nope")
    (tmp_path / "photo").mkdir()
    for name, expect in (("chairv2", "ChairV2_Coordinate"), ("qmul-v1-shoes", "shoes_sketch_db_train.mat"),
                         ("sketchy", "sketches"), ("fscoco", "vector_sketches")):
        with pytest.raises(DataError, match=expect) as err:
            load(name, tmp_path)
        assert "\n" not in str(err.value)


# -- QMUL Handbag-V1 fixture (.mat) -------------------------------------------------------------
def _handbags(root: Path, n=(3, 2)) -> Path:
    folder = root / "handbags"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for split, count in zip(("train", "test"), n):
        sk = np.full((count, 256, 256), 255, np.uint8)
        sk[:, 100:110, 50:200] = 0
        ed = rng.integers(200, 256, (count, 256, 256)).astype(np.uint8)
        savemat(folder / f"handbags_sketch_db_{split}.mat", {"data": sk})
        savemat(folder / f"handbags_edge_db_{split}.mat", {"data": ed})
    # the release ships the shoes annotation under this name ("pseudo annotation"): it must be ignored
    (folder / "handbags_annotation.json").write_text(json.dumps({"train": {"triplets": [[[0, 5]]]}, "test": {}}))
    return folder


def test_handbags_layout(tmp_path):
    folder = _handbags(tmp_path)
    ds = load("qmul-v1-handbags", tmp_path)
    assert (len(ds.train.sketches), len(ds.test.sketches)) == (3, 2)
    assert ds.train.hard_negatives is None and ds.test.hard_negatives is None
    assert ds.train.photos.shape == (3, 32, 32, 3)
    assert (ds.train.photos[..., 0] == ds.train.photos[..., 2]).all()  # grey replicated
    assert ds.train.sketches[1].raster[105, 100] == 0
    assert len(load("qmul-v1-handbags", folder).test.sketches) == 2


def test_qmul_v1_bad_files(tmp_path):
    folder = _handbags(tmp_path)
    target = folder / "handbags_edge_db_test.mat"
    raw = target.read_bytes()
    target.write_bytes(raw[: len(raw) // 3])
    with pytest.raises(DataError, match="handbags_edge_db_test.mat") as err:
        load("qmul-v1-handbags", tmp_path)
    assert "\n" not in str(err.value)
    savemat(target, {"data": np.zeros((2, 256, 256), np.float32)})
    with pytest.raises(DataError, match="handbags_edge_db_test.mat.*uint8"):
        load("qmul-v1-handbags", tmp_path)
    savemat(target, {"data": np.zeros((5, 256, 256), np.uint8)})
    with pytest.raises(DataError, match="5 edge maps"):
        load("qmul-v1-handbags", tmp_path)
    savemat(target, {"other": np.zeros((2, 256, 256), np.uint8)})
    with pytest.raises(DataError, match="no variable 'data'"):
        load("qmul-v1-handbags", tmp_path)
    target.unlink()
    with pytest.raises(DataError, match="missing file.*handbags_edge_db_test.mat"):
        load("qmul-v1-handbags", tmp_path)


def test_qmul_v1_bad_annotation(tmp_path):
    folder = tmp_path / "shoes"
    folder.mkdir()
    for split in ("train", "test"):
        for kind in ("sketch", "edge"):
            savemat(folder / f"shoes_{kind}_db_{split}.mat", {"data": np.full((2, 256, 256), 255, np.uint8)})
    ann = folder / "shoes_annotation.json"
    ann.write_text(json.dumps({s: {"images": ["1.jpg", "2.jpg"], "triplets": [[[1, 0]], [[1, 7]]]} for s in ("train", "test")}))
    with pytest.raises(DataError, match="outside 0..1"):
        load("qmul-v1-shoes", tmp_path)
    ann.write_text(json.dumps({s: {"triplets": [[[1, 0]], [[1, 0], [0, 1]]]} for s in ("train", "test")}))
    ds = load("qmul-v1-shoes", tmp_path)
    assert ds.train.hard_negatives == [[], [0]]  # sketch 0's only b is itself; sketch 1: photo 0
    ann.write_text("{not json")
    with pytest.raises(DataError, match="not valid JSON"):
        load("qmul-v1-shoes", tmp_path)


# -- Sketchy fixture --------------------------------------------------------------------------
_SVG = """<?xml version="1.0" encoding="utf-8"?>
<svg xmlns="http://www.w3.org/2000/svg" width="640" height="480" version="1.1">
 <g transform="translate(10, 20)">
  <path d="M {x0},{y0} C {x0},{y0} 300,120 340,180 c 10,10 20,40 -30,60" fill="none" stroke="#000"/>
  <path d="M100 300 L 400 300 l 0 80 H100 z M 500 50 l 20 20"/>
 </g>
</svg>
"""


def _sketchy(root: Path, photos_per_cat: int = 3, testset: bool = True) -> Path:
    cats = {"airplane": "n02691156", "hot-air_balloon": "n03541923"}
    test_lines = []
    for ci, (cat, syn) in enumerate(cats.items()):
        for p in range(photos_per_cat):
            pid = f"{syn}_{100 + p}"
            _jpg(root / "256x256" / "photo" / "tx_000000000000" / cat / f"{pid}.jpg", colour=(20 * p, 100, 40 * ci))
            for n in (1, 2):
                f = root / "sketches" / cat / f"{pid}-{n}.svg"
                f.parent.mkdir(parents=True, exist_ok=True)
                f.write_text(_SVG.format(x0=100 + 10 * p, y0=80 + n))
            if p == 0:
                test_lines.append(f"{cat}/{pid}.jpg")
    info = root / "info"
    info.mkdir(exist_ok=True)
    if testset:
        (info / "testset.txt").write_text("\r\n".join(test_lines) + "\r\n")
    (info / "invalid-error.txt").write_text("n02691156_101-2\n")
    return root


def test_sketchy_layout(tmp_path):
    root = _sketchy(tmp_path)
    (root / "sketches" / "airplane" / "n02691156_102-3.svg").write_text("<svg><path d='M 1 1 L")  # broken XML
    with pytest.warns(UserWarning, match="n02691156_102-3.svg"):
        ds = load("sketchy", root)
    assert ds.test.photo_ids == ["airplane/n02691156_100", "hot-air_balloon/n03541923_100"]
    assert len(ds.train.photo_ids) == 4 and ds.train.photos.shape == (4, 32, 32, 3)
    assert len(ds.test.sketches) == 4
    assert len(ds.train.sketches) == 8 - 1  # one excluded as invalid
    assert ds.meta["excluded_invalid"] == 1 and ds.meta["skipped_sketches"] == 1
    assert ds.meta["split"] == "info/testset.txt"
    for s in ds.train.sketches + ds.test.sketches:
        split = ds.train if s in ds.train.sketches else ds.test
        assert s.id.rsplit("-", 1)[0] == split.photo_ids[s.photo]
        assert s.vector.num_strokes == 3  # the curve, the closed box, the extra sub-path
    pts = ds.test.sketches[0].vector.points
    assert pts[:, :2].min() >= -1e-6 and pts[:, :2].max() <= 1 + 1e-6


def test_sketchy_heldout_split(tmp_path):
    root = _sketchy(tmp_path, photos_per_cat=12, testset=False)
    a = load("sketchy", root, need_photos=False)
    b = load("sketchy", root, need_photos=False)
    assert len(a.test.photo_ids) == 20 and len(a.train.photo_ids) == 4
    assert a.test.photo_ids == b.test.photo_ids  # fixed seed
    assert "held out" in a.meta["split"]


def test_svg_geometry_and_safety(tmp_path):
    from sketchbench.data.svg import parse_path_d, svg_strokes

    (box,) = parse_path_d("M10 10 L20 10 l0 10 H10 Z")
    np.testing.assert_allclose(box, [[10, 10], [20, 10], [20, 20], [10, 20], [10, 10]])
    (curve,) = parse_path_d("M0,0 C0,10 10,10 10,0")
    np.testing.assert_allclose(curve[-1], [10, 0])
    assert len(curve) > 3 and curve[:, 1].max() == pytest.approx(7.5, abs=0.05)  # the cubic's apex
    a, b = parse_path_d("m 1 1 2 0 m 5 5 0 1")  # implicit linetos, relative second moveto
    np.testing.assert_allclose(a, [[1, 1], [3, 1]])
    np.testing.assert_allclose(b, [[8, 6], [8, 7]])
    f = tmp_path / "t.svg"
    f.write_text('<svg xmlns="http://www.w3.org/2000/svg"><g transform="scale(2) translate(1,0)">'
                 '<polyline points="0,0 1,1"/></g></svg>')
    np.testing.assert_allclose(svg_strokes(f)[0], [[2, 0], [4, 2]])
    f.write_text('<?xml version="1.0"?><!DOCTYPE svg [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;">]>'
                 '<svg><path d="M0 0 L1 1"/><desc>&b;</desc></svg>')
    with pytest.raises(DataError, match="t.svg"):
        svg_strokes(f)


# -- FS-COCO fixture --------------------------------------------------------------------------
def _fscoco(root: Path) -> Path:
    rng = np.random.default_rng(2)
    ids = {"1": ["000000000139", "000000000285"], "2": ["000000000632", "000000000724"], "3": ["000000000776"]}
    for user, names in ids.items():
        for name in names:
            _jpg(root / "images" / user / f"{name}.jpg", size=(48, 24), colour=(250, 250, 250))
            f = root / "vector_sketches" / user / f"{name}.npy"
            f.parent.mkdir(parents=True, exist_ok=True)
            np.save(f, _xyp(rng, strokes=4) * 3)
    (root / "val_normal.txt").write_text("000000000285\n000000000776\n")
    return root


def test_fscoco_layout(tmp_path):
    root = _fscoco(tmp_path)
    ds = load("fscoco", root)
    assert ds.test.photo_ids == ["000000000285", "000000000776"]
    assert ds.train.photo_ids == ["000000000139", "000000000632", "000000000724"]
    assert np.array_equal(ds.train.pairs, np.arange(3))
    assert ds.test.sketches[1].id == "3/000000000776"
    assert ds.train.sketches[0].vector.num_strokes == 4
    photo = ds.train.photos[0]
    assert photo.shape == (32, 32, 3)
    # letterboxed: a 2:1 photo fills the middle half, black bands above and below
    assert photo[16, 16].min() > 230 and photo[2, 16].max() < 20 and photo[29, 16].max() < 20
    assert ds.meta["missing_test_ids"] == 0 and ds.meta["skipped_sketches"] == 0


@pytest.mark.filterwarnings("ignore:fscoco. skipping sketch")
def test_fscoco_bad_input(tmp_path):
    root = _fscoco(tmp_path)
    np.save(root / "vector_sketches" / "1" / "000000000139.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    np.save(root / "vector_sketches" / "2" / "000000000632.npy", np.full((4, 3), np.nan))
    with pytest.warns(UserWarning, match="skipping sketch"):
        ds = load("fscoco", root)
    assert ds.meta["skipped_sketches"] == 2
    assert len(ds.train.sketches) == 1 and len(ds.train.photo_ids) == 3  # photos stay in the gallery
    (root / "images" / "3" / "000000000776.jpg").write_bytes(b"\xff\xd8\xff broken jpeg")
    with pytest.raises(DataError, match="000000000776.jpg"):
        load("fscoco", root)
    (root / "images" / "3" / "000000000776.jpg").unlink()
    with pytest.raises(DataError, match="000000000776"):
        load("fscoco", root)
    (root / "val_normal.txt").unlink()
    with pytest.raises(DataError, match="val_normal.txt"):
        load("fscoco", root)


def test_sketchy_parse_cache(tmp_path, monkeypatch):
    import sketchbench_datasets.sketchy as sketchy_mod

    root = _sketchy(tmp_path)
    first = load("sketchy", root, need_photos=False)

    def boom(path):
        raise AssertionError(f"{path} parsed again")

    monkeypatch.setattr(sketchy_mod, "load_svg_sketch", boom)
    second = load("sketchy", root, need_photos=False)  # served from the artifact cache
    assert [s.id for s in second.train.sketches] == [s.id for s in first.train.sketches]
    for a, b in zip(first.test.sketches, second.test.sketches):
        np.testing.assert_array_equal(a.vector.points, b.vector.points)
    # a changed file invalidates the cached parse
    f = root / "sketches" / "airplane" / "n02691156_100-1.svg"
    f.write_text(f.read_text() + "\n")
    os.utime(f, (1, 1))
    with pytest.raises(AssertionError, match="parsed again"):
        load("sketchy", root, need_photos=False)


def test_fingerprint_follows_content_not_modification_times(tmp_path):
    """A re-copied dataset (same bytes, new mtimes) keeps its fingerprint, so no cache entry is lost;
    changed bytes of the same size change it."""
    from sketchbench import fingerprint_files

    a, b = tmp_path / "a.bin", tmp_path / "b.bin"
    a.write_bytes(b"sketches" * 100)
    b.write_bytes(b"photos" * 100)
    first = fingerprint_files([a, b], extra="x")
    assert fingerprint_files([b, a], extra="x") == first  # order does not matter, memo hit
    os.utime(a, (1_000_000, 1_000_000))  # a re-copy: same bytes, another mtime
    assert fingerprint_files([a, b], extra="x") == first
    a.write_bytes(b"sketchez" * 100)  # same size, other bytes
    assert fingerprint_files([a, b], extra="x") != first
    assert fingerprint_files([a, b], extra="y") != fingerprint_files([a, b], extra="x")
    with pytest.raises(DataError, match="missing.bin"):
        fingerprint_files([tmp_path / "missing.bin"])
