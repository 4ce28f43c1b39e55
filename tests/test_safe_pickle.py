"""The restricted unpickler: plain data and NumPy arrays load; anything that could run code is refused."""

from __future__ import annotations

import os
import pickle
import uuid
from pathlib import Path

import numpy as np
import pytest

from sketchbench.base.errors import DataError
from sketchbench.data.safe_pickle import load_pickle


class _Payload:
    """Unpickling this would run a shell command (the classic pickle attack)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _write(path: Path, obj: object, protocol: int) -> Path:
    path.write_bytes(pickle.dumps(obj, protocol=protocol))
    return path


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_numpy_dict_loads(tmp_path, protocol):
    rng = np.random.default_rng(0)
    obj = {
        "/train/a_1": rng.normal(size=(7, 3)),
        "/test/b_c_2": np.asfortranarray(rng.normal(size=(4, 3))),
        "scalars": [np.float64(1.5), np.int64(3), 2, 2.5, "x", (1, b"raw"), {1, 2}, None, True],
        "u8": np.arange(12, dtype=np.uint8).reshape(3, 4)[:, ::2],
    }
    out = load_pickle(_write(tmp_path / "ok.pkl", obj, protocol))
    assert set(out) == set(obj)
    for k in ("/train/a_1", "/test/b_c_2", "u8"):
        assert out[k].dtype == obj[k].dtype
        np.testing.assert_array_equal(out[k], obj[k])
    assert out["scalars"] == obj["scalars"]


@pytest.mark.parametrize("protocol", [2, 4])
def test_code_execution_refused(tmp_path, protocol):
    marker = Path("/tmp") / f"pwned-{uuid.uuid4().hex}"
    path = _write(tmp_path / "evil.pkl", {"/train/x_1": _Payload(marker)}, protocol)
    with pytest.raises(DataError) as err:
        load_pickle(path)
    msg = str(err.value)
    assert "evil.pkl" in msg and "system" in msg and "\n" not in msg
    assert not marker.exists(), "the payload ran"


def test_other_globals_refused(tmp_path):
    # a global that is harmless-looking but not on the list (collections.OrderedDict) is refused too
    import collections

    path = _write(tmp_path / "od.pkl", collections.OrderedDict(a=1), 2)
    with pytest.raises(DataError, match="collections.OrderedDict"):
        load_pickle(path)
    # builtins beyond plain data: eval / getattr
    path = tmp_path / "eval.pkl"
    path.write_bytes(b"cbuiltins\neval\n(S'1+1'\ntR.")
    with pytest.raises(DataError, match="builtins.eval"):
        load_pickle(path)


def test_truncated_and_malformed(tmp_path):
    good = pickle.dumps({"a": np.zeros((50, 3))}, protocol=3)
    trunc = tmp_path / "trunc.pkl"
    trunc.write_bytes(good[: len(good) // 2])
    with pytest.raises(DataError, match="trunc.pkl") as err:
        load_pickle(trunc)
    assert "\n" not in str(err.value)
    junk = tmp_path / "junk.pkl"
    junk.write_bytes(b"this is not a pickle at all")
    with pytest.raises(DataError, match="junk.pkl"):
        load_pickle(junk)
    with pytest.raises(DataError, match="does not exist"):
        load_pickle(tmp_path / "absent.pkl")


def test_real_chairv2_pickle(shared_data):
    data = load_pickle(shared_data / "chairv2" / "ChairV2_Coordinate")
    assert isinstance(data, dict) and len(data) == 1275
    value = data["/test/9910-02-carbon_1"]
    assert value.dtype == np.float64 and value.shape[1] == 3
