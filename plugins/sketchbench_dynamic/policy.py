"""How a canvas policy is trained on the frozen upstream's critic tables: the poster's REINFORCE and
the remedies dynamic-inference work uses against a policy that collapses onto one canvas.

Everything here is a pure function of the selector's logits and a **reward table** ``R`` ``(B, K)``:
the reward every canvas would earn for every sketch of the batch. SketchyNetV2 can have that table
because its critic (the frozen SketchyNetV1) does not change while the selector trains: each
training sketch is embedded at every canvas once (critic.py), so the reward of *each* canvas is
known, not only of the one sampled — which is what makes the exact objective below possible.

Objectives (``objective``):

- ``reinforce`` — the poster's: sample ``c ~ p``, ``L = −mean(log p(c)·A)`` with an advantage ``A``
  from the sampled rewards (``advantage``: ``moving`` = reward − a moving-average baseline, as before;
  ``standardised`` = GFNet's (r − mean)/(std + 1e-5) over the batch);
- ``expected`` — the exact expected reward ``Σ_c p(c|s)·R(s,c)``, maximised directly: the same
  objective REINFORCE estimates, with no sampling variance;
- ``gumbel`` — AR-Net's relaxation: a hard Gumbel-softmax sample (straight-through) times ``R``,
  temperature annealed ``τ = tau·exp(−0.045·epoch)``.

Regularisers, each off at 0: an entropy bonus (GFNet 0.01, BlockDrop 0.1), AR-Net's usage-balance
loss (the squared distance of the batch's mean canvas usage from uniform), DRNet's FLOPs budget
hinge ``max(0, E[q] − α)/(q_max − q_min)``. And a supervised warm start (PatchDrop, SkipNet): cross
entropy on cost-sensitive oracle labels ``argmax_c R(s, c)`` for the first epochs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

OBJECTIVES = ("reinforce", "expected", "gumbel")
ADVANTAGES = ("moving", "standardised")


@dataclass(frozen=True)
class PolicyRecipe:
    """How the policy is trained (SketchyNetV2's parameters of the same names)."""

    objective: str = "reinforce"
    advantage: str = "moving"
    entropy: float = 0.0
    balance: float = 0.0
    #: FLOPs budget α as a share of the span q_min → q_max (0 = no hinge)
    budget: float = 0.0
    warm_start: int = 0
    tau: float = 5.0
    baseline_momentum: float = 0.9

    def __post_init__(self) -> None:
        if self.objective not in OBJECTIVES:
            raise ValueError(f"unknown objective {self.objective!r} (one of {', '.join(OBJECTIVES)})")
        if self.advantage not in ADVANTAGES:
            raise ValueError(f"unknown advantage {self.advantage!r} (one of {', '.join(ADVANTAGES)})")


def normalised_flops(flops: torch.Tensor) -> torch.Tensor:
    """``(q − q_min)/(q_max − q_min)`` per canvas (zeros for a single canvas): the poster's L_F scale."""
    q = flops.double()
    span = float(q.max() - q.min())
    return ((q - q.min()) / span if span > 0 else torch.zeros_like(q)).float()


def expected_reward(logits: torch.Tensor, rewards: torch.Tensor) -> torch.Tensor:
    """``mean_i Σ_c p(c|s_i)·R(s_i, c)``: the objective REINFORCE samples, computed exactly."""
    return (F.softmax(logits.float(), dim=1) * rewards).sum(dim=1).mean()


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """Mean entropy of the policy over the batch (nats)."""
    logp = F.log_softmax(logits.float(), dim=1)
    return -(logp.exp() * logp).sum(dim=1).mean()


def usage_balance(logits: torch.Tensor) -> torch.Tensor:
    """AR-Net's balance term: K·Σ_c (mean_i p(c|s_i) − 1/K)², zero when every canvas is used equally."""
    usage = F.softmax(logits.float(), dim=1).mean(dim=0)
    k = usage.numel()
    return k * ((usage - 1.0 / k) ** 2).sum()


def budget_hinge(logits: torch.Tensor, q_norm: torch.Tensor, budget: float) -> torch.Tensor:
    """DRNet's hinge ``max(0, E[q_norm] − α)``: only a policy above the budget pays."""
    spent = (F.softmax(logits.float(), dim=1) * q_norm.to(logits.device)).sum(dim=1).mean()
    return F.relu(spent - budget)


def oracle_labels(rewards: torch.Tensor) -> torch.Tensor:
    """The cost-sensitive oracle label of each sketch: its best canvas under ``R`` (ties to the
    smaller canvas, the first maximum)."""
    return rewards.argmax(dim=1)


class MovingBaseline:
    """A moving average of the batch-mean reward (started at the first batch's mean)."""

    def __init__(self, momentum: float) -> None:
        self.momentum = momentum
        self.value: torch.Tensor | None = None

    def advantage(self, reward: torch.Tensor) -> torch.Tensor:
        b = reward.mean() if self.value is None else self.value
        mean = reward.mean()
        self.value = mean if self.value is None else self.momentum * self.value + (1 - self.momentum) * mean
        return reward - b


def standardised(reward: torch.Tensor) -> torch.Tensor:
    """GFNet's advantage: the batch's rewards standardised."""
    return (reward - reward.mean()) / (reward.std(unbiased=False) + 1e-5)


def policy_loss(
    logits: torch.Tensor, rewards: torch.Tensor, recipe: PolicyRecipe, *, epoch: int, generator: torch.Generator,
    baseline: MovingBaseline, q_norm: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The loss of one batch and the canvases it chose (``(B,)`` indices: sampled, or the argmax
    for the exact objective and the warm start). ``rewards`` ``(B, K)``: every canvas's reward for
    each sketch of the batch."""
    logits = logits.float()
    if epoch < recipe.warm_start:
        loss = F.cross_entropy(logits, oracle_labels(rewards).to(logits.device))
        choice = logits.detach().argmax(dim=1).cpu()
    elif recipe.objective == "expected":
        loss = -expected_reward(logits, rewards.to(logits.device))
        choice = logits.detach().argmax(dim=1).cpu()
    elif recipe.objective == "gumbel":
        tau = max(recipe.tau * math.exp(-0.045 * epoch), 1e-3)
        gumbel = -torch.log(-torch.log(torch.rand(logits.shape, generator=generator).clamp_min(1e-20))).to(logits.device)
        soft = F.softmax((logits + gumbel) / tau, dim=1)
        hard = F.one_hot(soft.argmax(dim=1), logits.shape[1]).to(soft.dtype)
        onehot = hard - soft.detach() + soft  # straight-through: the forward uses the hard choice
        loss = -(onehot * rewards.to(logits.device)).sum(dim=1).mean()
        choice = hard.argmax(dim=1).cpu()
    else:
        logp = F.log_softmax(logits, dim=1)
        choice = torch.multinomial(logp.detach().exp().cpu(), 1, generator=generator).squeeze(1)
        reward = rewards.gather(1, choice.view(-1, 1)).squeeze(1)
        adv = standardised(reward) if recipe.advantage == "standardised" else baseline.advantage(reward)
        loss = -(logp.gather(1, choice.view(-1, 1).to(logits.device)).squeeze(1) * adv.to(logits.device)).mean()
    if recipe.entropy:
        loss = loss - recipe.entropy * entropy(logits)
    if recipe.balance:
        loss = loss + recipe.balance * usage_balance(logits)
    if recipe.budget:
        loss = loss + budget_hinge(logits, q_norm, recipe.budget)
    return loss, choice
