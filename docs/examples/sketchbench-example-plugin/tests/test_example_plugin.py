"""Tests of the example plugin, written with the helpers sketchbench ships for plugin authors.

Run from this directory: ``pytest tests`` (the plugin need not be installed).
"""

from __future__ import annotations

import json

import pytest
import sketchbench_example_plugin as plugin
import torch

from sketchbench.testing import build_method, registered_plugin, run_cli, tiny_data


@pytest.fixture(autouse=True)
def example_registered():
    """Register the plugin in-process unless it is installed (then its entry point loaded it)."""
    _, listed, _ = run_cli("list", "methods", "--format", "json")
    if any(row["name"] == "example-pixels" for row in json.loads(listed)):
        yield
        return
    with registered_plugin(plugin, "example"):
        yield


def test_dataset_pairs_every_sketch_with_a_photo():
    data = tiny_data("example-dots")
    photos = data.photos("train")
    assert photos.dtype == torch.uint8 and photos.shape[1] == 3
    assert int(data.pairs("train").max()) < photos.shape[0]
    sketches = data.sketches("train", 32)
    assert sketches.shape[1:] == (32, 32) and (sketches < 128).any()  # strokes were drawn


def test_method_trains_and_embeds():
    data = tiny_data("example-dots")
    method = build_method("example-pixels")
    before = [p.detach().clone() for p in method.modules().parameters()]
    method.train(data, [32])
    assert any(not torch.equal(a, b) for a, b in zip(before, method.modules().parameters()))
    emb = method.encode_sketch(data.sketches("test", 32)[:4])
    assert emb.shape == (4, method.net.out_features)
    assert torch.allclose(emb.norm(dim=1), torch.ones(4), atol=1e-4)


def test_runs_through_the_cli(tmp_path):
    out = tmp_path / "r.json"
    code, _, _ = run_cli("run", "-m", "example-pixels", "-d", "example-dots", "-p", "smoke", "--device", "cpu",
                         "-c", "32", "-o", str(out), "--cache-dir", str(tmp_path / "cache"))
    assert code == 0
    cells = json.loads(out.read_text())["cells"]
    assert [(c["method"], c["canvas"], c["status"]) for c in cells] == [("example-pixels", 32, "ok")]
