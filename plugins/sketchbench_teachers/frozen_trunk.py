"""A backbone's frozen early stages, computed once per training image and kept in the artifact cache.

With ``--param freeze_stages=N`` (the ``cpu-imagenet`` preset's 4 for B-VGG16-SN: conv1–4 frozen,
conv5 trains) the stem and first N stages keep their pretrained weights, so what they make of
a training image never changes. Their outputs are computed once — every training photo and every
training sketch at each canvas, as is and flipped (the flip is the one augmentation that survives,
because the flip of a feature map is not the feature map of the flipped image) — and every training
step runs only the rest of the network on them. A VGG16 step at canvas 96 goes from ≈ 8 s to a
fraction of a second on one core (docs/methods/vgg16-sn.md has the measured costs).

The outputs go into the run's artifact store (``data.cache``, kind ``"frozen-trunk"``) like the
sketch renders: sha256-checked on every load, and keyed by what they depend on — the trunk's
identity (its structure and a digest of its weights, so a random init, HED's VGG16 and any other
start never share an entry), the data fingerprint, the split, photos or sketches at a canvas, and
the view. The three seeds of a pretrained teacher, its zero-shot cells and a later run share them.
They are stored in float32, so the cached path computes exactly what the whole network computes
(``tests/test_frozen_trunk.py``).
"""

from __future__ import annotations

import copy
import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from sketchbench import RunData, stable_hash
from sketchbench.training import to_input

log = logging.getLogger("sketchbench")

#: the artifact kind (a folder of the cache)
CACHE_KIND = "frozen-trunk"
#: bump when what is stored changes
CACHE_VERSION = "1"
#: the views kept per image: as is, and flipped left-right before the trunk
VIEWS = ("plain", "flipped")


def trunk_identity(early: nn.Module) -> str:
    """A digest of the trunk's structure (its ``repr``: layer types, channels, strides) and of every
    parameter and buffer, in state-dict order: two trunks share cached outputs only when both agree."""
    h = hashlib.sha256(repr(early).encode())
    for name, tensor in early.state_dict().items():
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:16]


def trunk_outputs(early: nn.Module, images: torch.Tensor, *, device: torch.device | str = "cpu",
                  batch_size: int = 64) -> torch.Tensor:
    """``early`` (in eval mode, no gradient) on every uint8 image: float32 ``(N, C, H, W)`` on the CPU.

    It runs on a channels-last copy of the trunk (measured on this project's CPU: conv1–4 of VGG16
    at 96 px 15–25 % faster than in the default layout; the training steps are not, so the network
    itself keeps its layout); the outputs are the same up to float rounding (< 1e-5)."""
    runner = copy.deepcopy(early).to(device, memory_format=torch.channels_last).eval()
    outs = []
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            x = to_input(images[start : start + batch_size], 3, device).contiguous(memory_format=torch.channels_last)
            outs.append(runner(x).float().cpu().contiguous())
    # concatenated outside inference mode: a plain tensor, which training steps may keep for backward
    return torch.cat(outs) if outs else torch.empty(0)


def _view(images: torch.Tensor, view: str) -> torch.Tensor:
    return images.flip(-1) if view == "flipped" else images


@dataclass
class CachedTrunk:
    """The frozen trunk's outputs for the training split: ``photos[v]`` and ``sketches[canvas][v]``
    for each view ``v`` in :attr:`views` (float32, CPU)."""

    photos: list[torch.Tensor]
    sketches: dict[int, list[torch.Tensor]]
    views: tuple[str, ...]


def cached_trunk(early: nn.Module, data: RunData, canvases: Sequence[int], *, flips: bool, batch_size: int,
                 device: torch.device | str = "cpu", split: str = "train") -> CachedTrunk:
    """The outputs of ``early`` for every photo and every sketch (at each canvas) of ``split``, as
    is and, with ``flips``, flipped, computed ``batch_size`` images at a time (the preset's
    ``eval_batch_size``): from the artifact store when computed before, else computed now and stored."""
    views = VIEWS if flips else VIEWS[:1]
    ident = trunk_identity(early)
    bs = batch_size

    def get(what: str, canvas: int | None, view: str) -> torch.Tensor:
        key = stable_hash([CACHE_VERSION, ident, data.fingerprint, split, what, canvas, view])

        def compute() -> torch.Tensor:
            images = data.photos(split) if canvas is None else data.sketches(split, canvas)
            log.info("%s: frozen trunk on %d %s (%s) once; cached", data.name, len(images),
                     "photos" if canvas is None else f"sketches @ {canvas}", view)
            return trunk_outputs(early, _view(images, view), device=device, batch_size=bs)

        return data.cache.get_or_compute(CACHE_KIND, key, compute)

    return CachedTrunk(photos=[get("photos", None, v) for v in views],
                       sketches={int(c): [get("sketches", int(c), v) for v in views] for c in canvases},
                       views=views)


__all__ = ["CACHE_KIND", "CachedTrunk", "cached_trunk", "trunk_identity", "trunk_outputs"]
