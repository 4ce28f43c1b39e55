"""The common interface every FG-SBIR method implements.

A method owns a sketch encoder and a photo encoder (often the same network), trains itself on a
:class:`~sketchbench.data.rundata.RunData`, and encodes batches of uint8 images. The framework, not the
method, evaluates it, counts its FLOPs and params (by tracing :meth:`Method.sketch_branch`) and
measures latency. Register a subclass with the ``register_methods`` hook.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import torch
from torch import nn

from sketchbench.base.preset import Preset
from sketchbench.method.params import Param

if TYPE_CHECKING:
    from sketchbench.data.dataset import SketchItem
    from sketchbench.data.rundata import RunData

Kind = Literal["teacher", "student", "baseline"]


@dataclass
class MethodContext:
    """Everything a method is built from."""

    name: str
    params: dict[str, Any]
    preset: Preset
    device: torch.device
    seed: int
    #: where the backbone's pretrained weights come from: ``"auto"`` (the first installed weight
    #: source), a source's name, or ``None`` (random initialisation); the runner sets it only for
    #: methods whose :meth:`Method.pretrained_backbones` a source can fill
    pretrained: str | None = None
    #: a local checkpoint to start from (``--weights FILE``)
    weights: Path | None = None
    #: load ``weights`` even when it fills only part of the network (``--partial-weights``)
    partial_weights: bool = False
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("sketchbench"))

    @classmethod
    def create(cls, name: str, method: type[Method], preset: Preset, *, given: Mapping[str, Any] | None = None,
               device: torch.device | str = "cpu", seed: int = 0, **init: Any) -> MethodContext:
        """The context of ``method`` registered as ``name``: its parameters resolved for ``preset``
        (``given`` overrides, validated), on ``device``; ``init`` sets ``pretrained``/``weights``/..."""
        from sketchbench.method.params import resolve_params

        params = resolve_params(name, method.params, preset.name, dict(given or {}))
        return cls(name=name, params=params, preset=preset, device=torch.device(device), seed=seed, **init)


class EncodeFunction(nn.Module):
    """An encode function (uint8 images → embeddings) as a module, for tracing and export.
    ``modules`` are the networks the function reads: registered here, so that the trace sees their
    tensors as parameters (an unregistered parameter cannot become a graph constant)."""

    def __init__(self, fn: Any, *modules: nn.Module) -> None:
        super().__init__()
        self.fn = fn
        self.parts = nn.ModuleList(modules)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.fn(images)


class Method(ABC):
    """Base class of all methods.

    Class attributes describe the method to the runner:

    - ``kind``: ``"teacher"`` (a full FG-SBIR model), ``"student"`` (distilled from a teacher) or
      ``"baseline"``;
    - ``needs_teacher``: ``train`` gets a trained teacher; ``default_teacher`` names the one used
      when ``--teacher`` is not given;
    - ``upstream``: a method this one builds on (e.g. a canvas selector on a trained student). The
      runner trains it with the same teacher and passes it to ``train`` as ``upstream``;
      :meth:`upstream_for` may choose it from the parameters instead;
    - ``multi_canvas``: trained once on all of the preset's canvases; otherwise the runner trains
      one model per evaluated canvas (sketches rendered at that canvas);
    - ``dynamic``: picks each sketch's canvas itself (:meth:`choose_canvases`);
    - ``params``: declared hyper-parameters (``--param KEY=VALUE``).
    """

    kind: ClassVar[Kind] = "teacher"
    description: ClassVar[str] = ""
    needs_teacher: ClassVar[bool] = False
    default_teacher: ClassVar[str | None] = None
    upstream: ClassVar[str | None] = None
    multi_canvas: ClassVar[bool] = False
    dynamic: ClassVar[bool] = False
    params: ClassVar[Mapping[str, Param]] = {}
    #: bump when a change invalidates cached checkpoints of this method
    version: ClassVar[str] = "1"
    #: the trained model's content key (everything it was trained from), set by the runner once it
    #: is trained or restored: what students and caches built on it use as its identity
    trained_key: str | None = None

    @classmethod
    def upstream_for(cls, params: Mapping[str, Any]) -> str | None:
        """The registered name of the method this one builds on, with ``params`` (the resolved
        parameters). Default: the ``upstream`` class attribute; a method whose upstream is
        choosable (a canvas selector over any student) reads it from a parameter."""
        return cls.upstream

    @classmethod
    def pretrained_backbones(cls, params: Mapping[str, Any]) -> tuple[str, ...]:
        """The timm backbones this method builds with ``params``, whose weights ``--pretrained``
        fills through the weight sources. Default: the ``backbone`` parameter, if the method
        declares one; methods with their own networks (Sketch-a-Net, selectors) have none."""
        backbone = params.get("backbone")
        return (backbone,) if isinstance(backbone, str) and backbone else ()

    def __init__(self, ctx: MethodContext) -> None:
        self.ctx = ctx
        self.p = ctx.params
        self.device = ctx.device

    # -- training ---------------------------------------------------------------------------
    @abstractmethod
    def train(
        self,
        data: RunData,
        canvases: Sequence[int],
        teacher: Method | None = None,
    ) -> None:
        """Train on ``data``'s train split with sketches rendered at ``canvases``; ``teacher`` is the
        trained teacher of a method that ``needs_teacher``. A method with an upstream receives it
        before, through :meth:`bind_upstream` (the one path, also for a method restored from a
        checkpoint)."""

    # -- inference --------------------------------------------------------------------------
    @abstractmethod
    def encode_sketch(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 ``(B, c, c)`` black-on-white sketches → embeddings ``(B, ...)``."""

    @abstractmethod
    def encode_photo(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 ``(B, 3, S, S)`` photos → embeddings ``(B, ...)``."""

    def distance(self, sketches: torch.Tensor, photos: torch.Tensor) -> torch.Tensor:
        """``(Q, P)`` distances between sketch and photo embeddings (Euclidean by default)."""
        return torch.cdist(sketches.flatten(1).float(), photos.flatten(1).float())

    @abstractmethod
    def sketch_branch(self) -> nn.Module:
        """The module a query runs through, taking the float tensor of :meth:`sketch_input`.
        FLOPs and params are counted on it: features + global pool, no classifier."""

    def sketch_input(self, canvas: int, batch: int = 1) -> torch.Tensor:
        """An example float input of :meth:`sketch_branch` at ``canvas``."""
        return torch.zeros(batch, 3, canvas, canvas, device=self.device)

    def prepare_sketch(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 sketches → the float input of :meth:`sketch_branch` (used for latency)."""
        from sketchbench.method.inputs import to_input

        return to_input(images, channels=self.sketch_input(8).shape[1], device=self.device)

    # -- deployment -----------------------------------------------------------------------------
    def export_modules(self, canvases: Sequence[int], photo_size: int) -> dict[str, dict[str, Any]]:
        """What ``sketchbench export`` writes as ONNX graphs (and the ``onnxruntime`` latency runtime
        runs), by name. Each entry is a dict:

        - ``module``: an ``nn.Module`` on tensors, traced by the exporter; ``inputs``: example inputs;
        - ``input_names``, ``output_names``, ``dynamic_axes`` (``{name: {axis: label}}``);
        - ``role``: ``"sketch_encoder"`` (verified at every canvas of ``canvases``, which it carries as
          ``canvases``), ``"photo_encoder"`` or ``"selector"`` (a dynamic method's canvas choice: its
          ``about`` gives ``canvas_set``, the ``input`` recipe, see
          :func:`sketchbench.measure.onnx.selector_input`, and ``choice``);
        - ``about``: JSON facts for the manifest (what the inputs and outputs are).

        Default: the whole uint8 → embedding paths, :meth:`encode_sketch` (uint8 ``(B, c, c)``) and
        :meth:`encode_photo` (uint8 ``(B, 3, S, S)``), so the input normalisation is in the graphs,
        reading :meth:`modules` and :meth:`sketch_branch`. Override to add graphs (a canvas selector),
        or when the encoders read networks outside those two."""
        c0 = min(int(c) for c in canvases)
        sketch = torch.full((1, c0, c0), 255, dtype=torch.uint8)
        sketch[:, c0 // 4 : c0 // 2, c0 // 4 : 3 * c0 // 4] = 0
        photo = torch.randint(0, 256, (1, 3, photo_size, photo_size), dtype=torch.uint8,
                              generator=torch.Generator().manual_seed(0))
        parts = (self.modules(), self.sketch_branch())
        return {
            "sketch_encoder": {
                "module": EncodeFunction(self.encode_sketch, *parts), "inputs": (sketch,), "role": "sketch_encoder",
                "canvases": [int(c) for c in canvases], "input_names": ["sketch"], "output_names": ["embedding"],
                "dynamic_axes": {"sketch": {0: "batch", 1: "height", 2: "width"}, "embedding": {0: "batch"}},
                "about": {"input": "uint8 (B, c, c): sketches rendered at canvas c, black (0) strokes on white (255)",
                          "output": "float32 embeddings (B, ...) as encode_sketch returns them (normalisation inside)"},
            },
            "photo_encoder": {
                "module": EncodeFunction(self.encode_photo, *parts), "inputs": (photo,), "role": "photo_encoder",
                "input_names": ["photo"], "output_names": ["embedding"],
                "dynamic_axes": {"photo": {0: "batch"}, "embedding": {0: "batch"}},
                "about": {"input": f"uint8 (B, 3, {photo_size}, {photo_size}) RGB photos, channels first, "
                                   "resized square as the dataset loader does",
                          "output": "float32 embeddings (B, ...): the gallery, encoded once offline"},
            },
        }

    # -- dynamic methods ----------------------------------------------------------------------
    def choose_canvases(self, data: RunData, split: str) -> list[int]:
        """For dynamic methods: the canvas each sketch of ``split`` is rendered at (evaluation; a
        method may memoise per split)."""
        raise NotImplementedError

    def choose_canvas(self, item: SketchItem) -> int:
        """For dynamic methods: the canvas of one query, computed from scratch (retrieve, the demo,
        end-to-end latency: nothing is memoised)."""
        raise NotImplementedError

    def selector_flops_inputs(self, data: RunData, split: str) -> list[tuple[nn.Module, tuple]]:
        """For dynamic methods: (module, example inputs) per sketch of ``split``, whose FLOPs the
        framework adds to that query's encoder FLOPs (e.g. the GRU over that sketch's sequence)."""
        return []

    def sketches_at(self, data: RunData, split: str, canvas: int, indices: Sequence[int]) -> torch.Tensor:
        """The queries ``indices`` of ``split`` as this method's encoder sees them at ``canvas``: uint8
        ``(len(indices), c, c)`` (or ``(len(indices), 3, c, c)`` for image queries). Evaluation takes
        every query from here, at a fixed canvas and at a dynamic method's chosen ones. Default: the
        cached sketch renders; override to feed your own inputs (e.g. a crop of the sketch, or, for
        photo-query retrieval, a degraded view of the paired photo)."""
        return data.sketches(split, canvas)[list(indices)]

    def bind_upstream(self, upstream: Method) -> None:
        """Receive the trained upstream method before ``train`` or ``load_state`` (a method restored
        from a checkpoint gets it only this way). Default: ignored."""
        return None

    def extra_metrics(self, data: RunData, canvas: int | None) -> dict[str, float]:
        """Method-specific metrics added to the result cell (e.g. on-the-fly retrieval)."""
        return {}

    def diagnostics(self) -> dict[str, Any]:
        """A JSON-able record of how the method trained, kept as the dynamic cell's ``diagnostics``
        (e.g. a canvas selector's per-epoch entropy and canvas shares, read by ``report --analysis
        selector``). Default: none."""
        return {}

    # -- state ----------------------------------------------------------------------------------
    @abstractmethod
    def modules(self) -> nn.Module:
        """Every trainable part, as one module (saved and loaded as its state dict)."""

    def state(self) -> dict[str, Any]:
        """What a checkpoint holds. Override to store structure (e.g. pruned widths)."""
        return {"state_dict": self.modules().state_dict()}

    def load_state(self, state: dict[str, Any]) -> None:
        self.modules().load_state_dict(state["state_dict"])

    def eval(self) -> Method:
        self.modules().eval()
        return self

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.ctx.name}>"
