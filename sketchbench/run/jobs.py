"""A grid as jobs: one job per model to train, after the jobs of the models it builds on.

A run's method graph (:class:`~sketchbench.run.plan.Plan`: teacher → student → selector) decides
the jobs. Every model the grid trains gets one job, which trains it and evaluates the cells that
use it; a student's job needs its teacher's job, a selector's job its upstream's. A model that
several runs of a benchmark share (a teacher every row distils from) is one job: it is trained
once, and each run's cells on it are evaluated under that run's own configuration.

This module needs no cluster: the launcher (:mod:`~sketchbench.run.launch`) submits the jobs
through submitit. A job runs on its node as a callable: it restores the models it builds on from
the shared cache (never trains them), obtains its own model, and runs its cells through the grid
loop, which writes each finished cell into the one results file under its lock. A killed job is
run again by launching again: finished cells are skipped and finished models restored.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sketchbench.base.artifacts import stable_hash
from sketchbench.base.errors import SketchbenchError
from sketchbench.method.distributed import is_main
from sketchbench.method.registries import Host, get_host
from sketchbench.run.config import RunConfig
from sketchbench.run.hooks import ReadyModel, RunHook
from sketchbench.run.identity import Identity, config_hash
from sketchbench.run.loop import Runner
from sketchbench.run.plan import GridCell, Plan
from sketchbench.run.record import ResultsFile, cell_record, results_header

log = logging.getLogger("sketchbench")


@dataclass(frozen=True)
class ModelRef:
    """A model as the grid loop asks for it (``Models.obtain``'s arguments)."""

    method: str
    teacher: str | None
    dataset: str
    canvas: int | str
    seed: int

    @property
    def label(self) -> str:
        by = f"<-{self.teacher}" if self.teacher else ""
        return f"{self.method}{by} {self.dataset} @{self.canvas} s{self.seed}"


def model_of(cell: GridCell) -> ModelRef:
    """The model a cell evaluates."""
    return ModelRef(cell.method, cell.teacher, cell.dataset, cell.canvas, cell.seed)


def builds_on(plan: Plan, ref: ModelRef) -> list[ModelRef]:
    """The models ``ref`` is trained from: its teacher, its upstream (as ``Models.obtain`` asks for them)."""
    if not plan.config.train:
        return []
    out = []
    if plan.method_class(ref.method).needs_teacher:
        out.append(ModelRef(str(ref.teacher), None, ref.dataset, plan.preset.full_canvas, ref.seed))
    up = plan.upstream_of(ref.method)
    if up is not None:
        out.append(ModelRef(up, ref.teacher if plan.takes_teacher(up) else None, ref.dataset, "dynamic", ref.seed))
    return out


def model_key(plan: Plan, identity: Identity, ref: ModelRef) -> str:
    """The model's identity before its data is loaded: its checkpoint key with the dataset's name and
    root in place of the data's fingerprint. Two runs with equal keys train the same checkpoint."""
    if not plan.config.train:
        return stable_hash({"untrained": identity.untrained_key(ref.method, ref.seed), "dataset": ref.dataset})
    deps = {d.method: model_key(plan, identity, d) for d in builds_on(plan, ref)}
    teacher = deps.get(str(ref.teacher)) if plan.method_class(ref.method).needs_teacher else None
    up = plan.upstream_of(ref.method)
    root = plan.config.data_root or os.environ.get("SKETCHBENCH_DATA") or ""
    return identity.trained_key(
        ref.method, teacher_key=teacher, upstream_key=deps.get(up) if up else None,
        data_fingerprint=stable_hash({"dataset": ref.dataset, "root": str(root)}),
        canvases=plan.train_canvases(ref.method, ref.canvas), seed=ref.seed,
    )


@dataclass
class Part:
    """The cells of one run that a job evaluates (under that run's configuration)."""

    config: RunConfig
    cells: list[GridCell]
    #: ``(config_hash, seed)`` of each cell, as the results file names them
    ids: list[tuple[str, int]] = field(default_factory=list)


@dataclass
class GridJob:
    """One model of a grid: trained (or restored) by the first part's run, its cells evaluated.

    Called on the node (submitit pickles it). It never trains the models it builds on
    (``restore``): their jobs ran first and left them in the cache every job shares."""

    key: str
    model: ModelRef
    parts: list[Part]
    #: keys of the jobs that must finish first (those of ``restore``)
    needs: list[str] = field(default_factory=list)
    restore: list[ModelRef] = field(default_factory=list)
    #: 0 for models trained from nothing, 1 + the deepest of ``needs`` otherwise
    level: int = 0
    #: torch threads in the job (``None``: torch's default, or ``OMP_NUM_THREADS``)
    threads: int | None = None
    #: the canvases the model trains on (for its name; none: evaluated untrained)
    canvases: tuple[int, ...] = ()

    @property
    def cells(self) -> list[GridCell]:
        return [c for p in self.parts for c in p.cells]

    @property
    def name(self) -> str:
        m = self.model
        by = f"<-{m.teacher}" if m.teacher else ""
        canvases = f"c{'_'.join(map(str, self.canvases))}" if self.canvases else "untrained"
        return f"{m.method}{by} {m.dataset} {canvases} s{m.seed}"

    def __call__(self) -> dict[str, Any]:
        join_job_processes()
        rank, size = os.environ.get("RANK", "0"), os.environ.get("WORLD_SIZE", "1")
        print(f"sketchbench job {self.name}: pid {os.getpid()} on {socket.gethostname()}, process {rank} of {size}, "
              f"{len(self.cells)} cell(s)", flush=True)
        if self.threads:
            import torch

            torch.set_num_threads(self.threads)
        events = ModelEvents()
        failed: list[str] = []
        for part in self.parts:
            runner = Runner(part.config, get_host(), hooks=[events])
            self._restore(runner)
            try:
                runner.models.obtain(*_args(self.model))
            except Exception as exc:  # its cells cannot be evaluated: record why, and fail the job (and its dependants)
                message = f"{self.name}: {_one_line(exc)}"
                _record_failed(runner, part.cells, message)
                raise SketchbenchError(message) from None
            results, _ = runner.run(part.cells)
            mine = {(runner.identity.cell_hash(c), c.seed) for c in part.cells}
            failed += [f"{c['method']} @ {c['canvas']} s{c['seed']}: {c['error']}" for c in results["cells"]
                       if (c.get("config_hash"), c.get("seed")) in mine and c.get("status") != "ok"]
        return {"job": self.name, "key": self.key, "trained": events.trained, "restored": events.restored,
                "cells": len(self.cells), "failed": failed}

    def _restore(self, runner: Runner) -> None:
        """The models this job builds on, from the cache only: their own jobs trained them."""
        config = runner.config
        config.allow_training = False
        try:
            for ref in self.restore:
                runner.models.obtain(*_args(ref))
        except SketchbenchError as exc:
            raise SketchbenchError(
                f"{self.name}: cannot restore {ref.label}, which it builds on, from the cache {runner.models.cache.root} "
                f"({_one_line(exc)}); a job never trains what it builds on: the job that trained it must write to the "
                "same cache (one {cache_dir} on a filesystem every node sees); launch again to retrain it",
                settings=("cache_dir",),
            ) from None
        finally:
            config.allow_training = True

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        """submitit calls this when Slurm preempts the job or its time runs out: the job is queued
        again as it is and resumes (finished cells skipped, finished models restored)."""
        from submitit.helpers import DelayedSubmission

        return DelayedSubmission(self, *args, **kwargs)


def _args(ref: ModelRef) -> tuple[str, str | None, str, int | str, int]:
    return ref.method, ref.teacher, ref.dataset, ref.canvas, ref.seed


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text if isinstance(exc, SketchbenchError) else f"{type(exc).__name__}: {text}"


def _record_failed(runner: Runner, cells: Sequence[GridCell], message: str) -> None:
    """The cells of a model that could not be obtained, into the results file with the error."""
    header = results_header(runner.identity, config_hash(runner.config), str(runner.device))
    results = ResultsFile(runner.output_path(), header, writer=is_main())
    for cell in cells:
        h = runner.identity.cell_hash(cell)
        if (h, cell.seed) not in results.done:
            record = cell_record(runner.identity, cell, h, str(runner.device))
            record["error"] = message
            results.cell_done(cell, record)


def join_job_processes() -> None:
    """A job of several tasks (one per GPU) is one torch.distributed group: submitit's description of
    the job is exported as the variables torchrun would set, so the grid loop trains with DDP."""
    try:
        import submitit
    except ImportError:
        return
    try:
        env = submitit.JobEnvironment()
        tasks = env.num_tasks
    except RuntimeError:  # not inside a submitit job
        return
    if tasks > 1:
        submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)


class ModelEvents(RunHook):
    """Which models a job trained and which it restored (its log, and its result)."""

    def __init__(self) -> None:
        self.trained: list[dict[str, Any]] = []
        self.restored: list[dict[str, Any]] = []

    def model_ready(self, model: ReadyModel) -> None:
        entry = {"method": model.name, "dataset": model.dataset, "canvases": list(model.canvases),
                 "seed": model.seed, "key": model.key}
        (self.trained if model.trained_now else self.restored).append(entry)
        what = "trained" if model.trained_now else "restored"
        if is_main():  # one line per model, also in a job of several processes
            print(f"{what} {model.name} {model.dataset} c{'_'.join(map(str, model.canvases))} s{model.seed} "
                  f"(checkpoint {model.key[:16]})", flush=True)


def plan_jobs(configs: Sequence[RunConfig], host: Host | None = None) -> list[GridJob]:
    """The jobs of one or more runs (a ``run``, or every run of a benchmark), in an order where
    each job comes after the jobs it needs."""
    host = host or get_host()
    jobs: dict[str, GridJob] = {}

    def add(plan: Plan, identity: Identity, ref: ModelRef, cells: list[GridCell]) -> str:
        key = model_key(plan, identity, ref)
        job = jobs.get(key)
        if job is None:
            deps = builds_on(plan, ref)
            needs = [add(plan, identity, d, []) for d in deps]
            job = jobs[key] = GridJob(key, ref, [Part(plan.config, [])], needs, deps,
                                      level=1 + max((jobs[n].level for n in needs), default=-1),
                                      canvases=tuple(plan.train_canvases(ref.method, ref.canvas)) if plan.config.train else ())
        part = next((p for p in job.parts if p.config is plan.config), None)
        if part is None:
            part = Part(plan.config, [])
            job.parts.append(part)
        for cell in cells:
            if cell not in part.cells:
                part.cells.append(cell)
                part.ids.append((identity.cell_hash(cell), cell.seed))
        return key

    for config in configs:
        plan = Plan(config, host)
        identity = Identity(plan)
        by_model: dict[ModelRef, list[GridCell]] = {}
        for cell in plan.cells():
            by_model.setdefault(model_of(cell), []).append(cell)
        for ref, cells in by_model.items():
            add(plan, identity, ref, cells)
    for job in jobs.values():  # a part with no cells, other than the one that trains, does nothing
        job.parts = [p for i, p in enumerate(job.parts) if i == 0 or p.cells]
    return sorted(jobs.values(), key=lambda j: j.level)


def pending_jobs(jobs: Sequence[GridJob], done: set[tuple[str, int]]) -> list[GridJob]:
    """The jobs a launch must run: those with a cell not finished (``done``: ``(config_hash, seed)``
    of the results file's finished cells), and every job these need, so that a model they build
    on is restored by its own job (or trained again by it, when the cache lost it), never by them."""
    unfinished = {j.key: j for j in jobs if any(i not in done for p in j.parts for i in p.ids)}
    by_key = {j.key: j for j in jobs}
    todo = list(unfinished.values())
    while todo:
        for key in todo.pop().needs:
            if key not in unfinished:
                unfinished[key] = by_key[key]
                todo.append(by_key[key])
    return [j for j in jobs if j.key in unfinished]
