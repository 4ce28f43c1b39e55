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
    name: str, *, pretrained: bool = False, weights: Path | None = None, pool: str = "avg", in_chans: int = 3
) -> nn.Module:
    """A timm backbone as features + global pool (``(B, D)`` output).

    Networks whose timm version keeps classifier-side layers after the trunk (VGG's fc6/fc7 as
    convolutions) are cut at their ``features`` trunk. ``pretrained`` loads ImageNet weights
    through timm and fails with one clear line when they cannot be downloaded; ``weights`` loads
    a local state dict.
    """
    import timm

    if not timm.is_model(name):
        from sketchbench.base.errors import did_you_mean

        raise SketchbenchError(f"unknown backbone {name!r}." + did_you_mean(name, timm.list_models()))
    try:
        with _offline_if_unreachable(pretrained):
            model = timm.create_model(name, pretrained=pretrained, num_classes=0, global_pool=pool, in_chans=in_chans)
    except Exception as exc:
        if pretrained:
            raise SketchbenchError(
                f"ImageNet weights for {name!r} could not be loaded ({type(exc).__name__}); "
                "this machine may be offline: pass --weights FILE with a local checkpoint, or drop --pretrained"
            ) from None
        raise
    if hasattr(model, "features") and hasattr(model, "pre_logits"):
        # timm's VGG: keep the convolutional trunk only (14.71 M params, as in the paper)
        model = PooledFeatures(model.features, pool)
    if weights is not None:
        load_weights(model, weights)
    return model


@contextlib.contextmanager
def _offline_if_unreachable(pretrained: bool):
    """When the weights hub cannot even be resolved, switch huggingface_hub to offline mode so
    ``--pretrained`` uses a local cache or fails at once, instead of retrying for a minute."""
    if not pretrained:
        yield
        return
    import socket

    try:
        socket.getaddrinfo("huggingface.co", 443)
        reachable = True
    except OSError:
        reachable = False
    try:
        from huggingface_hub import constants
    except ImportError:  # pragma: no cover - timm depends on it
        yield
        return
    previous = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = previous or not reachable
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = previous


def load_weights(model: nn.Module, path: Path) -> None:
    """Load a local checkpoint into ``model``: a state dict, or a dict holding ``state_dict``
    or ``model``. Keys may carry a common prefix. Fails clearly when nothing matches."""
    path = Path(path)
    if not path.is_file():
        raise SketchbenchError(f"--weights {str(path)!r}: no such file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise SketchbenchError(f"--weights {str(path)!r} is not a readable PyTorch checkpoint ({type(exc).__name__})") from None
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise SketchbenchError(f"--weights {str(path)!r} holds no state dict")
    own = model.state_dict()
    matched = {}
    for k, v in state.items():
        for cand in (k, *(k.split(".", i)[-1] for i in range(1, 4))):
            if cand in own and own[cand].shape == getattr(v, "shape", None):
                matched[cand] = v
                break
    if not matched:
        raise SketchbenchError(f"--weights {str(path)!r}: no tensor matches the backbone's layers")
    model.load_state_dict(matched, strict=False)


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


def triplet_epochs(
    data, trainer: Trainer, *, epochs: int, canvases: Sequence[int], seed: int, augment: bool = True,
    sketch_transform: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None,
) -> Iterator[TripletBatch]:
    """The triplet training loop every triplet-trained method shares: ``epochs`` passes over the
    train split in batches of the preset's size, negatives never equal to the positive (hard
    ones from the dataset's annotations when it has them), joint random flips of photos and
    flips + shifts of sketches (``augment``), sketches taken from the cached renders at each
    canvas. ``sketch_transform`` (e.g. random erasing) runs on sketches before the augmentation.
    Seeded by ``seed``; the trainer's progress bar counts the steps."""
    preset = data.preset
    sketches = {c: data.sketches("train", c) for c in canvases}
    photos, pairs = data.photos("train"), data.pairs("train")
    hard = data.split("train").hard_negatives
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    steps = max(1, (len(pairs) + preset.batch_size - 1) // preset.batch_size)
    for _ in trainer.epochs(epochs, steps):
        for a, p, n in triplet_batches(pairs, photos.shape[0], preset.batch_size, rng, hard):
            pos, neg = photos[p], photos[n]
            if augment:
                pos, neg = random_flip(pos, gen), random_flip(neg, gen)
            views = {}
            for c in canvases:
                s = sketches[c][a]
                if sketch_transform is not None:
                    s = sketch_transform(s, gen)
                if augment:
                    s = random_shift(random_flip(s, gen), generator=gen)
                views[c] = s
            yield TripletBatch(a, p, n, views, pos, neg)


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
