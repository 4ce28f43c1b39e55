"""Backbones: timm networks as "features + global pool" trunks, filled from a weight source
(``--pretrained``) or a local checkpoint (``--weights``), split into a frozen early part computed
once per image and a trainable rest."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from sketchbench.base.errors import SketchbenchError
from sketchbench.method.inputs import to_input


class PooledFeatures(nn.Module):
    """A network's convolutional trunk followed by global pooling: the paper's "features +
    global pool, no classifier" sketch branch."""

    def __init__(self, trunk: nn.Module, pool: str = "avg") -> None:
        super().__init__()
        self.trunk = trunk
        self.pool = nn.AdaptiveAvgPool2d(1) if pool == "avg" else nn.AdaptiveMaxPool2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.trunk(x)).flatten(1)


def create_backbone(
    name: str, *, pretrained: str | bool | None = None, weights: Path | None = None, partial_weights: bool = False,
    pool: str = "avg", in_chans: int = 3,
) -> nn.Module:
    """A timm backbone as features + global pool (``(B, D)`` output).

    Networks whose timm version keeps classifier-side layers after the trunk (VGG's fc6/fc7 as
    convolutions) are cut at their ``features`` trunk. ``pretrained`` (``"auto"``, a weight source's
    name, or ``None``/``"none"``; ``True`` means ``"auto"``) fills it through the weight sources
    (:mod:`sketchbench.method.pretrained`), failing with one line when none is available; ``weights``
    then loads a local state dict on top (complete, unless ``partial_weights``).
    """
    import timm

    from sketchbench.method.pretrained import load_pretrained
    from sketchbench.method.weights import AUTO

    if not timm.is_model(name):
        from sketchbench.base.errors import did_you_mean

        raise SketchbenchError(f"unknown backbone {name!r}." + did_you_mean(name, timm.list_models()))
    model = timm.create_model(name, pretrained=False, num_classes=0, global_pool=pool, in_chans=in_chans)
    if hasattr(model, "features") and hasattr(model, "pre_logits"):
        # timm's VGG: keep the convolutional trunk only (14.71 M params, as in the paper)
        model = PooledFeatures(model.features, pool)
    choice = AUTO if pretrained is True else (None if pretrained is False else pretrained)
    if choice is not None:
        if in_chans != 3:
            raise SketchbenchError(f"pretrained weights for {name!r} need 3 input channels, not {in_chans}")
        load_pretrained(model, name, choice)
    if weights is not None:
        load_weights(model, weights, partial=partial_weights)
    return model


def match_keys(state: dict, model: nn.Module, what: str) -> dict[str, torch.Tensor]:
    """A checkpoint's tensors under ``model``'s key names: a ``state_dict``/``model`` wrapper is
    unwrapped and a common prefix (``module.``, ``model.``, ...) of up to three levels is dropped,
    wherever that makes a key and its shape fit."""
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise SketchbenchError(f"{what} holds no state dict", settings=("weights",))
    own = model.state_dict()
    matched: dict[str, torch.Tensor] = {}
    misfits: dict[str, torch.Tensor] = {}
    for k, v in state.items():
        if not isinstance(k, str):
            continue
        names = [c for c in (k, *(k.split(".", i)[-1] for i in range(1, 4))) if c in own]
        fit = next((c for c in names if own[c].shape == getattr(v, "shape", None)), None)
        if fit is not None:
            matched[fit] = v
        elif names:
            misfits[names[0]] = v  # kept under its name so the refusal can say which shape is wrong
    return {**{k: v for k, v in misfits.items() if k not in matched}, **matched}


def load_weights(model: nn.Module, path: Path, partial: bool = False) -> None:
    """Load a local checkpoint (``--weights FILE``) into ``model``: a state dict, or a dict holding
    ``state_dict`` or ``model``; keys may carry a common prefix. Loaded with ``weights_only`` (a
    checkpoint is untrusted input). A checkpoint that leaves any tensor of ``model`` unfilled is
    refused with one line saying how many matched, unless ``partial`` (``--partial-weights``)."""
    from sketchbench.method.weights import load_complete

    path = Path(path)
    if not path.is_file():
        raise SketchbenchError(f"{{weights}} {str(path)!r}: no such file", settings=("weights",))
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise SketchbenchError(f"{{weights}} {str(path)!r} is not a readable PyTorch checkpoint ({type(exc).__name__})",
                               settings=("weights",)) from None
    what = f"{{weights}} {str(path)!r}"
    load_complete(model, match_keys(state, model, what), what, partial=partial)


def freeze_batchnorm(module: nn.Module) -> int:
    """Put every BatchNorm layer of ``module`` in eval mode (call after ``module.train()``): its
    running statistics stay at their pretrained values while its affine weights still train. Small
    CPU batches of sketches would otherwise overwrite ImageNet's statistics (measured on ChairV2 and
    QMUL-V1: the pretrained start is lost). Returns the number of layers frozen."""
    n = 0
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()
            n += 1
    return n


class _Sequence(nn.Module):
    """Modules applied in order (unlike ``nn.Sequential`` it accepts any module list)."""

    def __init__(self, *parts: nn.Module) -> None:
        super().__init__()
        self.parts = nn.ModuleList(parts)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for part in self.parts:
            x = part(x)
        return x


def split_backbone(model: nn.Module, stages: int) -> tuple[nn.Module, nn.Module]:
    """``(early, rest)`` with ``rest(early(x)) == model(x)``: ``early`` = the stem and the first
    ``stages`` stages of a backbone built by :func:`create_backbone`, to be frozen and computed
    once per image (:func:`frozen_features`). Stages are VGG's conv blocks (each ending in a max
    pool), timm EfficientNet/MobileNet ``blocks`` groups, ResNet ``layer1..4``. The modules are
    shared with ``model`` (no copies)."""
    if stages < 1:
        raise SketchbenchError(f"freeze_stages={stages}: must be at least 1 to split a backbone")
    if isinstance(model, PooledFeatures) and isinstance(model.trunk, nn.Sequential):
        layers = list(model.trunk)
        pools = [i for i, m in enumerate(layers) if isinstance(m, nn.MaxPool2d)]
        if stages >= len(pools):
            raise SketchbenchError(f"freeze_stages={stages}: this backbone has {len(pools)} stages; freeze fewer")
        cut = pools[stages - 1] + 1
        return nn.Sequential(*layers[:cut]), _Sequence(*layers[cut:], model.pool, nn.Flatten(1))
    names = dict(model.named_children())
    if {"conv_stem", "bn1", "blocks"} <= set(names):  # timm EfficientNet / MobileNetV2 family
        blocks = list(model.blocks)
        if stages >= len(blocks):
            raise SketchbenchError(f"freeze_stages={stages}: this backbone has {len(blocks)} stages; freeze fewer")
        tail = [model.conv_head, model.bn2] if hasattr(model, "conv_head") else []
        return (_Sequence(model.conv_stem, model.bn1, *blocks[:stages]),
                _Sequence(*blocks[stages:], *tail, model.global_pool, nn.Flatten(1)))
    if {"conv1", "bn1", "layer1", "layer4"} <= set(names):  # timm ResNet
        layers = [model.layer1, model.layer2, model.layer3, model.layer4]
        if stages >= len(layers):
            raise SketchbenchError(f"freeze_stages={stages}: this backbone has {len(layers)} stages; freeze fewer")
        stem = [model.conv1, model.bn1, model.act1, model.maxpool]
        return _Sequence(*stem, *layers[:stages]), _Sequence(*layers[stages:], model.global_pool, nn.Flatten(1))
    raise SketchbenchError(f"freeze_stages: sketchbench does not know the stages of {type(model).__name__}")


def frozen_features(early: nn.Module, images: torch.Tensor, *, channels: int = 3, device: torch.device | str = "cpu",
                    batch_size: int = 64, transform: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    """``early`` (frozen, in eval mode) applied to every uint8 image once: float16 ``(N, C, H, W)``
    on the CPU, the input of the trainable rest in every later step (flip the images before, not the
    features: a convolution's output of a flipped image is not the flipped output). ``transform``
    turns a uint8 batch into another uint8 batch first (e.g. photo edge maps)."""
    was = early.training
    early.eval()
    outs = []
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            batch = images[start : start + batch_size]
            if transform is not None:
                batch = transform(batch)
            outs.append(early(to_input(batch, channels, device)).to("cpu", torch.float16))
    early.train(was)
    return torch.cat(outs) if outs else torch.empty(0)
