"""The spine: registry, presets, params, metrics, FLOPs convention, results files."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from sketchbench.base.errors import PluginError, SketchbenchError
from sketchbench.cli.options import FLAGS
from sketchbench.host.registry import Registry
from sketchbench.measure.flops import count_flops, flop_counter_mode_flops
from sketchbench.measure.metrics import ranks, retrieval_metrics
from sketchbench.method.backbones import create_backbone
from sketchbench.method.params import Param, identity_params, parse_key_values, resolve_params
from sketchbench.results.schema import SCHEMA_VERSION, load_results, new_results, write_results
from sketchbench.run.presets import check_canvas, load_preset, preset_names


def test_registry_refuses_duplicates_naming_both_origins():
    reg = Registry("method")
    reg.add("a", "x:y", origin="plugin-one")
    with pytest.raises(PluginError, match="plugin-one.*plugin-two"):
        reg.add("a", "x:z", origin="plugin-two")


def test_registry_did_you_mean_and_lazy_loading():
    reg = Registry("method")
    entry = reg.add("triplet-sn", "json:dumps", origin="p")
    assert not entry.is_loaded
    with pytest.raises(SketchbenchError, match="Did you mean 'triplet-sn'"):
        reg.get("triplet-sm")
    assert reg.get("triplet-sn") is json.dumps
    assert entry.is_loaded


def test_registry_broken_lazy_target_is_a_plugin_error():
    reg = Registry("method")
    reg.add("bad", "no_such_module_xyz:Thing", origin="p")
    with pytest.raises(PluginError, match="no_such_module_xyz"):
        reg.get("bad")


def test_presets_load_and_override():
    assert {"smoke", "cpu", "paper"} <= set(preset_names())
    paper = load_preset("paper")
    assert paper.canvases == (32, 64, 128, 256) and paper.photo_size == 256
    p = load_preset("smoke", {"epochs": "3", "canvases": "16,24"})
    assert p.epochs == 3 and p.canvases == (16, 24) and p.full_canvas == 24
    with pytest.raises(SketchbenchError, match="unknown preset key"):
        load_preset("smoke", {"epoch": "3"})
    with pytest.raises(SketchbenchError, match="not a valid int"):
        load_preset("smoke", {"epochs": "many"})
    with pytest.raises(SketchbenchError, match="unknown preset"):
        load_preset("smokey")


@pytest.mark.parametrize("bad", ["0", "-3", "2000", "abc", "3.5", ""])
def test_bad_canvas(bad):
    with pytest.raises(SketchbenchError):
        check_canvas(bad)


def test_identity_leaves_later_parameters_out_at_the_default_they_were_added_with():
    """A parameter added later (``since``) stays out of identities at its default; after its default
    changes (``added_default`` = the old one) it stays out at the *old* value, so what was made before
    keeps its identity, and the new default enters it."""
    added = {"lr": Param(0.1), "hold": Param(0.0, since="0.3")}
    changed = {"lr": Param(0.1), "hold": Param(0.2, since="0.3", added_default=0.0)}
    assert identity_params(added, "cpu", {"lr": 0.1, "hold": 0.0}) == {"lr": 0.1}
    assert identity_params(added, "cpu", {"lr": 0.1, "hold": 0.2}) == {"lr": 0.1, "hold": 0.2}
    assert identity_params(changed, "cpu", {"lr": 0.1, "hold": 0.0}) == {"lr": 0.1}  # as before the change
    assert identity_params(changed, "cpu", {"lr": 0.1, "hold": 0.2}) == {"lr": 0.1, "hold": 0.2}  # as before, too
    assert resolve_params("m", changed, "cpu", {})["hold"] == 0.2  # the new default is what runs


def test_params_resolution():
    declared = {"lr": Param(0.1, presets={"smoke": 0.5}), "enc": Param("gru", choices=("gru", "lstm")), "on": Param(True)}
    assert resolve_params("m", declared, "smoke", {}) == {"lr": 0.5, "enc": "gru", "on": True}
    assert resolve_params("m", declared, "cpu", {"lr": "0.2", "on": "false"}) == {"lr": 0.2, "enc": "gru", "on": False}
    with pytest.raises(SketchbenchError, match="Did you mean 'lr'"):
        resolve_params("m", declared, "cpu", {"lrr": "1"})
    with pytest.raises(SketchbenchError, match="must be one of"):
        resolve_params("m", declared, "cpu", {"enc": "rnn"})
    with pytest.raises(SketchbenchError, match="expected a float"):
        resolve_params("m", declared, "cpu", {"lr": "fast"})
    with pytest.raises(SketchbenchError, match="KEY=VALUE"):
        parse_key_values(["novalue"], "--param")


def test_ranks_count_ties_against_the_method():
    d = torch.tensor([[0.1, 0.5, 0.9], [0.5, 0.5, 0.1], [0.3, 0.2, 0.1]])
    t = torch.tensor([0, 1, 0])
    r = ranks(d, t)
    assert r.tolist() == [1, 3, 3]  # the tie in row 2 counts against the method
    m = retrieval_metrics(r)
    assert m["acc1"] == pytest.approx(100 / 3) and m["acc10"] == 100.0 and m["mean_rank"] == pytest.approx(7 / 3)


def test_non_finite_distances_fail_the_cell():
    """A NaN embedding must never score acc@1 0 (or rank first) silently: the cell fails in one line."""
    for bad in (float("nan"), float("inf")):
        with pytest.raises(SketchbenchError, match="1 of 1 queries have NaN or infinite distances"):
            ranks(torch.tensor([[bad, 0.5]]), torch.tensor([0]))


def test_several_sketches_may_share_a_photo():
    d = torch.tensor([[0.1, 0.9], [0.2, 0.1], [0.05, 0.4]])
    assert ranks(d, torch.tensor([0, 0, 0])).tolist() == [1, 2, 1]


@pytest.mark.parametrize(
    "backbone,gflops,params_m",
    [("vgg16", 40.18, 14.71), ("mobilenetv2_100", 0.833, 2.22)],
)
def test_flops_reproduce_the_paper(backbone, gflops, params_m):
    net = create_backbone(backbone).eval()
    f, p = count_flops(net, torch.zeros(1, 3, 256, 256))
    assert f / 1e9 == pytest.approx(gflops, abs=0.2 if gflops > 10 else 0.005)
    assert p / 1e6 == pytest.approx(params_m, abs=0.01)


def test_flops_cross_check_with_torch_flop_counter():
    """FlopCounterMode counts conv/matmul 2×MACs only; our convention adds bias, BN, activation
    and pooling element ops, so it is slightly larger, never smaller, and close for a conv net."""
    net = create_backbone("mobilenetv2_100").eval()
    x = torch.zeros(1, 3, 128, 128)
    ours, _ = count_flops(net, x)
    ref = flop_counter_mode_flops(net, x)
    assert ref < ours < ref * 1.15
    conv = nn.Sequential(nn.Conv2d(3, 8, 3, bias=False))
    assert count_flops(conv, torch.zeros(1, 3, 10, 10))[0] == pytest.approx(flop_counter_mode_flops(conv, torch.zeros(1, 3, 10, 10)))


def test_flops_scale_with_canvas():
    net = create_backbone("mobilenetv2_100").eval()
    f32, _ = count_flops(net, torch.zeros(1, 3, 32, 32))
    f256, _ = count_flops(net, torch.zeros(1, 3, 256, 256))
    assert 50 < f256 / f32 < 70


def test_results_roundtrip_and_bad_files(tmp_path):
    res = new_results({"a": 1}, "h", "cpu")
    path = tmp_path / "r.json"
    write_results(path, res)
    assert load_results(path)["schema_version"] == SCHEMA_VERSION
    (tmp_path / "trunc.json").write_text(path.read_text()[:50])
    with pytest.raises(SketchbenchError, match="not valid JSON"):
        load_results(tmp_path / "trunc.json")
    (tmp_path / "foreign.json").write_text('{"hello": 1}')
    with pytest.raises(SketchbenchError, match="not a sketchbench results file"):
        load_results(tmp_path / "foreign.json")
    newer = dict(res, schema_version=SCHEMA_VERSION + 1)
    (tmp_path / "newer.json").write_text(json.dumps(newer))
    with pytest.raises(SketchbenchError, match="newer"):
        load_results(tmp_path / "newer.json")
    with pytest.raises(SketchbenchError, match="does not exist"):
        load_results(tmp_path / "missing.json")
    (tmp_path / "bin.json").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(SketchbenchError):
        load_results(tmp_path / "bin.json")


def test_pretrained_offline_fails_clearly(monkeypatch):
    """Only timm's hub serves this backbone, and the hub is unreachable here: one line naming the sources."""
    monkeypatch.setattr("sketchbench_weights.hub.hub_reachable", lambda timeout=2.0: False)
    with pytest.raises(SketchbenchError, match="no pretrained weights for backbone 'test_efficientnet' are installed") as err:
        create_backbone("test_efficientnet", pretrained=True)
    assert "timm-hub: needs the internet" in str(err.value) and "\n" not in str(err.value)


def test_weights_file_loads_and_bad_weights_fail(tmp_path):
    src = create_backbone("test_efficientnet")
    torch.save({"state_dict": src.state_dict()}, tmp_path / "w.pth")
    from sketchbench.method.backbones import load_weights

    dst = create_backbone("test_efficientnet")
    load_weights(dst, tmp_path / "w.pth")
    for (k, a), b in zip(src.state_dict().items(), dst.state_dict().values()):
        assert torch.equal(a, b), k
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(SketchbenchError, match="not a readable"):
        load_weights(dst, tmp_path / "junk.pth")
    torch.save({"other": torch.zeros(3)}, tmp_path / "nomatch.pth")
    with pytest.raises(SketchbenchError, match="no tensor matches"):
        load_weights(dst, tmp_path / "nomatch.pth")
    # a checkpoint that fills one tensor of many: refused with the count, unless asked for
    first = next(iter(src.state_dict()))
    torch.save({first: src.state_dict()[first]}, tmp_path / "one.pth")
    total = sum(1 for k in dst.state_dict() if not k.endswith("num_batches_tracked"))
    with pytest.raises(SketchbenchError, match=f"matched 1 of {total} tensors") as err:
        load_weights(dst, tmp_path / "one.pth")
    assert "pass partial_weights" in str(err.value) and "\n" not in str(err.value)
    assert "pass --partial-weights" in err.value.spelled(FLAGS)  # as the command line says it
    load_weights(dst, tmp_path / "one.pth", partial=True)
    # a tensor of the wrong shape counts as unfilled, and the message says which
    bad = dict(src.state_dict())
    bad[first] = torch.zeros(1, 2, 3)
    torch.save(bad, tmp_path / "shape.pth")
    with pytest.raises(SketchbenchError, match="has shape"):
        load_weights(dst, tmp_path / "shape.pth")


@pytest.mark.parametrize("value,hidden_bar", [("1", True), ("", False)])
def test_training_bar_honours_tqdm_disable(monkeypatch, value, hidden_bar):
    """tqdm ignores TQDM_DISABLE once ``disable=`` is passed; sketchbench's bars must not."""
    from sketchbench.method.training import Trainer

    monkeypatch.setenv("TQDM_DISABLE", value)
    trainer = Trainer([torch.zeros(1, requires_grad=True)], lr=0.1, device=torch.device("cpu"))
    for _ in trainer.epochs(1, 1):
        assert trainer._bar.disable is hidden_bar
