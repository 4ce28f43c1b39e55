"""What a canvas selector found, against what could be found: ``sketchbench report --analysis selector``.

A dynamic cell (a method that picks each query's canvas) records, beside its own numbers, the
ranks of every test query at **every** canvas of its set (``canvas_ranks``: the frozen upstream at
that canvas), the FLOPs per canvas (``canvas_gflops``), the canvas it chose per query
(``query_canvases``) and cheap statistics of each query sketch (``query_stats``, the ``stats``
recipe of :mod:`sketchbench_query`). From those alone this module puts the learned selector beside:

- **constant**: every query at one canvas (the best one, and each);
- **random mix / hull**: the upper concave hull of the constant canvases' (GFLOPs, acc@1) points at
  the selector's GFLOPs — what sending a random share of queries to each of two canvases gives;
- **any-canvas oracle**: a query counts as found if any canvas ranks its photo first;
- **cross-seed oracle** (≥ 2 seeds of the same configuration): each query's canvas chosen from the
  *other* seeds' ranks of that query (their mean ``1/rank − λ·q``), scored with this seed's ranks,
  at the selector's own FLOPs (λ set so the policy spends no more) — the per-query signal that is a
  property of the query, not of one trained model;
- **learnable from the sketch**: the same choice made by a ridge regression from the query's
  statistics alone, fitted on 4/5 of the test queries and applied to the other fifth (5 folds) —
  how much of that signal a selector that sees only the sketch could reach, against the constant
  at the same λ. It is a diagnostic on the test split, never used to choose anything;
- **headroom captured**: (selector − hull) / (cross-seed oracle − hull), in the same points;
- **held-out: selector − hull**: the same difference on the training sketches held out of the
  selector's training (``val_fraction``), at the kept epoch: the column to choose a selector by;
- per chosen canvas, the accuracy of the queries routed there, and theirs at the largest canvas;
- the selector's own training log where the method records one (``diagnostics``: per-epoch entropy
  and canvas shares; the critic's mean 1/rank per canvas on its training sketches), beside the
  test queries' mean 1/rank per canvas, so an over-fitted critic is visible.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

import numpy as np
from tabulate import tabulate

from sketchbench.results.cells import Cell

#: the folds of the learnable-headroom predictor
FOLDS = 5
#: ridge penalty of that predictor (on standardised statistics)
RIDGE = 10.0


# -- per-query tables ---------------------------------------------------------------------------
def selector_cells(cells: Sequence[Cell]) -> list[Cell]:
    """The finished dynamic cells that recorded what the analysis needs."""
    return [c for c in cells if c.ok and c.dynamic and getattr(c, "canvas_ranks", None) and getattr(c, "query_canvases", None)]


def _tables(cell: Cell) -> tuple[list[int], np.ndarray, np.ndarray]:
    """(canvases ascending, ranks ``(Q, K)``, GFLOPs ``(K,)``) of a dynamic cell."""
    by_canvas = {int(k): v for k, v in cell.canvas_ranks.items()}  # type: ignore[attr-defined]
    cs = sorted(by_canvas)
    ranks = np.array([by_canvas[c] for c in cs], dtype=np.float64).T
    gflops = np.array([float(cell.canvas_gflops[str(c)]) for c in cs])  # type: ignore[attr-defined]
    return cs, ranks, gflops


def hull_at(gflops: np.ndarray, acc: np.ndarray, at: float) -> float:
    """The upper concave hull of the points ``(gflops, acc)`` at ``at`` (the best random mix of two
    constant canvases that spends ``at``); outside the points' range, the nearest end's accuracy
    (below the cheapest canvas nothing can be spent less; above the largest nothing more is bought)."""
    if at <= gflops.min():
        return float(acc[np.argmin(gflops)])
    if at >= gflops.max():
        return float(acc.max())
    best = -np.inf
    for i in range(len(gflops)):
        for j in range(len(gflops)):
            if gflops[i] <= at <= gflops[j] and gflops[j] > gflops[i]:
                w = (at - gflops[i]) / (gflops[j] - gflops[i])
                best = max(best, (1 - w) * acc[i] + w * acc[j])
    return float(best)


def _policy(score: np.ndarray, q_norm: np.ndarray, lam: float) -> np.ndarray:
    """Each query's canvas under ``score − λ·q_norm`` (first maximum: ties to the smaller canvas)."""
    return np.argmax(score - lam * q_norm[None, :], axis=1)


def _budgeted(score: np.ndarray, q: np.ndarray, budget: float) -> tuple[np.ndarray, float]:
    """The choice under ``score − λ·q_norm`` with the smallest λ whose mean GFLOPs is within ``budget``."""
    span = q.max() - q.min()
    q_norm = (q - q.min()) / span if span > 0 else np.zeros_like(q)
    for lam in np.concatenate([[0.0], np.geomspace(1e-3, 100.0, 400)]):
        choice = _policy(score, q_norm, lam)
        if q[choice].mean() <= budget + 1e-12:
            return choice, float(lam)
    return np.full(score.shape[0], int(np.argmin(q))), float("inf")


def _acc(ranks: np.ndarray, choice: np.ndarray) -> float:
    return 100.0 * float((ranks[np.arange(len(choice)), choice] == 1).mean())


def _standardise(x: np.ndarray, ref: np.ndarray) -> np.ndarray:
    return (x - ref.mean(0)) / (ref.std(0) + 1e-6)


def _ridge_predict(x_fit: np.ndarray, y_fit: np.ndarray, x_new: np.ndarray) -> np.ndarray:
    a = np.c_[_standardise(x_fit, x_fit), np.ones(len(x_fit))]
    b = np.c_[_standardise(x_new, x_fit), np.ones(len(x_new))]
    reg = RIDGE * np.eye(a.shape[1])
    reg[-1, -1] = 0.0
    return b @ np.linalg.solve(a.T @ a + reg, a.T @ y_fit)


def learnable(stats: np.ndarray, ranks: np.ndarray, q: np.ndarray, lam: float, seed: int) -> np.ndarray:
    """Each query's canvas chosen by a ridge regression of its reward ``1/rank − λ·q_norm`` per canvas
    from its sketch statistics, fitted on the other folds (5-fold cross-fitting over the queries)."""
    span = q.max() - q.min()
    q_norm = (q - q.min()) / span if span > 0 else np.zeros_like(q)
    reward = 1.0 / ranks - lam * q_norm[None, :]
    folds = np.random.default_rng(seed).permutation(len(ranks)) % FOLDS
    choice = np.zeros(len(ranks), dtype=np.int64)
    for f in range(FOLDS):
        fit, held = folds != f, folds == f
        if fit.sum() < 2 or held.sum() == 0:
            continue
        choice[held] = np.argmax(_ridge_predict(stats[fit], reward[fit], stats[held]), axis=1)
    return choice


# -- one cell -----------------------------------------------------------------------------------
def analyse_cell(cell: Cell, others: Sequence[Cell] = ()) -> dict[str, Any]:
    """The analysis of one dynamic cell; ``others``: cells of the same configuration, other seeds."""
    cs, ranks, q = _tables(cell)
    chosen = np.array([cs.index(int(c)) for c in cell.query_canvases])  # type: ignore[attr-defined]
    const_acc = 100.0 * (ranks == 1).mean(axis=0)
    enc_gflops = float(q[chosen].mean())
    out: dict[str, Any] = {
        "canvases": cs, "gflops_by_canvas": q.tolist(), "acc_by_canvas": const_acc.tolist(),
        "selector": (float(cell.acc1 or 0.0), float(cell.gflops or 0.0)),
        "selector_encoder_gflops": enc_gflops,
        "shares": [float((chosen == k).mean()) for k in range(len(cs))],
        "best_constant": (cs[int(np.argmax(const_acc))], float(const_acc.max())),
        "hull": hull_at(q, const_acc, float(cell.gflops or enc_gflops)),
        "oracle_any": 100.0 * float((ranks.min(axis=1) == 1).mean()),
    }
    out["routed"] = [(c, int((chosen == k).sum()), _acc(ranks[chosen == k], np.full((chosen == k).sum(), k)),
                      _acc(ranks[chosen == k], np.full((chosen == k).sum(), len(cs) - 1)))
                     for k, c in enumerate(cs) if (chosen == k).any()]
    peers = [o for o in others if o.seed != cell.seed and _tables(o)[0] == cs and len(o.query_canvases) == len(chosen)]  # type: ignore[attr-defined]
    if peers:
        score = np.mean([1.0 / _tables(o)[1] for o in peers], axis=0)
        choice, lam = _budgeted(score, q, enc_gflops)
        out["oracle_cross_seed"] = (_acc(ranks, choice), float(q[choice].mean()), len(peers))
    stats = getattr(cell, "query_stats", None)
    if stats:
        x = np.asarray(stats, dtype=np.float64)
        _, lam = _budgeted(1.0 / ranks, q, enc_gflops)
        lam = 0.0 if not np.isfinite(lam) else lam
        choice = learnable(x, ranks, q, lam, cell.seed)
        span = q.max() - q.min()
        q_norm = (q - q.min()) / span if span > 0 else np.zeros_like(q)
        const = int(np.argmax((1.0 / ranks).mean(axis=0) - lam * q_norm))
        out["learnable"] = (_acc(ranks, choice), float(q[choice].mean()),
                            [float((choice == k).mean()) for k in range(len(cs))])
        out["constant_same_lambda"] = (cs[const], float(const_acc[const]), float(q[const]))
    if "oracle_cross_seed" in out:
        room = out["oracle_cross_seed"][0] - out["hull"]
        out["headroom_captured"] = (out["selector"][0] - out["hull"]) / room if room > 1e-9 else None
    out["test_inv_rank"] = (1.0 / ranks).mean(axis=0).tolist()
    diag = getattr(cell, "diagnostics", None)
    if isinstance(diag, dict):
        out["diagnostics"] = diag
        held = held_out(diag, float(cell.gflops or enc_gflops) - enc_gflops)
        if held:
            out["held_out"] = held
    return out


def held_out(diag: dict[str, Any], selector_gflops: float) -> tuple[float, float, float] | None:
    """(acc@1, GFLOPs, hull there) of the kept epoch on the training sketches held out of the
    selector's training (``val_fraction``): the only place a choice among selectors may be made.
    GFLOPs include the selector's own cost per query (taken from the test cell)."""
    epochs, by_canvas, q = diag.get("epochs") or [], diag.get("val_acc1_by_canvas"), diag.get("canvas_gflops")
    kept = diag.get("chosen_epoch")
    if not (epochs and by_canvas and q and isinstance(kept, int) and 0 <= kept < len(epochs)):
        return None
    rec = epochs[kept]
    if "val_acc1" not in rec or "val_gflops" not in rec:
        return None
    at = float(rec["val_gflops"]) + max(selector_gflops, 0.0)
    return float(rec["val_acc1"]), at, hull_at(np.asarray(q, dtype=np.float64), np.asarray(by_canvas, dtype=np.float64), at)


# -- report -------------------------------------------------------------------------------------
def _pm(values: list[float], digits: int = 2) -> str:
    if not values:
        return "-"
    m = statistics.fmean(values)
    return f"{m:.{digits}f} ± {statistics.stdev(values):.{digits}f}" if len(values) > 1 else f"{m:.{digits}f}"


def analyse(cells: Sequence[Cell]) -> list[tuple[Cell, dict[str, Any]]]:
    dyn = selector_cells(cells)
    return [(c, analyse_cell(c, [o for o in dyn if o.config_hash == c.config_hash])) for c in dyn]


def render_selector(cells: Sequence[Cell], fmt: str = "github") -> str:
    """The per-seed table, the per-configuration means and, per cell, the routing and training log."""
    results = analyse(cells)
    if not results:
        return ("no dynamic cells with per-canvas ranks (cells made before sketchbench 0.3 do not record "
                "canvas_ranks / query_canvases: rerun them)")
    headers = ["Method", "Dataset", "seed", "selector acc@1 @ GFLOPs", "shares per canvas", "hull (random mix)",
               "best constant", "cross-seed oracle", "learnable (sketch, CV)", "constant, same λ", "any-canvas oracle",
               "headroom captured"]
    rows = []
    for cell, a in results:
        cs = a["canvases"]
        rows.append([
            cell.key.method_label(), cell.dataset, cell.seed,
            f"{a['selector'][0]:.2f} @ {a['selector'][1]:.4f}",
            " / ".join(f"{c}:{s:.0%}" for c, s in zip(cs, a["shares"])),
            f"{a['hull']:.2f}", f"{a['best_constant'][1]:.2f} ({a['best_constant'][0]})",
            f"{a['oracle_cross_seed'][0]:.2f} @ {a['oracle_cross_seed'][1]:.4f}" if "oracle_cross_seed" in a else "-",
            f"{a['learnable'][0]:.2f} @ {a['learnable'][1]:.4f}" if "learnable" in a else "-",
            (f"{a['constant_same_lambda'][1]:.2f} @ {a['constant_same_lambda'][2]:.4f} ({a['constant_same_lambda'][0]})"
             if "constant_same_lambda" in a else "-"),
            f"{a['oracle_any']:.2f}",
            f"{a['headroom_captured']:.0%}" if a.get("headroom_captured") is not None else "-",
        ])
    parts = [tabulate(rows, headers=headers, tablefmt=fmt, disable_numparse=True)]
    parts.append(_render_means(results, fmt))
    parts.append(_render_routing(results, fmt))
    log = _render_logs(results, fmt)
    if log:
        parts.append(log)
    return "\n\n".join(parts)


def _render_means(results: list[tuple[Cell, dict[str, Any]]], fmt: str) -> str:
    groups: dict[str, list[dict[str, Any]]] = {}
    labels: dict[str, str] = {}
    for cell, a in results:
        groups.setdefault(cell.config_hash, []).append(a)
        labels[cell.config_hash] = f"{cell.key.method_label()} / {cell.dataset}"
    rows = []
    for h, group in groups.items():
        sel = [a["selector"][0] for a in group]
        hull = [a["hull"] for a in group]
        rows.append([labels[h], len(group), _pm(sel), _pm([a["selector"][1] for a in group], 4), _pm(hull),
                     _pm([s - hh for s, hh in zip(sel, hull)]),
                     _pm([a["oracle_cross_seed"][0] for a in group if "oracle_cross_seed" in a]),
                     _pm([a["learnable"][0] for a in group if "learnable" in a]),
                     _pm([a["constant_same_lambda"][1] for a in group if "constant_same_lambda" in a]),
                     min(min(a["shares"]) if len(a["shares"]) else 0 for a in group) if group else "-",
                     _pm([a["held_out"][0] - a["held_out"][2] for a in group if "held_out" in a]),
                     ])
    headers = ["Configuration", "seeds", "selector acc@1", "GFLOPs", "hull at its GFLOPs", "selector − hull",
               "cross-seed oracle", "learnable (sketch)", "constant, same λ", "min share of any canvas",
               "held-out: selector − hull"]
    for r in rows:
        r[-2] = f"{r[-2]:.0%}" if isinstance(r[-2], float) else r[-2]
    return "Mean ± std over seeds:\n\n" + tabulate(rows, headers=headers, tablefmt=fmt, disable_numparse=True)


def _render_routing(results: list[tuple[Cell, dict[str, Any]]], fmt: str) -> str:
    rows = []
    for cell, a in results:
        for c, n, acc, acc_largest in a["routed"]:
            rows.append([cell.key.method_label(), cell.dataset, cell.seed, c, n, f"{acc:.2f}", f"{acc_largest:.2f}"])
    headers = ["Method", "Dataset", "seed", "chosen canvas", "queries", "acc@1 there (%)", "same queries at the largest (%)"]
    return "Per chosen canvas:\n\n" + tabulate(rows, headers=headers, tablefmt=fmt, disable_numparse=True)


def _render_logs(results: list[tuple[Cell, dict[str, Any]]], fmt: str) -> str:
    rows = []
    for cell, a in results:
        diag = a.get("diagnostics") or {}
        train = diag.get("critic_train_inv_rank")
        epochs = diag.get("epochs") or []
        if not train and not epochs:
            continue
        cs = a["canvases"]
        first, last = (epochs[0], epochs[-1]) if epochs else ({}, {})
        rows.append([
            cell.key.method_label(), cell.dataset, cell.seed,
            " / ".join(f"{v:.3f}" for v in train) if train else "-",
            " / ".join(f"{v:.3f}" for v in a["test_inv_rank"]),
            f"{first.get('entropy', float('nan')):.3f} → {last.get('entropy', float('nan')):.3f}" if epochs else "-",
            " / ".join(f"{c}:{s:.0%}" for c, s in zip(cs, last.get("shares", []))) if epochs else "-",
            diag.get("chosen_epoch", "-"),
        ])
    if not rows:
        return ""
    headers = ["Method", "Dataset", "seed", "critic mean 1/rank, training sketches", "mean 1/rank, test queries",
               "policy entropy first → last epoch", "shares, last epoch", "epoch kept"]
    return "Training log (per canvas, ascending):\n\n" + tabulate(rows, headers=headers, tablefmt=fmt, disable_numparse=True)
