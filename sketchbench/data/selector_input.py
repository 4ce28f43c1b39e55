"""A dataset sketch (vector, or raster only) → a canvas selector's input, by the selector's recipe.

The recipes themselves live in :mod:`sketchbench_query.recipes` (numpy only, shared with the deployed
query); this is where a dataset's item meets them: a raster-only sketch is vectorised first, except
for image recipes (``thumbnail``), which downscale the raster itself as every canvas does.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from sketchbench.base.errors import SketchbenchError
from sketchbench.data.render import render_item
from sketchbench.data.sketch import BadSketch, Sketch
from sketchbench.data.vectorise import vectorise
from sketchbench_query import recipes
from sketchbench_query.points import SketchInputError


def item_vector(vector: Sketch | None, raster: np.ndarray | None) -> Sketch:
    """The vector form of a sketch: its own, or its raster vectorised (a sketch that cannot be
    vectorised becomes one dot in the middle, as the selectors treat it)."""
    if vector is not None:
        return vector
    try:
        return vectorise(raster)
    except BadSketch:
        return Sketch(np.array([[0.5, 0.5, 1.0]], dtype=np.float32))


def selector_input(vector: Sketch | None, raster: np.ndarray | None, recipe: Mapping[str, Any]) -> np.ndarray:
    """A selector graph's input for one sketch (batch axis 1), made as ``recipe`` says (the export
    manifest's ``input``), by :func:`sketchbench_query.selector_input`."""
    try:
        if recipe.get("kind") == "thumbnail" and vector is None:
            return render_item(None, raster, int(recipe["size"]))[None]
        return recipes.selector_input(item_vector(vector, raster).points, recipe)
    except SketchInputError as exc:
        raise SketchbenchError(f"selector input: {exc}") from None
