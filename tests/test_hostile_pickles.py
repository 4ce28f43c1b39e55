"""Hostile pickles (issue 27, class 1): each is built here, refused in one line naming the file, and
refused *before* it expands: the checks run under a memory cap in a subprocess, so an input that
gets through fails the test instead of swapping the machine."""

from __future__ import annotations

import codecs
import json
import pickle
import struct
import sys
from pathlib import Path

import numpy as np
import pytest

from sketchbench import DataError
from sketchbench.data.safe_pickle import MAX_DEPTH, load_pickle


class _Reduce:
    """Pickles as ``fn(*args)`` (with ``state`` set on the result by BUILD, when given)."""

    def __init__(self, fn, args, state=None) -> None:
        self.fn, self.args, self.state = fn, args, state

    def __reduce__(self):
        return (self.fn, self.args) if self.state is None else (self.fn, self.args, self.state)


def _nested_shared(levels: int = 4, width: int = 100) -> list:
    """``width ** levels`` numbers in a pickle of ~1 kB: each level holds one list ``width`` times."""
    x: list = [1.5] * width
    for _ in range(levels - 1):
        x = [x] * width
    return x


def _codecs_tower(depth: int = 28):
    x = _Reduce(codecs.encode, ("ab", "latin1"))
    for _ in range(depth):
        x = _Reduce(codecs.encode, (x, "hex_codec"))
    return x


def _self_containing() -> list:
    a: list = [1.0]
    a.append(a)
    return a


def _deep(depth: int) -> list:
    x: list = [1.0]
    for _ in range(depth):
        x = [x]
    return x


def _shared_raw_bytes() -> dict:
    """1,000 arrays rebuilt from one raw buffer that the pickle stores once (its memo)."""
    raw = bytes(8 * 3 * 2000)
    reconstruct = np.ndarray.__reduce__(np.zeros(1))[0]
    return {f"/train/a_{k}": _Reduce(reconstruct, (np.ndarray, (0,), b"b"), (1, (2000, 3), np.dtype("f8"), False, raw))
            for k in range(1000)}


#: name -> (pickle bytes, what the one-line refusal says)
def hostile_pickles() -> dict[str, tuple[bytes, str]]:
    reconstruct = np.ndarray.__reduce__(np.zeros(1))[0]
    return {
        "bytearray": (pickle.dumps(_Reduce(bytearray, (400_000_000,)), protocol=2), "bytearray"),
        "bytes-of-size": (pickle.dumps(_Reduce(bytes, (1_500_000_000,)), protocol=2), "bytes"),
        "shape-alone": (pickle.dumps(_Reduce(reconstruct, (np.ndarray, (150_000_000, 3), b"b")), protocol=2), "could hold"),
        "ndarray-call": (pickle.dumps(_Reduce(np.ndarray, ((150_000_000, 3),)), protocol=2), "could hold"),
        "build-claims-shape": (pickle.dumps(_Reduce(reconstruct, (np.ndarray, (0,), b"b"),
                                                    (1, (150_000_000, 3), np.dtype("f8"), False, b"")), protocol=2),
                               "does not match its raw bytes"),
        "shared-raw-bytes": (pickle.dumps(_shared_raw_bytes(), protocol=4), "shared"),
        "nested-memo": (pickle.dumps({"/train/a_1": _nested_shared()}, protocol=4), "shared"),
        "codecs-tower": (pickle.dumps(_codecs_tower(), protocol=2), "_codecs.encode"),
        "cycle": (pickle.dumps({"/train/a_1": _self_containing()}, protocol=4), "cycle"),
        "deep": (pickle.dumps({"/train/a_1": _deep(200)}, protocol=4), f"deeper than {MAX_DEPTH}"),
        "object-array": (pickle.dumps({"/train/a_1": np.array([1, "x"], dtype=object)}, protocol=4), "dtype"),
        "structured-array": (pickle.dumps({"/train/a_1": np.zeros(3, dtype=[("x", "f8"), ("y", "f8")])}, protocol=4),
                             "dtype"),
        "bytearray8-claims-a-terabyte": (b"\x80\x05\x96" + struct.pack("<Q", 2**40) + b"xyz.", "truncated"),
        "binbytes8-claims-a-terabyte": (b"\x80\x04\x8e" + struct.pack("<Q", 2**40) + b"xyz.", "pickle"),
        "frame-claims-a-terabyte": (b"\x80\x04\x95" + struct.pack("<Q", 2**40) + b"N.", "truncated"),
    }


@pytest.mark.parametrize("name", sorted(hostile_pickles()))
def test_each_hostile_pickle_is_refused_in_one_line(tmp_path, name):
    data, says = hostile_pickles()[name]
    path = tmp_path / f"{name}.pkl"
    path.write_bytes(data)
    with pytest.raises(DataError) as err:
        load_pickle(path)
    msg = str(err.value)
    assert f"{name}.pkl" in msg and says in msg and "\n" not in msg, msg


def test_a_flood_of_small_objects_is_counted_as_it_is_built(tmp_path, monkeypatch):
    # 200,000 empty sets cost 2 bytes each in the file and ~216 bytes each once built
    path = tmp_path / "sets.pkl"
    path.write_bytes(b"\x80\x04(" + b"\x8f" * 200_000 + b"l.")
    monkeypatch.setenv("SKETCHBENCH_MAX_DECODED_BYTES", str(8 * 2**20))
    with pytest.raises(DataError, match=r"sets\.pkl.*more than 8,388,608 bytes.*SKETCHBENCH_MAX_DECODED_BYTES"):
        load_pickle(path)


def test_plain_data_and_arrays_of_every_protocol_still_load(tmp_path):
    rng = np.random.default_rng(0)
    shared = rng.normal(size=(4, 3))
    obj = {"a": rng.normal(size=(50, 3)).astype(np.float32), "b": [[1, 2, 3], [4.5, None, True]], "c": ("x", b"y"),
           "d": {1, 2}, "e": frozenset({3}), "f": [shared, shared], "g": np.arange(6, dtype=np.uint8).reshape(2, 3),
           "h": np.complex128(1 + 2j), "i": np.asfortranarray(rng.normal(size=(3, 4)))}
    for protocol in range(0, pickle.HIGHEST_PROTOCOL + 1):
        path = tmp_path / f"p{protocol}.pkl"
        path.write_bytes(pickle.dumps(obj, protocol=protocol))
        out = load_pickle(path)
        for k in ("a", "g", "i"):
            np.testing.assert_array_equal(out[k], obj[k])
            assert out[k].dtype == obj[k].dtype
        assert out["b"] == obj["b"] and out["c"] == obj["c"] and out["d"] == obj["d"] and out["e"] == obj["e"]
        np.testing.assert_array_equal(out["f"][1], shared)
        assert out["h"] == obj["h"]


def test_special_files_are_refused_not_read(tmp_path):
    link = tmp_path / "zero.pkl"
    link.symlink_to("/dev/zero")
    with pytest.raises(DataError, match=r"zero\.pkl.*device.*not a regular file"):
        load_pickle(link)
    fifo = tmp_path / "fifo.pkl"
    import os

    os.mkfifo(fifo)
    with pytest.raises(DataError, match=r"fifo\.pkl.*FIFO"):
        load_pickle(fifo)  # would block forever if it were opened for a plain read


_DRIVER = """
import json, sys, warnings
warnings.simplefilter("ignore")
from sketchbench import DataError, DatasetOptions
from sketchbench.data.safe_pickle import load_pickle
from sketchbench.method.registries import get_host
out = {}
for path in sys.argv[1:]:
    try:
        if path.endswith("ChairV2_Coordinate"):
            root = path.rsplit("/", 1)[0]
            get_host().datasets.get("chairv2")().load(DatasetOptions(root=root, photo_size=16, need_photos=False))
        else:
            load_pickle(path)
        out[path] = "loaded"
    except DataError as exc:
        out[path] = str(exc)
print(json.dumps(out))
"""


def test_no_hostile_pickle_expands_past_the_memory_cap(tmp_path, capped):
    """Every hostile pickle, loaded in one capped process: refused before it costs 1 GB or 60 s."""
    paths = []
    for name, (data, _) in hostile_pickles().items():
        folder = tmp_path / name
        folder.mkdir()
        (folder / "ChairV2_Coordinate").write_bytes(data)  # through the dataset loader as well
        (folder / "raw.pkl").write_bytes(data)
        paths += [str(folder / "raw.pkl"), str(folder / "ChairV2_Coordinate")]
    proc = capped(["-c", _DRIVER, *paths])
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert all(v != "loaded" and "\n" not in v for v in out.values()), out


def test_the_cli_refuses_a_hostile_dataset_pickle_in_one_line(tmp_path, capped):
    (tmp_path / "ChairV2_Coordinate").write_bytes(hostile_pickles()["nested-memo"][0])
    proc = capped(["-m", "sketchbench", "data", "info", "chairv2", "--data-root", str(tmp_path)])
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "ChairV2_Coordinate" in lines[0] and "Traceback" not in proc.stderr, proc.stderr


def test_the_real_chairv2_pickle_loads_within_the_budgets(shared_data):
    data = load_pickle(shared_data / "chairv2" / "ChairV2_Coordinate")
    assert len(data) == 1275 and all(v.dtype == np.float64 and v.shape[1] == 3 for v in data.values())


if __name__ == "__main__":  # write the hostile files into a folder, for a manual look
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    for n, (b, _) in hostile_pickles().items():
        (out / f"{n}.pkl").write_bytes(b)
