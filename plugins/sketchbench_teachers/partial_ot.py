"""Partial-OT: "Partially Does It: Towards Scene-Level FG-SBIR with Partial Input" (Chowdhury,
Bhunia, Gajjala, Sain, Xiang, Song, CVPR 2022), after the released code
(pinakinathc/partially-does-it: ``network.py``, ``model.py``, ``loss.py``).

Encoder (shared by sketches and photos): VGG16 ``features`` (timm, the 14.71 M-param trunk) →
adaptive average pooling to a ``grid``×``grid`` map (3×3 as released) → a set of ``grid²`` region
descriptors of 512-d.

Distance between a sketch's regions ``u_i`` and a photo's regions ``v_j`` (DeepEMD style, as released):

- node weights are cross-referenced: ``s_i = ReLU(u_i · mean_j v_j) + 1e-3`` and
  ``d_j = ReLU(v_j · mean_i u_i) + 1e-3``, each normalised to sum to its number of regions (released);
- features are centred across channels, then ``cost_ij = 1 − cos(u_i, v_j)``;
- the plan solves the *partial* transport problem
  ``min Σ cost·T − ε H(T)`` s.t. ``T ≥ 0``, ``T 1 ≤ s``, ``Tᵀ 1 ≤ d``, ``Σ T = m``, with
  ``m = mass_fraction · min(Σ s, Σ d)``;
- distance = ``Σ_ij cost_ij T_ij``.

Solver (our choice; the released code uses the qpth QP solver or OpenCV's EMD, no Sinkhorn): entropic
partial OT by iterative Bregman (KL) projections (Benamou, Carlier, Cuturi, Nenna, Peyré 2015; the
algorithm of POT's ``entropic_partial_wasserstein``), in the log domain, batched, unrolled for
``ot_iters`` iterations and differentiated by autograd:
``T ← diag(min(1, s / T1)) T``; ``T ← T diag(min(1, d / Tᵀ1))``; ``T ← T · m / ΣT``. Each iteration ends
with the total-mass projection, so ``ΣT = m`` exactly and the capacity constraints hold up to the
solver's tolerance.

Note on the released code: its QP normalises both weight vectors to sum to the number of regions
and sets the total flow to ``min(Σs, Σd)``, so its transport is in fact complete (both capacities are
saturated). ``mass_fraction`` < 1 makes it partial, which is what the paper describes;
``mass_fraction=1`` recovers the complete (entropic) transport.

Training: ``TripletMarginWithDistanceLoss(distance=partial OT, margin=0.2)`` as released; Adam at the
preset's learning rate (released 1e-4). Partial inputs: the released code drops a fraction ``p_mask``
of object instances from scene sketches (instance masks) or erases a random block of area ``p_mask``
(PhotoSketching). Our datasets have no instance masks, so each training sketch has, with probability
1/2, a random square block of area ``p_mask`` of the canvas erased (value ``p_mask`` and probability
are our choice).

Retrieval ranks the gallery by this distance, computed in chunks of queries. FLOPs are counted on the
sketch branch (VGG16 features + the region pooling); the OT matching cost per gallery item is not in
the FLOPs, as for every method's distance.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from sketchbench import Method, MethodContext, Param, RunData, SketchbenchError
from sketchbench.training import (
    PooledFeatures,
    Trainer,
    create_backbone,
    to_input,
    triplet_epochs,
)


class OTResult(NamedTuple):
    distance: torch.Tensor  # (...,)
    plan: torch.Tensor  # (..., M, N)
    cost: torch.Tensor  # (..., M, N)
    s: torch.Tensor  # (..., M) row capacities
    d: torch.Tensor  # (..., N) column capacities
    mass: torch.Tensor  # (...,) total transported mass


def partial_ot_plan(cost: torch.Tensor, s: torch.Tensor, d: torch.Tensor, mass: torch.Tensor,
                    eps: float = 0.05, iters: int = 50) -> torch.Tensor:
    """Entropic partial transport plan ``(..., M, N)`` by log-domain Bregman projections.

    ``cost`` ``(..., M, N)``, capacities ``s`` ``(..., M)`` and ``d`` ``(..., N)`` (positive), total
    mass ``mass`` ``(...)`` with ``mass ≤ min(Σs, Σd)``. Differentiable in all inputs.
    """
    if eps <= 0:
        raise SketchbenchError(f"ot_eps must be positive, got {eps}")
    log_s, log_d, log_m = s.log(), d.log(), mass.log()
    log_t = -cost / eps
    log_t = log_t + (log_m - torch.logsumexp(log_t.flatten(-2), -1))[..., None, None]
    for _ in range(max(1, iters)):
        log_t = log_t + (log_s - torch.logsumexp(log_t, -1)).clamp_max(0)[..., :, None]  # rows ≤ s
        log_t = log_t + (log_d - torch.logsumexp(log_t, -2)).clamp_max(0)[..., None, :]  # columns ≤ d
        log_t = log_t + (log_m - torch.logsumexp(log_t.flatten(-2), -1))[..., None, None]  # total = m
    return log_t.exp()


def partial_ot(u: torch.Tensor, v: torch.Tensor, mass_fraction: float = 0.8, eps: float = 0.05,
               iters: int = 50, cross: bool = False) -> OTResult:
    """Partial-OT distance between region sets.

    ``u`` ``(B, M, C)`` and ``v`` ``(B, N, C)`` paired (result ``(B,)``), or with ``cross`` all pairs of
    ``u`` ``(Q, M, C)`` and ``v`` ``(P, N, C)`` (result ``(Q, P)``), without materialising the pairs.
    """
    if not 0 < mass_fraction <= 1:
        raise SketchbenchError(f"mass_fraction must be in (0, 1], got {mass_fraction}")
    u, v = u.float(), v.float()
    m, n = u.shape[-2], v.shape[-2]
    ubar, vbar = u.mean(-2), v.mean(-2)
    uc = F.normalize(u - u.mean(-1, keepdim=True), dim=-1)  # centred across channels
    vc = F.normalize(v - v.mean(-1, keepdim=True), dim=-1)
    if cross:
        s = torch.einsum("qmc,pc->qpm", u, vbar)
        d = torch.einsum("pnc,qc->qpn", v, ubar)
        cos = torch.einsum("qmc,pnc->qpmn", uc, vc)
    else:
        s = torch.einsum("bmc,bc->bm", u, vbar)
        d = torch.einsum("bnc,bc->bn", v, ubar)
        cos = torch.einsum("bmc,bnc->bmn", uc, vc)
    # cross-referenced node weights, normalised to sum to the number of regions (released)
    s = F.relu(s) + 1e-3
    d = F.relu(d) + 1e-3
    s = s * (m / s.sum(-1, keepdim=True))
    d = d * (n / d.sum(-1, keepdim=True))
    cost = 1.0 - cos
    mass = mass_fraction * torch.minimum(s.sum(-1), d.sum(-1))
    plan = partial_ot_plan(cost, s, d, mass, eps, iters)
    return OTResult((cost * plan).sum((-2, -1)), plan, cost, s, d, mass)


class RegionEncoder(nn.Module):
    """Backbone feature map → adaptive average pool to ``grid``×``grid`` (the sketch branch)."""

    def __init__(self, trunk: nn.Module, grid: int) -> None:
        super().__init__()
        self.trunk = trunk
        self.pool = nn.AdaptiveAvgPool2d(grid)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.trunk(x))


class _ForwardFeatures(nn.Module):
    """A timm model's spatial feature map (for non-VGG backbones, e.g. the tests' tiny one)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_features(x)


def spatial_trunk(name: str, pretrained: str | None, weights=None, partial_weights: bool = False) -> nn.Module:
    """The convolutional trunk of a timm backbone (VGG16: ``features``), built through
    :func:`sketchbench.training.create_backbone` so ``--pretrained`` / ``--weights`` behave the same."""
    model = create_backbone(name, pretrained=pretrained, weights=weights, partial_weights=partial_weights)
    if isinstance(model, PooledFeatures):
        return model.trunk
    if hasattr(model, "forward_features"):
        return _ForwardFeatures(model)
    raise SketchbenchError(f"backbone {name!r} exposes no spatial feature map")


def erase_blocks(images: torch.Tensor, frac: float, generator: torch.Generator, prob: float = 0.5) -> torch.Tensor:
    """Partial sketches: with probability ``prob``, whiten a random square of area ``frac`` of each
    uint8 ``(B, c, c)`` canvas."""
    if frac <= 0:
        return images
    out = images.clone()
    size = images.shape[-1]
    side = max(1, round(size * frac**0.5))
    pick = torch.rand(len(images), generator=generator) < prob
    offs = torch.randint(0, size - side + 1, (len(images), 2), generator=generator)
    for i in torch.nonzero(pick).flatten().tolist():
        y, x = offs[i].tolist()
        out[i, ..., y : y + side, x : x + side] = 255
    return out


class PartialOT(Method):
    kind = "teacher"
    description = "Partial-OT (Chowdhury et al. CVPR'22): VGG16 3x3 regions, partial optimal transport"
    multi_canvas = False
    params = {
        "backbone": Param("vgg16", "timm backbone whose feature map gives the regions (the paper's VGG16)"),
        "grid": Param(3, "regions per side (released: 3x3 in training)", min=1, max=16),
        "mass_fraction": Param(0.8, "transported mass as a fraction of min(sum s, sum d) (1 = complete transport)", min=1e-3, max=1.0),
        "ot_eps": Param(0.05, "entropic regularisation of the OT solver (cost 1 - cos is in [0, 2])", min=1e-4, max=10.0),
        "ot_iters": Param(50, "Bregman-projection iterations (unrolled, differentiated)", min=1, max=1000),
        "margin": Param(0.2, "triplet margin (released TripletMarginWithDistanceLoss(margin=0.2))", min=0.0, max=4.0),
        "p_mask": Param(0.25, "area of the block erased from a training sketch (with probability 1/2); 0 = off", min=0.0, max=0.9),
        "lr": Param(0.0, "learning rate (released 1e-4)", min=1e-12, max=10.0, zero_is_preset=True),
        "epochs": Param(0, "epochs", min=1, max=10000, zero_is_preset=True),
        "augment": Param(True, "random shifts and joint horizontal flips"),
        "distance_chunk": Param(32, "queries per chunk when ranking the gallery (memory)", min=1, max=4096),
    }

    def __init__(self, ctx: MethodContext) -> None:
        super().__init__(ctx)
        if self.p["grid"] < 1:
            raise SketchbenchError(f"--param grid={self.p['grid']}: must be at least 1")
        trunk = spatial_trunk(self.p["backbone"], ctx.pretrained, ctx.weights, ctx.partial_weights)
        self.net = RegionEncoder(trunk, self.p["grid"]).to(self.device)
        if self.device.type == "cuda":
            self.net = self.net.to(memory_format=torch.channels_last)

    # -- interface ---------------------------------------------------------------------------
    def modules(self) -> nn.Module:
        return self.net

    def sketch_branch(self) -> nn.Module:
        return self.net

    def regions(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 images → region descriptors ``(B, grid², C)``."""
        return self.net(to_input(images, 3, self.device)).float().flatten(2).transpose(1, 2)

    def encode_sketch(self, images: torch.Tensor) -> torch.Tensor:
        return self.regions(images)

    def encode_photo(self, images: torch.Tensor) -> torch.Tensor:
        return self.regions(images)

    def ot(self, u: torch.Tensor, v: torch.Tensor, cross: bool = False) -> OTResult:
        return partial_ot(u, v, self.p["mass_fraction"], self.p["ot_eps"], self.p["ot_iters"], cross=cross)

    def distance(self, sketches: torch.Tensor, photos: torch.Tensor) -> torch.Tensor:
        chunk = max(1, self.p["distance_chunk"])
        rows = [self.ot(sketches[i : i + chunk], photos, cross=True).distance for i in range(0, len(sketches), chunk)]
        return torch.cat(rows) if rows else torch.empty(0, len(photos))

    # -- training ----------------------------------------------------------------------------
    def train(self, data: RunData, canvases: Sequence[int], teacher: Method | None = None) -> None:
        canvas = int(canvases[0])
        lr = self.p["lr"] or self.ctx.preset.lr
        trainer = Trainer(self.net.parameters(), lr=lr, device=self.device, desc=self.ctx.name)
        self.net.train()
        for b in triplet_epochs(data, trainer, epochs=self.p["epochs"] or self.ctx.preset.epochs, canvases=[canvas],
                                batch_size=self.ctx.preset.batch_size, seed=self.ctx.seed, augment=self.p["augment"],
                                sketch_transform=lambda s, gen: erase_blocks(s, self.p["p_mask"], gen)):
            with trainer.autocast():
                fa, fp, fn = self.regions(b.sketches[canvas]), self.regions(b.pos), self.regions(b.neg)
            # the OT runs in float32 outside autocast (log-domain iterations)
            loss = F.relu(self.p["margin"] + self.ot(fa, fp).distance - self.ot(fa, fn).distance).mean()
            trainer.step(loss)
        self.net.eval()


__all__ = ["OTResult", "PartialOT", "erase_blocks", "partial_ot", "partial_ot_plan"]
