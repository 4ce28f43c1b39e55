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
- **The default ψ_C is not the poster's GRU** but ``thumbnail``, a 42 k-parameter CNN on the sketch
  drawn at 32×32 (the poster's "image-based ψ_C" ablation, made small): on ChairV2's held-out
  training sketches over three seeds it is at least as good as the GRU against the random mix of
  V1's canvases, and it is the one whose query is faster than SketchyNetV1's (the GRU's sequential
  steps cost more than the smaller canvas saves); ``val_fraction`` 0.2 is part of that choice.
  ``--param encoder=gru --param val_fraction=0`` is the poster's form.
- Ablation switches ``reward_rank`` / ``reward_tri`` / ``reward_flops`` drop one reward term each:
  the poster's rows "w/o rank⁻¹-reward", "w/o L_Tri-reward", "w/o L_F-reward".
- Hyper-parameters (λ_F, λ_r, λ_Tri, margin, hidden size, RDP budget, epochs, lr) are unknown;
  our defaults are in ``params``. λ_F = 0.3 is the default knob (see the docs for why).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from sketchbench import Method, MethodContext, Param, RunData, SelectorOnUpstream
from sketchbench.training import Trainer

from .critic import CriticTables, critic_tables
from .policy import (
    ADVANTAGES,
    OBJECTIVES,
    MovingBaseline,
    PolicyRecipe,
    entropy,
    normalised_flops,
    policy_loss,
)
from .selectors import COORDS


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


def reward_table(tables: CriticTables, p: Mapping[str, Any], idx: torch.Tensor | None = None,
                 neg_pick: torch.Tensor | None = None) -> torch.Tensor:
    """``R_Tot(s, c)`` for every canvas c of the sketches ``idx`` (default all): ``(B, K)``.

    With ``neg_pick`` (one pool index per sketch) L_Tri uses that one negative, as the poster's
    sampled reward does; without, its mean over the sketch's whole negative pool (the expectation of
    that draw). The compute reward is ``−λ_F·q_c/(q_max − q_min)`` (L_F with η the one-hot of c:
    its expectation under p is the poster's L_F(p)), unless ``flops_term="expected"`` (then L_F(p)
    is differentiated in the loss instead) or ``reward_flops`` is off.
    """
    idx = torch.arange(tables.ranks.shape[0]) if idx is None else idx
    rank = tables.ranks[idx].float()
    d_pos = tables.d_pos[idx]
    if neg_pick is None:
        l_tri = F.relu(p["margin"] + d_pos[:, None, :] - tables.d_neg[idx]).mean(dim=1)
    else:
        l_tri = F.relu(p["margin"] + d_pos - tables.d_neg[idx, neg_pick])
    r_acc = accuracy_reward(rank, l_tri, p["lambda_r"] if p["reward_rank"] else 0.0,
                            p["lambda_tri"] if p["reward_tri"] else 0.0)
    comp = -flops_penalty(torch.eye(len(tables.canvases), dtype=torch.float64), tables.flops).float()
    if not p["reward_flops"] or p["flops_term"] == "expected":
        comp = torch.zeros_like(comp)
    return total_reward(comp[None, :], r_acc, p["lambda_f"])


class SketchyNetV2(SelectorOnUpstream):
    upstream = "sketchynet-v1"
    default_teacher = "triplet-sn"
    kind = "student"
    description = "SketchyNetV2: a canvas selector per sketch, trained on a frozen SketchyNetV1's rewards"
    version = "2"
    params = {
        "lambda_f": Param(0.3, "λ_F: weight of the compute reward (0 = accuracy only, 1 = FLOPs only)", min=0.0, max=1.0),
        "lambda_r": Param(1.0, "λ_r: weight of the 1/rank reward", min=0.0, max=100.0),
        "lambda_tri": Param(1.0, "λ_Tri: weight of the −L_Tri reward", min=0.0, max=100.0),
        "margin": Param(0.2, "triplet margin of L_Tri in the reward (upstream's distance)", min=0.0, max=4.0),
        "encoder": Param("thumbnail", "the canvas selector ψ_C: a registered selector (sketchbench list selectors); "
                         "gru is the poster's, the default before the thumbnail (docs/methods/sketchynet-v2.md)"),
        "hidden": Param(128, "hidden size of ψ_C (GRU 128 ≈ +0.05 M params, as in the paper; the thumbnail CNN's "
                        "last channels)", min=0, max=4096),
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
        # remedies against a policy that collapses onto one canvas (policy.py; docs/methods/sketchynet-v2.md)
        "objective": Param("reinforce", "reinforce (the poster's, sampled), expected (the exact Σ p·R), or gumbel "
                           "(straight-through Gumbel-softmax)", choices=OBJECTIVES, since="0.3"),
        "advantage": Param("moving", "REINFORCE advantage: reward − moving baseline, or standardised over the batch",
                           choices=ADVANTAGES, since="0.3"),
        "entropy": Param(0.0, "entropy bonus weight (GFNet 0.01)", min=0.0, max=10.0, since="0.3"),
        "balance": Param(0.0, "usage-balance loss weight (AR-Net 3.0)", min=0.0, max=100.0, since="0.3"),
        "budget": Param(0.0, "FLOPs budget hinge α, a share of q_min → q_max (0 = off)", min=0.0, max=1.0, since="0.3"),
        "warm_start": Param(0, "epochs of cross-entropy on cost-sensitive oracle labels before the policy objective",
                            min=0, max=10000, since="0.3"),
        "tau": Param(5.0, "Gumbel-softmax temperature at epoch 0 (× exp(−0.045·epoch))", min=1e-3, max=100.0, since="0.3"),
        # 0.2 since the thumbnail became the default (it was chosen in this form, docs/methods/sketchynet-v2.md);
        # results made at 0 before keep their identity
        "val_fraction": Param(0.2, "share of the training sketches held out of the selector's training; the epoch "
                              "with the best held-out reward is kept (0 = the last epoch)", min=0.0, max=0.9, since="0.3",
                              added_default=0.0),
    }

    @classmethod
    def upstream_for(cls, params: Mapping[str, Any]) -> str | None:
        """The ``upstream`` parameter where declared (``--param upstream=NAME``), else the class's."""
        return params.get("upstream") or cls.upstream

    def __init__(self, ctx: MethodContext) -> None:
        super().__init__(ctx)
        self.log: dict[str, Any] = {}

    def state(self) -> dict[str, Any]:
        return {**super().state(), "log": self.log}

    def load_state(self, state: dict[str, Any]) -> None:
        super().load_state(state)
        self.log = dict(state.get("log", {}))

    def recipe(self) -> PolicyRecipe:
        p = self.p
        return PolicyRecipe(objective=p["objective"], advantage=p["advantage"], entropy=p["entropy"],
                            balance=p["balance"], budget=p["budget"], warm_start=p["warm_start"], tau=p["tau"],
                            baseline_momentum=p["baseline_momentum"])

    # -- training ------------------------------------------------------------------------------
    def train(self, data: RunData, canvases: Sequence[int], teacher: Method | None = None) -> None:
        up = self.freeze_upstream()
        cs, inputs = self.prepare_training(data, canvases)
        tables = critic_tables(up, data, cs, negatives=self.p["negatives"], seed=self.ctx.seed)
        self.fit_policy(inputs, tables, self.ctx.preset.batch_size)

    def split_validation(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(training, held-out) indices of the training sketches: a seeded ``val_fraction`` held out."""
        order = torch.randperm(n, generator=torch.Generator().manual_seed(self.ctx.seed + 7919))
        k = int(round(self.p["val_fraction"] * n)) if self.p["val_fraction"] > 0 else 0
        k = min(max(k, 0), n - 2)
        return order[k:].sort().values, order[:k].sort().values

    def fit_policy(self, inputs: Sequence[np.ndarray], tables: CriticTables, preset_batch: int) -> None:
        """Train the selector on the precomputed critic tables (policy.py); log each epoch."""
        p, recipe, sel = self.p, self.recipe(), self.selector
        fit_idx, val_idx = self.split_validation(len(inputs))
        mean_table = reward_table(tables, p)  # (N, K): every canvas's reward, L_Tri over the whole negative pool
        q_norm = normalised_flops(tables.flops)
        n, bsz = len(fit_idx), max(2, p["rl_batch"] or preset_batch)
        gen = torch.Generator().manual_seed(self.ctx.seed)
        trainer = Trainer(sel.parameters(), lr=p["rl_lr"], device=self.device, desc=f"{self.ctx.name} selector")
        baseline = MovingBaseline(recipe.baseline_momentum)
        epochs: list[dict[str, Any]] = []
        best: tuple[float, int, dict[str, torch.Tensor]] | None = None
        for epoch in trainer.epochs(p["rl_epochs"], max(1, math.ceil(n / bsz))):
            sel.train()
            order = fit_idx[torch.randperm(n, generator=gen)]
            for start in range(0, n, bsz):
                idx = order[start : start + bsz]
                if len(idx) < 2:  # BatchNorm (image selector) and the baselines need two samples
                    continue
                x, lengths = sel.collate([inputs[i] for i in idx.tolist()])
                logits = sel(x.to(self.device), lengths)
                if recipe.objective == "reinforce" and epoch >= recipe.warm_start:
                    neg_pick = torch.randint(tables.negatives.shape[1], (len(idx),), generator=gen)
                    rewards = reward_table(tables, p, idx, neg_pick)  # the poster's: one negative drawn per step
                else:
                    rewards = mean_table[idx]
                loss, _ = policy_loss(logits, rewards, recipe, epoch=epoch, generator=gen, baseline=baseline, q_norm=q_norm)
                if p["reward_flops"] and p["flops_term"] == "expected":  # λ_F·L_F(p), differentiated directly
                    loss = loss + p["lambda_f"] * flops_penalty(F.softmax(logits.float(), 1), tables.flops.to(self.device)).mean()
                trainer.step(loss)
            record = self.epoch_record(inputs, mean_table, tables, fit_idx, val_idx)
            epochs.append(record)
            score = record.get("val_reward", record["train_reward"])
            if val_idx.numel() and (best is None or score > best[0] + 1e-12):
                best = (score, epoch, {k: v.detach().clone() for k, v in sel.state_dict().items()})
        if best is not None:
            sel.load_state_dict(best[2])
        sel.eval()
        self.log = {
            "epochs": epochs, "chosen_epoch": best[1] if best is not None else len(epochs) - 1,
            "critic_train_inv_rank": (1.0 / tables.ranks.double()).mean(dim=0).tolist(),
            "critic_train_acc1": (100.0 * (tables.ranks == 1).double().mean(dim=0)).tolist(),
            "canvases": list(tables.canvases), "canvas_gflops": (tables.flops / 1e9).tolist(),
            "validation_sketches": int(val_idx.numel()),
        }
        if val_idx.numel():  # the constant canvases on the held-out sketches: the random mix the choice must beat
            self.log["val_acc1_by_canvas"] = (100.0 * (tables.ranks[val_idx] == 1).double().mean(dim=0)).tolist()

    @torch.no_grad()
    def epoch_record(self, inputs: Sequence[np.ndarray], table: torch.Tensor, tables: CriticTables,
                     fit_idx: torch.Tensor, val_idx: torch.Tensor) -> dict[str, Any]:
        """The policy after an epoch, over the training sketches (and the held-out ones): entropy,
        argmax canvas shares, mean reward of the argmax choice, its acc@1 under the critic."""
        sel = self.selector
        sel.eval()
        logits = torch.cat([sel(*_to(sel.collate([inputs[i] for i in chunk.tolist()]), self.device)).float().cpu()
                            for chunk in torch.split(torch.arange(len(inputs)), 256)])
        choice = logits.argmax(dim=1)
        out: dict[str, Any] = {}
        for name, idx in (("train", fit_idx), ("val", val_idx)):
            if not idx.numel():
                continue
            c = choice[idx]
            out[f"{name}_reward"] = float(table[idx, c].mean())
            out[f"{name}_acc1"] = float(100.0 * (tables.ranks[idx, c] == 1).double().mean())
            out[f"{name}_gflops"] = float(tables.flops[c].mean() / 1e9)
        out["entropy"] = float(entropy(logits[fit_idx]))
        out["shares"] = (torch.bincount(choice[fit_idx], minlength=len(tables.canvases)).double() / len(fit_idx)).tolist()
        return out

    def diagnostics(self) -> dict[str, Any]:
        return dict(self.log)

    def extra_metrics(self, data: RunData, canvas: int | None) -> dict[str, float]:
        """The last epoch's numbers as flat metrics (the whole log is the cell's ``diagnostics``)."""
        if not self.log.get("epochs"):
            return {}
        last = self.log["epochs"][self.log["chosen_epoch"]]
        out = {"selector_train_reward": last["train_reward"], "selector_entropy": last["entropy"]}
        out.update({f"selector_train_share_{c}": s for c, s in zip(self.log["canvases"], last["shares"])})
        if "val_reward" in last:
            out["selector_val_reward"] = last["val_reward"]
        return out


def _to(batch: tuple[torch.Tensor, torch.Tensor | None], device: torch.device) -> tuple[torch.Tensor, torch.Tensor | None]:
    return batch[0].to(device), batch[1]


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
