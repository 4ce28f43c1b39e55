"""``holef-sn``: HOLEF-SN / DSSA, "Deep Spatial-Semantic Attention for FG-SBIR" (Song et al., ICCV 2017).

Triplet-SN's Sketch-a-Net with three additions, all trained end to end with shared sketch/photo weights:

1. **Residual spatial attention** on the pool5 map ``f`` (256×7×7 at 225 px): a 1×1 conv (256) + ReLU, a 1×1
   conv (1), a softmax over the H·W positions → mask ``a``; ``f_att = f + f ⊙ a`` (TF ``attentionNet``).
2. **Coarse–fine fusion**: fine ``g = L2norm(Σ_{h,w} f_att)`` (256-d), coarse
   ``e = L2norm(fc7(relu(fc6(f_att))))`` (256-d); the descriptor is ``[e; g]``, 512-d (TF ``sketch_a_net_dssa``;
   the halves are each unit-norm, the concatenation is not re-normalised). Here pool5's size follows the canvas
   (⌈c/24⌉ with "same" padding), so attention and the fine sum act on the native map and the adaptive 7×7 max
   pool of :mod:`.sketch_a_net` sits between ``f_att`` and fc6 only.
3. **HOLEF**, the higher-order learnable energy function, replaces the squared Euclidean distance inside the
   triplet loss *and* at retrieval::

       D(s, p) = Σ_{i,j} W_ij (f_i(s) − f_j(p))²,  W ∈ R^{512×512}, W = I at init (squared Euclidean)
       L = mean max(0, Δ + D(s, p⁺) − D(s, p⁻)) + α‖W − I‖₁ + β‖W − I‖_F

Interpretations (see ``docs/methods/holef-sn.md``): the released TF code trains DSSA with the plain squared
Euclidean triplet (``holef=false`` here) and has no HOLEF; the HOLEF form, the regulariser and α = β = 5e-4 follow
the paper as summarised in the notes and a third-party PyTorch port (whose one-axis sum we do not copy). W is not
weight-decayed (decay would pull it to 0, not to I). W is part of :meth:`modules` (saved) and of the sketch
branch's parameter count (it is a learned part of the retrieval model), but its cost is not in the FLOPs: the
gallery-side terms ``W pᵀ`` and ``(p²)ᵀ colsum(W)`` are precomputable, so ranking costs a dot product per photo,
as for every other method. Trunk interpretations (padding, adaptive 7×7 pool, grey photos, He init) are those of
:mod:`.sketch_a_net`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sketchbench import Param

from .sketch_a_net import TRUNK_CHANNELS, SketchANetHead, SketchANetTrunk, init_weights
from .triplet_sn import TripletSN


class SpatialAttention(nn.Module):
    """Residual spatial attention: ``f + f ⊙ a`` with ``a`` a softmax (or sigmoid) mask over positions."""

    def __init__(self, channels: int = TRUNK_CHANNELS, hidden: int = 256, mode: str = "softmax") -> None:
        super().__init__()
        self.mode = mode
        self.conv1 = nn.Conv2d(channels, hidden, 1)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(hidden, 1, 1)

    def mask(self, f: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` → ``(B, 1, H, W)``; with ``softmax`` it sums to 1 over the H·W positions."""
        logits = self.conv2(self.relu(self.conv1(f)))
        if self.mode == "sigmoid":
            return torch.sigmoid(logits)
        b, _, h, w = logits.shape
        return torch.softmax(logits.flatten(1).float(), dim=1).view(b, 1, h, w).to(f.dtype)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return f + f * self.mask(f)


class DSSANet(nn.Module):
    """Sketch-a-Net trunk → attention → coarse (fc6/fc7) and fine (sum-pooled) embeddings → ``[e; g]``."""

    def __init__(self, grid: int = 7, conv1_stride: int = 3, attention: str = "softmax") -> None:
        super().__init__()
        self.trunk = SketchANetTrunk(1, grid, conv1_stride)
        self.attention = SpatialAttention(TRUNK_CHANNELS, 256, attention)
        self.head = SketchANetHead(grid, 512, 256)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # attention on the native pool5 map (7×7 in the VALID-padded original at 225 px; about (c/24)² here),
        # so the mask spreads over real positions, not the adaptive pool's repeated cells at small canvases
        f_att = self.attention(self.trunk.features(x))
        fine = F.normalize(f_att.sum(dim=(2, 3)).float(), dim=-1)
        coarse = F.normalize(self.head(self.trunk.pool(f_att)).float(), dim=-1)
        return torch.cat([coarse, fine], dim=1)


class HolefEnergy(nn.Module):
    """The higher-order learnable energy ``D(s, p) = Σ_ij W_ij (s_i − p_j)²``.

    Expanding the square, with row sums ``r = W 1`` and column sums ``c = Wᵀ 1``::

        D(s, p) = (s ⊙ s)ᵀ r − 2 sᵀ W p + (p ⊙ p)ᵀ c

    so a ``(Q, P)`` matrix costs two matrix products instead of a ``Q×P×k×k`` tensor.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.eye(dim))

    def _terms(self, s: torch.Tensor, p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        w = self.weight.float()
        return w, (s * s) @ w.sum(1), (p * p) @ w.sum(0)

    def pairwise(self, s: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        """``(B, k), (B, k)`` → ``(B,)``: D of each row pair."""
        with torch.autocast(s.device.type, enabled=False):  # energies are differences of large sums: keep fp32
            s, p = s.float(), p.float()
            w, ss, pp = self._terms(s, p)
            return ss - 2.0 * ((s @ w) * p).sum(-1) + pp

    def matrix(self, s: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        """``(Q, k), (P, k)`` → ``(Q, P)``: D of every sketch–photo pair."""
        with torch.autocast(s.device.type, enabled=False):
            s, p = s.float(), p.float()
            w, ss, pp = self._terms(s, p)
            return ss[:, None] - 2.0 * (s @ w) @ p.t() + pp[None, :]

    def regulariser(self, alpha: float, beta: float) -> torch.Tensor:
        """``α‖W − I‖₁ + β‖W − I‖_F``: zero at the identity (plain squared Euclidean)."""
        d = self.weight.float() - torch.eye(self.weight.shape[0], device=self.weight.device)
        return alpha * d.abs().sum() + beta * torch.linalg.norm(d)


class HolefModel(nn.Module):
    """Everything HOLEF-SN learns: the DSSA network and the energy's W. ``forward`` is the query path."""

    def __init__(self, grid: int = 7, conv1_stride: int = 3, attention: str = "softmax") -> None:
        super().__init__()
        self.net = DSSANet(grid, conv1_stride, attention)
        self.energy = HolefEnergy(2 * 256)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class HolefSN(TripletSN):
    kind = "teacher"
    description = "HOLEF-SN / DSSA (Song et al. ICCV'17): attention, coarse-fine fusion, HOLEF distance"
    multi_canvas = False
    version = "1"
    params = {
        **TripletSN.params,
        "holef": Param(True, "HOLEF energy as the distance (false = squared Euclidean, as the released TF code)"),
        "alpha": Param(5e-4, "weight of the L1 regulariser alpha*|W - I|_1", min=0.0, max=1.0),
        "beta": Param(5e-4, "weight of the Frobenius regulariser beta*|W - I|_F", min=0.0, max=1.0),
        "attention": Param("softmax", "spatial attention mask: softmax over positions (paper) or sigmoid",
                           choices=("softmax", "sigmoid")),
    }

    def build(self) -> nn.Module:
        return HolefModel(self.p["grid"], self.p["conv1_stride"], self.p["attention"])

    def backbone(self) -> nn.Module:
        # the DSSA network only, so a triplet-sn checkpoint (or a holef-sn one, "net." prefix) initialises it,
        # as DSSA starts from the triplet Sketch-a-Net in the paper; W starts at I
        return self.model.net

    @property
    def energy(self) -> HolefEnergy:
        return self.model.energy

    def param_groups(self) -> list[dict]:
        # W has its own regulariser towards I; weight decay would pull it towards 0
        net = [p for p in self.model.net.parameters() if p.requires_grad]
        groups = [{"params": net, "weight_decay": self.p["weight_decay"]}]
        if self.p["holef"]:
            groups.append({"params": [self.energy.weight], "weight_decay": 0.0})
        return groups

    def loss(self, anchor: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor) -> torch.Tensor:
        if not self.p["holef"]:
            return super().loss(anchor, positive, negative)
        dp = self.energy.pairwise(anchor, positive)
        dn = self.energy.pairwise(anchor, negative)
        return F.relu(self.p["margin"] + dp - dn).mean() + self.energy.regulariser(self.p["alpha"], self.p["beta"])

    def distance(self, sketches: torch.Tensor, photos: torch.Tensor) -> torch.Tensor:
        if not self.p["holef"]:
            return super().distance(sketches, photos)
        return self.energy.matrix(sketches.flatten(1).to(self.energy.weight.device),
                                  photos.flatten(1).to(self.energy.weight.device))
