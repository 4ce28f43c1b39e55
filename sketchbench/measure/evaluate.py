"""Evaluate one trained method at one canvas (or at its own dynamic choice of canvases):
retrieval metrics, FLOPs and params in the paper's convention, measured latency."""

from __future__ import annotations

from collections import Counter
from typing import Any

import torch

from sketchbench.base.canvas import is_dynamic
from sketchbench.data.rundata import RunData
from sketchbench.data.selector_input import item_vector
from sketchbench.measure.flops import count_flops, count_params
from sketchbench.measure.latency import cell_latency
from sketchbench.measure.metrics import ranks, retrieval_metrics
from sketchbench.method.interface import Method
from sketchbench.method.training import embed_in_batches
from sketchbench_query import sketch_stats


class FlopsTable:
    """FLOPs/params of a method's sketch branch per canvas, counted once."""

    def __init__(self, method: Method) -> None:
        self.method = method
        self._at: dict[int, tuple[float, int]] = {}

    def at(self, canvas: int) -> tuple[float, int]:
        if canvas not in self._at:
            self._at[canvas] = count_flops(self.method.sketch_branch(), self.method.sketch_input(canvas))
        return self._at[canvas]


def every_canvas(method: Method, data: RunData, photo_emb: torch.Tensor, chosen: list[int], canvases: list[int],
                 table: FlopsTable) -> dict[str, Any]:
    """What a dynamic cell records beside its own numbers, for the selector analysis
    (``report --analysis selector``): every test query's rank at every canvas of its set (the
    method's encoder there, i.e. its frozen upstream), the FLOPs per canvas, the canvas chosen per
    query, each query's sketch statistics (:func:`sketchbench_query.sketch_stats`) and the method's
    own training log (``Method.diagnostics``)."""
    bs = method.ctx.preset.eval_batch_size
    targets = data.pairs("test")
    n = len(targets)
    canvas_ranks: dict[str, list[int]] = {}
    for c in canvases:
        emb = embed_in_batches(method.encode_sketch, method.sketches_at(data, "test", c, range(n)), bs)
        with torch.inference_mode():
            dist = method.distance(emb.to(method.device), photo_emb.to(method.device)).float().cpu()
        canvas_ranks[str(c)] = [int(x) for x in ranks(dist, targets).tolist()]
    out: dict[str, Any] = {
        "canvas_ranks": canvas_ranks,
        "canvas_gflops": {str(c): table.at(c)[0] / 1e9 for c in canvases},
        "query_canvases": list(chosen),
        "query_stats": [[round(float(v), 6) for v in sketch_stats(item_vector(it.vector, it.raster).points)]
                        for it in data.items("test")],
    }
    diagnostics = method.diagnostics()
    if diagnostics:
        out["diagnostics"] = diagnostics
    return out


def evaluate(method: Method, data: RunData, canvas: int | str) -> dict[str, Any]:
    method.eval()
    preset = method.ctx.preset
    bs = preset.eval_batch_size
    photos = data.photos("test")
    photo_emb = embed_in_batches(method.encode_photo, photos, bs)
    targets = data.pairs("test")
    table = FlopsTable(method)
    out: dict[str, Any] = {}
    method.sketch_branch().eval()

    if is_dynamic(canvas):
        items = data.items("test")
        chosen = [int(c) for c in method.choose_canvases(data, "test")]
        if len(chosen) != len(items):
            raise RuntimeError(f"choose_canvases returned {len(chosen)} canvases for {len(items)} sketches")
        sketch_emb: list[torch.Tensor | None] = [None] * len(items)
        for c in sorted(set(chosen)):
            idx = [i for i, x in enumerate(chosen) if x == c]
            emb = embed_in_batches(method.encode_sketch, method.sketches_at(data, "test", c, idx), bs)
            for j, i in enumerate(idx):
                sketch_emb[i] = emb[j]
        sketch = torch.stack(sketch_emb)  # type: ignore[arg-type]
        # selector cost per query (e.g. the GRU over that sketch's sequence), counted per shape
        selector_flops, selector_params, seen = [], 0, {}
        for module, example in method.selector_flops_inputs(data, "test"):
            shape_key = (id(module), tuple(getattr(t, "shape", ()) for t in example))
            if shape_key not in seen:
                seen[shape_key] = count_flops(module, example)
            selector_flops.append(seen[shape_key][0])
            selector_params = max(selector_params, count_params(module))
        enc_flops = [table.at(c)[0] for c in chosen]
        mean_sel = sum(selector_flops) / len(selector_flops) if selector_flops else 0.0
        flops = sum(enc_flops) / len(enc_flops) + mean_sel
        params = table.at(chosen[0])[1] + selector_params
        hist = Counter(chosen)
        out["canvas_histogram"] = {str(c): hist.get(c, 0) for c in sorted(set(preset.canvases) | set(hist))}
        out["selector_gflops"] = mean_sel / 1e9
        out.update(every_canvas(method, data, photo_emb, chosen, [int(c) for c in out["canvas_histogram"]], table))
        # encoder and end-to-end query latency in the preset's runtime (latency_runtime/_threads/_batch)
        timing = cell_latency(method, data, dict(hist), chosen)
    else:
        c = int(canvas)
        queries = method.sketches_at(data, "test", c, range(len(targets)))
        sketch = embed_in_batches(method.encode_sketch, queries, bs)
        flops, params = table.at(c)
        timing = cell_latency(method, data, {c: 1})

    with torch.inference_mode():
        dist = method.distance(sketch.to(method.device), photo_emb.to(method.device)).float().cpu()
    r = ranks(dist, targets)
    out.update(retrieval_metrics(r))
    # per-query ranks, in the split's order: what per-sketch analyses (e.g. the smallest canvas at
    # which a sketch's own photo comes first) and paired comparisons between methods are built on
    out["query_ranks"] = [int(x) for x in r.tolist()]
    out["gflops"] = flops / 1e9
    out["params_m"] = params / 1e6
    out.update(timing)  # latency_ms (encoder), query_latency_ms (end to end), runtime, threads, batch
    out["num_queries"] = int(len(targets))
    out["gallery_size"] = int(photos.shape[0])
    extra = method.extra_metrics(data, None if is_dynamic(canvas) else int(canvas))
    if extra:
        out["extra"] = extra
    return out
