"""`report --analysis selector` (sketchbench.results.selector) on cells whose answers are known:
the random-mix hull, the learnable headroom from sketch statistics, the oracles and the held-out column."""

from __future__ import annotations

import numpy as np
import pytest

from sketchbench.results.cells import Cell
from sketchbench.results.selector import analyse_cell, held_out, hull_at, learnable, render_selector

CANVASES = (32, 64)
GFLOPS = {"32": 0.01, "64": 0.05}


def test_the_hull_is_the_best_random_mix_of_two_constant_canvases():
    q, acc = np.array([1.0, 2.0, 4.0]), np.array([10.0, 30.0, 35.0])
    assert hull_at(q, acc, 1.5) == pytest.approx(20.0)
    assert hull_at(q, acc, 3.0) == pytest.approx(32.5)
    assert hull_at(q, acc, 0.5) == 10.0 and hull_at(q, acc, 9.0) == 35.0
    # a point under the hull does not lower it: mixing 1 and 4 beats the dominated middle canvas
    assert hull_at(q, np.array([10.0, 12.0, 40.0]), 2.0) == pytest.approx(20.0)


def _ranks_where_feature_zero_decides(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Sketch statistics and (Q, 2) ranks: where statistic 0 is positive only the large canvas retrieves,
    elsewhere only the small one does."""
    stats = rng.normal(size=(n, 10))
    big = stats[:, 0] > 0
    ranks = np.where(np.c_[~big, big], 1.0, 5.0)
    return stats, ranks


def test_learnable_headroom_finds_a_signal_in_the_statistics_and_none_in_noise():
    rng = np.random.default_rng(0)
    stats, ranks = _ranks_where_feature_zero_decides(400, rng)
    q = np.array([0.01, 0.05])
    choice = learnable(stats, ranks, q, lam=0.0, seed=0)
    assert (ranks[np.arange(400), choice] == 1).mean() > 0.95  # the constant gets half
    noise = rng.normal(size=(400, 10))
    blind = learnable(noise, ranks, q, lam=0.0, seed=0)
    assert (ranks[np.arange(400), blind] == 1).mean() < 0.62


def _cell(ranks: np.ndarray, chosen: list[int], stats: np.ndarray, seed: int = 0, diagnostics: dict | None = None) -> Cell:
    q = np.array([GFLOPS[str(c)] for c in chosen])
    acc = 100.0 * float(np.mean([ranks[i, CANVASES.index(c)] == 1 for i, c in enumerate(chosen)]))
    per_query = [int(ranks[i, CANVASES.index(c)]) for i, c in enumerate(chosen)]
    return Cell.model_validate({
        "method": "dyn", "teacher": None, "dataset": "d", "canvas": "dynamic", "preset": "smoke", "seed": seed,
        "role": "main", "status": "ok", "acc1": acc, "acc10": 100.0, "mean_rank": float(np.mean(per_query)),
        "gflops": float(q.mean()) + 0.001, "params_m": 1.0, "config_hash": "h", "kind": "student",
        "query_ranks": per_query, "num_queries": len(chosen), "gallery_size": 10,
        "canvas_histogram": {str(c): chosen.count(c) for c in CANVASES},
        "canvas_ranks": {str(c): ranks[:, k].astype(int).tolist() for k, c in enumerate(CANVASES)},
        "canvas_gflops": GFLOPS, "query_canvases": chosen, "query_stats": stats.tolist(),
        "diagnostics": diagnostics,
    })


def test_a_selector_that_always_picks_one_canvas_is_measured_against_what_could_be_had():
    rng = np.random.default_rng(1)
    stats, ranks = _ranks_where_feature_zero_decides(200, rng)
    cell = _cell(ranks, [64] * 200, stats)
    a = analyse_cell(cell)
    large = 100.0 * float((ranks[:, 1] == 1).mean())
    assert a["selector"][0] == pytest.approx(large)
    assert a["shares"] == [0.0, 1.0]
    assert a["oracle_any"] == 100.0  # every query retrieves at one of the two canvases
    assert a["learnable"][0] > 90.0  # at the same FLOPs the statistics tell which, out of fold
    assert a["hull"] == pytest.approx(max(large, 100.0 - large))  # past the largest canvas: the best constant
    # the cross-seed oracle: another seed whose ranks agree scores the per-query best canvas
    other = _cell(ranks, [32] * 200, stats, seed=1)
    a2 = analyse_cell(cell, [cell, other])
    assert "oracle_cross_seed" in a2 and a2["oracle_cross_seed"][2] == 1
    assert a2["headroom_captured"] is not None and a2["headroom_captured"] < 0.1
    text = render_selector([cell, other])
    assert "learnable (sketch, CV)" in text and "Per chosen canvas" in text


def test_held_out_column_reads_the_kept_epoch_against_the_held_out_hull():
    diag = {"epochs": [{"val_acc1": 10.0, "val_gflops": 0.01}, {"val_acc1": 30.0, "val_gflops": 0.03}],
            "chosen_epoch": 1, "val_acc1_by_canvas": [20.0, 40.0], "canvas_gflops": [0.01, 0.05]}
    acc, at, hull = held_out(diag, selector_gflops=0.0)
    assert (acc, at) == (30.0, 0.03) and hull == pytest.approx(30.0)  # halfway: the mix of 20 and 40
    assert held_out(diag, selector_gflops=0.01)[2] == pytest.approx(35.0)  # the selector's cost buys the mix more
    assert held_out({**diag, "chosen_epoch": 5}, 0.0) is None
    assert held_out({"epochs": [{"train_acc1": 1.0}], "chosen_epoch": 0}, 0.0) is None
