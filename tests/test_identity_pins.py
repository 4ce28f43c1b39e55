"""Identities are pinned: a cell's ``config_hash``, a run's hash, every trained model's checkpoint key
and the render key must stay byte-identical across refactors, or every finished results file and
every cached checkpoint (the shared cache of a long real-data run included) silently stops matching.

The values below were computed by the code before the runner was split into plan / identity /
models / loop; the smoke cell's hash is the one in ``benchmarks/baselines/smoke.json``. A change
here is a change of every user's cache: bump a ``version`` instead, on purpose.

SketchyNetV2's default selector changed once, on purpose, from the poster's GRU to the thumbnail CNN
(issue "query latency"): its *default* cells are new models with new hashes, and every GRU cell,
checkpoint and results file keeps its identity under ``--param encoder=gru --param val_fraction=0``
(pinned below with the values it had as the default; ``val_fraction``'s ``added_default`` keeps it).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sketchbench.method.registries import get_host
from sketchbench.run.config import RunConfig
from sketchbench.run.identity import config_hash
from sketchbench.run.loop import Runner
from sketchbench.run.presets import load_preset

ROOT = Path(__file__).resolve().parents[1]
CHAIN = ("triplet-sn", "sketchynet-v1", "sketchynet-v2")
#: SketchyNetV2 as it was the default before the thumbnail selector: the poster's GRU, no held-out split
GRU = {"encoder": "gru", "val_fraction": "0"}


def _runner(tmp_path: Path, **kw) -> Runner:
    kw.setdefault("methods", ["sketchynet-v2"])
    kw.setdefault("datasets", ["tiny"])
    return Runner(RunConfig(preset=load_preset("smoke"), cache_dir=tmp_path / "cache", **kw))


def _hashes(runner: Runner) -> dict[str, str]:
    return {f"{c.method}@{c.canvas}": runner.identity.cell_hash(c) for c in runner.plan.cells()}


def test_the_smoke_gate_cell_keeps_its_hash(tmp_path):
    baseline = json.loads((ROOT / "benchmarks" / "baselines" / "smoke.json").read_text())
    pinned = {c["config_hash"] for c in baseline["cells"] if c["method"] == "sketchynet-v2"}
    r = _runner(tmp_path, datasets=["synthetic"], teacher="triplet-sn", chain=False)
    assert _hashes(r) == {"sketchynet-v2@dynamic": "cf170735e7bc0189"}
    assert pinned == {"cf170735e7bc0189"}
    gru = _runner(tmp_path, datasets=["synthetic"], teacher="triplet-sn", chain=False, params=GRU)
    assert _hashes(gru) == {"sketchynet-v2@dynamic": "5856150418e3012d"}  # the smoke gate's cell before the change


def test_chain_cells_keep_their_hashes(tmp_path):
    chain = {"triplet-sn@64": "d8d07a37abc132be", "sketchynet-v1@32": "d024f2d1fc178066",
             "sketchynet-v1@64": "1ab07dde5be55832"}
    assert _hashes(_runner(tmp_path)) == {**chain, "sketchynet-v2@dynamic": "6c78802cdb32f999"}
    assert _hashes(_runner(tmp_path, params=GRU)) == {**chain, "sketchynet-v2@dynamic": "5f64fc2e58385166"}


def test_variants_keep_their_hashes(tmp_path):
    weights = tmp_path / "w.pt"
    weights.write_bytes(b"sketchbench identity pin")
    given = _runner(tmp_path, params={"lambda_f": "0.4", "sketchynet-v1.epochs": "2"})
    assert _hashes(given)["sketchynet-v2@dynamic"] == "890e7bf3a025f6bc"
    assert given.identity.variant("sketchynet-v2") == "lambda_f=0.4,sketchynet-v1.epochs=2"
    gru = _runner(tmp_path, params={**GRU, "lambda_f": "0.4", "sketchynet-v1.epochs": "2"})
    assert _hashes(gru)["sketchynet-v2@dynamic"] == "57e05d55a86cc3fb"
    untrained = _runner(tmp_path, methods=["triplet-sn"], train=False)
    assert _hashes(untrained) == {"triplet-sn@32": "4e509316fde5ce66", "triplet-sn@64": "e9221e7a257de991"}
    own = _runner(tmp_path, methods=["triplet-sn"], weights=(str(weights),), canvases=[32])
    assert _hashes(own) == {"triplet-sn@32": "e6d9383bf65ef417"}
    assert config_hash(own.config) == "88e66b5d958d1cf2"
    assert config_hash(_runner(tmp_path).config) == "6cfe9b0a8a76d3c3"


@pytest.fixture
def untrained_chain(monkeypatch):
    """The chain's ``train`` made a no-op: keys do not depend on what training does."""
    host = get_host()
    for name in CHAIN:
        monkeypatch.setattr(host.methods.get(name), "train", lambda self, data, canvases, teacher=None: None)


def test_trained_models_keep_their_checkpoint_and_render_keys(tmp_path, untrained_chain):
    r = _runner(tmp_path, params={**GRU, "lambda_f": "0.4"})
    method, key, _ = r.models.obtain("sketchynet-v2", "triplet-sn", "tiny", "dynamic", 0)
    data = r.models.data("tiny", 0)
    data.sketches("test", 32)
    # SketchyNetV2's key moved once on purpose: version 2 (its selector a registered CanvasSelector;
    # version-1 checkpoints do not fit it). Its upstream's and teacher's keys are unchanged.
    assert (key, method.trained_key, data.fingerprint) == ("7d02eb452fcd3d1c", "7d02eb452fcd3d1c", "db3be5a0daf75e05")
    stored = sorted(str(p.relative_to(tmp_path / "cache")) for p in (tmp_path / "cache").rglob("*.pt"))
    assert stored == ["canvases/de8b572a6ae69018.pt", "checkpoints/408e1e773076c753.pt",
                      "checkpoints/7d02eb452fcd3d1c.pt", "checkpoints/d112e723be1ee63d.pt"]
    # the default selector (thumbnail) is another model on the same upstream: a new key, nothing else moves
    default = _runner(tmp_path, params={"lambda_f": "0.4"})
    _, key, _ = default.models.obtain("sketchynet-v2", "triplet-sn", "tiny", "dynamic", 0)
    assert key == "1eac39d596b80ed6"
    stored = sorted(str(p.relative_to(tmp_path / "cache")) for p in (tmp_path / "cache").rglob("*.pt"))
    assert set(stored) == {"canvases/de8b572a6ae69018.pt", "checkpoints/408e1e773076c753.pt", "checkpoints/7d02eb452fcd3d1c.pt",
                           f"checkpoints/{key}.pt", "checkpoints/d112e723be1ee63d.pt"}
