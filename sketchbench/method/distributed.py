"""Multi-process training under ``torchrun`` (DistributedDataParallel semantics), through the
same code path as one process.

Each process computes its slice of every global triplet batch; the :class:`~sketchbench.method.training.Trainer`
averages gradients across processes after ``backward`` (the all-reduce that DDP performs), so
every replica takes the same optimiser step as one process on the global batch. Evaluation
encodes a shard per process, gathers the embeddings with their ids and drops the duplicates that
padding adds. Rank 0 alone writes results and checkpoints.

Why not wrap modules in ``torch.nn.parallel.DistributedDataParallel``: methods own several
modules and call them directly in their paper-shaped loops; gradient averaging in the trainer
gives the same update without each method routing its forward passes through a wrapper. What
this loses is DDP's overlap of communication with backward — irrelevant on CPU/gloo, a few
percent on GPUs.
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


def average_gradients(params: list[torch.nn.Parameter], local_count: int, global_count: int) -> None:
    """All-reduce gradients so each replica holds the gradient of the global-batch mean loss:
    each local loss is a mean over ``local_count`` items, so weight it by its share."""
    rank, size = world()
    if size == 1:
        return
    scale = local_count / max(1, global_count)
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        p.grad.mul_(scale)
        dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)


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
