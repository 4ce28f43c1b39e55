"""Retrieval metrics: the rank of each query's paired photo in the gallery.

rank = the number of gallery photos whose distance is ≤ the distance to the true photo (the
true photo counts itself, so rank ≥ 1; ties count against the method). Several sketches may
share one photo.
"""

from __future__ import annotations

import torch

from sketchbench.base.errors import SketchbenchError


def ranks(distances: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``distances`` (Q, P), ``targets`` (Q,) photo indices → (Q,) ranks, 1 = first."""
    if distances.dim() != 2 or distances.shape[0] != targets.shape[0]:
        raise ValueError(f"distances {tuple(distances.shape)} do not match {targets.shape[0]} targets")
    if not torch.isfinite(distances).all():
        # a NaN embedding would score acc@1 0 (or rank first) without a word: the cell fails instead
        bad = int((~torch.isfinite(distances)).any(dim=1).sum())
        raise SketchbenchError(
            f"{bad} of {distances.shape[0]} queries have NaN or infinite distances to the gallery: the method's "
            "embeddings are not finite (a diverged training, or an encoder bug), so the cell cannot be scored"
        )
    true = distances.gather(1, targets.view(-1, 1).long())
    return (distances <= true).sum(dim=1)


def retrieval_metrics(r: torch.Tensor) -> dict[str, float]:
    """acc@1, acc@10 (in %) and mean rank from ranks."""
    r = r.float()
    return {
        "acc1": float((r <= 1).float().mean() * 100),
        "acc10": float((r <= 10).float().mean() * 100),
        "mean_rank": float(r.mean()),
    }
