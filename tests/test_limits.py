"""Bounded resources: what one data file may cost (sketchbench.data.limits), applied by every loader.

Each hostile file of the reliability review is refused in one line naming it, before the expensive
work: a pickle whose keys share one array, an .npy header claiming terabytes, an oversize file, a
sketch with too many points (skipped and counted; the dataset still loads).
"""

from __future__ import annotations

import pickle
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sketchbench import DataError, DataLimits, DatasetOptions, data_limits
from sketchbench.data.queries import read_query
from sketchbench.method.registries import get_host
from sketchbench.testing import run_cli


def _load(name: str, root: Path):
    return get_host().datasets.get(name)().load(DatasetOptions(root=root, photo_size=16, need_photos=True))


def _sketch(rng: np.random.Generator, n: int = 12) -> np.ndarray:
    xy = rng.uniform(33, 223, (n, 2))
    pen = np.zeros((n, 1))
    pen[n // 2 - 1] = pen[-1] = 1
    return np.hstack([xy, pen])


def _chairv2(root: Path, extra: dict | None = None, shared: np.ndarray | None = None, keys: int = 0) -> Path:
    """A ChairV2-layout folder: two train and one test photo, two sketches each (plus ``extra``);
    with ``shared``, ``keys`` more keys that all point at that one array (pickled once, by the memo)."""
    rng = np.random.default_rng(0)
    data: dict = {}
    for split, names in (("train", ["a", "b"]), ("test", ["c"])):
        for name in names:
            for k in (1, 2):
                data[f"/{split}/{name}_{k}"] = _sketch(rng)
            (root / "photo").mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (20, 20), (200, 30, 30)).save(root / "photo" / f"{name}.png")
    data.update(extra or {})
    for k in range(keys):
        data[f"/train/a_{100 + k}"] = shared
    (root / "ChairV2_Coordinate").write_bytes(pickle.dumps(data, protocol=4))
    return root


def test_defaults_and_environment_overrides(monkeypatch):
    d = DataLimits()
    assert data_limits() == d and d.points_per_sketch >= 100_000 and d.svg_bytes >= 2**20
    monkeypatch.setenv("SKETCHBENCH_MAX_POINTS_PER_SKETCH", "50")
    assert data_limits().points_per_sketch == 50
    for bad in ("many", "0", "-3"):
        monkeypatch.setenv("SKETCHBENCH_MAX_POINTS_PER_SKETCH", bad)
        with pytest.raises(DataError, match="SKETCHBENCH_MAX_POINTS_PER_SKETCH"):
            data_limits()


def test_a_pickle_whose_keys_share_one_array_is_refused_quickly(tmp_path):
    # ~1 MB of points pickled once, named by 3,000 keys: unpickled as is, every key would be copied
    # (3 GB); the budget of one point per byte of the file refuses it before the copies are made
    shared = np.random.default_rng(1).uniform(33, 223, (40_000, 3))
    shared[:, 2] = 0
    shared[-1, 2] = 1
    root = _chairv2(tmp_path, shared=shared, keys=3_000)
    assert (root / "ChairV2_Coordinate").stat().st_size < 2 * 2**20
    start = time.perf_counter()
    with pytest.raises(DataError, match=r"ChairV2_Coordinate.*shared between keys"):
        _load("chairv2", root)
    assert time.perf_counter() - start < 30  # refused early, not after the copies (generous: noisy machine)


def test_the_real_chairv2_pickle_is_well_within_the_limits(shared_data):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # not one sketch skipped
        ds = _load("chairv2", shared_data / "chairv2")
    assert (len(ds.train.sketches), len(ds.test.sketches)) == (952, 323)


def test_a_sketch_over_the_point_limit_is_skipped_and_counted(tmp_path, monkeypatch):
    long = _sketch(np.random.default_rng(3), n=500)
    root = _chairv2(tmp_path, extra={"/train/b_9": long})
    monkeypatch.setenv("SKETCHBENCH_MAX_POINTS_PER_SKETCH", "100")
    with pytest.warns(UserWarning, match=r"'/train/b_9'.*500 points, over the limit of 100"):
        ds = _load("chairv2", root)
    assert ds.meta["skipped_sketches"] == 1
    assert (len(ds.train.sketches), len(ds.test.sketches)) == (4, 2)


def test_a_file_over_its_byte_limit_is_refused_before_it_is_read(tmp_path, monkeypatch):
    root = _chairv2(tmp_path)
    monkeypatch.setenv("SKETCHBENCH_MAX_FILE_BYTES", "100")
    with pytest.raises(DataError, match=r"ChairV2_Coordinate' is [\d,]+ bytes, over the limit of 100 .*SKETCHBENCH_MAX_FILE_BYTES"):
        _load("chairv2", root)
    code, _, err = run_cli("data", "info", "chairv2", "--data-root", str(root))
    assert code == 2 and "over the limit of 100" in err and "Traceback" not in err


def _npy_claiming(path: Path, shape: tuple[int, ...]) -> None:
    """A tiny .npy file whose header claims ``shape`` (float64) but holds 24 bytes of data."""
    header = {"descr": "<f8", "fortran_order": False, "shape": shape}
    with open(path, "wb") as fh:
        np.lib.format.write_array_header_1_0(fh, header)
        fh.write(np.zeros(3).tobytes())


def test_an_npy_header_claiming_terabytes_is_refused_by_its_header(tmp_path):
    path = tmp_path / "huge.npy"
    _npy_claiming(path, (100_000_000_000, 3))
    with pytest.raises(DataError, match=r"huge.npy.*header claims.*truncated or corrupt"):
        data_limits().check_npy(path)
    # as a retrieval query: one line naming the file, no MemoryError
    with pytest.raises(DataError, match="huge.npy"):
        read_query(path)
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match="Python objects"):
        data_limits().check_npy(tmp_path / "obj.npy")
    np.save(tmp_path / "ok.npy", np.zeros((5, 3)))
    assert data_limits().check_npy(tmp_path / "ok.npy") == ((5, 3), np.dtype("<f8"))


def test_fscoco_skips_and_counts_an_npy_whose_header_lies(tmp_path):
    rng = np.random.default_rng(2)
    for user, name in (("1", "139"), ("1", "285"), ("2", "632"), ("2", "724")):
        (tmp_path / "images" / user).mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (20, 20)).save(tmp_path / "images" / user / f"{name}.jpg")
        (tmp_path / "vector_sketches" / user).mkdir(parents=True, exist_ok=True)
        np.save(tmp_path / "vector_sketches" / user / f"{name}.npy", _sketch(rng))
    (tmp_path / "val_normal.txt").write_text("285\n724\n")
    _npy_claiming(tmp_path / "vector_sketches" / "2" / "632.npy", (10**11, 3))
    with pytest.warns(UserWarning, match=r"632.npy.*header claims"):
        ds = _load("fscoco", tmp_path)
    assert ds.meta["skipped_sketches"] == 1 and len(ds.train.sketches) == 1 and len(ds.train.photo_ids) == 2


def test_query_files_over_the_limits_are_refused_naming_them(tmp_path, monkeypatch):
    stroke = tmp_path / "long.npy"
    np.save(stroke, _sketch(np.random.default_rng(4), n=300))
    assert len(read_query(stroke).vector) == 300
    monkeypatch.setenv("SKETCHBENCH_MAX_POINTS_PER_SKETCH", "100")
    with pytest.raises(DataError, match=r"long.npy.*300 points, over the limit of 100"):
        read_query(stroke)
    svg = tmp_path / "big.svg"
    svg.write_text('<svg xmlns="http://www.w3.org/2000/svg"><path d="M 1 1 L 5 5"/></svg>' + " " * 4000)
    monkeypatch.setenv("SKETCHBENCH_MAX_SVG_BYTES", "1000")
    with pytest.raises(DataError, match=r"big.svg.*over the limit of 1,000 .*SKETCHBENCH_MAX_SVG_BYTES"):
        read_query(svg)
