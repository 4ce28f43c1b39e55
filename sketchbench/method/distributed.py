"""Multi-process training under ``torchrun`` (DistributedDataParallel semantics), through the
same code path as one process.

Each process computes its slice of every global triplet batch; the :class:`~sketchbench.method.training.Trainer`
routes each step's loss through :class:`GradientSync`, so torch's
``DistributedDataParallel`` reducer averages the gradients across processes during ``backward``
(bucketed, one all-reduce per bucket, overlapped with the rest of the backward pass) and every
replica takes the same optimiser step as one process on the global batch. Evaluation encodes a
shard per process, gathers the embeddings with their ids and drops the duplicates that padding
adds. Rank 0 alone writes results and checkpoints.

Why the loss goes through DDP rather than each network: methods own several modules and call them
directly in their paper-shaped loops. DDP's reducer does not need the forward pass itself, only
the parameters (whose gradient hooks it installs) and the output whose autograd graph it walks to
find the parameters a step did not use. So one DDP wraps a module that holds the trainer's
parameters and whose forward returns the loss unchanged: every method gets DDP's bucketing and
overlap without routing its forward passes through a wrapper.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import torch
import torch.distributed as dist


def world() -> tuple[int, int]:
    """(rank, world size); (0, 1) outside torchrun."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main() -> bool:
    return world()[0] == 0


def init_from_env(device: torch.device) -> bool:
    """Join the process group torchrun describes (``WORLD_SIZE`` > 1). Returns whether distributed."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or not dist.is_available():
        return False
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend)
        if device.type == "cuda":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    return True


def shutdown() -> None:
    """Leave the process group cleanly (an undestroyed gloo group can abort at exit)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def barrier() -> None:
    if world()[1] > 1:
        dist.barrier()


def local_slice(indices: torch.Tensor) -> torch.Tensor:
    """This process's part of a global batch (strided, so sizes differ by at most one)."""
    rank, size = world()
    return indices if size == 1 else indices[rank::size]


class _Parameters(torch.nn.Module):
    """Holds a trainer's parameters (the same objects, not copies) for DDP; forward is the identity
    on the loss, which is all the reducer needs to find the parameters a step used."""

    def __init__(self, params: list[torch.nn.Parameter]) -> None:
        super().__init__()
        self.held = torch.nn.ParameterList(params)
        # never in any loss: DDP's search for unused parameters always finds one, so it does not
        # warn once per process that the search was unnecessary (it is, for most methods, but not
        # for all: a method may leave a branch out of a step). Its gradient stays None.
        self.never_used = torch.nn.Parameter(torch.zeros(1, device=params[0].device))

    def forward(self, loss: torch.Tensor) -> torch.Tensor:
        return loss


class GradientSync:
    """Average a trainer's gradients across processes with torch's DDP reducer (bucketed all-reduce,
    overlapped with backward). Call it on the loss before ``backward``; outside torchrun, or with
    nothing to train, it returns the loss unchanged.

    Made before the trainer's first forward pass: DDP's constructor broadcasts rank 0's parameters
    in place (they are equal already: same seed) and checks that every rank holds the same shapes.
    If the trainable parameters change between steps (a stage frozen or unfrozen), it is made
    again, without that broadcast, which would invalidate the step's autograd graph."""

    def __init__(self, params: list[torch.nn.Parameter], bucket_cap_mb: float = 25.0) -> None:
        self.params = params
        self.bucket_cap_mb = bucket_cap_mb
        self._ddp: torch.nn.parallel.DistributedDataParallel | None = None
        self._ids: tuple[int, ...] = ()
        if world()[1] > 1:
            self._build(init_sync=True)

    def _trainable(self) -> list[torch.nn.Parameter]:
        # DDP refuses a parameter held twice, and reduces only those that require gradients
        return list({id(p): p for p in self.params if p.requires_grad}.values())

    def _build(self, init_sync: bool) -> None:
        trainable = self._trainable()
        self._ids = tuple(id(p) for p in trainable)
        if not trainable:
            self._ddp = None
            return
        self._ddp = torch.nn.parallel.DistributedDataParallel(
            _Parameters(trainable), bucket_cap_mb=self.bucket_cap_mb, find_unused_parameters=True,
            **({} if init_sync else {"init_sync": False}),
        )

    def __call__(self, loss: torch.Tensor, local_count: int = 1, global_count: int | None = None) -> torch.Tensor:
        """``loss`` averages over ``local_count`` items of a global batch of ``global_count``: DDP
        averages over processes, so a slice's loss is weighted by its share times the world size
        (exactly 1 when slices are equal, or when ``global_count`` is not given)."""
        size = world()[1]
        if size == 1:
            return loss
        if tuple(id(p) for p in self._trainable()) != self._ids:
            self._build(init_sync=False)
        if self._ddp is None:
            return loss
        if global_count is not None and local_count * size != global_count:
            loss = loss * (local_count * size / max(1, global_count))
        return self._ddp(loss)


def gather_in_order(fn: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Encode ``images`` split across processes and return all embeddings in the original order
    on every process. Padding (to equal shard sizes) is removed by id, so no query counts twice."""
    rank, size = world()
    n = len(images)
    ids = torch.arange(n)
    per = (n + size - 1) // size
    padded = torch.cat([ids, ids[: per * size - n]]) if per * size > n else ids  # repeat, like DistributedSampler
    mine = padded[rank * per : (rank + 1) * per]
    outs = []
    with torch.inference_mode():
        for start in range(0, len(mine), batch_size):
            outs.append(fn(images[mine[start : start + batch_size]]).float().cpu())
    local = torch.cat(outs) if outs else torch.empty(0)
    shapes = [None] * size
    dist.all_gather_object(shapes, tuple(local.shape))
    gathered_ids = [torch.empty(per, dtype=torch.long) for _ in range(size)]
    dist.all_gather(gathered_ids, mine.contiguous())
    gathered = [torch.empty(s) for s in shapes]
    dist.all_gather(gathered, local.contiguous())
    all_ids = torch.cat(gathered_ids)
    all_emb = torch.cat(gathered)
    out = torch.empty((n, *all_emb.shape[1:]))
    seen = torch.zeros(n, dtype=torch.bool)
    for i, idx in enumerate(all_ids.tolist()):
        if not seen[idx]:  # the first copy wins; padded duplicates are dropped
            out[idx] = all_emb[i]
            seen[idx] = True
    return out
