"""The canvas selector: the one extension point for choosing each sketch's canvas.

A dynamic method (SketchyNetV2, the dynamic baselines) renders each query sketch at a canvas
chosen for that sketch. What chooses is a :class:`CanvasSelector`: the poster's ψ_C (a sketch
encoder) followed by γ (a linear layer), giving the logits of ``p(c | s) = softmax(W_γ f + b_γ)``
over the canvas set. A new selector is one subclass, as a pruning criterion is one ``Importance``
subclass in Torch-Pruning: it says what it reads (its input ``recipe``) and how it encodes it
(:meth:`build`, :meth:`features`); everything else — making the input from a sketch, batching,
normalisation fitted on the training sketches, the linear head, choosing, counting FLOPs and
exporting — is here, shared by every selector and by every consumer (training, evaluation,
``retrieve``, the demo, ``export``, the latency measurement and the torch-free query).

The input recipe is a JSON-able dict ``{"kind": ..., options...}`` whose kind is a key of
:data:`sketchbench_query.RECIPES` (``stroke5``, ``thumbnail``, ``stats``): the same function makes the
input at training time, in the export's self-check and in the torch-free deployed query, so they
cannot drift apart. A selector that needs a new kind of input adds one function to that table.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from sketchbench.data.selector_input import selector_input
from sketchbench.data.sketch import Sketch


class CanvasSelector(nn.Module, ABC):
    """ψ_C + γ: per-sketch inputs (made by :attr:`recipe`) → logits ``(B, K)`` over the canvas set.

    A subclass sets :attr:`name`, :attr:`description` and :attr:`recipe` and implements
    :meth:`build` and :meth:`features`; it may override :meth:`recipe_options` (options of its
    recipe that are learned or configured, e.g. a point budget), :meth:`fit` (normalisation from
    the training sketches' inputs), :meth:`collate` (how inputs of different shapes are batched)
    and :meth:`flops_view` / :meth:`export_module` (when its forward pass cannot be counted or
    exported as written). Register it with the ``register_selectors`` hook.
    """

    #: the registered name (``--param encoder=NAME`` of the methods that take a selector)
    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    #: the kind of input this selector reads: a key of :data:`sketchbench_query.RECIPES`
    recipe: ClassVar[str] = ""
    #: axes of one sketch's input (beside the batch axis 0) whose size varies per sketch (the export's)
    dynamic_input_axes: ClassVar[dict[int, str]] = {}

    def __init__(self, canvases: Sequence[int], hidden: int, options: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        cs = sorted({int(c) for c in canvases})
        if not cs:
            raise ValueError("a canvas selector needs at least one canvas")
        #: everything a checkpoint needs to restore the choice is a buffer or a parameter
        self.register_buffer("canvas_set", torch.tensor(cs, dtype=torch.long))
        self.options: dict[str, Any] = dict(options or {})
        self.hidden = int(hidden)
        self.head = nn.Linear(self.build(self.hidden), len(cs))  # γ

    # -- what a subclass writes ---------------------------------------------------------------------
    @abstractmethod
    def build(self, hidden: int) -> int:
        """Create ψ_C's layers; return the size of the feature ``f`` it gives γ."""

    @abstractmethod
    def features(self, x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        """ψ_C: a batch from :meth:`collate` → ``(B, F)`` features."""

    def recipe_options(self) -> dict[str, Any]:
        """The options of this selector's input recipe (beside ``kind``)."""
        return {}

    def fit(self, inputs: Sequence[np.ndarray]) -> None:
        """Fit any input normalisation on the training sketches' inputs (buffers, so checkpoints
        keep it). Default: none."""

    def collate(self, inputs: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Per-sketch inputs (each with a batch axis of 1) → a batch and, for sequences, lengths.
        Default: inputs of one shape, concatenated."""
        return torch.from_numpy(np.concatenate([np.asarray(x) for x in inputs])), None

    # -- what every selector shares -------------------------------------------------------------------
    @property
    def canvases(self) -> list[int]:
        return [int(c) for c in self.canvas_set.tolist()]

    def input_recipe(self) -> dict[str, Any]:
        """The recipe that makes this selector's input from a sketch (the export manifest's)."""
        return {"kind": self.recipe, **self.recipe_options()}

    def make_input(self, vector: Sketch | None, raster: np.ndarray | None = None) -> np.ndarray:
        """One sketch's input (batch axis 1), by :meth:`input_recipe`: a vector sketch, or a raster
        one (vectorised first, except for image recipes)."""
        return selector_input(vector, raster, self.input_recipe())

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(self.features(x, lengths))

    @torch.no_grad()
    def predict(self, inputs: Sequence[np.ndarray], batch_size: int = 256) -> list[int]:
        """The chosen canvas of each input: argmax of p (deterministic inference)."""
        was_training = self.training
        self.eval()
        device = self.canvas_set.device
        chosen: list[int] = []
        for start in range(0, len(inputs), batch_size):
            x, lengths = self.collate(inputs[start : start + batch_size])
            chosen += self(x.to(device), lengths).argmax(dim=1).cpu().tolist()
        self.train(was_training)
        cs = self.canvases
        return [cs[k] for k in chosen]

    def flops_view(self) -> nn.Module:
        """The module whose FLOPs one query costs, called on that query's own input (batch 1)."""
        return _OneSketch(self)

    def export_module(self) -> nn.Module:
        """The deployment graph: one sketch's input (batch axis 1) → logits."""
        return _OneSketch(self)

    def export_graph(self) -> dict[str, Any]:
        """The selector's entry for :meth:`sketchbench.Method.export_modules`: the graph, an example
        input, and the recipe that makes its input from a sketch (the manifest's ``input``)."""
        example = torch.from_numpy(self.make_input(EXAMPLE_SKETCH))
        name = self.recipe or "input"
        axes = {name: dict(self.dynamic_input_axes)} if self.dynamic_input_axes else {}
        return {
            "module": self.export_module().eval(), "inputs": (example,), "role": "selector",
            "input_names": [name], "output_names": ["logits"], "dynamic_axes": axes,
            "about": {"encoder": self.name, "canvas_set": self.canvases, "input": self.input_recipe(),
                      "input_shape": list(example.shape), "input_dtype": str(example.dtype).replace("torch.", ""),
                      "output": f"float32 (1, {len(self.canvases)}) logits over canvas_set",
                      "choice": "canvas_set[argmax(logits)]: the sketch is then rendered at that canvas and encoded"},
        }

    def flops_inputs(self, inputs: Sequence[np.ndarray]) -> list[tuple[nn.Module, tuple[torch.Tensor, ...]]]:
        """(module, example input) per query, for the FLOPs counter."""
        view = self.flops_view().eval()
        device = self.canvas_set.device
        return [(view, (torch.from_numpy(np.asarray(x)).to(device),)) for x in inputs]


#: the sketch an export traces the selector with: three strokes
EXAMPLE_SKETCH = Sketch(np.array([[0.2, 0.2, 0], [0.8, 0.2, 0], [0.8, 0.8, 1], [0.2, 0.5, 0], [0.5, 0.6, 1],
                                  [0.4, 0.9, 0], [0.6, 0.85, 1]], dtype=np.float32))


class _OneSketch(nn.Module):
    """A selector called on one sketch's unpadded input: the graph that is counted and exported."""

    def __init__(self, selector: CanvasSelector) -> None:
        super().__init__()
        self.selector = selector

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.selector(x, None)
