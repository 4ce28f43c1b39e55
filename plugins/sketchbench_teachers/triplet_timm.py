"""A triplet network on a timm backbone: the shared-weight Siamese FG-SBIR baseline.

``triplet-timm`` takes any timm backbone (features + global pool); ``vgg16-sn`` (B-VGG16-SN, the
paper's headline full network: VGG16 features + global pool, 40.18 GFLOPs / 14.71 M at 256) is
the same recipe with VGG16 fixed.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from sketchbench import Method, MethodContext, Param, RunData
from sketchbench.method.training import (
    Trainer,
    TripletBatch,
    create_backbone,
    to_input,
    triplet_epochs,
    triplet_loss,
)


class TimmTriplet(Method):
    kind = "baseline"
    description = "triplet-trained timm backbone (features + global pool), shared sketch/photo weights"
    params = {
        "backbone": Param("mobilenetv2_100", "timm model name"),
        "margin": Param(0.2, "triplet margin (Euclidean distance of L2-normalised embeddings)"),
        "lr": Param(0.0, "learning rate (0 = the preset's)"),
        "epochs": Param(0, "epochs (0 = the preset's)"),
        "augment": Param(True, "random shifts and joint horizontal flips"),
    }

    def __init__(self, ctx: MethodContext) -> None:
        super().__init__(ctx)
        self.net = create_backbone(self.p["backbone"], pretrained=ctx.pretrained, weights=ctx.weights).to(self.device)
        if self.device.type == "cuda":
            self.net = self.net.to(memory_format=torch.channels_last)

    def modules(self) -> nn.Module:
        return self.net

    def sketch_branch(self) -> nn.Module:
        return self.net

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.net(to_input(x, 3, self.device)).float(), dim=-1)

    def encode_sketch(self, images: torch.Tensor) -> torch.Tensor:
        return self.embed(images)

    def encode_photo(self, images: torch.Tensor) -> torch.Tensor:
        return self.embed(images)

    def train(self, data: RunData, canvases: Sequence[int], teacher: Method | None = None,
              upstream: Method | None = None) -> None:
        lr = self.p["lr"] or data.preset.lr
        trainer = Trainer(self.net.parameters(), lr=lr, device=self.device, desc=self.ctx.name)
        self.net.train()
        for b in triplet_epochs(data, trainer, epochs=self.p["epochs"] or data.preset.epochs, canvases=canvases,
                                seed=self.ctx.seed, augment=self.p["augment"]):
            with trainer.autocast():
                fp, fn = self.embed(b.pos), self.embed(b.neg)
                anchors = self.anchor_views(data, b)
                # multi-canvas: the mean over the canvas set
                loss = sum(triplet_loss(self.embed(s), fp, fn, self.p["margin"]) for s in anchors.values())
                loss = loss / len(anchors)
            trainer.step(loss)
        self.net.eval()

    def anchor_views(self, data: RunData, batch: TripletBatch) -> dict[int, torch.Tensor]:
        """The step's queries per canvas: the augmented sketches (photo-query subclasses swap them)."""
        return batch.sketches


class VGG16SN(TimmTriplet):
    kind = "teacher"
    description = "B-VGG16-SN: VGG16 features + global pool, triplet loss (the paper's full network)"
    params = {**TimmTriplet.params, "backbone": Param("vgg16", "fixed: VGG16", choices=("vgg16", "vgg16_bn"))}
