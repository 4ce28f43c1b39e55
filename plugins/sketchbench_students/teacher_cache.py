"""Cached outputs of a frozen teacher, computed once per (teacher, data) and never per epoch.

A teacher is identified by its class, registered name, parameters and a digest of its weights
(:func:`teacher_identity`), so two runs of the same trained teacher share entries and a retrained
one never reuses stale ones. Entries live in process memory (a small LRU, shared by every student
of a run) and, where small enough, in the run's artifact cache (``data.cache``, kind
``"teacher-outputs"``), keyed by ``stable_hash([identity, data.fingerprint, what, canvas])``.

- :func:`teacher_embeddings`: the teacher's embeddings of every training sketch at the preset's
  full canvas and of every training photo (memory + disk).
- :class:`TeacherDistances`: teacher distances inside triplets, looked up from those embeddings.
  With the default Euclidean ``Method.distance`` they are computed vectorised; a teacher that
  overrides ``distance`` (HOLEF's learned energy, Partial-OT's transport over region sets) is
  asked through ``teacher.distance`` one pair at a time, and every pair is memoised, so each pair
  costs the teacher one call per run.
- :func:`teacher_attention_energy`: ``mean_c A_c²`` of those maps (attention transfer), small,
  so memory + disk.
- :func:`teacher_feature_maps`: the teacher's last spatial feature map of every training sketch
  at the full canvas (for FitNets / attention transfer), grabbed generically by forward hooks on
  the leaf modules of ``teacher.sketch_branch()`` (:class:`LastFeatureMap`). Kept in memory when it fits
  :data:`MAP_CACHE_LIMIT_MB`, otherwise recomputed for each batch (documented fallback).
"""

from __future__ import annotations

import hashlib
import logging
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from sketchbench import Method, RunData, stable_hash
from sketchbench.training import embed_in_batches

log = logging.getLogger("sketchbench")

#: bump when what is cached changes
CACHE_VERSION = "1"
#: teacher feature maps larger than this (all training sketches together) are not kept in memory
MAP_CACHE_LIMIT_MB = 2048
_identities: weakref.WeakKeyDictionary[Method, str] = weakref.WeakKeyDictionary()


def clear_memory() -> None:
    """Forget the teachers' identities computed in this process (tests)."""
    _identities.clear()


def weights_digest(module: nn.Module) -> str:
    """sha256 of every parameter and buffer, in state-dict order."""
    h = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        h.update(name.encode())
        t = tensor.detach().cpu().contiguous()
        h.update(str(t.dtype).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:16]


def teacher_identity(teacher: Method) -> str:
    """The trained teacher's content key (``trained_key``, set by the runner for every trained
    method), else its class, registered name, parameters and a digest of its weights."""
    if getattr(teacher, "trained_key", None):
        return str(teacher.trained_key)
    if teacher not in _identities:
        cls = type(teacher)
        _identities[teacher] = stable_hash(
            [f"{cls.__module__}.{cls.__qualname__}", cls.version, teacher.ctx.name, teacher.ctx.params,
             weights_digest(teacher.modules())]
        )
    return _identities[teacher]


def _key(teacher: Method, data: RunData, what: str, canvas: int) -> str:
    return stable_hash([CACHE_VERSION, teacher_identity(teacher), data.fingerprint, what, canvas])


def _cached(key: str, data: RunData, compute: Callable[[], Any], disk: bool = True) -> Any:
    """From the run's artifact store (memory, then disk), else computed and stored there."""
    return data.cache.get_or_compute("teacher-outputs", key, compute, disk=disk)


# -- embeddings and distances -----------------------------------------------------------------------
@dataclass(frozen=True)
class TeacherEmbeddings:
    """The teacher's embeddings of the training split (CPU, float): ``sketch`` at ``canvas``."""

    sketch: torch.Tensor
    photo: torch.Tensor
    canvas: int


def teacher_embeddings(teacher: Method, data: RunData, canvas: int | None = None) -> TeacherEmbeddings:
    """Teacher embeddings of all training sketches (at ``canvas``, default the full canvas) and
    photos, computed once per (teacher, data) and cached."""
    canvas = int(canvas or teacher.ctx.preset.full_canvas)
    bs = teacher.ctx.preset.eval_batch_size

    def compute() -> dict[str, torch.Tensor]:
        log.info("%s: embedding the training split once (teacher outputs are cached)", teacher.ctx.name)
        teacher.eval()
        return {
            "sketch": embed_in_batches(teacher.encode_sketch, data.sketches("train", canvas), bs),
            "photo": embed_in_batches(teacher.encode_photo, data.photos("train"), bs),
        }

    out = _cached(_key(teacher, data, "embeddings", canvas), data, compute)
    return TeacherEmbeddings(out["sketch"], out["photo"], canvas)


def uses_default_distance(method: Method) -> bool:
    """Whether ``method`` keeps ``Method.distance`` (Euclidean on flattened embeddings)."""
    return type(method).distance is Method.distance


class TeacherDistances:
    """Teacher distances ``(d_sp, d_sn, d_pn)`` of triplets given as index tensors into the
    training sketches and photos. ``d_pn`` asks the teacher's sketch→photo distance about two
    photos (for Euclidean teachers this is the plain photo–photo distance)."""

    def __init__(self, teacher: Method, embeddings: TeacherEmbeddings) -> None:
        self.teacher = teacher
        self.emb = embeddings
        self.euclidean = uses_default_distance(teacher)
        self._memo: dict[tuple[str, int, int], float] = {}
        self.calls = 0  # teacher.distance calls, for tests and logs

    def __call__(
        self, a: torch.Tensor, p: torch.Tensor, n: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        s, ph = self.emb.sketch, self.emb.photo
        if self.euclidean:
            dist = lambda x, y: (x.flatten(1) - y.flatten(1)).pow(2).sum(-1).sqrt()  # noqa: E731
            return dist(s[a], ph[p]), dist(s[a], ph[n]), dist(ph[p], ph[n])
        return self._pairs("sp", s, ph, a, p), self._pairs("sp", s, ph, a, n), self._pairs("pp", ph, ph, p, n)

    def _pairs(self, kind: str, x: torch.Tensor, y: torch.Tensor, i: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
        out = []
        dev = self.teacher.device
        with torch.inference_mode():
            for ii, jj in zip(i.tolist(), j.tolist(), strict=True):
                key = (kind, ii, jj)
                if key not in self._memo:
                    d = self.teacher.distance(x[ii : ii + 1].to(dev), y[jj : jj + 1].to(dev))
                    self._memo[key] = float(d.reshape(-1)[0])
                    self.calls += 1
                out.append(self._memo[key])
        return torch.tensor(out, dtype=torch.float32)


# -- feature maps -----------------------------------------------------------------------------------
_GLOBAL_POOL_NAMES = ("AdaptivePool", "AdaptiveAvgPool", "AdaptiveMaxPool", "AdaptiveAvgMaxPool", "GlobalPool")


def _is_adaptive_pool(module: nn.Module) -> bool:
    return isinstance(module, nn.AdaptiveAvgPool2d | nn.AdaptiveMaxPool2d) or any(
        n in type(module).__name__ for n in _GLOBAL_POOL_NAMES
    )


class LastFeatureMap:
    """Forward hooks on every leaf module of ``module`` that remember the last 4-D activation
    produced with more than one channel, ignoring adaptive (global or region) pooling layers and
    everything inside them. That is the network's last spatial feature map (VGG's pool5,
    MobileNetV2's 1280-channel map, Sketch-a-Net's pool5 before fc6), whatever the architecture.

    >>> with LastFeatureMap(branch) as grab:
    ...     branch(x)
    >>> grab.value  # (B, C, H, W)
    """

    def __init__(self, module: nn.Module) -> None:
        self.module = module
        self.value: torch.Tensor | None = None
        self._handles: list[Any] = []

    def __enter__(self) -> LastFeatureMap:
        skip: set[int] = set()
        for m in self.module.modules():
            if _is_adaptive_pool(m):
                skip.update(id(x) for x in m.modules())
        for m in self.module.modules():
            # leaves only: a container's output may be its final adaptive pool's
            if id(m) not in skip and next(m.children(), None) is None:
                self._handles.append(m.register_forward_hook(self._hook))
        return self

    def _hook(self, module: nn.Module, inputs: Any, output: Any) -> None:
        if isinstance(output, torch.Tensor) and output.dim() == 4 and output.shape[1] > 1:
            self.value = output

    def __exit__(self, *exc: Any) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()


def feature_maps_of(teacher: Method, images: torch.Tensor) -> torch.Tensor:
    """The teacher's last spatial feature map ``(B, C, H, W)`` of uint8 sketches (no gradient)."""
    branch = teacher.sketch_branch()
    with torch.inference_mode(), LastFeatureMap(branch) as grab:
        branch(teacher.prepare_sketch(images))
    if grab.value is None:
        from sketchbench import SketchbenchError

        raise SketchbenchError(
            f"teacher {teacher.ctx.name!r} exposes no spatial feature map in its sketch branch "
            "(FitNets and attention transfer need one)"
        )
    return grab.value.detach().float().cpu()


class TeacherMaps:
    """The teacher's feature maps of the training sketches at ``canvas``: ``get(idx)`` → ``(B, C,
    H, W)``. Cached in memory when small enough, else recomputed per batch."""

    def __init__(self, teacher: Method, data: RunData, canvas: int, cached: torch.Tensor | None) -> None:
        self.teacher, self.data, self.canvas = teacher, data, canvas
        self.cached = cached
        probe = cached[:1] if cached is not None else feature_maps_of(teacher, data.sketches("train", canvas)[:1])
        self.shape = tuple(probe.shape[1:])  # (C, H, W)

    @property
    def channels(self) -> int:
        return self.shape[0]

    def get(self, idx: torch.Tensor) -> torch.Tensor:
        if self.cached is not None:
            return self.cached[idx]
        return feature_maps_of(self.teacher, self.data.sketches("train", self.canvas)[idx])


def teacher_feature_maps(teacher: Method, data: RunData, canvas: int | None = None) -> TeacherMaps:
    """The teacher's last spatial feature maps of all training sketches at ``canvas`` (default the
    full canvas): computed once and kept in memory unless they exceed :data:`MAP_CACHE_LIMIT_MB`."""
    canvas = int(canvas or teacher.ctx.preset.full_canvas)
    sketches = data.sketches("train", canvas)
    key = _key(teacher, data, "feature-maps", canvas)
    teacher.eval()
    probe = feature_maps_of(teacher, sketches[:1])
    size_mb = probe.numel() * 4 * len(sketches) / 2**20
    if size_mb > MAP_CACHE_LIMIT_MB:
        log.info("%s: teacher feature maps (%.0f MB) exceed the cache limit: recomputed per batch", teacher.ctx.name, size_mb)
        return TeacherMaps(teacher, data, canvas, None)
    bs = teacher.ctx.preset.eval_batch_size
    # memory only: maps are large, and cheap to recompute from a cached teacher
    cached = data.cache.get_or_compute("teacher-maps", key, lambda: torch.cat(
        [feature_maps_of(teacher, sketches[i : i + bs]) for i in range(0, len(sketches), bs)]), disk=False)
    return TeacherMaps(teacher, data, canvas, cached)


def teacher_attention_energy(teacher: Method, data: RunData, canvas: int | None = None) -> torch.Tensor:
    """``mean_c A_c²`` ``(N, H, W)`` of the teacher's last spatial feature map of every training
    sketch at ``canvas`` (default the full canvas): what attention transfer needs, computed batch by
    batch without keeping the maps, cached in memory and on disk."""
    canvas = int(canvas or teacher.ctx.preset.full_canvas)

    def compute() -> torch.Tensor:
        teacher.eval()
        sketches = data.sketches("train", canvas)
        bs = teacher.ctx.preset.eval_batch_size
        return torch.cat([feature_maps_of(teacher, sketches[i : i + bs]).pow(2).mean(1)
                          for i in range(0, len(sketches), bs)])

    return _cached(_key(teacher, data, "attention-energy", canvas), data, compute)
