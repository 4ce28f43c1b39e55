"""Dynamic methods on a frozen upstream: the public base classes for a method that only decides at
which canvas each query sketch is rendered, and leaves encoding to a trained upstream student.

- :class:`OnUpstream`: encoding, distances and the counted sketch branch are the upstream's, reached
  through the public :class:`~sketchbench.Method` interface only, so a query's FLOPs are the
  upstream's at the chosen canvas (plus a selector's, where there is one);
- :class:`SelectorOnUpstream`: the choice is a registered :class:`~sketchbench.CanvasSelector`
  (``--param encoder=NAME``), argmax at inference, its own FLOPs added to each query's. Inputs are
  made once per split by the selector's recipe; the subclass only trains it (``train``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from sketchbench.base.errors import SketchbenchError
from sketchbench.base.preset import Preset
from sketchbench.data.dataset import SketchItem
from sketchbench.data.rundata import RunData
from sketchbench.method.interface import Method, MethodContext
from sketchbench.method.selector import CanvasSelector


class OnUpstream(Method):
    """A dynamic method whose encoders are those of a frozen upstream method."""

    dynamic = True
    #: a subclass names its upstream (``upstream = "name"``, a registered multi-canvas method) and the
    #: teacher that upstream is distilled from when ``--teacher`` is not given (``default_teacher``;
    #: the runner passes it on to the upstream): the core names no method
    needs_teacher = False

    _upstream: Method | None = None

    @property
    def upstream_name(self) -> str | None:
        """The registered name of the upstream with this method's parameters."""
        return type(self).upstream_for(self.p)

    def bind_upstream(self, upstream: Method) -> None:
        self._upstream = upstream

    @property
    def up(self) -> Method:
        if self._upstream is None:
            raise SketchbenchError(
                f"{self.ctx.name}: no trained upstream was given (it runs on a frozen {self.upstream_name}); "
                "bind it with bind_upstream() first"
            )
        return self._upstream

    def freeze_upstream(self) -> Method:
        """The bound upstream (``bind_upstream``, called by the runner before ``train``), frozen:
        only ever run in eval mode under inference_mode, never updated (its parameters are left
        untouched, since the runner shares the object)."""
        if self._upstream is None:
            raise SketchbenchError(f"{self.ctx.name} needs its trained upstream ({self.upstream_name}) to train")
        self._upstream.eval()
        return self._upstream

    def encode_sketch(self, images: torch.Tensor) -> torch.Tensor:
        return self.up.encode_sketch(images)

    def encode_photo(self, images: torch.Tensor) -> torch.Tensor:
        return self.up.encode_photo(images)

    def distance(self, sketches: torch.Tensor, photos: torch.Tensor) -> torch.Tensor:
        return self.up.distance(sketches, photos)

    def sketch_branch(self) -> nn.Module:
        return self.up.sketch_branch()

    def sketch_input(self, canvas: int, batch: int = 1) -> torch.Tensor:
        return self.up.sketch_input(canvas, batch)

    def prepare_sketch(self, images: torch.Tensor) -> torch.Tensor:
        return self.up.prepare_sketch(images)

    def eval(self) -> Method:
        super().eval()
        if self._upstream is not None:
            self._upstream.eval()
        return self


def canvas_set(preset: Preset, canvases: Sequence[int] | None = None) -> list[int]:
    """The canvases to choose from, ascending: the ones given (the runner passes the preset's for a
    dynamic method), else the preset's."""
    cs = sorted({int(c) for c in (canvases or preset.canvases)})
    if not cs:
        raise SketchbenchError("the canvas set is empty")
    return cs


class SelectorOnUpstream(OnUpstream):
    """A dynamic method whose canvas choice is a registered :class:`CanvasSelector`.

    Subclasses declare the params ``encoder`` (the selector's registered name) and ``hidden``, and
    any of the selector's options (:attr:`selector_options`, e.g. ``max_points`` and ``coords`` of
    the sequence selectors), and implement ``train`` (fit ``self.selector``; the training sketches'
    inputs come from :meth:`prepare_training`).
    """

    #: the params passed to the selector as options when the method declares them
    selector_options: ClassVar[tuple[str, ...]] = ("max_points", "coords")

    def __init__(self, ctx: MethodContext) -> None:
        super().__init__(ctx)
        self._inputs: dict[tuple[int, str], list[np.ndarray]] = {}
        self.build_selector(ctx.preset.canvases)

    def build_selector(self, canvases: Sequence[int]) -> None:
        from sketchbench.method.registries import selector_class

        cls = selector_class(self.p["encoder"])
        options = {k: self.p[k] for k in self.selector_options if k in self.p}
        with torch.random.fork_rng(devices=[]):  # a seeded initialisation, without touching the global RNG
            torch.manual_seed(self.ctx.seed)
            self.selector: CanvasSelector = cls(canvases, int(self.p["hidden"]), options).to(self.device)
        self._inputs = {}

    # -- inputs -----------------------------------------------------------------------------------
    def selector_inputs(self, data: RunData, split: str) -> list[np.ndarray]:
        """The selector's input of every sketch of ``split`` (made once per data and split)."""
        key = (id(data), split)
        if key not in self._inputs:
            self._inputs[key] = [self.selector.make_input(it.vector, it.raster) for it in data.items(split)]
        return self._inputs[key]

    def prepare_training(self, data: RunData, canvases: Sequence[int]) -> tuple[list[int], list[np.ndarray]]:
        """(canvas set, the training sketches' inputs): rebuilds the selector for the canvases given
        and fits its input normalisation on the training split."""
        cs = canvas_set(self.ctx.preset, canvases)
        if cs != self.selector.canvases:
            self.build_selector(cs)
        if len(data.items("train")) < 2:
            raise SketchbenchError(f"{self.ctx.name}: the selector needs at least two training sketches")
        self.selector.fit(self.selector_inputs(data, "train"))
        self._inputs = {}  # a fitted recipe option (e.g. an offset scale) changes the inputs
        return cs, self.selector_inputs(data, "train")

    # -- state ------------------------------------------------------------------------------------
    def modules(self) -> nn.Module:
        return self.selector

    def state(self) -> dict[str, Any]:
        return {"state_dict": self.selector.state_dict()}

    def load_state(self, state: dict[str, Any]) -> None:
        saved = [int(c) for c in state["state_dict"]["canvas_set"].tolist()]
        if saved != self.selector.canvases:
            self.build_selector(saved)
        self.selector.load_state_dict(state["state_dict"])
        self._inputs = {}

    # -- choosing -----------------------------------------------------------------------------------
    def choose_canvases(self, data: RunData, split: str) -> list[int]:
        return self.selector.predict(self.selector_inputs(data, split))

    def choose_canvas(self, item: SketchItem) -> int:
        return self.selector.predict([self.selector.make_input(item.vector, item.raster)])[0]

    def selector_flops_inputs(self, data: RunData, split: str) -> list[tuple[nn.Module, tuple]]:
        return self.selector.flops_inputs(self.selector_inputs(data, split))

    def export_modules(self, canvases: Sequence[int], photo_size: int) -> dict[str, dict[str, Any]]:
        """The upstream's own encoder graphs (over the selector's canvas set) and the selector graph."""
        graphs = {k: g for k, g in self.up.export_modules(self.selector.canvases, photo_size).items()
                  if g.get("role") != "selector"}
        graphs["selector"] = self.selector.export_graph()
        return graphs
