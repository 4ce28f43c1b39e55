"""Measured latency: median wall time per query of the sketch branch, after warm-up,
synchronised on CUDA."""

from __future__ import annotations

import statistics
import time

import torch
from torch import nn


def measure_latency_ms(module: nn.Module, example: torch.Tensor, repeats: int = 20, warmup: int = 3) -> float:
    module = module.eval()
    cuda = example.is_cuda

    def once() -> float:
        if cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        module(example)
        if cuda:
            torch.cuda.synchronize()
        return time.perf_counter() - t0

    with torch.inference_mode():
        for _ in range(max(0, warmup)):
            once()
        times = [once() for _ in range(max(1, repeats))]
    return statistics.median(times) * 1000.0
