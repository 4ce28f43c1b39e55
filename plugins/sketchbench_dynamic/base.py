"""What every dynamic-canvas method here shares: it sits on a trained, frozen upstream student
(``upstream = "sketchynet-v1"``) and only decides at which canvas each query sketch is rendered.

Encoding, distances and the counted sketch branch are the upstream's, reached through the public
:class:`~sketchbench.Method` interface only (the upstream plugin is never imported), so a query's
FLOPs are the upstream's at the chosen canvas (plus the selector's, where there is one).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from sketchbench import (
    BadSketch,
    Method,
    MethodContext,
    Preset,
    RunData,
    Sketch,
    SketchbenchError,
    SketchItem,
    render_item,
    vectorise,
)

from .selectors import THUMBNAIL, SelectorBundle


class OnUpstream(Method):
    """A dynamic method whose encoders are those of a frozen upstream method."""

    dynamic = True
    upstream = "sketchynet-v1"
    needs_teacher = False
    #: the teacher its upstream is distilled from when ``--teacher`` is not given (the runner passes
    #: it on to the upstream)
    default_teacher = "triplet-sn"

    _upstream: Method | None = None

    # -- the upstream ---------------------------------------------------------------------------
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
        """The bound upstream (``bind_upstream``, called by the runner before ``train``), frozen."""
        upstream = self._upstream
        if upstream is None:
            raise SketchbenchError(f"{self.ctx.name} needs its trained upstream ({self.upstream_name}) to train")
        self.bind_upstream(upstream)
        # frozen: only ever run in eval mode under inference_mode (embed_in_batches), never
        # updated; its parameters are left untouched since the runner shares the object
        upstream.eval()
        return upstream

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
    """The canvases to choose from, ascending: the ones given (the runner passes the preset's
    for a dynamic method), else the preset's."""
    cs = sorted({int(c) for c in (canvases or preset.canvases)})
    if not cs:
        raise SketchbenchError("the canvas set is empty")
    return cs


def one_vector(item: SketchItem) -> Sketch:
    """The vector form of one query; a raster is vectorised (a blank one becomes a single dot)."""
    if item.vector is not None:
        return item.vector
    try:
        return vectorise(item.raster)
    except BadSketch:
        return Sketch(np.array([[0.5, 0.5, 1.0]], dtype=np.float32))


class SelectorOnUpstream(OnUpstream):
    """A dynamic method whose canvas choice is a selector network (:class:`SelectorBundle`):
    argmax at inference, and the selector's own FLOPs added to each query's.

    Subclasses declare the params ``encoder``, ``hidden``, ``max_points`` and ``coords``.
    """

    def __init__(self, ctx: MethodContext) -> None:
        super().__init__(ctx)
        self.build_selector(ctx.preset.canvases)

    def build_selector(self, canvases: Sequence[int]) -> None:
        cs = sorted({int(c) for c in canvases})
        with torch.random.fork_rng(devices=[]):  # a seeded initialisation, without touching the global RNG
            torch.manual_seed(self.ctx.seed)
            self.bundle = SelectorBundle(self.p["encoder"], cs, self.p["hidden"], self.p["max_points"],
                                         self.p["coords"]).to(self.device)

    def prepare_training(self, data: RunData, canvases: Sequence[int]) -> tuple[list[int], Any]:
        """(canvas set, the training sketches' selector inputs): rebuilds the selector for the
        canvases given and fits the input normalisation on the training split."""
        cs = canvas_set(self.ctx.preset, canvases)
        if cs != self.bundle.canvases:
            self.build_selector(cs)
        items = data.items("train")
        if len(items) < 2:
            raise SketchbenchError(f"{self.ctx.name}: the selector needs at least two training sketches")
        if self.bundle.encoder != "image":
            self.bundle.fit_inputs(data.vectors("train"))
        return cs, self.selector_inputs(data, "train")

    def modules(self) -> nn.Module:
        return self.bundle

    def load_state(self, state: dict[str, Any]) -> None:
        saved = [int(c) for c in state["state_dict"]["canvas_set"].tolist()]
        if saved != self.bundle.canvases:
            self.build_selector(saved)
        self.bundle.load_state_dict(state["state_dict"])
        self.bundle.clear_memo()

    def selector_inputs(self, data: RunData, split: str) -> list[torch.Tensor] | torch.Tensor:
        """The selector's input of every sketch of ``split`` (memoised per data and split)."""
        key = (id(data), split)
        if self.bundle.encoder == "image":
            return self.bundle.inputs(None, data.sketches(split, THUMBNAIL), key)
        return self.bundle.inputs(data.vectors(split), None, key)

    def choose_canvases(self, data: RunData, split: str) -> list[int]:
        return self.bundle.predict(self.selector_inputs(data, split), self.device)

    def choose_canvas(self, item: SketchItem) -> int:
        if self.bundle.encoder == "image":
            thumb = torch.from_numpy(render_item(item.vector, item.raster, THUMBNAIL)[None])
            inputs = self.bundle.inputs(None, thumb)
        else:
            inputs = self.bundle.inputs([one_vector(item)], None)
        return self.bundle.predict(inputs, self.device)[0]

    def export_modules(self, canvases: Sequence[int], photo_size: int) -> dict[str, dict[str, Any]]:
        """The upstream's own encoder graphs (over the selector's canvas set) and the selector graph."""
        graphs = {k: g for k, g in self.up.export_modules(self.bundle.canvases, photo_size).items()
                  if g.get("role") != "selector"}
        graphs["selector"] = self.bundle.export_graph()
        return graphs

    def selector_flops_inputs(self, data: RunData, split: str) -> list[tuple[nn.Module, tuple]]:
        return self.bundle.flops_inputs(self.selector_inputs(data, split), self.device)
