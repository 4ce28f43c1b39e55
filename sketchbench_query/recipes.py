"""A canvas selector's input, made from a vector sketch as its recipe says: the one place where
these inputs are made. SketchyNetV2's selectors (training, evaluation), ``sketchbench export`` (the
manifest's ``graphs.selector.input`` and its self-check), the latency measurement and the torch-free
:mod:`sketchbench_query.retrieve` all call :func:`selector_input`.

A recipe is a JSON-able dict with a ``kind``; :data:`RECIPES` maps each kind to a function of
``(points, recipe)`` → the graph's input for one sketch (batch axis first). Adding a kind is one
function and one entry here:

- ``stroke5`` (``max_points``, ``coords``, ``offset_scale``): the sketch simplified by
  Ramer–Douglas–Peucker to at most ``max_points`` points (:func:`~sketchbench_query.rdp.simplify`),
  as stroke-5 rows plus an end row; ``coords="absolute"``: x, y summed back to positions and mapped
  from [0, 1] to [-1, 1]; ``"offset"``: offsets divided by ``offset_scale`` (the first row, a start
  position, mapped to [-1, 1]). float32 ``(1, T, 5)``, unpadded;
- ``thumbnail`` (``size``, optional ``supersample``): the sketch rendered at ``size``²
  (:func:`~sketchbench_query.render.render_points`; ``supersample`` overrides its anti-aliasing
  factor, absent = the renderer's own, as every canvas), uint8 ``(1, size, size)``, normalisation
  inside the graph;
- ``stats``: ten whole-sketch statistics (:func:`~sketchbench_query.stats.sketch_stats`), float32
  ``(1, 10)``, standardisation inside the graph.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from sketchbench_query.points import SketchInputError, stroke5
from sketchbench_query.rdp import simplify
from sketchbench_query.render import render_points
from sketchbench_query.stats import stats_input

COORDS = ("absolute", "offset")


def stroke5_rows(points: np.ndarray, max_points: int) -> np.ndarray:
    """The RDP-simplified sketch as stroke-5 rows ``(dx, dy, p1, p2, p3)``, float32 (``≤ max_points
    + 1`` rows: the points and the end-of-sketch row)."""
    return stroke5(simplify(points, max_points))


def sequence_rows(seq5: np.ndarray, coords: str = "absolute", offset_scale: float = 1.0) -> np.ndarray:
    """Stroke-5 rows → a sequence selector's ``(T, 5)`` float32 input rows.

    ``absolute``: the offsets are summed back to absolute positions (the first row's offset is
    from the origin) and mapped from [0, 1] to [-1, 1]; ``offset``: offsets / ``offset_scale``.
    """
    out = np.array(seq5, dtype=np.float32)
    if coords == "absolute":
        out[:, :2] = np.cumsum(out[:, :2], axis=0) * 2.0 - 1.0
    elif coords == "offset":
        out[1:, :2] /= max(float(offset_scale), 1e-6)
        out[0, :2] = out[0, :2] * 2.0 - 1.0  # the first row is an absolute start position
    else:
        raise SketchInputError(f"unknown coords {coords!r} (one of {', '.join(COORDS)})")
    return out


def stroke5_input(points: np.ndarray, recipe: Mapping[str, Any]) -> np.ndarray:
    seq = stroke5_rows(points, int(recipe["max_points"]))
    return sequence_rows(seq, str(recipe.get("coords", "absolute")), float(recipe.get("offset_scale", 1.0)))[None]


def thumbnail_input(points: np.ndarray, recipe: Mapping[str, Any]) -> np.ndarray:
    factor = recipe.get("supersample")
    return render_points(points, int(recipe["size"]), None if factor is None else int(factor))[None]


#: recipe kind → function of (points, recipe) → the selector graph's input for one sketch
RECIPES: dict[str, Callable[[np.ndarray, Mapping[str, Any]], np.ndarray]] = {
    "stroke5": stroke5_input,
    "thumbnail": thumbnail_input,
    "stats": stats_input,
}


def recipe_function(recipe: Mapping[str, Any]) -> Callable[[np.ndarray, Mapping[str, Any]], np.ndarray]:
    kind = recipe.get("kind") if isinstance(recipe, Mapping) else None
    if kind not in RECIPES:
        raise SketchInputError(f"unknown selector input kind {kind!r} (known: {', '.join(RECIPES)})")
    return RECIPES[kind]


def selector_input(points: np.ndarray, recipe: Mapping[str, Any]) -> np.ndarray:
    """The selector graph's input for one sketch (``(N, 3)`` unit-box points), as ``recipe`` says."""
    return selector_inputs([points], recipe)[0]


def selector_inputs(sketches: Sequence[np.ndarray], recipe: Mapping[str, Any]) -> list[np.ndarray]:
    """The batch path: every sketch's input (each with its batch axis of 1), the kind looked up once."""
    fn = recipe_function(recipe)
    try:
        return [fn(p, recipe) for p in sketches]
    except (KeyError, TypeError, ValueError) as exc:  # a recipe without a value its kind needs, or of the wrong type
        raise SketchInputError(f"selector input recipe {dict(recipe)!r} is incomplete or malformed ({exc!r})") from None
