"""FLOPs and params in the paper's convention.

FLOPs = 2 × the operations torch-pruning's ``count_ops_and_params`` counts (conv/linear MACs +
bias, BatchNorm ×2 if affine, activations, pooling input elements — ptflops' module-hook rules),
on the sketch branch only (features + global pool, no classifier), at the canvas size. Params
are the same branch's. This reproduces the paper: VGG16 features at 256² = 40.18 GFLOPs /
14.71 M, MobileNetV2 = 0.833 GFLOPs / 2.22 M.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

FLOPS_CONVENTION = (
    "FLOPs = 2 x torch-pruning count_ops_and_params (MACs + bias + BN + activation + pool element ops), "
    "sketch branch only (features + global pool, no classifier), batch 1, at the query's canvas; "
    "dynamic methods: mean over test queries of the chosen canvas's FLOPs plus the selector's. "
    "Params: sketch branch only (plus the selector for dynamic methods)."
)


def _lower_fused(model: nn.Module) -> nn.Module:
    """Replace timm's fused BatchNorm+activation layers by the plain modules the counter knows,
    so BN and activation ops are counted as they are in torchvision layouts."""
    try:
        from timm.layers import BatchNormAct2d
    except ImportError:  # pragma: no cover - timm is a dependency
        return model
    for module in list(model.modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, BatchNormAct2d):
                bn = nn.BatchNorm2d(child.num_features, child.eps, child.momentum, child.affine, child.track_running_stats)
                # every BatchNorm tensor must come over (strict): the fused layer's extra parts
                # (drop, act) are modules of their own, not BN state
                bn.load_state_dict({k: v for k, v in child.state_dict().items() if k in bn.state_dict()})
                setattr(module, child_name, nn.Sequential(bn, child.drop, child.act))
    return model


def count_flops(module: nn.Module, example_inputs: Any) -> tuple[float, int]:
    """(FLOPs, params) of one forward pass of ``module`` on ``example_inputs`` (batch 1)."""
    import torch_pruning as tp  # imported here: it pulls in timm, which listing commands do not need

    model = _lower_fused(copy.deepcopy(module)).eval()
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    if isinstance(example_inputs, torch.Tensor):
        example_inputs = example_inputs.to(device)
    ops, params = tp.utils.count_ops_and_params(model, example_inputs)
    return 2.0 * float(ops), int(params)


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def flop_counter_mode_flops(module: nn.Module, example_inputs: torch.Tensor) -> float:
    """FLOPs by ``torch.utils.flop_counter`` (2 × MACs of conv/matmul only), for cross-checks."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        module.eval()(example_inputs)
    return float(counter.get_total_flops())
