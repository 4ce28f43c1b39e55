"""``example-pixels``: a small CNN trained with the triplet loss (a Siamese FG-SBIR baseline).

One network embeds both sketches (grey, repeated to three channels) and photos, as in Triplet-SN
(Yu et al., CVPR 2016), but with four strided 3x3 convolutions instead of Sketch-a-Net so that it
trains in a second on a CPU. It shows everything a method implements:

- ``params``: declared hyper-parameters with per-preset defaults (``--param width=32``);
- ``__init__``: build the networks from ``ctx`` (parameters, device, seed);
- ``train``: the training procedure, on the shared triplet loop of :mod:`sketchbench.training`;
- ``encode_sketch`` / ``encode_photo``: uint8 batches to embeddings;
- ``sketch_branch`` / ``modules``: what the framework counts FLOPs on, and what it checkpoints.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from sketchbench import Method, MethodContext, Param, RunData
from sketchbench.training import Trainer, seed_everything, to_input, triplet_epochs, triplet_loss


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
        "width": Param(16, "channels of the first conv layer (doubled at each of the 4 layers)", presets={"smoke": 8},
                       min=1, max=512),
        "margin": Param(0.2, "triplet margin on L2-normalised embeddings", min=0.0, max=2.0),
        "lr": Param(0.0, "learning rate", min=1e-12, max=10.0, zero_is_preset=True),
        "epochs": Param(0, "epochs", presets={"smoke": 2}, min=1, max=10000, zero_is_preset=True),
        "flip": Param(True, "random flips and shifts of sketches and photos"),
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
        # the loop every triplet-trained method shares: batches of the preset's size, negatives
        # never the positive (hard ones when the dataset has them), augmentation, the cached renders
        trainer = Trainer(self.net.parameters(), lr=self.p["lr"] or self.ctx.preset.lr, device=self.device, desc=self.ctx.name)
        self.net.train()
        for b in triplet_epochs(data, trainer, epochs=self.p["epochs"] or self.ctx.preset.epochs, canvases=canvases,
                                batch_size=self.ctx.preset.batch_size, seed=self.ctx.seed, augment=self.p["flip"]):
            with trainer.autocast():
                fp, fn = self._embed(b.pos), self._embed(b.neg)
                # one canvas unless the method is multi_canvas: the mean over them
                loss = sum(triplet_loss(self._embed(s), fp, fn, self.p["margin"]) for s in b.sketches.values())
                loss = loss / len(b.sketches)
            trainer.step(loss)
        self.net.eval()
