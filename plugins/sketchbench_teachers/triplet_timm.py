"""A triplet network on a timm backbone: the shared-weight Siamese FG-SBIR baseline.

``triplet-timm`` takes any timm backbone (features + global pool); ``vgg16-sn`` (B-VGG16-SN, the
paper's headline full network: VGG16 features + global pool, 40.18 GFLOPs / 14.71 M at 256) is
the same recipe with VGG16 fixed.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sketchbench import Method, MethodContext, Param, RunData
from sketchbench.training import (
    Trainer,
    create_backbone,
    random_flip,
    random_shift,
    to_input,
    triplet_batches,
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
        preset = data.preset
        epochs = self.p["epochs"] or preset.epochs
        lr = self.p["lr"] or preset.lr
        sketches = {c: data.sketches("train", c) for c in canvases}
        photos = data.photos("train")
        pairs = data.pairs("train")
        hard = data.split("train").hard_negatives
        rng = np.random.default_rng(self.ctx.seed)
        gen = torch.Generator().manual_seed(self.ctx.seed)
        steps = max(1, (len(pairs) + preset.batch_size - 1) // preset.batch_size)
        trainer = Trainer(self.net.parameters(), lr=lr, device=self.device, desc=self.ctx.name)
        self.net.train()
        for _ in trainer.epochs(epochs, steps):
            for a, p, n in triplet_batches(pairs, photos.shape[0], preset.batch_size, rng, hard):
                pos, neg = photos[p], photos[n]
                if self.p["augment"]:
                    pos, neg = random_flip(pos, gen), random_flip(neg, gen)
                with trainer.autocast():
                    fp, fn = self.embed(pos), self.embed(neg)
                    loss = 0.0
                    for c in canvases:  # multi-canvas: the mean over the canvas set
                        s = sketches[c][a]
                        if self.p["augment"]:
                            s = random_shift(random_flip(s, gen), generator=gen)
                        loss = loss + triplet_loss(self.embed(s), fp, fn, self.p["margin"])
                    loss = loss / len(canvases)
                trainer.step(loss)
        self.net.eval()


class VGG16SN(TimmTriplet):
    kind = "teacher"
    description = "B-VGG16-SN: VGG16 features + global pool, triplet loss (the paper's full network)"
    params = {**TimmTriplet.params, "backbone": Param("vgg16", "fixed: VGG16", choices=("vgg16", "vgg16_bn"))}
