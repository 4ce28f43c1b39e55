"""The pilot study: photo-query retrieval (fg-ibir), per-query ranks, and the resolution analyses."""

from __future__ import annotations

import statistics

import pytest
import torch

from sketchbench.measure.evaluate import evaluate
from sketchbench.results.cells import Cell
from sketchbench.results.resolution import (
    render_resolution,
    render_smallest_rank1,
    resolution_rows,
    smallest_rank1_rows,
)
from sketchbench.testing import build_method, run_cli, tiny_data


def _cell(method, canvas, seed, acc1, ranks):
    return Cell.model_validate({
        "method": method, "teacher": None, "variant": "", "dataset": "d", "canvas": canvas, "seed": seed,
        "status": "ok", "acc1": acc1, "acc10": 100.0, "gflops": 0.01 * canvas, "params_m": 1.0,
        "config_hash": f"{method}-{canvas}", "query_ranks": ranks})


CELLS = [
    # sketch queries: 4 queries; seed 0 ranks at 32 / 64
    _cell("sketch", 32, 0, 50.0, [1, 3, 1, 9]), _cell("sketch", 64, 0, 75.0, [1, 1, 2, 1]),
    _cell("sketch", 32, 1, 25.0, [2, 1, 5, 9]), _cell("sketch", 64, 1, 75.0, [1, 1, 1, 4]),
    _cell("photo", 32, 0, 0.0, [2, 2, 2, 2]), _cell("photo", 64, 0, 100.0, [1, 1, 1, 1]),
]


def test_resolution_drop_is_computed_per_seed_from_the_largest_canvas():
    rows = {r["label"]: r for r in resolution_rows(CELLS)}
    sketch = rows["sketch"]
    assert sketch["canvases"][32][:2] == (37.5, statistics.stdev([50.0, 25.0]))
    # per seed: 75-50 = 25 and 75-25 = 50 points; relative 33.3 % and 66.7 %
    assert sketch["drop_points"][0] == 37.5
    assert abs(sketch["drop_relative"][0] - 50.0) < 1e-9
    assert rows["photo"]["drop_points"] == (100.0, 0.0)
    table = render_resolution(CELLS)
    assert "32x32 acc@1 (%)" in table and "37.50 ± 17.68" in table


def test_smallest_rank1_canvas_shares():
    rows = {r["label"]: r for r in smallest_rank1_rows(CELLS)}
    s = rows["sketch"]["shares"]
    # seed 0: q0 first at 32, q1 at 64, q2 at 32, q3 at 64 → 50 / 50 / 0
    # seed 1: q0 at 64, q1 at 32, q2 at 64, q3 never → 25 / 50 / 25
    assert s[32][0] == 37.5 and s[64][0] == 50.0 and s[None][0] == 12.5
    assert rows["photo"]["shares"][32][0] == 0.0 and rows["photo"]["shares"][64][0] == 100.0
    assert "never first (%)" in render_smallest_rank1(CELLS)
    # a seed without every canvas cannot be counted query by query
    assert smallest_rank1_rows([CELLS[0]])[0]["canvases"] == [32]
    assert smallest_rank1_rows([CELLS[0].model_copy(update={"query_ranks": None})]) == []


def test_fg_ibir_queries_are_the_same_view_of_the_paired_photo_at_every_canvas():
    data = tiny_data(photo_size=64)
    m = build_method("fg-ibir", backbone="test_efficientnet")
    n = len(data.items("test"))
    q64 = m.sketches_at(data, "test", 64, range(n))
    q32 = m.sketches_at(data, "test", 32, range(n))
    assert q64.shape == (n, 3, 64, 64) and q32.shape == (n, 3, 32, 32) and q64.dtype == torch.uint8
    assert torch.equal(q64, m.sketches_at(data, "test", 64, range(n))), "test views must be deterministic"
    # the 32 px query is the 64 px view at a lower resolution, not another crop
    down = torch.nn.functional.interpolate(q64.float(), size=32, mode="area")
    assert (down - q32.float()).abs().mean() < 6
    # a view of the paired photo: closer to it than to the other photos, but not a copy
    photos = data.photos("test").float()
    target = data.pairs("test")
    dist = torch.cdist(q64.float().flatten(1), photos.flatten(1))
    assert (dist.argmin(1) == target).float().mean() > 0.5
    assert not torch.equal(q64, data.photos("test")[target])


@pytest.mark.parametrize("name,params", [("fg-ibir", {"backbone": "test_efficientnet"}), ("fg-ibir-sn", {})])
def test_photo_query_methods_train_on_photo_views_and_cells_record_per_query_ranks(name, params, monkeypatch):
    data = tiny_data()
    m = build_method(name, **params)
    seen = []
    real_embed = m.embed
    monkeypatch.setattr(m, "embed", lambda x: (seen.append(tuple(x.shape)), real_embed(x))[1])
    before = [p.detach().clone() for p in m.modules().parameters()]
    m.train(data, [32])
    assert any(not torch.equal(a, b) for a, b in zip(before, m.modules().parameters()))
    # the anchors were 3-channel photo views at the training canvas, never 1-channel sketches
    assert any(s[1:] == (3, 32, 32) for s in seen) and not any(len(s) == 3 for s in seen)
    cell = evaluate(m, data, 32)
    assert len(cell["query_ranks"]) == cell["num_queries"] == len(data.items("test"))
    r = torch.tensor(cell["query_ranks"])
    assert abs((r <= 1).float().mean().item() * 100 - cell["acc1"]) < 1e-6


def test_bench_with_pilot_analyses_writes_both_tables_and_the_plot(tmp_path):
    (tmp_path / "pilot.toml").write_text(
        'title = "pilot"\ndatasets = ["tiny"]\nseeds = [0]\nanalyses = ["resolution", "smallest-rank1"]\n'
        '[[grid]]\nmethods = ["triplet-timm", "fg-ibir"]\ncanvases = "all"\n'
    )
    out = tmp_path / "out"
    code, _, err = run_cli("bench", "pilot", "-p", "smoke", "--param", "backbone=test_efficientnet",
                           "--bench-dir", str(tmp_path), "--out-dir", str(out))
    assert code == 0, err
    md = (out / "pilot.md").read_text()
    assert "## Accuracy as the query canvas falls" in md and "## Smallest canvas" in md
    assert "| fg-ibir" in md and "| triplet-timm" in md
    assert (out / "pilot-resolution.png").is_file() and (out / "pilot-resolution.svg").is_file()


def test_bench_refuses_an_unknown_analysis(tmp_path):
    (tmp_path / "b.toml").write_text('analyses = ["resolutoin"]\n[[grid]]\nmethods = ["triplet-timm"]\n')
    code, _, err = run_cli("bench", "b", "-p", "smoke", "--bench-dir", str(tmp_path))
    assert code != 0 and "unknown analysis 'resolutoin'" in err and "resolution" in err


def test_report_prints_the_analyses(tmp_path):
    import json

    path = tmp_path / "r.json"
    from sketchbench.results.schema import new_results

    results = new_results({}, "h", "cpu")
    results["cells"] = [{**c.to_json(), "preset": "smoke", "config_hash": f"h{i}", "params": {}, "kind": "baseline"}
                        for i, c in enumerate(CELLS)]
    path.write_text(json.dumps(results))
    code, out, err = run_cli("report", str(path), "--analysis", "resolution", "--analysis", "smallest-rank1")
    assert code == 0, err
    assert "drop largest→smallest (points)" in out and "never first (%)" in out
    # the same cells in two files are counted once: same means and stds as one file
    code, twice, err = run_cli("report", str(path), str(path), "--analysis", "resolution", "--analysis", "smallest-rank1")
    assert code == 0 and twice == out
