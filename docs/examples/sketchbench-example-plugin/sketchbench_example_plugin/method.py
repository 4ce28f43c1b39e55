"""``example-pixels``: a small CNN trained with the triplet loss (a Siamese FG-SBIR baseline).

One network embeds both sketches (grey, repeated to three channels) and photos, as in Triplet-SN
(Yu et al., CVPR 2016), but with four strided 3x3 convolutions instead of Sketch-a-Net so that it
trains in a second on a CPU. It shows everything a method implements:

- ``params``: declared hyper-parameters with per-preset defaults (``--param width=32``);
- ``__init__``: build the networks from ``ctx`` (parameters, device, seed);
- ``train``: the training procedure, written with :mod:`sketchbench.training` helpers;
- ``encode_sketch`` / ``encode_photo``: uint8 batches to embeddings;
- ``sketch_branch`` / ``modules``: what the framework counts FLOPs on, and what it checkpoints.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sketchbench import Method, MethodContext, Param, RunData
from sketchbench.training import Trainer, random_flip, seed_everything, to_input, triplet_batches, triplet_loss


class SmallCNN(nn.Module):
    """Four stride-2 conv-BN-ReLU blocks doubling the width, then global average pooling:
    features + global pool, no classifier (the convention FLOPs are counted in)."""

    def __init__(self, width: int = 16, in_chans: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        chans = in_chans
        for i in range(4):
            out = width * 2**i
            layers += [nn.Conv2d(chans, out, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(out), nn.ReLU(inplace=True)]
            chans = out
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.out_features = chans

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.features(x)).flatten(1)


class ExamplePixels(Method):
    kind = "baseline"
    description = "example plugin: a 4-layer CNN shared by sketches and photos, triplet loss"
    params = {
        "width": Param(16, "channels of the first conv layer (doubled at each of the 4 layers)", presets={"smoke": 8}),
        "margin": Param(0.2, "triplet margin on L2-normalised embeddings"),
        "lr": Param(0.0, "learning rate (0 = the preset's)"),
        "epochs": Param(0, "epochs (0 = the preset's)", presets={"smoke": 2}),
        "flip": Param(True, "flip each sketch/photo triplet horizontally with probability 1/2"),
    }
    # bump when a change makes cached checkpoints of this method stale
    version = "1"

    def __init__(self, ctx: MethodContext) -> None:
        super().__init__(ctx)
        seed_everything(ctx.seed)  # the same seed gives the same initial weights
        self.net = SmallCNN(self.p["width"]).to(self.device)

    # -- what the framework counts and saves ------------------------------------------------
    def modules(self) -> nn.Module:
        return self.net

    def sketch_branch(self) -> nn.Module:
        return self.net

    # -- inference --------------------------------------------------------------------------
    def _embed(self, images: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.net(to_input(images, 3, self.device)).float(), dim=-1)

    def encode_sketch(self, images: torch.Tensor) -> torch.Tensor:
        return self._embed(images)

    def encode_photo(self, images: torch.Tensor) -> torch.Tensor:
        return self._embed(images)

    # -- training ---------------------------------------------------------------------------
    def train(self, data: RunData, canvases: Sequence[int], teacher: Method | None = None) -> None:
        preset = data.preset
        epochs = self.p["epochs"] or preset.epochs
        lr = self.p["lr"] or preset.lr
        # sketches are rendered once per canvas by the framework; photos are one uint8 tensor
        sketches = {c: data.sketches("train", c) for c in canvases}
        photos = data.photos("train")
        pairs = data.pairs("train")
        rng = np.random.default_rng(self.ctx.seed)
        gen = torch.Generator().manual_seed(self.ctx.seed)
        steps = max(1, -(-len(pairs) // preset.batch_size))
        trainer = Trainer(self.net.parameters(), lr=lr, device=self.device, desc=self.ctx.name)
        self.net.train()
        for _ in trainer.epochs(epochs, steps):
            for a, p, n in triplet_batches(pairs, photos.shape[0], preset.batch_size, rng,
                                           data.split("train").hard_negatives):
                pos, neg = photos[p], photos[n]
                if self.p["flip"]:
                    pos, neg = random_flip(pos, gen), random_flip(neg, gen)
                with trainer.autocast():
                    fp, fn = self._embed(pos), self._embed(neg)
                    loss = 0.0
                    for c in canvases:  # one canvas unless the method is multi_canvas
                        s = sketches[c][a]
                        if self.p["flip"]:
                            s = random_flip(s, gen)
                        loss = loss + triplet_loss(self._embed(s), fp, fn, self.p["margin"])
                    loss = loss / len(canvases)
                trainer.step(loss)
        self.net.eval()
