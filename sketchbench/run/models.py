"""Models of a run: each one restored from its checkpoint in the artifact store, or trained now
(teacher and upstream first, each once), and the data they train and evaluate on.

One :class:`Models` serves the grid loop, the commands that use trained models (export, retrieve,
the demo: ``allow_training=False``) and the Python API alike; it holds what it has built for the
process, so a teacher shared by ten students is trained (or read) once.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from typing import Any

import torch

from sketchbench.base.artifacts import ArtifactCache
from sketchbench.base.canvas import DYNAMIC
from sketchbench.base.errors import SketchbenchError
from sketchbench.data.dataset import DatasetOptions, DatasetSource
from sketchbench.data.rundata import RunData
from sketchbench.method.distributed import barrier, is_main
from sketchbench.method.interface import Method, MethodContext
from sketchbench.method.registries import Host, get_host
from sketchbench.method.training import seed_everything
from sketchbench.run.config import RunConfig, resolve_device
from sketchbench.run.hooks import ReadyModel, RunHook
from sketchbench.run.identity import Identity
from sketchbench.run.plan import Plan

log = logging.getLogger("sketchbench")


class Models:
    """Trained (or, under ``train=False``, initialised) methods of one plan, and their data."""

    def __init__(self, plan: Plan, identity: Identity, cache: ArtifactCache, device: torch.device,
                 hooks: Sequence[RunHook] = ()) -> None:
        self.plan = plan
        self.identity = identity
        self.config = plan.config
        self.preset = plan.preset
        self.cache = cache
        self.device = device
        self.hooks = list(hooks)
        self._trained: dict[str, Method] = {}
        self._data: dict[tuple[str, int], RunData] = {}

    @classmethod
    def for_config(cls, config: RunConfig, host: Host | None = None) -> Models:
        """The models of ``config`` on their own (no grid loop): what export, retrieve and the demo use."""
        plan = Plan(config, host or get_host())
        return cls(plan, Identity(plan), ArtifactCache(config.cache_dir), resolve_device(config.device))

    def data(self, dataset: str, seed: int) -> RunData:
        key = (dataset, seed)
        if key not in self._data:
            source_cls: type[DatasetSource] = self.plan.host.datasets.get(dataset)
            root = self.config.data_root or os.environ.get("SKETCHBENCH_DATA") or None
            opts = DatasetOptions.for_preset(self.preset, root=root, seed=seed, cache_dir=self.cache.root)
            ds = source_cls().load(opts)
            self._data[key] = RunData(ds, self.preset, self.cache, seed=seed)
        return self._data[key]

    def obtain(self, name: str, teacher: str | None, dataset: str, canvas: int | str, seed: int) -> tuple[Method, str, float]:
        """``name`` trained for ``canvas`` (from memory, its checkpoint, or trained now), its key, and
        the seconds its training took (when it was trained, now or by the run that stored it)."""
        if not self.config.train:
            return self._untrained(name, dataset, seed)
        canvases = self.plan.train_canvases(name, canvas)
        teacher_obj, teacher_key = None, None
        if self.plan.method_class(name).needs_teacher:
            assert teacher is not None
            teacher_obj, teacher_key, _ = self.obtain(teacher, None, dataset, self.preset.full_canvas, seed)
        upstream_obj, upstream_key = None, None
        up = self.plan.upstream_of(name)
        if up is not None:
            up_teacher = teacher if self.plan.takes_teacher(up) else None
            upstream_obj, upstream_key, _ = self.obtain(up, up_teacher, dataset, DYNAMIC, seed)
        data = self.data(dataset, seed)
        key = self.identity.trained_key(name, teacher_key=teacher_key, upstream_key=upstream_key,
                                        data_fingerprint=data.fingerprint, canvases=canvases, seed=seed)
        if key in self._trained:
            return self._trained[key], key, 0.0
        method, state = self._restore(name, key, seed, upstream_obj)
        trained_now = state is None
        if trained_now:
            if not self.config.allow_training:
                raise SketchbenchError(
                    f"{name} on {dataset} (seed {seed}) is not trained yet: no checkpoint in {self.cache.root}; "
                    "train it first with the sketchbench run that made the results file (same {cache_dir})",
                    settings=("cache_dir",))
            state = self._train(method, key, data, canvases, teacher_obj)
        seconds = float(state.get("train_seconds", 0.0)) if isinstance(state, dict) else 0.0
        method.eval()
        method.trained_key = key  # the trained model's identity, for the students and caches built on it
        self._trained[key] = method
        ready = ReadyModel(name, method, dataset, tuple(canvases), seed, key, trained_now)
        for hook in self.hooks:
            hook.model_ready(ready)
        return method, key, seconds

    def build(self, name: str, seed: int) -> Method:
        """``name`` as initialised for this run: seeded, its parameters resolved, its weights where
        the plan says they start from."""
        seed_everything(seed)
        ctx = MethodContext(
            name=name, params=self.plan.params_for(name), preset=self.preset, device=self.device, seed=seed,
            pretrained=self.plan.pretrained_for(name), weights=self.plan.weights_file_for(name),
            partial_weights=self.config.partial_weights,
        )
        return self.plan.method_class(name)(ctx)

    def _restore(self, name: str, key: str, seed: int, upstream: Method | None) -> tuple[Method, dict[str, Any] | None]:
        """``name`` built (its upstream bound) and filled from its checkpoint; ``(fresh network, None)``
        when there is none, or when it does not fit (stale code, a collision: removed, a miss)."""
        method = self.build(name, seed)
        if upstream is not None:
            method.bind_upstream(upstream)  # also when restored from a checkpoint below
        state = self.cache.load("checkpoints", key)
        if state is None:
            return method, None
        try:
            method.load_state(state)
        except (RuntimeError, KeyError, TypeError, ValueError) as exc:
            detail = " ".join(ln.strip() for ln in str(exc).splitlines() if ln.strip()) or type(exc).__name__
            self.cache.remove("checkpoints", key, f"does not fit {name}'s network ({detail[:160]})")
            method = self.build(name, seed)  # the fresh network a first run would have built
            if upstream is not None:
                method.bind_upstream(upstream)
            return method, None
        return method, state

    def _train(self, method: Method, key: str, data: RunData, canvases: Sequence[int],
               teacher: Method | None) -> dict[str, Any]:
        """Train ``method`` now and store its checkpoint (rank 0 alone under torchrun)."""
        ctx = method.ctx
        if not (ctx.pretrained or ctx.weights):
            log.info("%s: weights are randomly initialised (no pretrained weights, no weights file)", ctx.name)
        t0 = time.perf_counter()
        method.train(data, canvases, teacher=teacher)
        state = method.state()
        state["train_seconds"] = time.perf_counter() - t0
        if is_main():
            self.cache.save("checkpoints", key, state)
        barrier()
        return state

    def _untrained(self, name: str, dataset: str, seed: int) -> tuple[Method, str, float]:
        """``name`` as initialised (``train=False``): seeded, pretrained where asked, never trained or cached."""
        key = self.identity.untrained_key(name, seed)
        if key not in self._trained:
            self.data(dataset, seed)  # load the data first: the same failures as a trained cell
            self._trained[key] = self.build(name, seed).eval()
        return self._trained[key], key, 0.0
