"""compare (the regression gate), merge (shards) and plot."""

from __future__ import annotations

import copy
import json

import pytest

from sketchbench.results.schema import load_results
from sketchbench.testing import run_cli

FAST = ["-m", "triplet-timm", "-d", "tiny", "-p", "smoke", "--param", "backbone=test_efficientnet"]
TIMING = ("latency_ms", "query_latency_ms", "query_breakdown_ms", "train_seconds", "traceback")


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    """One smoke grid over three canvases and two seeds, shared by the tests below."""
    tmp = tmp_path_factory.mktemp("grid")
    out = tmp / "base.json"
    code, _, err = run_cli("run", *FAST, "--canvas", "32", "--canvas", "40", "--seed", "0",
                           "--seed", "1", "--cache-dir", str(tmp / "cache"), "-o", str(out))
    assert code == 0, err
    return tmp, out


def _write(path, data):
    path.write_text(json.dumps(data))
    return path


def test_identical_rerun_passes_the_gate(grid):
    tmp, base = grid
    again = tmp / "again.json"
    code, _, err = run_cli("run", *FAST, "--canvas", "32", "--canvas", "40", "--seed", "0",
                           "--seed", "1", "--cache-dir", str(tmp / "cache2"), "-o", str(again))
    assert code == 0, err
    code, out, err = run_cli("compare", str(base), str(again))
    assert code == 0, out + err
    assert "no regression" in err


def test_worse_accuracy_and_changed_flops_fail_the_gate(grid, tmp_path):
    _, base = grid
    data = load_results(base)
    worse = copy.deepcopy(data)
    for c in worse["cells"]:
        if c["canvas"] == 40:
            c["acc1"] = max(0.0, c["acc1"] - 30)
            c["acc10"] = max(0.0, c["acc10"] - 30)
            c["query_ranks"] = None  # else the cell contradicts its own ranks and is refused
    code, out, err = run_cli("compare", str(base), str(_write(tmp_path / "w.json", worse)))
    assert code == 1
    assert "@ 40" in err and "acc1 dropped" in err and "REGRESSION" in out
    flops = copy.deepcopy(data)
    flops["cells"][0]["gflops"] *= 1.01
    code, _, err = run_cli("compare", str(base), str(_write(tmp_path / "f.json", flops)))
    assert code == 1 and "gflops changed" in err
    # a cell that failed in the current run is a regression too
    failed = copy.deepcopy(data)
    for c in failed["cells"]:
        if c["canvas"] == 32:
            c["status"], c["acc1"] = "error", None
    code, _, err = run_cli("compare", str(base), str(_write(tmp_path / "e.json", failed)))
    assert code == 1 and "failed in current" in err
    # latency never gates
    slow = copy.deepcopy(data)
    for c in slow["cells"]:
        c["latency_ms"] *= 10
    code, _, _ = run_cli("compare", str(base), str(_write(tmp_path / "s.json", slow)))
    assert code == 0


def test_tolerance_comes_from_the_seed_spread(grid, tmp_path):
    _, base = grid
    data = load_results(base)
    slightly = copy.deepcopy(data)
    for c in slightly["cells"]:
        c["acc1"] = max(0.0, c["acc1"] - 0.5)  # under the 1-point floor
        c["query_ranks"] = None
    assert run_cli("compare", str(base), str(_write(tmp_path / "s.json", slightly)))[0] == 0
    assert run_cli("compare", str(base), str(tmp_path / "s.json"), "--tolerance", "0.1")[0] == 1


def test_changed_configuration_is_refused_unless_allowed(grid, tmp_path):
    tmp, base = grid
    fewer = tmp_path / "fewer.json"
    code, _, err = run_cli("run", *FAST, "--canvas", "32", "--canvas", "40", "--seed", "0",
                           "--set", "epochs=1", "--set", "lr=1e-9", "--cache-dir", str(tmp / "cache3"), "-o", str(fewer))
    assert code == 0, err
    code, _, err = run_cli("compare", str(base), str(fewer))
    assert code == 2 and "changed configuration" in err
    code, out, err = run_cli("compare", str(base), str(fewer), "--allow-config-change")
    assert code in (0, 1) and "tiny @ 32" in out


def test_compare_bad_input(tmp_path):
    code, _, err = run_cli("compare", str(tmp_path / "a.json"), str(tmp_path / "b.json"))
    assert code == 2 and "does not exist" in err


def test_shards_merged_equal_the_unsharded_run(grid, tmp_path):
    tmp, base = grid
    parts = []
    for i in (1, 2):
        out = tmp_path / f"shard{i}.json"
        code, _, err = run_cli("run", *FAST, "--canvas", "32", "--canvas", "40", "--seed", "0",
                               "--seed", "1", "--shard", f"{i}/2", "--cache-dir", str(tmp_path / f"c{i}"), "-o", str(out))
        assert code == 0, err
        parts.append(out)
    assert 0 < len(load_results(parts[0])["cells"]) < 4
    code, _, err = run_cli("merge", str(parts[0]), str(parts[1]), "-o", str(tmp_path / "merged.json"))
    assert code == 0, err

    def strip(cells):
        return sorted(({k: v for k, v in c.items() if k not in TIMING} for c in cells),
                      key=lambda c: (c["canvas"], c["seed"]))

    assert strip(load_results(tmp_path / "merged.json")["cells"]) == strip(load_results(base)["cells"])
    other = load_results(parts[1])
    other["config"]["preset"]["epochs"] = 99
    code, _, err = run_cli("merge", str(parts[0]), str(_write(tmp_path / "o.json", other)), "-o", str(tmp_path / "m2.json"))
    assert code == 2 and "different configuration" in err


def test_plot_writes_png_and_svg(grid, tmp_path):
    pytest.importorskip("matplotlib")
    _, base = grid
    code, out, err = run_cli("plot", str(base), "-o", str(tmp_path / "p"))
    assert code == 0, err
    assert (tmp_path / "p.png").stat().st_size > 1000 and (tmp_path / "p.svg").exists()


def test_pareto_front():
    from sketchbench.results.plot import pareto_front

    pts = [(1.0, 10.0), (2.0, 20.0), (3.0, 15.0), (0.5, 5.0), (2.0, 19.0)]
    assert pareto_front(pts) == [3, 0, 1]


def test_plot_without_matplotlib_is_one_line(grid, monkeypatch):
    import builtins

    real = builtins.__import__

    def fake(name, *a, **k):
        if name.startswith("matplotlib"):
            raise ImportError("no matplotlib")
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", fake)
    _, base = grid
    code, _, err = run_cli("plot", str(base))
    assert code == 2 and "pip install 'sketchbench[plot]'" in err


def test_compare_prefers_a_baseline_made_on_this_machine_type(tmp_path):
    """Float results differ between CPU types: NAME-<machine id>.json beside NAME.json is used first."""
    from sketchbench.base.machine import machine_info
    from sketchbench.results.schema import baseline_for

    default = tmp_path / "smoke.json"
    default.write_text("{}")
    assert baseline_for(default) == default
    own = tmp_path / f"smoke-{machine_info()['id']}.json"
    own.write_text("{}")
    assert baseline_for(default) == own
    other = machine_info()
    assert len(other["id"]) == 12 and other["arch"]
