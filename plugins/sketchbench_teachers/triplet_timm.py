"""A triplet network on a timm backbone: the shared-weight Siamese FG-SBIR baseline.

``triplet-timm`` takes any timm backbone (features + global pool); ``vgg16-sn`` (B-VGG16-SN, the
paper's headline full network: VGG16 features + global pool, 40.18 GFLOPs / 14.71 M at 256) is
the same recipe with VGG16 fixed.

Two levers for pretrained starts on a CPU budget (the ``cpu-imagenet`` preset turns them on):

- ``freeze_bn``: BatchNorm layers stay in eval mode while training, so batches of 16 sketches never
  overwrite the ImageNet statistics (with them updated, fine-tuning fell below the zero-shot start).
- ``freeze_stages=N``: the stem and the first N stages are frozen and computed once per training
  image (and once per flipped image, since a flip is the one augmentation that survives: shifts
  are off), so a step only runs the rest. A VGG16 step at 96 px costs ≈ 8 s on one core; with
  conv1–4 frozen it costs a small fraction of that, which makes B-VGG16-SN trainable here.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sketchbench import Method, MethodContext, Param, RunData, SketchbenchError
from sketchbench.training import (
    Trainer,
    TripletBatch,
    create_backbone,
    freeze_batchnorm,
    split_backbone,
    to_input,
    triplet_batches,
    triplet_epochs,
    triplet_loss,
)

from .frozen_trunk import cached_trunk


class TimmTriplet(Method):
    kind = "baseline"
    description = "triplet-trained timm backbone (features + global pool), shared sketch/photo weights"
    params = {
        "backbone": Param("mobilenetv2_100", "timm model name"),
        "margin": Param(0.2, "triplet margin (Euclidean distance of L2-normalised embeddings)", min=0.0, max=4.0),
        "lr": Param(0.0, "learning rate", min=1e-12, max=10.0, zero_is_preset=True),
        "epochs": Param(0, "epochs", min=1, max=10000, zero_is_preset=True),
        "augment": Param(True, "random shifts and joint horizontal flips"),
        "freeze_bn": Param(False, "keep BatchNorm statistics at their pretrained values while training",
                           presets={"cpu-imagenet": True}, since="0.2"),
        "freeze_stages": Param(0, "freeze the stem and the first N stages, computed once per image (0 = train all)", since="0.2", min=0, max=8),
    }

    def __init__(self, ctx: MethodContext) -> None:
        super().__init__(ctx)
        self.net = create_backbone(self.p["backbone"], pretrained=ctx.pretrained, weights=ctx.weights,
                                   partial_weights=ctx.partial_weights).to(self.device)
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

    def train(self, data: RunData, canvases: Sequence[int], teacher: Method | None = None) -> None:
        if self.p["freeze_stages"] < 0:
            raise SketchbenchError(f"--param freeze_stages={self.p['freeze_stages']}: must be 0 or more")
        if self.p["freeze_stages"]:
            self.train_on_frozen_stages(data, canvases)
            return
        lr = self.p["lr"] or self.ctx.preset.lr
        trainer = Trainer(self.net.parameters(), lr=lr, device=self.device, desc=self.ctx.name)
        self.net.train()
        if self.p["freeze_bn"]:
            freeze_batchnorm(self.net)
        for b in triplet_epochs(data, trainer, epochs=self.p["epochs"] or self.ctx.preset.epochs, canvases=canvases,
                                batch_size=self.ctx.preset.batch_size, seed=self.ctx.seed, augment=self.p["augment"]):
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

    def train_on_frozen_stages(self, data: RunData, canvases: Sequence[int]) -> None:
        """The same triplet loop with the early stages frozen: their outputs for every training
        sketch (at each canvas) and photo, plain and flipped, come from the artifact cache
        (:mod:`.frozen_trunk`: computed once, shared by seeds and runs); a step runs the rest of
        the network on them. Augmentation is the flip only (no shifts: a shifted sketch would need
        its own trunk pass)."""
        early, rest = split_backbone(self.net, self.p["freeze_stages"])
        for q in early.parameters():
            q.requires_grad_(False)
        trunk = cached_trunk(early, data, canvases, flips=self.p["augment"], batch_size=self.ctx.preset.eval_batch_size,
                             device=self.device)
        photos = data.photos("train")
        pairs, hard = data.pairs("train"), data.split("train").hard_negatives
        rng = np.random.default_rng(self.ctx.seed)
        gen = torch.Generator().manual_seed(self.ctx.seed)
        epochs = self.p["epochs"] or self.ctx.preset.epochs
        steps = max(1, (len(pairs) + self.ctx.preset.batch_size - 1) // self.ctx.preset.batch_size)
        trainer = Trainer(rest.parameters(), lr=self.p["lr"] or self.ctx.preset.lr, device=self.device, desc=self.ctx.name)

        def pick(views: list[torch.Tensor], idx: torch.Tensor) -> torch.Tensor:
            x = views[0][idx]
            if len(views) > 1:  # each image flipped or not with probability 1/2
                flip = torch.rand(len(idx), generator=gen) < 0.5
                x = torch.where(flip.view(-1, 1, 1, 1), views[1][idx], x)
            return x.to(self.device, torch.float32)

        def embed(x: torch.Tensor) -> torch.Tensor:
            return F.normalize(rest(x).float(), dim=-1)

        rest.train()
        if self.p["freeze_bn"]:
            freeze_batchnorm(rest)
        for _ in trainer.epochs(epochs, steps):
            for a, p, n in triplet_batches(pairs, photos.shape[0], self.ctx.preset.batch_size, rng, hard):
                with trainer.autocast():
                    fp, fn = embed(pick(trunk.photos, p)), embed(pick(trunk.photos, n))
                    loss = sum(triplet_loss(embed(pick(trunk.sketches[c], a)), fp, fn, self.p["margin"])
                               for c in canvases) / len(canvases)
                trainer.step(loss)
        self.net.eval()
        for q in early.parameters():
            q.requires_grad_(True)


class VGG16SN(TimmTriplet):
    kind = "teacher"
    description = "B-VGG16-SN: VGG16 features + global pool, triplet loss (the paper's full network)"
    params = {
        **TimmTriplet.params,
        "backbone": Param("vgg16", "fixed: VGG16", choices=("vgg16", "vgg16_bn")),
        "freeze_stages": Param(0, "freeze the stem and the first N conv blocks, computed once per image (0 = train all; "
                               "cpu-imagenet: conv1-4, only conv5 trains)", presets={"cpu-imagenet": 4}, since="0.2", min=0, max=8),
    }
