"""Knowledge-distillation losses and pruning criteria as pure functions (no modules, no state).

- :func:`rkd_triplet_loss`: SketchyNetV1's cross-modal relational KD (Sain et al. CVPR'25): Huber
  loss between teacher and student Euclidean distances inside each triplet (sketch–positive,
  sketch–negative, positive–negative), each side's distances divided by their batch mean (the
  distance normalisation of RKD, Park et al. CVPR'19; our choice, the paper does not say).
- :func:`fitnets_loss`: FitNets hint regression (Romero et al. ICLR'15), MSE of an adapted student
  map against the teacher's hint map.
- :func:`attention_map` / :func:`at_loss`: attention transfer (Zagoruyko & Komodakis ICLR'17),
  ``at(A) = normalize(vec(mean_c A_c²))``; :func:`select_at_maps` picks the student maps it uses,
  :func:`at_loss_sum` sums their terms, :func:`at_is_constant` tells when a term is identically 0.
- :func:`pkt_probabilities` / :func:`pkt_loss`: probabilistic knowledge transfer (Passalis & Tefas
  ECCV'18), cosine kernel → conditional probabilities → KL(P_T ‖ P_S), as in the authors' code.
- :func:`taylor_criterion`: Molchanov et al. 2016's first-order Taylor criterion of a feature map,
  ``|mean_spatial(z · ∂C/∂z)|`` per example, averaged over the batch; :func:`layer_l2_normalise`.
- :func:`thinet_greedy_selection` / :func:`thinet_least_squares`: ThiNet's (Luo et al. ICCV'17)
  greedy channel removal by next-layer reconstruction error, and the least-squares rescaling.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

PKT_EPS = 1e-7


# -- RKD on the triplet (SketchyNetV1) -------------------------------------------------------------
def triplet_distances(
    sketch: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Euclidean ``(d_sp, d_sn, d_pn)`` per triplet, each ``(B,)``; embeddings are flattened."""
    s, p, n = sketch.flatten(1), positive.flatten(1), negative.flatten(1)
    # clamp inside the sqrt: the gradient of ‖x‖ at 0 is undefined
    dist = lambda x, y: (x - y).pow(2).sum(-1).clamp_min(1e-12).sqrt()  # noqa: E731
    return dist(s, p), dist(s, n), dist(p, n)


def mean_normalise(distances: tuple[torch.Tensor, ...], eps: float = 1e-12) -> tuple[torch.Tensor, ...]:
    """Divide every distance by the mean of all of them (RKD's normalisation: teacher and student
    live in spaces of different dimension and scale, so only relative distances are comparable)."""
    mean = torch.cat([d.flatten() for d in distances]).mean().clamp_min(eps)
    return tuple(d / mean for d in distances)


def huber(student: torch.Tensor, teacher: torch.Tensor, beta: float = 1.0) -> torch.Tensor:
    """The paper's L_δ: ``½(a−b)²`` if ``|a−b| < β`` else ``β(|a−b| − ½β)``, averaged."""
    return F.huber_loss(student, teacher, delta=beta, reduction="mean")


def rkd_triplet_loss(
    student: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    teacher: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    beta: float = 1.0,
    normalise: bool = True,
) -> torch.Tensor:
    """``L_RKD = L_δ(d_sp^T, d_sp^S) + L_δ(d_sn^T, d_sn^S) + L_δ(d_pn^T, d_pn^S)``.

    ``student`` and ``teacher`` are ``(d_sp, d_sn, d_pn)`` tuples of ``(B,)`` distances. With
    ``normalise`` each side is divided by its own batch mean; the teacher side carries no gradient.
    """
    teacher = tuple(t.detach().to(student[0].dtype) for t in teacher)
    if normalise:
        student, teacher = mean_normalise(student), mean_normalise(teacher)
    return sum(huber(s, t, beta) for s, t in zip(student, teacher, strict=True))


# -- FitNets ---------------------------------------------------------------------------------------
def match_spatial(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Adaptive-average-pool the spatially larger of two ``(B, C, H, W)`` maps (or ``(B, H, W)``
    energies) to the other's size (RepDistiller's rule for AT across resolutions)."""
    ha, wa = a.shape[-2:]
    hb, wb = b.shape[-2:]
    if (ha, wa) == (hb, wb):
        return a, b
    size = (min(ha, hb), min(wa, wb))

    def pool(x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[-2:]) == size:
            return x
        return F.adaptive_avg_pool2d(x.unsqueeze(1), size).squeeze(1) if x.dim() == 3 else F.adaptive_avg_pool2d(x, size)

    return pool(a), pool(b)


def fitnets_loss(adapted_student: torch.Tensor, teacher_map: torch.Tensor) -> torch.Tensor:
    """Mean squared error between the adaptor's output ``r(v_guided)`` and the teacher's hint map
    (both ``(B, C_T, H, W)``; different resolutions are matched by pooling the larger)."""
    s, t = match_spatial(adapted_student, teacher_map.detach().to(adapted_student.dtype))
    return F.mse_loss(s, t)


# -- attention transfer ----------------------------------------------------------------------------
def attention_energy(fmap: torch.Tensor) -> torch.Tensor:
    """``mean_c A_c²``: the spatial attention energy ``(B, H, W)`` of a ``(B, C, H, W)`` map."""
    return fmap.float().pow(2).mean(1)


def attention_map(fmap_or_energy: torch.Tensor) -> torch.Tensor:
    """``at(A) = normalize(vec(mean_c A_c²))`` → ``(B, H·W)``, unit L2 norm per row. Accepts a
    ``(B, C, H, W)`` map or an already computed ``(B, H, W)`` energy."""
    e = attention_energy(fmap_or_energy) if fmap_or_energy.dim() == 4 else fmap_or_energy.float()
    return F.normalize(e.flatten(1), dim=1)


def at_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """``mean((at(S) − at(T))²)``. Inputs are ``(B, C, H, W)`` maps or ``(B, H, W)`` energies; at
    different resolutions the larger energy map is adaptive-average-pooled to the smaller."""
    es = attention_energy(student) if student.dim() == 4 else student.float()
    et = attention_energy(teacher) if teacher.dim() == 4 else teacher.float()
    es, et = match_spatial(es, et.detach())
    return (attention_map(es) - attention_map(et)).pow(2).mean()


#: which student maps attention transfer uses (``b-akd``'s ``at_maps``)
AT_MAPS = ("last", "spatial", "stages")


def select_at_maps(maps: Sequence[torch.Tensor], mode: str) -> list[torch.Tensor]:
    """The student maps attention transfer matches, from ``maps`` ordered shallow → deep (the last
    one is the network's final spatial map):

    - ``"last"``: the final map only, whatever its size (at a canvas where it is 1×1 its attention
      map normalises to the constant 1 and the AT term is exactly 0);
    - ``"spatial"``: the deepest map that is at least 2×2, else the final one;
    - ``"stages"``: every map that is at least 2×2 (the AT paper matches several stages), else the
      final one.
    """
    if mode not in AT_MAPS:
        raise ValueError(f"unknown at_maps {mode!r} (one of {', '.join(AT_MAPS)})")
    if mode == "last":
        return [maps[-1]]
    spatial = [m for m in maps if min(m.shape[-2:]) >= 2]
    if not spatial:
        return [maps[-1]]
    return [spatial[-1]] if mode == "spatial" else spatial


def at_loss_sum(students: Sequence[torch.Tensor], teacher: torch.Tensor) -> torch.Tensor:
    """``Σ_j mean((at(S_j) − at(T))²)`` over student maps ``S_j``, each matched to the teacher's map
    or energy by pooling the larger (RepDistiller sums the AT terms of its stage pairs)."""
    return sum((at_loss(s, teacher) for s in students), torch.zeros((), device=teacher.device))


def at_is_constant(student_hw: tuple[int, int], teacher_hw: tuple[int, int]) -> bool:
    """Whether the AT term of a student map of size ``student_hw`` against a teacher map of size
    ``teacher_hw`` is identically 0: after pooling to the smaller size a single position is left."""
    return min(student_hw[0], teacher_hw[0]) * min(student_hw[1], teacher_hw[1]) == 1


# -- PKT -------------------------------------------------------------------------------------------
def pkt_probabilities(x: torch.Tensor, eps: float = PKT_EPS) -> torch.Tensor:
    """Conditional probabilities ``(B, B)`` of the cosine kernel rescaled to [0, 1]: rows sum to 1
    (the diagonal is kept, as in the authors' code)."""
    x = x.flatten(1).float()
    x = x / (x.norm(dim=1, keepdim=True) + eps)
    x = torch.nan_to_num(x, nan=0.0)
    k = (x @ x.t() + 1.0) / 2.0
    return k / k.sum(dim=1, keepdim=True)


def pkt_loss(student: torch.Tensor, teacher: torch.Tensor, eps: float = PKT_EPS) -> torch.Tensor:
    """``mean(P_T · log((P_T + ε) / (P_S + ε)))`` = KL(P_T ‖ P_S) averaged over the B² entries."""
    ps = pkt_probabilities(student, eps)
    pt = pkt_probabilities(teacher.detach(), eps)
    return (pt * torch.log((pt + eps) / (ps + eps))).mean()


# -- Molchanov et al. 2016 -------------------------------------------------------------------------
def taylor_criterion(activation: torch.Tensor, gradient: torch.Tensor) -> torch.Tensor:
    """First-order Taylor importance of each feature map ``(C,)``: per example
    ``|(1/M) Σ_m z_m · ∂C/∂z_m|`` over the M spatial positions, averaged over the batch."""
    prod = (activation.detach().float() * gradient.detach().float())
    per_example = prod.flatten(2).mean(2).abs() if prod.dim() > 2 else prod.abs()
    return per_example.mean(0)


def layer_l2_normalise(scores: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Θ / ‖Θ‖₂ within a layer, so that scores of different layers can be ranked together."""
    return scores / scores.norm().clamp_min(eps)


# -- ThiNet ----------------------------------------------------------------------------------------
def thinet_greedy_selection(contributions: torch.Tensor, n_remove: int) -> list[int]:
    """ThiNet's greedy removal set.

    ``contributions`` is ``(S, C)``: for each sampled output element of the next layer, the
    contribution ``x̂_c`` of each of the C input channels (the next layer's output there is
    ``Σ_c x̂_c``). Grow T one channel at a time, adding the channel that minimises
    ``Σ_samples (Σ_{c∈T} x̂_c)²``; return T in the order the channels were added.
    """
    x = contributions.double()
    n_channels = x.shape[1]
    if not 0 <= n_remove <= n_channels:
        raise ValueError(f"cannot remove {n_remove} of {n_channels} channels")
    running = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
    available = torch.ones(n_channels, dtype=torch.bool, device=x.device)
    removed: list[int] = []
    for _ in range(n_remove):
        err = (running.unsqueeze(1) + x).pow(2).sum(0)
        err[~available] = float("inf")
        c = int(torch.argmin(err))
        removed.append(c)
        available[c] = False
        running = running + x[:, c]
    return removed


def thinet_least_squares(kept: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """ThiNet's rescaling ``ŵ = argmin_w Σ (y − wᵀ x̂_kept)²`` → ``(K,)``; ones when the system is
    degenerate (no samples, or a non-finite solution)."""
    k = kept.shape[1]
    if kept.shape[0] < 1 or k == 0:
        return torch.ones(k)
    sol = torch.linalg.lstsq(kept.double(), target.double().unsqueeze(1)).solution.squeeze(1)
    if not torch.isfinite(sol).all():
        return torch.ones(k)
    return sol.float()
