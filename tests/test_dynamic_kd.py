"""The canvas selector over any student: SketchyNetV2's ``upstream`` parameter, the poster's dynamic
KD rows (``b-regress-dyn``, ``b-akd-dyn``, ``b-pkt-dyn``) through the runner, registration metadata
that repeats the classes', and ``sketchbench flops --param``."""

from __future__ import annotations

import json

import pytest
from sketchbench_dynamic.sketchynet_v2 import BAKDDyn, BPKTDyn, BRegressDyn, SketchyNetV2

from sketchbench import SketchbenchError
from sketchbench.method.registries import get_host
from sketchbench.run.config import RunConfig
from sketchbench.run.loop import Runner
from sketchbench.run.presets import load_preset
from sketchbench.testing import run_cli

DYN_KD = {"b-regress-dyn": "b-regress", "b-akd-dyn": "b-akd", "b-pkt-dyn": "b-pkt"}


def runner(methods, tmp_path=None, **params) -> Runner:
    return Runner(RunConfig(methods=list(methods), datasets=["tiny"], preset=load_preset("smoke"), params=params,
                            device="cpu", cache_dir=(tmp_path / "cache") if tmp_path else None,
                            out=(tmp_path / "r.json") if tmp_path else None))


# -- registration ---------------------------------------------------------------------------------
def test_registration_metadata_repeats_the_classes():
    """`sketchbench list` shows the register call's info without importing: it must say what the
    class says, for every method of the students' and dynamic plugins."""
    defaults = {"needs_teacher": False, "dynamic": False, "default_teacher": None, "upstream": None}
    checked = 0
    for entry in get_host().methods:
        if entry.origin.split()[0] not in ("sketchbench_dynamic", "sketchbench_students"):
            continue
        cls = entry.load()
        for key in ("kind", "needs_teacher", "default_teacher", "dynamic", "upstream", "description"):
            assert getattr(cls, key) == entry.info.get(key, defaults.get(key)), (entry.name, key)
        checked += 1
    assert checked >= 14


def test_dynamic_kd_rows_are_the_selector_on_each_kd_student():
    for cls, up in ((BRegressDyn, "b-regress"), (BAKDDyn, "b-akd"), (BPKTDyn, "b-pkt")):
        assert issubclass(cls, SketchyNetV2) and cls.dynamic and cls.upstream == up
        assert "upstream" not in cls.params  # fixed: the row is named after its upstream
        assert cls.upstream_for({}) == up
    assert SketchyNetV2.upstream_for({"upstream": "b-akd"}) == "b-akd"
    assert SketchyNetV2.upstream_for({"upstream": "sketchynet-v1"}) == SketchyNetV2.upstream == "sketchynet-v1"
    assert SketchyNetV2.params["upstream"].since is not None  # at its default: out of every hash


# -- the runner resolves the upstream from the parameters -------------------------------------------
@pytest.mark.parametrize("name", sorted(DYN_KD))
def test_runner_chains_dynamic_kd_rows(name):
    r = runner([name])
    up = DYN_KD[name]
    assert r.plan.upstream_of(name) == up
    assert r.plan.teacher_for(name) == "triplet-sn" and r.plan.takes_teacher(name)
    assert set(r.plan.chain_methods()) == {name, up, "triplet-sn"}
    cells = r.plan.cells()
    assert [c.canvas for c in cells if c.method == name] == ["dynamic"]
    assert sorted(c.canvas for c in cells if c.role == "upstream") == [32, 64]


def test_sketchynet_v2_upstream_param_chooses_the_student():
    r = runner(["sketchynet-v2"], upstream="b-pkt")
    assert r.plan.upstream_of("sketchynet-v2") == "b-pkt"
    assert "sketchynet-v1" not in r.plan.chain_methods() and "b-pkt" in r.plan.chain_methods()
    default = runner(["sketchynet-v2"])
    explicit = runner(["sketchynet-v2"], upstream="sketchynet-v1")
    cell = [c for c in default.plan.cells() if c.method == "sketchynet-v2"][0]
    # the new parameter at its default leaves the cell's identity as it was
    assert default.identity.cell_hash(cell) == explicit.identity.cell_hash(cell) != r.identity.cell_hash(cell)
    assert r.identity.variant("sketchynet-v2") == "upstream=b-pkt"


def test_upstream_params_enter_the_cell_hash_and_variant_only_when_given():
    default = runner(["sketchynet-v2"])
    resnet = runner(["sketchynet-v2"], **{"sketchynet-v1.backbone": "resnet18"})
    cell = [c for c in default.plan.cells() if c.method == "sketchynet-v2"][0]
    assert default.plan.upstream_given("sketchynet-v2") == {}
    assert resnet.plan.upstream_given("sketchynet-v2") == {"sketchynet-v1.backbone": "resnet18"}
    assert default.identity.cell_hash(cell) != resnet.identity.cell_hash(cell)  # two backbone rows of one file stay apart
    assert resnet.identity.variant("sketchynet-v2") == "sketchynet-v1.backbone=resnet18"
    assert default.identity.variant("sketchynet-v2") == ""


def test_bad_upstreams_fail_with_one_line():
    with pytest.raises(SketchbenchError, match="loops"):
        runner(["sketchynet-v2"], upstream="sketchynet-v2")
    with pytest.raises(SketchbenchError, match="b-akdd"):
        runner(["sketchynet-v2"], upstream="b-akdd")


def test_b_akd_dyn_runs_through_the_runner(tmp_path):
    """Trains the teacher, then B-AKD (multi-canvas), then the selector on it; evaluates the
    upstream at every canvas and the dynamic row with its canvas histogram; FLOPs = the upstream's
    at the chosen canvases + the selector's."""
    results, code = runner(["b-akd-dyn"], tmp_path, rl_epochs="2", **{"b-akd.at_maps": "spatial"}).run()
    assert int(code) == 0, [c.get("error") for c in results["cells"]]
    cells = results["cells"]
    (dyn,) = [c for c in cells if c["method"] == "b-akd-dyn"]
    assert dyn["canvas"] == "dynamic" and sum(dyn["canvas_histogram"].values()) == dyn["num_queries"]
    assert dyn["teacher"] == "triplet-sn" and dyn["variant"] == "rl_epochs=2,b-akd.at_maps=spatial"
    ups = {c["canvas"]: c for c in cells if c["method"] == "b-akd"}
    assert set(ups) == {32, 64} and all(c["role"] == "upstream" for c in ups.values())
    hist = {int(k): v for k, v in dyn["canvas_histogram"].items()}
    encoder = sum(ups[c]["gflops"] * n for c, n in hist.items()) / dyn["num_queries"]
    assert dyn["gflops"] == pytest.approx(encoder + dyn["selector_gflops"], rel=1e-6)
    assert dyn["selector_gflops"] > 0 and dyn["params_m"] > ups[32]["params_m"]


# -- sketchbench flops --param ----------------------------------------------------------------------
def test_flops_param_sets_a_method_parameter():
    code, out, err = run_cli("flops", "--method", "triplet-sn", "--param", "conv1_stride=2", "--canvas", "256",
                             "--format", "json")
    assert code == 0, err
    assert round(json.loads(out)["gflops"], 3) == 5.196  # the poster's 5.28 G is this stride-2 conv1
    code, out, _ = run_cli("flops", "--method", "triplet-sn", "--param", "conv1_stride=2", "--canvas", "256")
    assert code == 0 and "5.1958" in out
    code, out, _ = run_cli("flops", "--method", "triplet-sn", "--canvas", "256", "--format", "json")
    assert round(json.loads(out)["gflops"], 3) == 2.417  # the published stride 3


def test_flops_param_errors():
    code, _, err = run_cli("flops", "--method", "triplet-sn", "--param", "conv1_strid=2", "--canvas", "32")
    assert code == 2 and "conv1_stride" in err
    code, _, err = run_cli("flops", "--backbone", "vgg16", "--param", "x=1", "--canvas", "32")
    assert code == 2 and "--method" in err
    code, _, err = run_cli("flops", "--method", "b-akd-dyn", "--param", "sketchynet-v1.backbone=resnet18", "-c", "32")
    assert code == 2 and "b-akd" in err


def test_flops_of_a_dynamic_method_is_its_upstreams_branch():
    code, out, err = run_cli("flops", "--method", "b-akd-dyn", "--canvas", "256", "--format", "json")
    assert code == 0, err
    row = json.loads(out)
    assert round(row["gflops"], 3) == 0.833 and row["params"] == 2_223_872 and "b-akd" in row["name"]
    code, out, _ = run_cli("flops", "--method", "sketchynet-v2", "--param", "upstream=b-pkt",
                           "--param", "b-pkt.backbone=resnet18", "--canvas", "256", "--format", "json")
    assert code == 0 and json.loads(out)["params"] == 11_176_512
