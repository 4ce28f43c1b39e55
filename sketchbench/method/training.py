"""Building blocks for methods' training loops: input conversion, backbones, triplet sampling,
the triplet loss and a small trainer that handles devices, AMP, NaN losses and progress bars.

Methods compose these; there is no hidden global loop, so each method's ``train`` reads like
its paper's training procedure.
"""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from sketchbench.base.errors import SketchbenchError, TrainingError
from sketchbench.base.progress import hidden
from sketchbench.method.distributed import average_gradients, gather_in_order, is_main, world

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    os.environ.setdefault("PYTHONHASHSEED", str(seed))


def to_input(images: torch.Tensor, channels: int = 3, device: torch.device | str | None = None) -> torch.Tensor:
    """uint8 images ``(B, H, W)`` or ``(B, C, H, W)`` → float, ImageNet-normalised, ``channels``
    channels (grey is repeated), channels_last on CUDA."""
    x = images
    if x.dim() == 3:
        x = x.unsqueeze(1)
    if device is not None:
        x = x.to(device, non_blocking=True)
    x = x.float().div_(255.0)
    if x.shape[1] == 1 and channels == 3:
        x = x.expand(-1, 3, -1, -1)
    elif x.shape[1] == 3 and channels == 1:
        x = x.mean(dim=1, keepdim=True)
    if channels == 3:
        mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
        x = (x - mean) / std
    else:
        x = (x - 0.5) / 0.5
    if x.is_cuda:
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def edge_map(photos: torch.Tensor) -> torch.Tensor:
    """uint8 photos ``(B, 3, H, W)`` → uint8 ``(B, H, W)`` Sobel edge maps, dark edges on white,
    scaled per image: the photo modality of the original Triplet-SN (which used edge maps), and a
    bridge between photos and sketches for networks trained from scratch."""
    grey = photos.float().mean(dim=1, keepdim=True) / 255.0
    kx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], device=grey.device)
    g = F.conv2d(F.pad(grey, (1, 1, 1, 1), mode="replicate"), torch.stack([kx, kx.t()]).unsqueeze(1))
    mag = g.pow(2).sum(1).sqrt()
    mag = mag / mag.amax(dim=(1, 2), keepdim=True).clamp_min(1e-6)
    return (255.0 * (1.0 - mag)).round().clamp(0, 255).to(torch.uint8)


# -- backbones ---------------------------------------------------------------------------------
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
    (:mod:`sketchbench.method.weights`), failing with one line when none is available; ``weights``
    then loads a local state dict on top (complete, unless ``partial_weights``).
    """
    import timm

    from sketchbench.method.weights import AUTO, load_pretrained

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
        raise SketchbenchError(f"{what} holds no state dict")
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
        raise SketchbenchError(f"--weights {str(path)!r}: no such file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise SketchbenchError(f"--weights {str(path)!r} is not a readable PyTorch checkpoint ({type(exc).__name__})") from None
    load_complete(model, match_keys(state, model, f"--weights {str(path)!r}"), f"--weights {str(path)!r}", partial=partial)


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


# -- triplets ----------------------------------------------------------------------------------
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
    data, trainer: Trainer, *, epochs: int, canvases: Sequence[int], seed: int, augment: bool = True,
    sketch_transform: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None,
    joint_flip: bool = False, shift: bool = True, max_steps: int | None = None,
) -> Iterator[TripletBatch]:
    """The triplet training loop every triplet-trained method shares: ``epochs`` passes over the
    train split in batches of the preset's size, negatives never equal to the positive (hard
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
    preset = data.preset
    sketches = {c: data.sketches("train", c) for c in canvases}
    photos, pairs = data.photos("train"), data.pairs("train")
    hard = data.split("train").hard_negatives
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    steps = max(1, (len(pairs) + preset.batch_size - 1) // preset.batch_size)
    total = steps * epochs if max_steps is None else max_steps
    taken = 0
    for _ in trainer.epochs(max(1, -(-total // steps)), steps):
        for a, p, n in triplet_batches(pairs, photos.shape[0], preset.batch_size, rng, hard):
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


def random_flip(images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Flip each image horizontally with probability 1/2 (last axis is width)."""
    flip = torch.rand(images.shape[0], generator=generator) < 0.5
    out = images.clone()
    out[flip] = out[flip].flip(-1)
    return out


def random_shift(images: torch.Tensor, max_frac: float = 0.06, generator: torch.Generator | None = None) -> torch.Tensor:
    """Translate uint8 black-on-white images by up to ``max_frac`` of their size (white fill)."""
    n, size = images.shape[0], images.shape[-1]
    m = max(1, int(size * max_frac))
    pad = [m, m, m, m]
    x = images if images.dim() == 4 else images.unsqueeze(1)
    padded = F.pad(x, pad, value=255)
    offs = torch.randint(0, 2 * m + 1, (n, 2), generator=generator)
    out = torch.stack([padded[i, :, oy : oy + size, ox : ox + size] for i, (oy, ox) in enumerate(offs.tolist())])
    return out if images.dim() == 4 else out.squeeze(1)


# -- the trainer -------------------------------------------------------------------------------
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
                "(try a lower learning rate: --set lr=...)"
            )
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if world()[1] > 1:
            params = [p for g in self.optimizer.param_groups for p in g["params"]]
            average_gradients(params, local_count, global_count or local_count * world()[1])
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


__all__ = [
    "IMAGENET_MEAN", "IMAGENET_STD", "PooledFeatures", "Trainer", "TripletBatch", "create_backbone", "edge_map",
    "embed_in_batches", "freeze_batchnorm", "frozen_features", "load_weights", "match_keys", "split_backbone", "random_flip", "random_shift", "sample_negatives",
    "seed_everything", "to_input", "triplet_batches", "triplet_epochs", "triplet_loss",
]
