"""``triplet-sn``: Triplet-SN, "Sketch Me That Shoe" (Yu et al., CVPR 2016).

A Sketch-a-Net branch (:mod:`.sketch_a_net`) with one set of weights shared by the sketch anchor, the
positive photo and the negative photo (a Siamese triplet network), trained with the triplet ranking loss on
the *squared* Euclidean distance of L2-normalised 256-d embeddings, margin 0.3::

    L = mean max(0, 0.3 + ‖f(s) − f(p⁺)‖² − ‖f(s) − f(p⁻)‖²)

Interpretations (see ``docs/methods/triplet-sn.md``): "same" padding plus an adaptive 7×7 max pool so every
canvas works; Sobel edge maps of the photos (or greyscale photos) instead of Structured-Edge maps; He
initialisation instead of the staged Sketch-a-Net pretraining, so every layer trains (the released models freeze
conv1–5 on top of the pretrained init); Adam by default (the paper's SGD, momentum 0.9, weight decay 5e-4, lr 1e-3, is
``--param optimizer=sgd``) because SGD from scratch barely moves in the ``cpu`` preset's few epochs.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from sketchbench import Method, MethodContext, Param, RunData
from sketchbench.training import Trainer, TripletBatch, load_weights, triplet_epochs, triplet_loss

from .sketch_a_net import SketchANet, sketch_a_net_input

#: the paper's learning rate for SGD (Caffe solver and TF script); Adam uses the preset's
SGD_LR = 1e-3


class TripletSN(Method):
    kind = "teacher"
    description = "Triplet-SN (Yu et al. CVPR'16): Sketch-a-Net, shared weights, squared-Euclidean triplet"
    multi_canvas = False
    version = "1"
    params = {
        "margin": Param(0.3, "triplet margin on the squared Euclidean distance (paper: 0.3)", min=0.0, max=4.0),
        "optimizer": Param("adam", "adam, or the paper's sgd (momentum 0.9)", choices=("adam", "sgd")),
        "lr": Param(0.0, f"learning rate (0: the preset's for adam, the paper's {SGD_LR} for sgd)", min=1e-12, max=10.0, zero_is_preset=True),
        "momentum": Param(0.9, "SGD momentum (paper: 0.9)", min=0.0, max=0.999),
        "weight_decay": Param(5e-4, "L2 weight decay (paper: 5e-4)", min=0.0, max=1.0),
        "epochs": Param(0, "epochs", min=1, max=10000, zero_is_preset=True),
        "photo_input": Param("edges", "photo branch input: Sobel edge map (the paper feeds photo edge maps) or grey photo",
                             choices=("edges", "grey")),
        "grid": Param(7, "adaptive max-pool grid before fc6 (7 = the published 256x7x7 fc6 input)", min=1, max=16),
        "conv1_stride": Param(3, "conv1 stride (3 = published Sketch-a-Net; 2 lands on the paper's FLOPs table)",
                              choices=(2, 3)),
        "augment": Param(True, "random shifts and horizontal flips"),
    }

    def __init__(self, ctx: MethodContext) -> None:
        super().__init__(ctx)
        # no weight source serves Sketch-a-Net (it has no `backbone` parameter), so --pretrained never
        # reaches it; --weights FILE loads a local Sketch-a-Net state dict
        self.model = self.build().to(self.device)
        if ctx.weights is not None:
            load_weights(self.backbone(), ctx.weights, partial=ctx.partial_weights)
        if self.device.type == "cuda":
            self.model = self.model.to(memory_format=torch.channels_last)

    # -- network -------------------------------------------------------------------------------
    def build(self) -> nn.Module:
        """The whole trainable model; :meth:`embed` runs it on network input."""
        return SketchANet(in_chans=1, grid=self.p["grid"], conv1_stride=self.p["conv1_stride"])

    def backbone(self) -> nn.Module:
        """What ``--weights FILE`` initialises: the Sketch-a-Net (keys may carry a prefix)."""
        return self.model

    def modules(self) -> nn.Module:
        return self.model

    def sketch_branch(self) -> nn.Module:
        return self.model

    def sketch_input(self, canvas: int, batch: int = 1) -> torch.Tensor:
        # 1-channel; zeros are blank paper in this network's input scaling
        return torch.zeros(batch, 1, canvas, canvas, device=self.device)

    def prepare_sketch(self, images: torch.Tensor) -> torch.Tensor:
        return sketch_a_net_input(images, self.device)

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 sketches or photos → embeddings (the same weights for both: Siamese)."""
        return self.model(sketch_a_net_input(images, self.device, self.p["photo_input"])).float()

    def encode_sketch(self, images: torch.Tensor) -> torch.Tensor:
        return self.embed(images)

    def encode_photo(self, images: torch.Tensor) -> torch.Tensor:
        return self.embed(images)

    # -- training ------------------------------------------------------------------------------
    def loss(self, anchor: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor) -> torch.Tensor:
        """The paper's loss: triplet ranking on the squared Euclidean distance."""
        return triplet_loss(anchor, positive, negative, self.p["margin"], squared=True)

    def param_groups(self) -> list[dict]:
        """Optimiser parameter groups: every weight, with the weight decay (the paper's L2 regulariser)."""
        params = [p for p in self.model.parameters() if p.requires_grad]
        return [{"params": params, "weight_decay": self.p["weight_decay"]}]

    def make_trainer(self, preset_lr: float) -> Trainer:
        """The paper's SGD (momentum 0.9) or Adam, as ``optimizer`` says."""
        groups = self.param_groups()
        if self.p["optimizer"] == "sgd":
            lr = self.p["lr"] or SGD_LR
            opt: torch.optim.Optimizer = torch.optim.SGD(groups, lr=lr, momentum=self.p["momentum"])
        else:
            lr = self.p["lr"] or preset_lr
            opt = torch.optim.Adam(groups, lr=lr)
        return Trainer([], lr=lr, device=self.device, desc=self.ctx.name, optimizer=opt)

    def train(self, data: RunData, canvases: Sequence[int], teacher: Method | None = None) -> None:
        trainer = self.make_trainer(self.ctx.preset.lr)
        self.model.train()
        for b in triplet_epochs(data, trainer, epochs=self.p["epochs"] or self.ctx.preset.epochs, canvases=canvases,
                                batch_size=self.ctx.preset.batch_size, seed=self.ctx.seed, augment=self.p["augment"]):
            with trainer.autocast():
                fp, fn = self.embed(b.pos), self.embed(b.neg)
                anchors = self.anchor_views(data, b)
                # one canvas unless a caller asks for several
                loss = sum(self.loss(self.embed(s), fp, fn) for s in anchors.values()) / len(anchors)
            trainer.step(loss)
        self.model.eval()

    def anchor_views(self, data: RunData, batch: TripletBatch) -> dict[int, torch.Tensor]:
        """The step's queries per canvas: the augmented sketches (photo-query subclasses swap them)."""
        return batch.sketches
