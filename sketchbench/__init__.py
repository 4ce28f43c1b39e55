"""sketchbench: a benchmark library for efficient fine-grained sketch-based image retrieval.

From Python (a notebook, a script): one call per job, as the command line does it::

    import sketchbench
    results = sketchbench.run_grid("sketchynet-v2", "synthetic", preset="smoke")
    model = sketchbench.load_model(results, method="sketchynet-v2")
    answer = model.retrieve([[[10, 10], [60, 80]]])

Public API for plugin authors::

    from sketchbench import hookimpl, Method, MethodContext, Param, DatasetSource, ...

Write a plugin: ``docs/writing-plugins.md``; use it from Python: ``docs/quickstart.md``.
"""

from __future__ import annotations

import pluggy

from sketchbench.base.version import __version__

hookimpl = pluggy.HookimplMarker("sketchbench")

from sketchbench.base.artifacts import ArtifactCache, default_cache_dir, stable_hash  # noqa: E402
from sketchbench.base.bounded import loads_json, read_bounded, read_json  # noqa: E402
from sketchbench.base.errors import DataError, ExitCode, SketchbenchError, TrainingError  # noqa: E402
from sketchbench.base.preset import Preset  # noqa: E402
from sketchbench.base.progress import progress_bar  # noqa: E402
from sketchbench.data.dataset import (  # noqa: E402
    DatasetOptions,
    DatasetSource,
    FGSBIRDataset,
    SketchItem,
    SkipCounter,
    Split,
    fingerprint_files,
)
from sketchbench.data.limits import DataLimits, PointBudget, data_limits  # noqa: E402
from sketchbench.data.queries import grey_on_white  # noqa: E402
from sketchbench.data.render import downscale_raster, render_item, render_sketch, stroke_width  # noqa: E402
from sketchbench.data.rundata import RunData  # noqa: E402
from sketchbench.data.safe_pickle import load_pickle  # noqa: E402
from sketchbench.data.sketch import BadSketch, Sketch  # noqa: E402
from sketchbench.data.svg import load_svg_sketch  # noqa: E402
from sketchbench.data.vectorise import vectorise  # noqa: E402
from sketchbench.measure.flops import FLOPS_CONVENTION, count_flops  # noqa: E402
from sketchbench.method.dynamic import OnUpstream, SelectorOnUpstream, canvas_set  # noqa: E402
from sketchbench.method.interface import Method, MethodContext  # noqa: E402
from sketchbench.method.params import Param  # noqa: E402
from sketchbench.method.selector import CanvasSelector  # noqa: E402
from sketchbench.method.weights import WeightSource  # noqa: E402

__all__ = [
    "FLOPS_CONVENTION", "BadSketch", "DataError", "DatasetOptions", "DatasetSource", "ExitCode", "FGSBIRDataset",
    "Method", "MethodContext", "Param", "Preset", "RunData", "Sketch", "SketchItem", "SketchbenchError", "SkipCounter", "Split",
    "TrainingError", "__version__", "count_flops", "downscale_raster", "fingerprint_files", "hookimpl", "render_item",
    "render_sketch", "stroke_width", "vectorise", "WeightSource", "load_pickle", "progress_bar", "stable_hash",
    "ArtifactCache", "default_cache_dir", "DataLimits", "PointBudget", "data_limits", "load_svg_sketch", "grey_on_white",
    "loads_json", "read_bounded", "read_json",
    "load_model", "run_grid", "CanvasSelector", "OnUpstream", "SelectorOnUpstream", "canvas_set",
]

#: the Python API (:mod:`sketchbench.run.api`), imported on first use: a plugin that imports
#: ``sketchbench`` for its interfaces does not pay for the grid runner
_API = ("load_model", "run_grid")


def __getattr__(name: str) -> object:
    if name in _API:
        from sketchbench.run import api

        return getattr(api, name)
    raise AttributeError(f"module 'sketchbench' has no attribute {name!r}")
