"""sketchbench_query: a trained, exported sketchbench model answering queries with numpy, Pillow and
onnxruntime only (no torch, no training code), and the one place where a query's inputs are made.

- :func:`query` / :class:`Retriever`: strokes in, ranked photo ids out, from a ``sketchbench
  export`` folder (``docs/deploy.md``);
- :func:`selector_input` and :data:`RECIPES`: a canvas selector's input from a sketch, by the
  recipe its export names (``stroke5``, ``thumbnail``); sketchbench's selectors, its export and its
  latency measurement call these same functions;
- :func:`simplify` (RDP to a point budget, compiled), :func:`stroke5`, :func:`render_points`.

Sketches are plain ``(N, 3)`` float32 arrays ``x, y, pen`` in the unit box (``sketchbench.Sketch.points``).
"""

from __future__ import annotations

from sketchbench_query.points import SketchInputError, query_points, stroke5, strokes, to_unit_box
from sketchbench_query.rdp import simplify
from sketchbench_query.recipes import RECIPES, selector_input, selector_inputs, sequence_rows, stroke5_rows
from sketchbench_query.render import render_points, stroke_width, supersample
from sketchbench_query.retrieve import Retriever, query
from sketchbench_query.stats import SKETCH_STATS, sketch_stats

__all__ = [
    "RECIPES", "Retriever", "SKETCH_STATS", "sketch_stats", "SketchInputError", "query", "query_points", "render_points", "selector_input",
    "selector_inputs", "sequence_rows", "simplify", "stroke5", "stroke5_rows", "stroke_width", "strokes",
    "supersample", "to_unit_box",
]
