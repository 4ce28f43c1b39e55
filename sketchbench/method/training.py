"""The loop's machinery every method's ``train`` composes: seeding, a small trainer (devices, AMP,
NaN losses, progress bar, gradient averaging under torchrun) and batched embedding.

Methods compose these with :mod:`~sketchbench.method.inputs`, :mod:`~sketchbench.method.backbones`
and :mod:`~sketchbench.method.triplets`; there is no hidden global loop, so each method's ``train``
reads like its paper's training procedure.
"""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Iterator

import numpy as np
import torch
from tqdm.auto import tqdm

from sketchbench.base.errors import TrainingError
from sketchbench.base.progress import hidden
from sketchbench.method.distributed import GradientSync, gather_in_order, is_main, world


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    os.environ.setdefault("PYTHONHASHSEED", str(seed))


class Trainer:
    """Adam (or a given optimiser), AMP on CUDA, NaN detection, one progress bar on stderr.

    >>> trainer = Trainer(model.parameters(), lr=1e-4, device=device, desc="triplet-sn")
    >>> for epoch in trainer.epochs(10, steps_per_epoch=len(loader)):
    ...     for batch in loader:
    ...         with trainer.autocast():
    ...             loss = ...
    ...         trainer.step(loss)
    """

    def __init__(
        self, params, *, lr: float, device: torch.device, desc: str = "train",
        optimizer: torch.optim.Optimizer | None = None, weight_decay: float = 0.0, clip: float | None = None,
    ) -> None:
        self.params = [p for p in params if p.requires_grad] if optimizer is None else None
        self.optimizer = optimizer or torch.optim.Adam(self.params, lr=lr, weight_decay=weight_decay)
        self.device = torch.device(device)
        self.amp = self.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.desc = desc
        self.clip = clip
        self.epoch = 0
        self.global_step = 0
        self.last_loss = float("nan")
        self._bar: tqdm | None = None
        # made now, before any forward pass: DDP broadcasts the parameters when it is made
        self._sync = (GradientSync([p for g in self.optimizer.param_groups for p in g["params"]])
                      if world()[1] > 1 else None)

    def autocast(self):
        if self.amp:
            return torch.autocast("cuda", dtype=torch.float16)
        return contextlib.nullcontext()

    def epochs(self, n: int, steps_per_epoch: int) -> Iterator[int]:
        self._bar = tqdm(total=max(1, n * steps_per_epoch), desc=self.desc, leave=False, unit="step",
                         disable=hidden(not is_main()))
        try:
            for e in range(n):
                self.epoch = e
                yield e
        finally:
            self._bar.close()
            self._bar = None

    def step(self, loss: torch.Tensor, local_count: int = 1, global_count: int | None = None) -> float:
        """One optimiser step. Under torchrun, pass the number of items this process's loss
        averaged over and the global batch size, so gradients average like DDP's."""
        value = float(loss.detach())
        if not np.isfinite(value):
            raise TrainingError(
                f"{self.desc}: the loss became {value} at epoch {self.epoch + 1}, step {self.global_step + 1} "
                "(try a lower learning rate: {overrides} lr=...)", settings=("overrides",)
            )
        self.optimizer.zero_grad(set_to_none=True)
        if self._sync is not None:  # under torchrun: DDP's reducer averages the gradients during backward
            loss = self._sync(loss, local_count, global_count)
        self.scaler.scale(loss).backward()
        if self.clip is not None:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(
                [p for g in self.optimizer.param_groups for p in g["params"]], self.clip
            )
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.global_step += 1
        self.last_loss = value
        if self._bar is not None:
            self._bar.update(1)
            self._bar.set_postfix(loss=f"{value:.4f}", refresh=False)
        return value


def embed_in_batches(fn, images: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Apply an encoder to a uint8 tensor in batches, without gradients (split across processes
    under torchrun, gathered back in order)."""
    if world()[1] > 1:
        return gather_in_order(fn, images, batch_size)
    outs = []
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            outs.append(fn(images[start : start + batch_size]).float().cpu())
    return torch.cat(outs) if outs else torch.empty(0)
