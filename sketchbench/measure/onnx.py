"""ONNX for deployment and for the ``onnxruntime`` latency runtime: exporting a module, opening an
onnxruntime session at a stated thread count, and the runtime-neutral pieces of a query that are
not graphs (how a selector's input is made from a sketch, what the renderer does).

onnx and onnxruntime are the optional ``onnx`` extra: everything here imports them on use and says
how to install them in one line when they are missing.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from sketchbench.base.errors import SketchbenchError
from sketchbench.data import render
from sketchbench.data.selector_input import item_vector, selector_input  # noqa: F401  (re-exported: export, latency)
from sketchbench_query import recipes
from sketchbench_query.retrieve import ort_session as _ort_session

#: the ONNX opset the graphs are written with
OPSET = 17
#: the kinds of selector input sketchbench knows how to make (``selector_input``): the recipe
#: table of :mod:`sketchbench_query.recipes`, the one place they are made
SELECTOR_INPUTS = tuple(recipes.RECIPES)


def require_onnxruntime(what: str = "this") -> Any:
    try:
        import onnxruntime
    except ImportError:
        raise SketchbenchError(f"{what} needs onnxruntime: pip install 'sketchbench[onnx]'") from None
    return onnxruntime


def require_onnx(what: str = "this") -> Any:
    try:
        import onnx
    except ImportError:
        raise SketchbenchError(f"{what} needs onnx: pip install 'sketchbench[onnx]'") from None
    return onnx


@contextlib.contextmanager
def _quiet_stdout() -> Iterator[None]:
    """File descriptor 1 to /dev/null: the exporter prints the whole TorchScript graph there (from
    C++) when it fails, which the one-line error replaces."""
    sys.stdout.flush()
    try:
        saved = os.dup(1)
    except OSError:  # no real stdout (an embedded interpreter): nothing to silence
        yield
        return
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 1)
            try:
                yield
            finally:
                sys.stdout.flush()
                os.dup2(saved, 1)
    finally:
        os.close(saved)


def export_onnx(module: nn.Module, inputs: Sequence[torch.Tensor], target: str | Path | io.BytesIO | None = None, *,
                input_names: Sequence[str], output_names: Sequence[str],
                dynamic_axes: Mapping[str, Mapping[int, str]] | None = None, what: str = "the module",
                opset: int = OPSET) -> bytes | None:
    """Write ``module`` traced on ``inputs`` as an ONNX graph to ``target`` (a path), or return its
    bytes when ``target`` is None. The TorchScript-based exporter is used: it needs no onnxscript
    and traces the plain tensor code methods are written in."""
    require_onnx("ONNX export")
    buffer = io.BytesIO() if target is None else target
    module = module.eval()
    try:
        with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad(), _quiet_stdout():
            warnings.simplefilter("ignore")  # the legacy exporter's deprecation notice and tracer warnings
            torch.onnx.export(module, tuple(inputs), buffer if isinstance(buffer, io.BytesIO) else str(buffer),
                              dynamo=False, opset_version=opset, input_names=list(input_names),
                              output_names=list(output_names), dynamic_axes={k: dict(v) for k, v in (dynamic_axes or {}).items()},
                              do_constant_folding=True)
    except SketchbenchError:
        raise
    except Exception as exc:  # the exporter's errors are long: one line that names the module
        first = next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), type(exc).__name__)
        first = first.split(" Please feel free")[0]
        raise SketchbenchError(f"cannot export {what} to ONNX: {type(exc).__name__}: {first[:200]}") from None
    return buffer.getvalue() if isinstance(buffer, io.BytesIO) else None


def providers(device: torch.device | str) -> list[str]:
    """onnxruntime's execution providers for ``device``: CUDA first where it is installed and asked for."""
    ort = require_onnxruntime("the onnxruntime runtime")
    available = ort.get_available_providers()
    if str(device).startswith("cuda") and "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def ort_session(model: bytes | str | Path, threads: int, device: torch.device | str = "cpu") -> Any:
    """An onnxruntime session running on ``threads`` intra-op threads (one inter-op thread, sequential
    execution, every graph optimisation on)."""
    require_onnxruntime("the onnxruntime runtime")
    return _ort_session(model, threads, providers(device))


def as_numpy(x: torch.Tensor) -> np.ndarray:
    return x.detach().cpu().contiguous().numpy()


# -- what a query is made of outside the graphs -------------------------------------------------------
def renderer_manifest(canvases: Sequence[int]) -> dict[str, Any]:
    """How sketchbench draws a vector sketch on a c×c canvas (``sketchbench.data.render``), as data:
    what a deployment must reproduce for the encoder to see what it was trained on."""
    per = {}
    for c in sorted({int(x) for x in canvases}):
        s = render.supersample(c)
        per[str(c)] = {"stroke_width_px": render.stroke_width(c), "supersample": s, "draw_size_px": c * s,
                       "line_width_at_draw_px": max(1, round(render.stroke_width(c) * s)),
                       "round_joints": render.stroke_width(c) >= 1.5}
    return {
        "function": "sketchbench.data.render.render_sketch (numpy + Pillow only)",
        "output": "uint8 (c, c): black (0) strokes on white (255), anti-aliased",
        "coordinates": "the sketch's points (x, y in the unit box, y down) map to u = p * (D * (1 - 2 * margin)) "
                       "+ (D * margin - 0.5) on a D = c * supersample px drawing",
        "margin": render.MARGIN,
        "stroke_width": f"max(1, {render.REFERENCE_WIDTH:g} * c / 256) canvas px",
        "supersample": f"max(2, min({render.SUPERSAMPLE}, {render.DRAW_SIZE} // c))",
        "lines": "Pillow ImageDraw.line per stroke, width = max(1, round(stroke_width * supersample)) drawing px; "
                 "round caps (a disc at each end) when that width is >= 3, discs at every vertex too when "
                 "stroke_width >= 1.5; a one-point stroke is a width x width square",
        "downsample": "Image.reduce(supersample): a box filter",
        "raster_sketches": "rasters (QMUL-V1) are not drawn: sketchbench.data.render.downscale_raster "
                           "(grey dilation by round(side / c), then an area average)",
        "per_canvas": per,
    }
