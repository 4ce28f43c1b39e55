"""MobileNetV2-SN: the efficient photo network trained for FG-SBIR with the triplet loss alone.

The paper's motivating baseline ("existing efficient photo networks do not work on sketches"):
MobileNetV2 (timm ``mobilenetv2_100``: features + global average pool, 1280-d, 2.22 M params,
0.833 GFLOPs at 256²), one network shared by sketches and photos, embeddings L2-normalised,
Euclidean triplet loss ``max(0, m + d(s, p) − d(s, n))``.

Interpretation: it is trained multi-canvas like SketchyNetV1 (the loss is the mean over the
preset's canvases, each training sketch rendered at every canvas), so that the only difference
to SketchyNetV1 is the distillation term; the paper's "trained directly with the triplet loss"
row does not say which canvases it saw.

:class:`TripletStudent` is the shared multi-canvas triplet loop that SketchyNetV1, the KD
baselines and the pruning baselines build on: subclasses add a loss term per canvas
(:meth:`TripletStudent.canvas_loss`) and per-step teacher targets
(:meth:`TripletStudent.step_targets`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from sketchbench import Method, MethodContext, Param, RunData, SketchbenchError
from sketchbench.training import (
    Trainer,
    create_backbone,
    edge_map,
    freeze_batchnorm,
    to_input,
    triplet_epochs,
    triplet_loss,
)

#: the paper's student backbones (main result, EfficientNet and ResNet-18 ablations)
PAPER_BACKBONES = ("mobilenetv2_100", "efficientnet_b0", "resnet18")
#: the EfficientNet ablation with offline ImageNet weights (weight source ``efficientnet-lite0``);
#: EfficientNet-B0, the poster's 4.01 M row, has no offline weights here
OFFLINE_BACKBONES = ("efficientnet_lite0",)
#: timm's tiny random test networks, for fast tests only (not a paper setting)
TEST_BACKBONES = ("test_efficientnet", "test_resnet")

TRIPLET_PARAMS: dict[str, Param] = {
    "margin": Param(0.2, "triplet margin μ (Euclidean distance of L2-normalised embeddings)", min=0.0, max=4.0),
    "lr": Param(0.0, "learning rate", min=1e-12, max=10.0, zero_is_preset=True),
    "epochs": Param(0, "epochs", min=1, max=10000, zero_is_preset=True),
    "augment": Param(True, "random sketch shifts and horizontal flips of sketches and photos"),
    "freeze_bn": Param(False, "keep BatchNorm statistics at their pretrained values while training",
                       presets={"cpu-imagenet": True}, since="0.2"),
    "photo_input": Param(
        "rgb", "photos as RGB (the paper, with ImageNet weights) or as Sobel edge maps (the offline recipe: "
        "without pretrained weights a shared network learns sketch-photo matching far better on edge maps)",
        choices=("rgb", "edges"), presets={"smoke": "edges", "cpu": "edges"}),
}

STUDENT_PARAMS: dict[str, Param] = {
    "backbone": Param(
        "mobilenetv2_100",
        "student backbone (timm, features + global pool): the paper's MobileNetV2, or the EfficientNet-B0 / "
        "ResNet-18 ablations (efficientnet_lite0: the EfficientNet row with offline ImageNet weights); test_* are "
        "tiny random nets for tests",
        choices=PAPER_BACKBONES + OFFLINE_BACKBONES + TEST_BACKBONES,
    ),
    **TRIPLET_PARAMS,
}


@dataclass
class StepBatch:
    """One training step: triplet indices into the training split, the student's photo
    embeddings, which sketches were flipped, and whatever :meth:`TripletStudent.step_targets`
    prepared (teacher outputs)."""

    anchors: torch.Tensor
    positives: torch.Tensor
    negatives: torch.Tensor
    photo_pos: torch.Tensor
    photo_neg: torch.Tensor
    flipped: torch.Tensor
    targets: Any = None


class TripletStudent(Method):
    """A network shared by sketches and photos, L2-normalised embeddings, trained with the
    triplet loss averaged over the canvases it is given (all of the preset's when
    ``multi_canvas``). ``self.net`` is the sketch branch."""

    kind = "baseline"
    multi_canvas = True
    params: ClassVar[dict[str, Param]] = TRIPLET_PARAMS
    #: the student's last spatial feature map is needed by ``canvas_loss`` (FitNets, AT)
    uses_feature_maps: ClassVar[bool] = False
    #: random shifts of sketches (off for map-based KD: the cached teacher map is not shifted)
    shift_sketches: ClassVar[bool] = True

    def __init__(self, ctx: MethodContext) -> None:
        super().__init__(ctx)
        self.in_chans = 3
        self.net: nn.Module | None = self.build_net()

    # -- network ------------------------------------------------------------------------------
    def build_net(self) -> nn.Module | None:
        return None

    def _net(self) -> nn.Module:
        if self.net is None:
            raise SketchbenchError(f"{self.ctx.name}: no network yet (it is built from a trained teacher)")
        return self.net

    def modules(self) -> nn.Module:
        return self._net()

    def sketch_branch(self) -> nn.Module:
        return self._net()

    def sketch_input(self, canvas: int, batch: int = 1) -> torch.Tensor:
        return torch.zeros(batch, self.in_chans, canvas, canvas, device=self.device)

    def forward(self, images: torch.Tensor, with_map: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """uint8 images → (L2-normalised embedding, last feature map or None)."""
        net = self._net()
        if images.dim() == 4 and images.shape[1] == 3 and self.p.get("photo_input") == "edges":
            images = edge_map(images)
        x = to_input(images, self.in_chans, self.device)
        if with_map:
            fmap = net.forward_features(x)
            emb = net.forward_head(fmap, pre_logits=True)
        else:
            fmap, emb = None, net(x)
        return F.normalize(emb.float().flatten(1), dim=-1), fmap

    def encode_sketch(self, images: torch.Tensor) -> torch.Tensor:
        return self.forward(images)[0]

    def encode_photo(self, images: torch.Tensor) -> torch.Tensor:
        return self.forward(images)[0]

    # -- hooks for subclasses -------------------------------------------------------------------
    def setup_training(self, data: RunData, canvases: Sequence[int], teacher: Method | None) -> list[nn.Parameter]:
        """Prepare teacher outputs before the first step; return extra trainable parameters."""
        return []

    def step_targets(self, batch: StepBatch) -> Any:
        """Per-step teacher targets shared by every canvas of the step."""
        return None

    def canvas_loss(self, batch: StepBatch, sketch_emb: torch.Tensor, sketch_map: torch.Tensor | None) -> torch.Tensor:
        """The loss at one canvas (the plain triplet loss here)."""
        return triplet_loss(sketch_emb, batch.photo_pos, batch.photo_neg, self.p["margin"])

    # -- training -------------------------------------------------------------------------------
    def train(self, data: RunData, canvases: Sequence[int], teacher: Method | None = None) -> None:
        if self.needs_teacher and teacher is None:
            raise SketchbenchError(f"{self.ctx.name} needs a trained teacher")
        extra = self.setup_training(data, canvases, teacher)
        net = self._net()
        trainer = Trainer([*net.parameters(), *extra], lr=self.p["lr"] or self.ctx.preset.lr, device=self.device,
                          desc=self.ctx.name)
        self.fit(trainer, data, canvases, self.p["epochs"] or self.ctx.preset.epochs)

    def fit(self, trainer: Trainer, data: RunData, canvases: Sequence[int], epochs: int,
            max_steps: int | None = None, on_step: Any = None) -> int:
        """Run the multi-canvas triplet loop (``sketchbench.training.triplet_epochs`` with one flip per
        sketch and step, the same at every canvas) for ``epochs`` (or ``max_steps`` steps); returns
        the number of steps taken. ``on_step`` is called after each step (pruning schedules)."""
        net = self._net()
        net.train()
        if self.p.get("freeze_bn"):
            freeze_batchnorm(net)
        taken = 0
        for b in triplet_epochs(data, trainer, epochs=epochs, canvases=canvases, batch_size=self.ctx.preset.batch_size,
                                seed=self.ctx.seed + trainer.global_step,
                                augment=self.p["augment"], joint_flip=True, shift=self.shift_sketches, max_steps=max_steps):
            with trainer.autocast():
                photo_emb, _ = self.forward(torch.cat([b.pos, b.neg]))
                fp, fn = photo_emb.split(len(b.anchors))
                batch = StepBatch(b.anchors, b.positives, b.negatives, fp, fn, b.flipped)
                batch.targets = self.step_targets(batch)
                loss = 0.0
                for c in canvases:  # multi-canvas: L* = mean over the canvas set
                    emb, fmap = self.forward(b.sketches[c], with_map=self.uses_feature_maps)
                    loss = loss + self.canvas_loss(batch, emb, fmap)
                loss = loss / len(canvases)
            trainer.step(loss)
            taken += 1
            if on_step is not None:
                on_step(taken)
        net.eval()
        return taken


class MobileNetV2SN(TripletStudent):
    kind = "baseline"
    description = "MobileNetV2 trained with the triplet loss alone, multi-canvas (photo-efficient net on sketches)"
    params = STUDENT_PARAMS

    def build_net(self) -> nn.Module:
        net = create_backbone(self.p["backbone"], pretrained=self.ctx.pretrained, weights=self.ctx.weights,
                              partial_weights=self.ctx.partial_weights)
        net = net.to(self.device)
        if self.device.type == "cuda":
            net = net.to(memory_format=torch.channels_last)
        return net
