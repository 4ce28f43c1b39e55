"""The frozen upstream (SketchyNetV1) as a critic, precomputed once.

The upstream never changes while a selector trains, so everything the rewards need is computed
up front: every training sketch embedded at every canvas (from the cached renders, no rendering
in the loop), the photos embedded once, and from them the rank of each sketch's paired photo
among all the split's photos and its distances to the positive and to a pool of sampled
negatives, per canvas; plus the upstream's FLOPs at each canvas (q_j). A policy-gradient step is
then just indexing into these tables.

Only the upstream's public interface is used: ``encode_sketch``, ``encode_photo``, ``distance``,
``sketch_branch`` and ``sketch_input``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from sketchbench import Method, RunData, count_flops
from sketchbench.training import embed_in_batches, sample_negatives


@dataclass
class CriticTables:
    canvases: list[int]
    #: (N, K) rank of the paired photo among the split's photos (1 = first; ties count against)
    ranks: torch.Tensor
    #: (N, K) distance to the paired photo
    d_pos: torch.Tensor
    #: (N, M) photo indices of each sketch's negative pool
    negatives: torch.Tensor
    #: (N, M, K) distance to each pool negative
    d_neg: torch.Tensor
    #: (K,) FLOPs of the upstream's sketch branch at each canvas: q_j
    flops: torch.Tensor


def canvas_flops(upstream: Method, canvases: Sequence[int]) -> torch.Tensor:
    """q_j: the upstream's sketch-branch FLOPs at each canvas (the paper's convention)."""
    branch = upstream.sketch_branch()
    return torch.tensor([count_flops(branch, upstream.sketch_input(int(c)))[0] for c in canvases], dtype=torch.float64)


def rank_of_pair(dist: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """(Q, P) distances, (Q,) paired photo → (Q,) ranks, the framework's convention: the number
    of photos at a distance ≤ the paired photo's (so ties count against)."""
    dist = torch.nan_to_num(dist.float(), nan=float("inf"))
    true = dist.gather(1, targets.view(-1, 1).long())
    return (dist <= true).sum(dim=1)


#: the last tables computed in this process, by (upstream's trained key, data, what was asked): a
#: benchmark that trains several selectors on one frozen upstream embeds its sketches once
_RECENT: OrderedDict[tuple, CriticTables] = OrderedDict()
_RECENT_SIZE = 4


def critic_tables(
    upstream: Method, data: RunData, canvases: Sequence[int], *, split: str = "train",
    indices: Sequence[int] | None = None, negatives: int = 16, seed: int = 0, chunk: int = 256,
) -> CriticTables:
    """Embed the split's sketches (``indices``, default all) at every canvas and its photos once
    with the frozen upstream; rank each sketch's photo among all the split's photos. An upstream
    with a ``trained_key`` (set by the runner) has its tables kept for the next selector."""
    ident = getattr(upstream, "trained_key", None)
    key = (ident, data.fingerprint, split, None if indices is None else tuple(int(i) for i in indices), negatives, seed,
           tuple(int(c) for c in canvases))
    if ident is not None and key in _RECENT:
        _RECENT.move_to_end(key)
        return _RECENT[key]
    tables = _compute(upstream, data, canvases, split, indices, negatives, seed, chunk)
    if ident is not None:
        _RECENT[key] = tables
        while len(_RECENT) > _RECENT_SIZE:
            _RECENT.popitem(last=False)
    return tables


def _compute(upstream: Method, data: RunData, canvases: Sequence[int], split: str, indices: Sequence[int] | None,
             negatives: int, seed: int, chunk: int) -> CriticTables:
    canvases = [int(c) for c in canvases]
    bs = upstream.ctx.preset.eval_batch_size
    device = getattr(upstream, "device", torch.device("cpu"))
    photos = data.photos(split)
    num_photos = photos.shape[0]
    idx = torch.arange(len(data.items(split))) if indices is None else torch.as_tensor(list(indices), dtype=torch.long)
    pairs = data.pairs(split)[idx]
    photo_emb = embed_in_batches(upstream.encode_photo, photos, bs)
    rng = np.random.default_rng(seed)
    m = max(1, min(negatives, num_photos - 1))
    hard = data.split(split).hard_negatives
    anchors = idx.numpy()
    pool = np.stack([sample_negatives(pairs.numpy(), num_photos, rng, hard, anchors) for _ in range(m)], axis=1)
    neg = torch.from_numpy(pool).long()
    n = len(idx)
    ranks = torch.zeros(n, len(canvases), dtype=torch.long)
    d_pos = torch.zeros(n, len(canvases))
    d_neg = torch.zeros(n, m, len(canvases))
    for k, c in enumerate(canvases):
        sketches = data.sketches(split, c)[idx]
        emb = embed_in_batches(upstream.encode_sketch, sketches, bs)
        with torch.inference_mode():
            for start in range(0, n, chunk):
                sl = slice(start, min(n, start + chunk))
                dist = upstream.distance(emb[sl].to(device), photo_emb.to(device)).float().cpu()
                ranks[sl, k] = rank_of_pair(dist, pairs[sl])
                d_pos[sl, k] = dist.gather(1, pairs[sl].view(-1, 1)).squeeze(1)
                d_neg[sl, :, k] = dist.gather(1, neg[sl])
    return CriticTables(canvases, ranks, d_pos, neg, d_neg, canvas_flops(upstream, canvases))
