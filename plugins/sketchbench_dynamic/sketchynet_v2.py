"""SketchyNetV2 (Sain et al., "Sketch Down the FLOPs", CVPR 2025): a policy network picks each
sketch's canvas, a frozen SketchyNetV1 embeds the sketch rendered at that canvas.

From the poster (its equations, verbatim in meaning):

- ψ_C encodes the vector sketch ``s_v`` (RDP-simplified, ``v_t = (x_t, y_t, q¹, q², q³)``); a
  linear layer γ gives ``p(c | s_v) = softmax(W_γ f + b_γ)`` over the K canvases (selectors.py);
- training samples ``c_pred ~ Categorical(p(c_1|s_v), …, p(c_K|s_v))``, renders the sketch at
  ``c_pred`` and embeds it with the frozen SketchyNetV1 (the critic);
- ``R_acc = λ_r·(1/r) + λ_Tri·(−L_Tri)``, r = the rank of the paired photo;
- ``R_comp = −L_F``, ``L_F = Σ_j q_j·η_j / (q_max − q_min)``, q_j = FLOPs at canvas j,
  ``η_j = p(c_j | s_v)``;
- ``R_Tot = λ_F·R_comp + (1 − λ_F)·R_acc``; ``L_PG = −(1/B) Σ_i log p(c|s_v^i)·R_Tot^i``.

Our choices where the poster is silent or ambiguous (also in docs/methods/sketchynet-v2.md):

- r is the rank among **all training photos** under the upstream's own ``distance``; L_Tri uses
  the same distances, the paired photo as positive and a negative drawn each step from a pool of
  ``negatives`` photos per sketch sampled once (hard negatives first where the dataset has them).
  Everything is precomputed once from the cached renders (critic.py): a step is indexing only.
- **R_comp in the REINFORCE form.** With η = p treated as a constant, R_comp is the same whatever
  canvas was sampled, so its expected policy gradient is zero (the penalty would do nothing); and
  differentiating ``log p(c)·R_comp`` through η pushes FLOPs *up* (log p < 0). We therefore use,
  per sample, ``R_comp = −q_{c_pred}/(q_max − q_min)``, i.e. L_F with η = the one-hot of the
  sampled canvas: its expectation over ``c_pred ~ p`` is exactly the poster's L_F with η = p, so
  REINFORCE follows the gradient of ``−λ_F·L_F(p)`` without bias (``flops_term="sampled"``,
  default). ``flops_term="expected"`` instead adds ``λ_F·L_F(p)`` (η = p) to the loss and
  differentiates it directly (same objective, no sampling noise).
- A moving-average reward baseline b (momentum ``baseline_momentum``, started at the first
  batch's mean) is subtracted: ``L_PG = −mean(log p(c)·(R_Tot − b))``. The poster shows none.
- Inference: argmax of p (the poster does not say; deterministic evaluation).
- Ablation switches ``reward_rank`` / ``reward_tri`` / ``reward_flops`` drop one reward term each:
  the poster's rows "w/o rank⁻¹-reward", "w/o L_Tri-reward", "w/o L_F-reward".
- Hyper-parameters (λ_F, λ_r, λ_Tri, margin, hidden size, RDP budget, epochs, lr) are unknown;
  our defaults are in ``params``. λ_F = 0.3 is the default knob (see the docs for why).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from sketchbench import Method, MethodContext, Param, RunData
from sketchbench.training import Trainer

from .base import SelectorOnUpstream
from .critic import CriticTables, critic_tables
from .selectors import COORDS, ENCODERS


# -- the rewards (pure functions, so they can be checked by hand) ---------------------------------
def flops_penalty(eta: torch.Tensor, flops: torch.Tensor) -> torch.Tensor:
    """``L_F = Σ_j q_j·η_j / (q_max − q_min)`` per row of ``eta`` ``(B, K)``; 0 for a single canvas."""
    q = flops.to(eta.dtype).to(eta.device)
    span = q.max() - q.min()
    if float(span) <= 0:
        return eta.new_zeros(eta.shape[0])
    return (eta * q).sum(-1) / span


def accuracy_reward(rank: torch.Tensor, l_tri: torch.Tensor, lambda_r: float, lambda_tri: float) -> torch.Tensor:
    """``R_acc = λ_r·(1/r) + λ_Tri·(−L_Tri)``."""
    return lambda_r / rank.float() - lambda_tri * l_tri


def total_reward(r_comp: torch.Tensor, r_acc: torch.Tensor, lambda_f: float) -> torch.Tensor:
    """``R_Tot = λ_F·R_comp + (1 − λ_F)·R_acc``."""
    return lambda_f * r_comp + (1.0 - lambda_f) * r_acc


def step_rewards(
    tables: CriticTables, idx: torch.Tensor, choice: torch.Tensor, neg_pick: torch.Tensor, p: dict[str, Any]
) -> dict[str, torch.Tensor]:
    """The rewards of sampled canvases ``choice`` (indices into the canvas set) for sketches
    ``idx``; ``neg_pick`` picks each sketch's negative from its pool."""
    rank = tables.ranks[idx, choice]
    d_pos = tables.d_pos[idx, choice]
    d_neg = tables.d_neg[idx, neg_pick, choice]
    l_tri = F.relu(p["margin"] + d_pos - d_neg)
    r_acc = accuracy_reward(rank, l_tri, p["lambda_r"] if p["reward_rank"] else 0.0,
                            p["lambda_tri"] if p["reward_tri"] else 0.0)
    onehot = F.one_hot(choice, len(tables.canvases)).double()
    l_f = flops_penalty(onehot, tables.flops).float()
    use_sampled = p["reward_flops"] and p["flops_term"] == "sampled"
    r_comp = -l_f if use_sampled else torch.zeros_like(l_f)
    return {"total": total_reward(r_comp, r_acc, p["lambda_f"]), "acc": r_acc, "comp": -l_f, "rank": rank.float()}


class SketchyNetV2(SelectorOnUpstream):
    kind = "student"
    description = "SketchyNetV2: RL canvas selector (GRU over RDP stroke-5) on a frozen SketchyNetV1"
    version = "1"
    params = {
        "lambda_f": Param(0.3, "λ_F: weight of the compute reward (0 = accuracy only, 1 = FLOPs only)", min=0.0, max=1.0),
        "lambda_r": Param(1.0, "λ_r: weight of the 1/rank reward", min=0.0, max=100.0),
        "lambda_tri": Param(1.0, "λ_Tri: weight of the −L_Tri reward", min=0.0, max=100.0),
        "margin": Param(0.2, "triplet margin of L_Tri in the reward (upstream's distance)", min=0.0, max=4.0),
        "encoder": Param("gru", "selector sketch encoder ψ_C", choices=ENCODERS),
        "hidden": Param(128, "hidden size of ψ_C (GRU 128 ≈ +0.05 M params, as in the paper)", min=1, max=4096),
        "coords": Param("absolute", "sequence rows: absolute (x, y) as in the poster, or offsets (its ablation)",
                        choices=COORDS),
        "max_points": Param(100, "RDP (Douglas–Peucker) budget: at most this many points per sketch", min=2, max=100000),
        "rl_epochs": Param(30, "policy-gradient epochs over the training sketches", presets={"smoke": 10, "paper": 50}, min=1, max=10000),
        "rl_lr": Param(1e-3, "Adam learning rate of the selector (paper preset: 1e-4, ~35x more steps per epoch)",
                       presets={"paper": 1e-4}, min=1e-12, max=10.0),
        "rl_batch": Param(0, "sketches per policy-gradient step (the preset's batch size)", min=2, max=4096, zero_is_preset=True),
        "baseline_momentum": Param(0.9, "momentum of the moving-average reward baseline (0 = batch mean)", min=0.0, max=0.999),
        "negatives": Param(16, "negative photos pooled per sketch for L_Tri (one drawn per step)", min=1, max=10000),
        "flops_term": Param("sampled", "R_comp as a sampled REINFORCE reward, or L_F(p) differentiated directly",
                            choices=("sampled", "expected")),
        "reward_rank": Param(True, "use the 1/rank reward (false: the poster's 'w/o rank⁻¹' ablation)"),
        "reward_tri": Param(True, "use the −L_Tri reward (false: 'w/o L_Tri')"),
        "reward_flops": Param(True, "use the compute reward R_comp (false: 'w/o L_F')"),
        "upstream": Param("sketchynet-v1", "the frozen student the selector picks canvases for: any registered "
                          "method trained multi-canvas (e.g. b-akd; the runner trains it with the same teacher)",
                          since="0.2"),
    }

    @classmethod
    def upstream_for(cls, params: Mapping[str, Any]) -> str | None:
        """The ``upstream`` parameter where declared (``--param upstream=NAME``), else the class's."""
        return params.get("upstream") or cls.upstream

    def __init__(self, ctx: MethodContext) -> None:
        super().__init__(ctx)
        self.rl_log: dict[str, float] = {}

    def state(self) -> dict[str, Any]:
        return {"state_dict": self.bundle.state_dict(), "rl_log": dict(self.rl_log)}

    def load_state(self, state: dict[str, Any]) -> None:
        super().load_state(state)
        self.rl_log = dict(state.get("rl_log", {}))

    # -- training ------------------------------------------------------------------------------
    def train(self, data: RunData, canvases: Sequence[int], teacher: Method | None = None) -> None:
        up = self.freeze_upstream()
        cs, inputs = self.prepare_training(data, canvases)
        tables = critic_tables(up, data, cs, negatives=self.p["negatives"], seed=self.ctx.seed)
        self.reinforce(inputs, tables, self.ctx.preset.batch_size)

    def reinforce(self, inputs: list[torch.Tensor] | torch.Tensor, tables: CriticTables, preset_batch: int) -> None:
        """Policy-gradient training of the selector on the precomputed critic tables."""
        p = self.p
        n = len(inputs)
        bsz = max(2, p["rl_batch"] or preset_batch)
        gen = torch.Generator().manual_seed(self.ctx.seed)
        steps = max(1, math.ceil(n / bsz))
        trainer = Trainer(self.bundle.parameters(), lr=p["rl_lr"], device=self.device, desc=f"{self.ctx.name} REINFORCE")
        q = tables.flops
        mom = p["baseline_momentum"]
        baseline: torch.Tensor | None = None
        num_neg = tables.negatives.shape[1]
        hist = torch.zeros(len(tables.canvases))
        reward_sum, expected_flops, count = 0.0, 0.0, 0
        self.bundle.train()
        for epoch in trainer.epochs(p["rl_epochs"], steps):
            last = epoch == p["rl_epochs"] - 1
            order = torch.randperm(n, generator=gen)
            for start in range(0, n, bsz):
                idx = order[start : start + bsz]
                if len(idx) < 2:  # BatchNorm (image encoder) and the baseline need two samples
                    continue
                x, lengths = self.bundle.batch(inputs, idx.tolist(), self.device)
                logp = F.log_softmax(self.bundle(x, lengths).float(), dim=1)
                probs = logp.exp()
                choice = torch.multinomial(probs.detach().cpu(), 1, generator=gen).squeeze(1)
                neg_pick = torch.randint(num_neg, (len(idx),), generator=gen)
                r = step_rewards(tables, idx, choice, neg_pick, p)
                reward = r["total"]
                b = reward.mean() if baseline is None else baseline
                advantage = (reward - b).to(self.device)
                loss = -(logp.gather(1, choice.view(-1, 1).to(self.device)).squeeze(1) * advantage).mean()
                if p["reward_flops"] and p["flops_term"] == "expected":
                    loss = loss + p["lambda_f"] * flops_penalty(probs, q.to(self.device)).mean()
                trainer.step(loss)
                batch_mean = reward.mean()
                baseline = batch_mean if baseline is None else mom * baseline + (1 - mom) * batch_mean
                if last:
                    hist += torch.bincount(choice, minlength=len(tables.canvases)).float()
                    reward_sum += float(reward.sum())
                    expected_flops += float((probs.detach().cpu().double() * q).sum())
                    count += len(idx)
        self.bundle.eval()
        count = max(count, 1)
        self.rl_log = {
            "rl_last_epoch_reward": reward_sum / count,
            "rl_last_epoch_gflops": expected_flops / count / 1e9,
            **{f"rl_last_epoch_share_{c}": float(h) / count for c, h in zip(tables.canvases, hist.tolist())},
        }

    def extra_metrics(self, data: RunData, canvas: int | None) -> dict[str, float]:
        return dict(self.rl_log)


# -- the poster's dynamic KD rows: the same selector on a frozen KD student -------------------------
_FIXED = {k: v for k, v in SketchyNetV2.params.items() if k != "upstream"}


class _SelectorOnKD(SketchyNetV2):
    """SketchyNetV2's selector, rewards and training on a fixed KD baseline instead of SketchyNetV1
    (the poster's B-Regress / B-AKD / B-PKT rows are "Dynamic", 2.27 M params: V2's count). Only the
    upstream differs: FLOPs per query are the upstream's at the chosen canvas plus the selector's."""

    kind = "baseline"
    params = _FIXED


class BRegressDyn(_SelectorOnKD):
    upstream = "b-regress"
    description = "B-Regress, dynamic: SketchyNetV2's RL canvas selector on a frozen B-Regress (FitNets) student"


class BAKDDyn(_SelectorOnKD):
    upstream = "b-akd"
    description = "B-AKD, dynamic: SketchyNetV2's RL canvas selector on a frozen B-AKD (attention transfer) student"


class BPKTDyn(_SelectorOnKD):
    upstream = "b-pkt"
    description = "B-PKT, dynamic: SketchyNetV2's RL canvas selector on a frozen B-PKT student"
