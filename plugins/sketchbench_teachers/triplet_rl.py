"""Triplet-RL: "Sketch Less for More: On-the-Fly Fine-Grained Sketch Based Image Retrieval"
(Bhunia, Yang, Hospedales, Xiang, Song, CVPR 2020), after the released code
(AyanKumarBhunia/on-the-fly-FGSBIR: ``Net_Basic_V1.py``, ``RL_Networks.py``, ``Environment_SBIR.py``).

Architecture (one branch): InceptionV3 trunk (timm) → global average pool (2048-d) → L2 normalise →
``Linear(2048, 64)`` → L2 normalise, a 64-d embedding.

Stage 1 (supervised): a shared-weight triplet network (sketch, positive photo, negative photo all
through the same backbone and head), triplet loss with margin 0.2 on Euclidean distances.

Stage 2 (on-the-fly RL, REINFORCE as released; the paper's PPO is not public):

- the backbone and the photo branch (backbone + photo head) are frozen; photo embeddings of all
  training photos are computed once;
- the states are precomputed backbone features of ``num_prefixes`` partial sketches per training
  sketch (see :func:`progressive_prefixes`), rendered at the training canvas;
- the policy is the sketch-side ``Linear(2048, 64)`` (initialised from the stage-1 head) as the mean
  of a diagonal Gaussian with a learned ``log_std`` (std = exp(0.5·log_std), initialised at
  ``rl_log_std``); the sampled 64-d action is L2-normalised and ranked against the training photos;
- reward of a step = 1/rank of the true photo (rank ≥ 1, ties count against the query); returns
  are flat and undiscounted, as released;
- loss = −mean(log π(a|s) · (R − b)) over the steps of ``rl_batch`` sketches, where ``b`` is the
  mean reward of that update batch. The baseline is our addition (the released code uses raw R);
  it only reduces the variance of the gradient. Adam at ``rl_lr``, gradient-norm clipping at 40.

Interpretations and simplifications (also in docs/methods/triplet-rl.md):

- InceptionV3 needs inputs of at least 75 px. Smaller inputs (canvases 32, 48, 64; photos below
  75 px) are bilinearly upsampled to 75 px *inside* the branch, by an ``nn.Upsample`` module that
  runs only then, so its cost is in the counted FLOPs. Canvases ≥ 75 px run at their own size.
- Retrieval uses the policy's mean (deterministic); the released evaluation samples from the policy.
- The released learning-rate drop (1e-3 → 1e-4 once validation m@B passes 0.25) is not applied.
- ``extra_metrics`` reports m@A (mean ranking percentile (P − rank)/(P − 1) over the prefixes,
  i.e. the area under the percentile-vs-completion curve with the rectangle rule) and m@B (mean
  1/rank over the prefixes), in %, on the test set at the evaluated canvas.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sketchbench import Method, MethodContext, Param, RunData, Sketch, SketchbenchError, render_sketch
from sketchbench.training import (
    Trainer,
    create_backbone,
    to_input,
    triplet_epochs,
    triplet_loss,
)

#: the smallest input a backbone accepts (InceptionV3's stride-2 valid convolutions need 75 px)
_MIN_INPUT = {"inception_v3": 75}


def min_input_size(backbone: str) -> int:
    """The smallest square input ``backbone`` runs on (0 = no constraint we know of)."""
    base = backbone.split(".")[0]
    return next((v for k, v in _MIN_INPUT.items() if base.endswith(k)), 0)


def progressive_prefixes(sketch: Sketch, k: int) -> list[Sketch]:
    """``k`` partial sketches of growing length, the last one complete.

    With at least ``k`` strokes, prefix ``i`` holds the first ``ceil(i·S/k)`` strokes
    (:meth:`Sketch.prefix`). Sketches with fewer strokes than ``k`` would repeat prefixes, so they are
    cut by points instead: the first ``round(i·N/k)`` points, as the released renderer does
    (``round(linspace(0, N, K + 1)[1:])``).
    """
    if k < 1:
        raise SketchbenchError(f"num_prefixes must be at least 1, got {k}")
    strokes = sketch.num_strokes
    if strokes >= k:
        return [sketch.prefix(-(-strokes * i // k)) for i in range(1, k + 1)]
    n = len(sketch)
    out = []
    for i in range(1, k + 1):
        pts = sketch.points[: max(1, round(n * i / k))].copy()
        pts[-1, 2] = 1.0
        out.append(Sketch(pts))
    return out


class MinSize(nn.Module):
    """Bilinear upsampling to ``size`` of inputs smaller than that, identity otherwise. The
    ``nn.Upsample`` child runs (and is counted by the FLOPs counter) only when it is needed."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size
        self.up = nn.Upsample(size=(size, size), mode="bilinear", align_corners=False) if size else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.up is not None and min(x.shape[-2:]) < self.size:
            return self.up(x)
        return x


class GaussianPolicy(nn.Module):
    """The on-the-fly policy: a linear mean and a learned diagonal log-variance."""

    def __init__(self, state_dim: int, action_dim: int, log_std: float) -> None:
        super().__init__()
        self.actor = nn.Linear(state_dim, action_dim)
        self.log_std = nn.Parameter(torch.full((action_dim,), float(log_std)))

    def distribution(self, states: torch.Tensor) -> torch.distributions.Normal:
        return torch.distributions.Normal(self.actor(states), torch.exp(0.5 * self.log_std))


class Branch(nn.Module):
    """resize → backbone → L2 → Linear → L2: one embedding branch (what a query runs through)."""

    def __init__(self, resize: MinSize, backbone: nn.Module, head: nn.Linear) -> None:
        super().__init__()
        self.resize, self.backbone, self.head = resize, backbone, head

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The L2-normalised pooled backbone feature (the RL state)."""
        return F.normalize(self.backbone(self.resize(x)).float(), dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.head(self.features(x)).float(), dim=-1)  # fp32 under AMP: the triplet's sqrt


def ranks_of(emb: torch.Tensor, gallery: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Rank (1 = first) of each query's target among ``gallery`` by Euclidean distance; ties count
    against the query (the framework's convention). ``emb`` ``(..., D)``, ``targets`` ``emb.shape[:-1]``."""
    flat = emb.reshape(-1, emb.shape[-1])
    dist = torch.cdist(flat, gallery)
    true = dist.gather(1, targets.reshape(-1, 1))
    return (dist <= true).sum(1).reshape(targets.shape)


class TripletRL(Method):
    kind = "teacher"
    description = "Triplet-RL (Bhunia et al. CVPR'20): InceptionV3 triplet + on-the-fly REINFORCE stage"
    multi_canvas = False
    params = {
        "backbone": Param("inception_v3", "timm backbone (the paper's InceptionV3; tests use test_efficientnet)"),
        "embed_dim": Param(64, "embedding size (the released head: Linear(2048, 64))", min=2, max=4096),
        "margin": Param(0.2, "stage-1 triplet margin", min=0.0, max=4.0),
        "lr": Param(0.0, "stage-1 learning rate", min=1e-12, max=10.0, zero_is_preset=True),
        "epochs": Param(0, "stage-1 epochs", min=1, max=10000, zero_is_preset=True),
        "augment": Param(True, "stage 1: random shifts and joint horizontal flips"),
        "rl_epochs": Param(200, "stage-2 REINFORCE epochs over the training sketches (0 = no RL stage)",
                           presets={"smoke": 2, "cpu": 40}, min=0, max=10000),
        "rl_lr": Param(1e-3, "stage-2 Adam learning rate (released: 1e-3)", min=1e-12, max=10.0),
        "rl_batch": Param(16, "sketches per policy update (released: 16)", min=2, max=4096),
        "rl_clip": Param(40.0, "gradient-norm clipping of the policy (released: 40)", min=1e-3, max=1e6),
        "rl_log_std": Param(0.0, "initial log-variance of the Gaussian policy (released: 0, std 1)", min=-20.0, max=5.0),
        "num_prefixes": Param(8, "partial sketches per sketch (RL states and on-the-fly metrics)",
                              presets={"smoke": 4}, min=1, max=64),
        "on_the_fly_metric": Param(True, "report m@A / m@B on test prefixes (costs num_prefixes x the test encoding)"),
    }

    def __init__(self, ctx: MethodContext) -> None:
        super().__init__(ctx)
        name = self.p["backbone"]
        backbone = create_backbone(name, pretrained=ctx.pretrained, weights=ctx.weights,
                                   partial_weights=ctx.partial_weights)
        dim = int(getattr(backbone, "num_features", 0) or self._probe_dim(backbone, min_input_size(name)))
        self.resize = MinSize(min_input_size(name))
        self.backbone = backbone
        self.photo_head = nn.Linear(dim, self.p["embed_dim"])
        self.policy = GaussianPolicy(dim, self.p["embed_dim"], self.p["rl_log_std"])
        self.policy.actor.load_state_dict(self.photo_head.state_dict())
        self.net = nn.ModuleDict(
            {"resize": self.resize, "backbone": backbone, "photo_head": self.photo_head, "policy": self.policy}
        ).to(self.device)
        if self.device.type == "cuda":
            self.backbone.to(memory_format=torch.channels_last)
        self.photo_branch = Branch(self.resize, self.backbone, self.photo_head)
        self.sketch_net = Branch(self.resize, self.backbone, self.policy.actor)

    @staticmethod
    def _probe_dim(backbone: nn.Module, size: int) -> int:
        with torch.no_grad():
            return int(backbone.eval()(torch.zeros(1, 3, max(size, 32), max(size, 32))).shape[-1])

    # -- interface ---------------------------------------------------------------------------
    def modules(self) -> nn.Module:
        return self.net

    def sketch_branch(self) -> nn.Module:
        return self.sketch_net

    def encode_sketch(self, images: torch.Tensor) -> torch.Tensor:
        return self.sketch_net(to_input(images, 3, self.device)).float()

    def encode_photo(self, images: torch.Tensor) -> torch.Tensor:
        return self.photo_branch(to_input(images, 3, self.device)).float()

    # -- training ----------------------------------------------------------------------------
    def train(self, data: RunData, canvases: Sequence[int], teacher: Method | None = None) -> None:
        canvas = int(canvases[0])
        self.train_supervised(data, canvas)
        if self.p["rl_epochs"] > 0:
            feats, targets, photo_emb = self.rl_inputs(data, canvas)
            self.reinforce(feats, targets, photo_emb, self.p["rl_epochs"])
        self.net.eval()

    def train_supervised(self, data: RunData, canvas: int) -> None:
        """Stage 1: the shared-weight triplet network (the sketch head is tied to the photo head);
        the policy's mean starts as a copy of the trained head."""
        lr = self.p["lr"] or self.ctx.preset.lr
        params = list(self.backbone.parameters()) + list(self.photo_head.parameters())
        trainer = Trainer(params, lr=lr, device=self.device, desc=f"{self.ctx.name} stage 1")
        self.net.train()
        branch = self.photo_branch
        for b in triplet_epochs(data, trainer, epochs=self.p["epochs"] or self.ctx.preset.epochs, canvases=[canvas],
                                batch_size=self.ctx.preset.batch_size, seed=self.ctx.seed, augment=self.p["augment"]):
            with trainer.autocast():
                loss = triplet_loss(branch(to_input(b.sketches[canvas], 3, self.device)),
                                    branch(to_input(b.pos, 3, self.device)),
                                    branch(to_input(b.neg, 3, self.device)), self.p["margin"])
            trainer.step(loss)
        self.policy.actor.load_state_dict(self.photo_head.state_dict())
        self.net.eval()

    def prefix_features(self, vectors: Sequence[Sketch], canvas: int, batch: int = 64) -> torch.Tensor:
        """Frozen backbone features of each sketch's ``num_prefixes`` prefixes: ``(N, K, D)`` on the
        CPU. Rendered and embedded in chunks, so memory holds features, not images."""
        k = self.p["num_prefixes"]
        feats, images = [], []

        def flush() -> None:
            if images:
                x = torch.from_numpy(np.stack(images))
                with torch.inference_mode():
                    feats.append(self.sketch_net.features(to_input(x, 3, self.device)).float().cpu())
                images.clear()

        self.net.eval()
        for sketch in vectors:
            images.extend(render_sketch(pre, canvas) for pre in progressive_prefixes(sketch, k))
            if len(images) >= batch:
                flush()
        flush()
        return torch.cat(feats).reshape(len(vectors), k, -1)

    def rl_inputs(self, data: RunData, canvas: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(prefix features ``(N, K, D)``, target photo per sketch ``(N,)``, frozen photo embeddings ``(P, E)``)."""
        from sketchbench.training import embed_in_batches

        feats = self.prefix_features(data.vectors("train"), canvas)
        photo_emb = embed_in_batches(self.encode_photo, data.photos("train"), self.ctx.preset.eval_batch_size)
        return feats, data.pairs("train").long(), photo_emb

    def mean_reward(self, feats: torch.Tensor, targets: torch.Tensor, photo_emb: torch.Tensor,
                    samples: int = 8, generator: torch.Generator | None = None) -> float:
        """Expected reward (mean 1/rank over prefixes) of the stochastic policy, by sampling."""
        states, gallery = feats.to(self.device), photo_emb.to(self.device)
        tgt = targets.to(self.device).view(-1, 1).expand(-1, feats.shape[1])
        total = 0.0
        with torch.no_grad():
            dist = self.policy.distribution(states)
            for _ in range(samples):
                noise = torch.randn(dist.mean.shape, generator=generator).to(self.device)
                action = dist.mean + dist.stddev * noise
                total += float((1.0 / ranks_of(F.normalize(action, dim=-1), gallery, tgt).float()).mean())
        return total / samples

    def reinforce(self, feats: torch.Tensor, targets: torch.Tensor, photo_emb: torch.Tensor, epochs: int) -> list[float]:
        """Stage 2: REINFORCE on the frozen prefix features. Returns the mean reward per epoch."""
        for p in self.backbone.parameters():
            p.requires_grad_(False)
        for p in self.photo_head.parameters():
            p.requires_grad_(False)
        n, k = feats.shape[:2]
        bs = max(1, self.p["rl_batch"])
        states, gallery = feats.to(self.device), photo_emb.to(self.device)
        targets = targets.to(self.device)
        rng = np.random.default_rng(self.ctx.seed + 1)
        trainer = Trainer(self.policy.parameters(), lr=self.p["rl_lr"], device=self.device,
                          desc=f"{self.ctx.name} RL", clip=self.p["rl_clip"])
        history = []
        self.policy.train()
        for _ in trainer.epochs(epochs, (n + bs - 1) // bs):
            rewards = []
            order = torch.from_numpy(rng.permutation(n)).to(self.device)
            for start in range(0, n, bs):
                idx = order[start : start + bs]
                dist = self.policy.distribution(states[idx])  # (b, K, E)
                action = dist.sample()
                log_prob = dist.log_prob(action).sum(-1)  # (b, K): a diagonal Gaussian
                with torch.no_grad():
                    tgt = targets[idx].view(-1, 1).expand(-1, k)
                    reward = 1.0 / ranks_of(F.normalize(action, dim=-1), gallery, tgt).float()
                    advantage = reward - reward.mean()  # mean-reward baseline
                trainer.step(-(log_prob * advantage).mean())
                rewards.append(float(reward.mean()))
            history.append(float(np.mean(rewards)))
        self.policy.eval()
        for p in self.backbone.parameters():
            p.requires_grad_(True)
        for p in self.photo_head.parameters():
            p.requires_grad_(True)
        self.ctx.log.info("%s: RL mean reward %.4f -> %.4f", self.ctx.name, history[0] if history else float("nan"),
                          history[-1] if history else float("nan"))
        return history

    # -- on-the-fly metrics ------------------------------------------------------------------
    def extra_metrics(self, data: RunData, canvas: int | None) -> dict[str, float]:
        if not self.p["on_the_fly_metric"] or canvas is None:
            return {}
        return self.on_the_fly_metrics(data, canvas)

    def on_the_fly_metrics(self, data: RunData, canvas: int, split: str = "test") -> dict[str, float]:
        """m@A and m@B (in %) of the deterministic sketch branch on ``split``'s stroke prefixes."""
        from sketchbench.training import embed_in_batches

        self.net.eval()
        feats = self.prefix_features(data.vectors(split), canvas)
        with torch.inference_mode():
            emb = F.normalize(self.policy.actor(feats.to(self.device)), dim=-1)
        photos = embed_in_batches(self.encode_photo, data.photos(split), self.ctx.preset.eval_batch_size).to(self.device)
        targets = data.pairs(split).long().to(self.device).view(-1, 1).expand(-1, feats.shape[1])
        r = ranks_of(emb, photos, targets).float()  # (N, K)
        p = photos.shape[0]
        percentile = (p - r) / (p - 1) if p > 1 else torch.ones_like(r)
        return {
            "m@A": float(percentile.mean(1).mean() * 100),
            "m@B": float((1.0 / r).mean(1).mean() * 100),
            "num_prefixes": float(feats.shape[1]),
        }


__all__ = ["GaussianPolicy", "MinSize", "TripletRL", "progressive_prefixes", "ranks_of"]
