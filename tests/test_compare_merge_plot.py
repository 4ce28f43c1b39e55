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


def _on_machine(data, ident):
    data = copy.deepcopy(data)
    data.setdefault("environment", {})["machine"] = {"id": ident}
    return data


def _shift(cells, points):
    for c in cells:
        c["acc1"] = min(100.0, max(0.0, c["acc1"] + points))
        c["query_ranks"] = None  # else the cell contradicts its own ranks and is refused


def test_across_machine_types_accuracy_is_judged_against_sampling_noise(grid, tmp_path):
    """Another machine type trains another network: a drop of one query passes, a collapse of one cell
    fails, and so does a drop of every cell that each cell's noise would hide."""
    from sketchbench.base.machine import machine_info

    _, base = grid
    data = load_results(base)
    # more rows than the grid has: copies under other configurations, so the mean over cells means something
    extra = []
    for i in range(6):
        for c in data["cells"]:
            extra.append({**copy.deepcopy(c), "config_hash": f"{c['config_hash'][:10]}{i:06d}"})
    data["cells"] += extra
    here = machine_info()["id"]
    other_base = _write(tmp_path / "base.json", _on_machine(data, "0123456789ab"))
    one_query = min(100.0 / c["num_queries"] for c in data["cells"])

    noisy = _on_machine(data, here)
    _shift(noisy["cells"][:2], -one_query)
    code, out, err = run_cli("compare", str(other_base), str(_write(tmp_path / "noisy.json", noisy)))
    assert code == 0, out + err
    assert "sampling noise" in err
    code, _, err = run_cli("compare", "--strict", str(other_base), str(_write(tmp_path / "noisy.json", noisy)))
    assert code == 1 and "acc1 dropped" in err  # the same files under the one-machine gate

    collapsed = _on_machine(data, here)
    best = max(data["cells"], key=lambda c: c["acc1"])["config_hash"]
    _shift([c for c in collapsed["cells"] if c["config_hash"] == best], -100)
    code, _, err = run_cli("compare", str(other_base), str(_write(tmp_path / "collapsed.json", collapsed)))
    assert code == 1 and "acc1 dropped" in err, [(c["acc1"], c["num_queries"]) for c in data["cells"]]

    from sketchbench.results.cells import Cell, aggregate
    from sketchbench.results.compare import Tolerance

    half = copy.deepcopy(data)
    _shift(half["cells"], 0)
    for c in half["cells"]:
        c["acc1"] = 50.0  # away from 0 and 100, so no shift below is clipped
    half_base = _write(tmp_path / "half.json", _on_machine(half, "0123456789ab"))
    rows = aggregate([Cell.model_validate(c) for c in half["cells"] if c.get("status") == "ok"])
    per_cell = min(Tolerance(cross_machine=True).for_row(r, "acc1") for r in rows)
    everywhere = _on_machine(half, here)
    _shift(everywhere["cells"], -0.9 * per_cell)  # each within its own noise, all in one direction
    code, _, err = run_cli("compare", str(half_base), str(_write(tmp_path / "everywhere.json", everywhere)))
    assert code == 1 and "on average" in err and "@ 32: acc1 dropped" not in err, err


def test_across_machine_types_only_a_pruned_architecture_may_move(grid, tmp_path):
    """FLOPs stay exact across machines, except where the baseline's own seeds disagree on them (an
    architecture chosen from the data, as pruning chooses it)."""
    _, base = grid
    data = _on_machine(load_results(base), "0123456789ab")
    first = data["cells"][0]
    twin = next(c for c in data["cells"] if c["config_hash"] == first["config_hash"] and c["seed"] != first["seed"])
    fixed = copy.deepcopy(data)
    for c in fixed["cells"]:
        if c["config_hash"] == first["config_hash"]:
            c["gflops"] *= 1.05
    other_base = _write(tmp_path / "base.json", data)
    code, _, err = run_cli("compare", str(other_base), str(_write(tmp_path / "fixed.json", _on_machine(fixed, "x"))))
    assert code == 1 and "gflops changed" in err
    pruned = copy.deepcopy(data)
    next(c for c in pruned["cells"] if c is not None and c["seed"] == twin["seed"]
         and c["config_hash"] == twin["config_hash"])["gflops"] *= 0.9  # the seeds now disagree
    pruned_base = _write(tmp_path / "pruned-base.json", pruned)
    moved = copy.deepcopy(pruned)
    for c in moved["cells"]:
        if c["config_hash"] == first["config_hash"]:
            c["gflops"] *= 1.15
    code, out, err = run_cli("compare", str(pruned_base), str(_write(tmp_path / "moved.json", _on_machine(moved, "x"))))
    assert code == 0, out + err
    code, _, err = run_cli("compare", "--strict", str(pruned_base), str(_write(tmp_path / "moved.json", _on_machine(moved, "x"))))
    assert code == 1 and "gflops changed" in err
