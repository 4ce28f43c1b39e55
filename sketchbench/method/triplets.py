"""Triplet training: the loss, negatives never equal to the positive (hard ones from a dataset's
annotations), batches, and the loop every triplet-trained method shares (:func:`triplet_epochs`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from sketchbench.base.errors import SketchbenchError
from sketchbench.data.rundata import RunData
from sketchbench.method.inputs import random_flip, random_shift
from sketchbench.method.training import Trainer


def triplet_loss(
    anchor: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor, margin: float, squared: bool = False
) -> torch.Tensor:
    """``mean(max(0, m + d(a, p) − d(a, n)))``, Euclidean (or squared Euclidean) distance."""
    dp = (anchor - positive).pow(2).sum(-1)
    dn = (anchor - negative).pow(2).sum(-1)
    if not squared:
        dp, dn = dp.clamp_min(1e-12).sqrt(), dn.clamp_min(1e-12).sqrt()
    return F.relu(margin + dp - dn).mean()


def sample_negatives(
    positives: np.ndarray, num_photos: int, rng: np.random.Generator,
    hard: list[list[int]] | None = None, anchors: np.ndarray | None = None, hard_ratio: float = 0.75,
) -> np.ndarray:
    """A negative photo per positive: never the positive itself; with ``hard`` candidates (QMUL-V1
    annotations), a hard one with probability ``hard_ratio``."""
    if num_photos < 2:
        raise SketchbenchError("triplet training needs at least two photos")
    neg = rng.integers(0, num_photos - 1, size=len(positives))
    neg = neg + (neg >= positives)  # skip the positive
    if hard is not None and anchors is not None:
        for i, a in enumerate(anchors):
            cands = [c for c in hard[int(a)] if c != positives[i]]
            if cands and rng.random() < hard_ratio:
                neg[i] = cands[rng.integers(len(cands))]
    return neg


def triplet_batches(
    pairs: torch.Tensor, num_photos: int, batch_size: int, rng: np.random.Generator,
    hard: list[list[int]] | None = None,
) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """One epoch of ``(sketch idx, positive photo idx, negative photo idx)`` batches."""
    from sketchbench.method.distributed import local_slice

    order = rng.permutation(len(pairs))
    pos_all = pairs.numpy()
    for start in range(0, len(order), batch_size):
        a = order[start : start + batch_size]
        if len(a) < 2 and len(order) >= 2:
            continue
        p = pos_all[a]
        n = sample_negatives(p, num_photos, rng, hard, a)
        # under torchrun every process draws the same global batch and keeps its slice
        yield tuple(local_slice(torch.from_numpy(x)) for x in (a, p, n))  # type: ignore[misc]


@dataclass
class TripletBatch:
    """One step of triplet training: indices into the train split, and the uint8 images ready to
    embed (augmented): the anchor sketches at each training canvas, the positive and negative photos."""

    anchors: torch.Tensor
    positives: torch.Tensor
    negatives: torch.Tensor
    sketches: dict[int, torch.Tensor]
    pos: torch.Tensor
    neg: torch.Tensor
    #: which anchors were flipped (``joint_flip``: the same flip at every canvas), else all False
    flipped: torch.Tensor | None = None


def triplet_epochs(
    data: RunData, trainer: Trainer, *, epochs: int, canvases: Sequence[int], batch_size: int, seed: int,
    augment: bool = True,
    sketch_transform: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None,
    joint_flip: bool = False, shift: bool = True, max_steps: int | None = None,
) -> Iterator[TripletBatch]:
    """The triplet training loop every triplet-trained method shares: ``epochs`` passes over the
    train split in batches of ``batch_size`` (the preset's: ``self.ctx.preset.batch_size``), negatives never equal to the positive (hard
    ones from the dataset's annotations when it has them), joint random flips of photos and
    flips + shifts of sketches (``augment``), sketches taken from the cached renders at each
    canvas. Seeded by ``seed``; the trainer's progress bar counts the steps.

    - ``sketch_transform`` (e.g. random erasing) runs on sketches before the augmentation;
    - ``joint_flip``: each anchor is flipped (or not) the same way at every canvas, and
      ``TripletBatch.flipped`` says which (multi-canvas students, whose cached teacher targets
      must be flipped with the sketch); otherwise each canvas draws its own flips;
    - ``shift=False``: no random shifts (a shifted sketch would no longer match a cached map);
    - ``max_steps``: stop after this many steps (pruning schedules), epochs rounded up to cover them.
    """
    sketches = {c: data.sketches("train", c) for c in canvases}
    photos, pairs = data.photos("train"), data.pairs("train")
    hard = data.split("train").hard_negatives
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    steps = max(1, (len(pairs) + batch_size - 1) // batch_size)
    total = steps * epochs if max_steps is None else max_steps
    taken = 0
    for _ in trainer.epochs(max(1, -(-total // steps)), steps):
        for a, p, n in triplet_batches(pairs, photos.shape[0], batch_size, rng, hard):
            if taken >= total:
                return
            pos, neg = photos[p], photos[n]
            flipped = torch.zeros(len(a), dtype=torch.bool)
            if augment:
                pos, neg = random_flip(pos, gen), random_flip(neg, gen)
                if joint_flip:
                    flipped = torch.rand(len(a), generator=gen) < 0.5
            views = {}
            for c in canvases:
                s = sketches[c][a]
                if sketch_transform is not None:
                    s = sketch_transform(s, gen)
                if augment and joint_flip:
                    s = s.clone()
                    s[flipped] = s[flipped].flip(-1)
                    if shift:
                        s = random_shift(s, generator=gen)
                elif augment:
                    s = random_flip(s, gen)
                    s = random_shift(s, generator=gen) if shift else s
                views[c] = s
            taken += 1
            yield TripletBatch(a, p, n, views, pos, neg, flipped)
