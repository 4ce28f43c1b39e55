"""Measured latency, per runtime: median wall time of a call after warm-up, synchronised on CUDA.

Runtimes (the preset key ``latency_runtime``):

- ``torch``: eager PyTorch under ``inference_mode`` (the default, and what earlier results measured);
- ``torch-compile``: ``torch.compile`` (inductor, static shapes: one compilation per input shape,
  done during warm-up and not timed);
- ``onnxruntime``: the module exported to ONNX (:mod:`sketchbench.measure.onnx`) and run by an
  onnxruntime session (CPU, or CUDA where that provider is installed); the optional ``onnx`` extra.

Threads (``latency_threads``, 0 = torch's current count) are set for the measurement and restored
after; onnxruntime gets the same count of intra-op threads. ``latency_batch`` is the batch of the
encoder call. A cell records (:func:`cell_latency`):

- ``latency_ms``: one call of the sketch branch on a ``(batch, ...)`` input: the encoder only, as
  FLOPs are counted (for dynamic methods the mean over the test queries' chosen canvases);
- ``query_latency_ms``: one query end to end, batch 1: the canvas selector where the method has
  one, rendering the vector sketch at the canvas, ``prepare_sketch`` and the sketch branch (mean
  over a few test queries per chosen canvas of each query's median), with its parts in
  ``query_breakdown_ms``; dynamic methods add ``query_upstream_ms`` (the same sketches' query
  without the selector: their upstream's own query at the canvases chosen) and
  ``query_selection_ms`` (choosing alone on up to 32 test sketches: median, p90, max).

:func:`compute_bound` measures what the machine itself sustains at a thread count (a dense matmul
and a large convolution), the limit every latency is read against.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from sketchbench.base.errors import SketchbenchError

if TYPE_CHECKING:
    from sketchbench.data.rundata import RunData
    from sketchbench.method.interface import Method

#: the runtimes ``latency_runtime`` may name
RUNTIMES = ("torch", "torch-compile", "onnxruntime")
#: test queries timed end to end per chosen canvas (each: warm-up, then the preset's repeats)
QUERY_SAMPLES = 4
#: test sketches whose canvas choice alone is timed (a dynamic cell's median selection)
SELECT_SAMPLES = 32


def check_runtime(runtime: str) -> str:
    if runtime not in RUNTIMES:
        from sketchbench.base.errors import did_you_mean

        raise SketchbenchError(f"unknown latency_runtime {runtime!r}." + did_you_mean(runtime, RUNTIMES))
    return runtime


@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[int]:
    """Run with ``threads`` intra-op threads (0 = leave torch's count; at most the machine's cores: more
    only starts threads that wait), restored after; yields the count used."""
    before = torch.get_num_threads()
    n = min(int(threads), os.cpu_count() or 1) if threads and threads > 0 else before
    if n != before:
        torch.set_num_threads(n)
    try:
        yield n
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


def _sync(cuda: bool) -> None:
    if cuda:
        torch.cuda.synchronize()


def time_ms(fn: Callable[[], Any], repeats: int = 20, warmup: int = 3, cuda: bool = False) -> float:
    """Median wall time of ``fn()`` in ms after ``warmup`` untimed calls, synchronised on CUDA."""

    def once() -> float:
        _sync(cuda)
        t0 = time.perf_counter()
        fn()
        _sync(cuda)
        return time.perf_counter() - t0

    for _ in range(max(0, warmup)):
        once()
    return statistics.median(once() for _ in range(max(1, repeats))) * 1000.0


def measure_latency_ms(module: nn.Module, example: torch.Tensor, repeats: int = 20, warmup: int = 3) -> float:
    """Eager PyTorch: median ms of ``module(example)`` (the ``torch`` runtime)."""
    module = module.eval()
    with torch.inference_mode():
        return time_ms(lambda: module(example), repeats, warmup, example.is_cuda)


# -- runtimes -------------------------------------------------------------------------------------
#: compiled modules, per module object: a module compiled once serves every cell that times it
_COMPILED: weakref.WeakKeyDictionary[nn.Module, nn.Module] = weakref.WeakKeyDictionary()


def compiled(module: nn.Module) -> nn.Module:
    """``torch.compile(module, dynamic=False)``, once per module."""
    if module not in _COMPILED:
        _COMPILED[module] = torch.compile(module, dynamic=False)
    return _COMPILED[module]


@contextlib.contextmanager
def _compile_settings() -> Iterator[None]:
    # one compilation per canvas and batch: allow many, and fail instead of silently falling back to eager
    import torch._dynamo

    with torch._dynamo.config.patch(recompile_limit=64, fail_on_recompile_limit_hit=True):
        yield


class Runtime:
    """Calls of modules in one runtime at one thread count: ``callable(module, example)`` gives a
    function of input tensors. ONNX sessions are made once per module and input shape (static graphs,
    unless the caller names dynamic axes) and kept for the object's life."""

    def __init__(self, name: str, threads: int, device: torch.device | str = "cpu") -> None:
        self.name = check_runtime(name)
        self.threads = int(threads)
        self.device = torch.device(device)
        self._sessions: dict[tuple, Any] = {}
        if self.name == "onnxruntime":
            from sketchbench.measure.onnx import require_onnxruntime

            require_onnxruntime("latency_runtime=onnxruntime")

    def callable(self, module: nn.Module, example: Sequence[torch.Tensor], *, input_names: Sequence[str] | None = None,
                 dynamic_axes: dict[str, dict[int, str]] | None = None, what: str = "the sketch branch"
                 ) -> Callable[..., Any]:
        module = module.eval()
        if self.name == "torch":
            return module
        if self.name == "torch-compile":
            fn = compiled(module)

            def run_compiled(*x: torch.Tensor) -> Any:
                try:
                    return fn(*x)
                except SketchbenchError:
                    raise
                except Exception as exc:
                    first = next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), type(exc).__name__)
                    raise SketchbenchError(f"latency_runtime=torch-compile: cannot compile {what} here: "
                                           f"{type(exc).__name__}: {first[:200]}") from None

            return run_compiled
        from sketchbench.measure.onnx import as_numpy, export_onnx, ort_session

        names = list(input_names or [f"input{i}" for i in range(len(example))])

        def session_for(x: Sequence[torch.Tensor]) -> tuple[Any, list[str]]:
            # static shapes (one graph per input shape, as a per-canvas deployment has) unless the
            # caller names dynamic axes (a selector's sequence length)
            key = (id(module), None if dynamic_axes else tuple(tuple(t.shape) for t in x))
            if key not in self._sessions:
                model = export_onnx(module, [t.cpu() for t in x], input_names=names, output_names=["output"],
                                    dynamic_axes=dynamic_axes, what=what)
                assert model is not None
                session = ort_session(model, self.threads, self.device)
                # the module is kept with its session, so its id is not reused while the session lives
                self._sessions[key] = (session, [i.name for i in session.get_inputs()], module)
            session, inputs, _ = self._sessions[key]
            return session, inputs

        def run_ort(*x: torch.Tensor) -> Any:
            session, inputs = session_for(x)
            return session.run(None, {n: as_numpy(t) for n, t in zip(inputs, x)})

        return run_ort

    @property
    def syncs_cuda(self) -> bool:
        return self.device.type == "cuda" and self.name != "onnxruntime"

    def warmup(self, warmup: int) -> int:
        """Untimed calls before timing: at least one where the first call compiles or builds a session."""
        return max(int(warmup), 0 if self.name == "torch" else 1)

    def time_ms(self, fn: Callable[..., Any], example: Sequence[torch.Tensor], repeats: int, warmup: int) -> float:
        with torch.inference_mode():
            return time_ms(lambda: fn(*example), repeats, self.warmup(warmup), self.syncs_cuda)


def preset_runtime(preset: Any, device: torch.device | str) -> tuple[str, int, int]:
    """(runtime, threads asked for, batch) from a preset (the keys may be absent in old presets)."""
    return (str(getattr(preset, "latency_runtime", "torch") or "torch"), int(getattr(preset, "latency_threads", 0) or 0),
            max(1, int(getattr(preset, "latency_batch", 1) or 1)))


# -- a cell's latencies ----------------------------------------------------------------------------
def _samples(indices: Sequence[int], k: int) -> list[int]:
    """Up to ``k`` of ``indices``, evenly spread (deterministic)."""
    idx = list(indices)
    if len(idx) <= k:
        return idx
    return [idx[round(j * (len(idx) - 1) / (k - 1))] for j in range(k)] if k > 1 else idx[:1]


def _selector(method: Method, runtime: Runtime, data: RunData) -> tuple[Callable[[Any], int], str] | None:
    """How one query's canvas is chosen in ``runtime``: (function of an item → canvas, the runtime it
    runs in). Dynamic methods only. In onnxruntime a selector graph runs in its own session, its input
    made by the export's recipe (numpy in, numpy out, as a deployment runs it); anything else eagerly."""
    if not method.dynamic:
        return None
    if runtime.name == "onnxruntime":
        graphs = method.export_modules(list(method.ctx.preset.canvases), method.ctx.preset.photo_size)
        graph = next((g for g in graphs.values() if g.get("role") == "selector"), None)
        from sketchbench.measure.onnx import SELECTOR_INPUTS, export_onnx, ort_session, selector_input

        if graph is not None and graph.get("about", {}).get("input", {}).get("kind") in SELECTOR_INPUTS:
            about = graph["about"]
            model = export_onnx(graph["module"], graph["inputs"], input_names=graph["input_names"],
                                output_names=graph["output_names"], dynamic_axes=graph.get("dynamic_axes"),
                                what="the canvas selector")
            session = ort_session(model, runtime.threads, runtime.device)
            feed = session.get_inputs()[0].name
            cs = [int(c) for c in about["canvas_set"]]
            recipe = about["input"]

            def choose_ort(item: Any) -> int:
                logits = session.run(None, {feed: selector_input(item.vector, item.raster, recipe)})[0]
                return cs[int(np.argmax(logits[0]))]

            return choose_ort, "onnxruntime"
    return (lambda item: int(method.choose_canvas(item))), "torch"


def _encoder_ms(method: Method, runtime: Runtime, batch: int, canvas_counts: dict[int, int], repeats: int,
                warmup: int) -> float:
    """The sketch branch alone, one ``(batch, ...)`` call per canvas, weighted by ``canvas_counts``."""
    branch = method.sketch_branch().eval()
    total = 0.0
    for c, n in canvas_counts.items():
        example = (method.sketch_input(c, batch),)
        if runtime.name == "torch":  # exactly the measurement of earlier results
            ms = measure_latency_ms(branch, example[0], repeats, warmup)
        else:
            ms = runtime.time_ms(runtime.callable(branch, example), example, repeats, warmup)
        total += n * ms
    return total / sum(canvas_counts.values())


def _one_query(method: Method, runtime: Runtime, encode: Callable[..., Any], select: Callable[[Any], int] | None,
               item: Any, canvas: int, runs: int, untimed: int) -> list[float]:
    """Medians (ms) over ``runs`` of one query: select, render, encode, total, and render + encode
    (the query without its selector: the upstream's own query at the canvas chosen)."""
    from sketchbench.data.render import render_item

    times = []
    with torch.inference_mode():
        for r in range(untimed + runs):
            _sync(runtime.syncs_cuda)
            t0 = time.perf_counter()
            cv = select(item) if select is not None else canvas
            t1 = time.perf_counter()
            image = torch.from_numpy(render_item(item.vector, item.raster, cv)).unsqueeze(0)
            t2 = time.perf_counter()
            encode(method.prepare_sketch(image))
            _sync(runtime.syncs_cuda)
            t3 = time.perf_counter()
            if r >= untimed:
                times.append((t1 - t0, t2 - t1, t3 - t2, t3 - t0, t3 - t1))
    return [statistics.median(t[j] for t in times) * 1000.0 for j in range(5)]


def selection_ms(select: Callable[[Any], int], items: Sequence[Any], runs: int, untimed: int) -> dict[str, Any]:
    """Choosing the canvas alone, on up to :data:`SELECT_SAMPLES` test sketches (each the median of
    ``runs`` after ``untimed`` calls): the median, 90th percentile and largest over the sketches."""
    per = []
    for i in _samples(range(len(items)), SELECT_SAMPLES):
        times = []
        with torch.inference_mode():
            for r in range(untimed + runs):
                t0 = time.perf_counter()
                select(items[i])
                if r >= untimed:
                    times.append(time.perf_counter() - t0)
        per.append(statistics.median(times) * 1000.0)
    per.sort()
    return {"median": statistics.median(per), "p90": per[min(len(per) - 1, round(0.9 * (len(per) - 1)))],
            "max": per[-1], "sketches": len(per)}


def cell_latency(method: Method, data: RunData, canvas_counts: dict[int, int],
                 chosen: Sequence[int] | None = None) -> dict[str, Any]:
    """The latency keys of a cell: encoder ``latency_ms`` (per call, the preset's batch) weighted by
    ``canvas_counts`` (canvas → number of test queries), and the end-to-end ``query_latency_ms``;
    ``chosen`` is each test query's canvas (dynamic methods), to time queries of every chosen canvas.

    A runtime that is not installed is an error; a module that runtime cannot take (an operator the
    ONNX exporter refuses, a compilation failure) leaves the latencies empty with ``latency_error``:
    latency is informational, the cell's accuracy and FLOPs stand."""
    preset = method.ctx.preset
    name, threads_asked, batch = preset_runtime(preset, method.device)
    with torch_threads(threads_asked) as threads:
        runtime = Runtime(name, threads, method.device)
        out: dict[str, Any] = {"latency_runtime": name, "latency_threads": threads, "latency_batch": batch}
        try:
            with _compile_settings() if name == "torch-compile" else contextlib.nullcontext():
                out.update(_cell_latency(method, data, runtime, batch, canvas_counts, chosen))
        except SketchbenchError as exc:
            if name == "torch":
                raise
            out.update({"latency_ms": None, "query_latency_ms": None, "latency_error": str(exc)})
    return out


def _cell_latency(method: Method, data: RunData, runtime: Runtime, batch: int, canvas_counts: dict[int, int],
                  chosen: Sequence[int] | None) -> dict[str, Any]:
    preset = method.ctx.preset
    repeats, warmup = preset.latency_repeats, preset.latency_warmup
    total = sum(canvas_counts.values())
    items = data.items("test")
    encoder_ms = _encoder_ms(method, runtime, batch, canvas_counts, repeats, warmup)
    encode = runtime.callable(method.sketch_branch().eval(), (method.sketch_input(min(canvas_counts), 1),))
    selector = _selector(method, runtime, data)
    select = selector[0] if selector is not None else None
    parts = {"select": 0.0, "render": 0.0, "encode": 0.0, "total": 0.0, "upstream": 0.0}
    sampled = 0
    untimed, runs = runtime.warmup(warmup), max(1, repeats)
    for c, n in canvas_counts.items():
        pool = [i for i, x in enumerate(chosen) if x == c] if chosen is not None else range(len(items))
        picks = _samples(pool, QUERY_SAMPLES)
        per_query = [_one_query(method, runtime, encode, select, items[i], c, runs, untimed) for i in picks]
        sampled += len(picks)
        if per_query:
            for j, key in enumerate(parts):
                parts[key] += n * statistics.fmean(q[j] for q in per_query)
    out = {
        "latency_ms": encoder_ms,
        "query_latency_ms": parts["total"] / total,
        "query_breakdown_ms": {k: parts[k] / total for k in ("select", "render", "encode")},
        "query_latency_samples": sampled,
    }
    if selector is not None:
        out["query_selector_runtime"] = selector[1]
        # the same sketches' query without the selector: the upstream's own query at the chosen canvases
        out["query_upstream_ms"] = parts["upstream"] / total
        out["query_selection_ms"] = selection_ms(selector[0], items, runs, untimed)
    return out


# -- the machine's own bound -----------------------------------------------------------------------
def compute_bound(threads: int = 0, device: torch.device | str = "cpu", repeats: int = 5, warmup: int = 2) -> dict[str, Any]:
    """What this machine sustains at ``threads`` (0 = torch's current count), fp32, in eager torch
    (MKL / oneDNN / cuBLAS): a dense square matmul and a large 3×3 convolution at batch 1. The
    bound is the faster of the two, in GFLOP/s (2 FLOPs per multiply-add)."""
    dev = torch.device(device)
    cuda = dev.type == "cuda"
    n = 4096 if cuda else 1024
    cin, side = 256, 56
    with torch_threads(threads) as used, torch.inference_mode():
        a, b = torch.randn(n, n, device=dev), torch.randn(n, n, device=dev)
        mm_ms = time_ms(lambda: torch.mm(a, b), repeats, warmup, cuda)
        x = torch.randn(1, cin, side, side, device=dev)
        conv = nn.Conv2d(cin, cin, 3, padding=1, bias=False).to(dev).eval()
        conv_ms = time_ms(lambda: conv(x), repeats, warmup, cuda)
    mm_flops = 2.0 * n**3
    conv_flops = 2.0 * 9 * cin * cin * side * side
    mm_rate, conv_rate = mm_flops / mm_ms / 1e6, conv_flops / conv_ms / 1e6
    return {
        "threads": used, "device": str(dev),
        "matmul": f"fp32 ({n}x{n}) @ ({n}x{n})", "matmul_ms": mm_ms, "matmul_gflops_per_s": mm_rate,
        "conv": f"fp32 conv 3x3 {cin}->{cin} on (1, {cin}, {side}, {side}), padding 1", "conv_ms": conv_ms,
        "conv_gflops_per_s": conv_rate,
        "bound_gflops_per_s": max(mm_rate, conv_rate),
    }
