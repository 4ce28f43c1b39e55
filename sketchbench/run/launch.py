"""Launch a grid as jobs through submitit: on a Slurm cluster (``slurm``), or as processes on this
machine (``local``, the same code path, which is how the launcher is tested).

The jobs (:mod:`~sketchbench.run.jobs`) follow the method graph: each model is trained by one job,
and a job starts once the jobs of the models it builds on have succeeded. On Slurm, every job is
submitted at once, jobs with the same needs as one job array, with an ``afterok`` dependency on the
jobs they need (a failed teacher cancels its students: ``--kill-on-invalid-dep``). Locally, a small
scheduler starts each job when its needs have succeeded, at most ``parallel`` at a time.

Every job writes its cells into the one results file under its lock and its models into the one
cache, so the results file and the cache must be on a filesystem every node sees. Launching again
resumes: jobs whose cells are all finished are not run (unless a job that runs builds on their model,
which they then restore), cells already finished are skipped inside a job.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from sketchbench.base.errors import ExitCode, SketchbenchError
from sketchbench.base.progress import hidden
from sketchbench.method.registries import Host
from sketchbench.results.schema import cell_id, load_results
from sketchbench.run.config import RunConfig
from sketchbench.run.jobs import GridJob, pending_jobs, plan_jobs

LAUNCHERS = ("local", "slurm")
_R = ("resources",)  # the setting a resources file's errors name
#: what a Slurm job may be given in a resources TOML's ``[slurm]`` table (flags override)
RESOURCE_KEYS = ("partition", "gpus", "cpus", "mem_gb", "time_min", "account", "qos", "constraint",
                 "array_parallelism", "setup", "sbatch")


@dataclass
class Resources:
    """What each job asks the cluster for."""

    partition: str | None = None
    #: GPUs per job; more than one: one process per GPU, trained with DDP
    gpus: int = 1
    #: CPU cores per process (and torch threads)
    cpus: int | None = None
    mem_gb: float | None = None
    #: minutes per job (default: 720 on Slurm, a week locally); a job that runs out is queued again
    time_min: int | None = None
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    #: how many tasks of one job array run at once
    array_parallelism: int = 64
    #: shell lines run before each job (``module load ...``, ``source venv/bin/activate``)
    setup: list[str] = field(default_factory=list)
    #: any other sbatch option, ``{"reservation": "x"}`` → ``#SBATCH --reservation=x``
    sbatch: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_toml(cls, path: Path) -> Resources:
        """The ``[slurm]`` table of a TOML file (``--resources FILE``)."""
        try:
            table = tomllib.loads(Path(path).read_text()).get("slurm")
        except OSError as exc:
            raise SketchbenchError(f"{{resources}} {str(path)!r}: cannot read it: {exc.strerror or exc}", settings=_R) from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise SketchbenchError(f"{{resources}} {str(path)!r}: invalid TOML: {exc}", settings=_R) from None
        if not isinstance(table, dict):
            raise SketchbenchError(f"{{resources}} {str(path)!r}: no [slurm] table", settings=_R)
        unknown = sorted(set(table) - set(RESOURCE_KEYS))
        if unknown:
            raise SketchbenchError(f"{{resources}} {str(path)!r}: unknown key(s) {', '.join(unknown)} in [slurm] "
                                   f"(known: {', '.join(RESOURCE_KEYS)})", settings=_R)
        try:
            out = cls(**table)
            out.check()
        except (TypeError, ValueError) as exc:
            raise SketchbenchError(f"{{resources}} {str(path)!r}: {exc}", settings=_R) from None
        return out

    def check(self) -> None:
        for name in ("gpus", "cpus", "time_min", "array_parallelism"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < (0 if name == "gpus" else 1)):
                raise ValueError(f"{name} must be a whole number >= {0 if name == 'gpus' else 1}, not {value!r}")
        if self.mem_gb is not None and (not isinstance(self.mem_gb, int | float) or self.mem_gb <= 0):
            raise ValueError(f"mem_gb must be a positive number, not {self.mem_gb!r}")
        if not isinstance(self.setup, list) or not all(isinstance(x, str) for x in self.setup):
            raise ValueError("setup must be a list of shell lines")
        if not isinstance(self.sbatch, dict):
            raise ValueError("sbatch must be a table of option = value")

    def slurm_parameters(self) -> dict[str, Any]:
        """Parameters of submitit's ``SlurmExecutor``."""
        tasks = max(1, self.gpus)
        params: dict[str, Any] = {"time": self.time_min or 720, "ntasks_per_node": tasks, "nodes": 1,
                                  "array_parallelism": self.array_parallelism, "setup": list(self.setup)}
        if self.gpus:
            params["gpus_per_node"] = self.gpus
        optional = {"partition": self.partition, "cpus_per_task": self.cpus, "account": self.account,
                    "qos": self.qos, "constraint": self.constraint,
                    "mem": f"{int(self.mem_gb * 1024)}M" if self.mem_gb else None}
        params.update({k: v for k, v in optional.items() if v is not None})
        return params


@dataclass
class LaunchOptions:
    launcher: str
    #: submitit's folder: each job's pickles and logs (on the shared filesystem for Slurm);
    #: default: beside the results file, ``OUT.jobs/``
    folder: Path | None
    resources: Resources = field(default_factory=Resources)
    #: local: jobs at once
    parallel: int = 1
    #: slurm: wait for the jobs and report (else submit and return)
    wait: bool = True
    poll_s: float = 1.0


@dataclass
class Outcome:
    job: GridJob
    state: str  # "ok", "failed", "skipped"
    detail: str = ""
    result: dict[str, Any] | None = None
    log: Path | None = None


def _say(line: str) -> None:
    """A line for the person watching, on stderr (stdout is for the table), between progress bars."""
    tqdm.write(line, file=sys.stderr)


def absolute(config: RunConfig) -> RunConfig:
    """Paths a job opens, made absolute: a node may start in another folder."""
    def fix(p: Path | None) -> Path | None:
        return None if p is None else Path(p).expanduser().resolve()

    return dataclasses.replace(config, out=fix(config.out), cache_dir=fix(config.cache_dir), data_root=fix(config.data_root),
                               save_weights=fix(config.save_weights))


def launch(configs: Sequence[RunConfig], options: LaunchOptions, host: Host | None = None) -> tuple[list[Outcome], ExitCode]:
    """Run (or submit) the jobs of ``configs`` that are not finished; all configs write one results file."""
    if options.launcher not in LAUNCHERS:
        raise SketchbenchError(f"{{launcher}} {options.launcher!r}: unknown (use {' or '.join(LAUNCHERS)})", settings=("launcher",))
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise SketchbenchError("{launcher} runs its own jobs: do not start it under torchrun ({gpus} N: DDP in a job)",
                               settings=("launcher", "gpus"))
    configs = [absolute(c) for c in configs]
    outs = {c.out for c in configs}
    if len(outs) != 1 or None in outs:
        raise SketchbenchError("a launched grid writes one results file: give its runs one {out}", settings=("out",))
    if any(c.shard != (1, 1) for c in configs):
        raise SketchbenchError("{shard} and {launcher} do not go together: the launcher splits the grid itself",
                               settings=("shard", "launcher"))
    out = Path(next(iter(outs)))  # type: ignore[arg-type]
    options = dataclasses.replace(options, folder=Path(options.folder or out.with_suffix(".jobs")).expanduser().resolve())
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        options.folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SketchbenchError(f"cannot create {exc.filename!r}: {exc.strerror}") from None
    threads = _threads(options)
    executor = _executor(options, threads)  # before any work: fails with one line without submitit or srun
    done = {cell_id(c) for c in load_results(out)["cells"] if c.get("status") == "ok"} if out.exists() else set()
    jobs = [dataclasses.replace(j, threads=threads) for j in pending_jobs(plan_jobs(configs, host), done)]
    if not jobs:
        _say(f"launch: every cell of the grid is finished in {out}")
        return [], ExitCode.OK
    _say(f"launch: {len(jobs)} job(s) on {options.launcher} (logs: {options.folder})")
    if options.launcher == "local":
        outcomes = _run_local(jobs, executor, options)
    else:
        outcomes = _run_slurm(jobs, executor, options)
    failed = [o for o in outcomes if o.state != "ok"]
    for o in failed:
        _say(f"job {o.state}: {o.job.name}: {o.detail}" + (f" (log: {o.log})" if o.log else ""))
    bad_cells = [f for o in outcomes if o.result for f in o.result.get("failed", [])]
    if failed or bad_cells:
        _say(f"launch: {len(failed)} job(s) did not finish, {len(bad_cells)} cell(s) failed; "
             "launch the same command again to resume")
    return outcomes, ExitCode.FAILED if failed or bad_cells else ExitCode.OK


def _executor(options: LaunchOptions, threads: int) -> Any:
    try:
        import submitit
    except ImportError:
        raise SketchbenchError("{launcher} needs submitit: pip install 'sketchbench[slurm]'", settings=("launcher",)) from None
    folder = options.folder / "%j"
    setup = [f"export OMP_NUM_THREADS={threads}"]
    if options.launcher == "local":
        ex = submitit.LocalExecutor(folder=folder)
        ex.update_parameters(timeout_min=options.resources.time_min or 7 * 24 * 60, tasks_per_node=max(1, options.resources.gpus),
                             setup=setup)
        return ex
    try:
        ex = submitit.SlurmExecutor(folder=folder)
    except RuntimeError as exc:  # no srun on this machine
        raise SketchbenchError(f"{{launcher}} slurm: {exc} ({{launcher}} local on one machine)", settings=("launcher",)) from None
    params = options.resources.slurm_parameters()
    ex.update_parameters(**{**params, "setup": setup + params["setup"]})
    return ex


def _threads(options: LaunchOptions) -> int:
    if options.launcher == "slurm":
        return options.resources.cpus or 1
    per_job = max(1, (os.cpu_count() or 1) // max(1, options.parallel * max(1, options.resources.gpus)))
    env = os.environ.get("OMP_NUM_THREADS", "")
    return min(per_job, int(env)) if env.isdigit() and int(env) > 0 else per_job


def _outcome(job: GridJob, handle: Any, local: bool) -> Outcome:
    """What a finished submitit job left (every task of it): its result, or why it has none."""
    tasks = [handle.task(i) for i in range(handle.num_tasks)]
    log = Path(tasks[0].paths.stderr)
    if local and not all(t.paths.result_pickle.exists() for t in tasks):  # its processes are gone: nothing will come
        return Outcome(job, "failed", "killed or timed out before it finished", log=log)
    exc = handle.exception()  # on Slurm, waits a little for a result the shared filesystem has not shown yet
    if exc is not None:
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip() and not ln.startswith("-" * 8)]
        reason = next((ln for ln in reversed(lines) if ln.startswith(("sketchbench.", "SketchbenchError"))), None)
        return Outcome(job, "failed", (reason or (lines[-1] if lines else type(exc).__name__))[:400], log=log)
    return Outcome(job, "ok", result=tasks[0].result(), log=log)


class GpuSlots:
    """The GPUs of this machine, handed to local jobs ``per_job`` at a time (each job sees only its own
    through ``CUDA_VISIBLE_DEVICES``); on a machine without GPUs every job runs on the CPU."""

    def __init__(self, count: int, per_job: int) -> None:
        self.count = count
        self.per_job = max(1, per_job)
        self.free = list(range(count))
        if count and count < self.per_job:
            raise SketchbenchError(f"{{gpus}} {per_job}: this machine has {count} GPU(s)", settings=("gpus",))

    def take(self) -> list[int] | None:
        """GPUs for the next job ([] on a machine without any), or ``None`` while too few are free."""
        if not self.count:
            return []
        if len(self.free) < self.per_job:
            return None
        mine, self.free = self.free[: self.per_job], self.free[self.per_job :]
        return mine

    def give_back(self, gpus: list[int]) -> None:
        self.free = sorted(self.free + gpus)


def _run_local(jobs: list[GridJob], executor: Any, options: LaunchOptions) -> list[Outcome]:
    """Start each job once its needs succeeded, at most ``parallel`` at a time (and as GPUs are free)."""
    import torch

    gpus = GpuSlots(torch.cuda.device_count(), options.resources.gpus)
    waiting = {j.key: j for j in jobs}
    running: dict[str, tuple[GridJob, Any, list[int]]] = {}
    outcomes: dict[str, Outcome] = {}
    bar = tqdm(total=len(jobs), desc="jobs", unit="job", leave=False, disable=hidden())
    try:
        while waiting or running:
            for key, (job, handle, mine) in list(running.items()):
                if handle.done():
                    del running[key]
                    gpus.give_back(mine)
                    outcomes[key] = _outcome(job, handle, local=True)
                    bar.update(1)
            for key, job in list(waiting.items()):
                bad = [n for n in job.needs if n in outcomes and outcomes[n].state != "ok"]
                if bad:
                    del waiting[key]
                    outcomes[key] = Outcome(job, "skipped", f"needs {outcomes[bad[0]].job.name}, which did not finish")
                    bar.update(1)
                elif len(running) < options.parallel and all(n in outcomes for n in job.needs):
                    mine = gpus.take()
                    if mine is None:
                        break
                    executor.update_parameters(gpus_per_node=len(mine), visible_gpus=mine)
                    del waiting[key]
                    running[key] = (job, executor.submit(job), mine)
            time.sleep(options.poll_s)
    except KeyboardInterrupt:
        for _, handle, _ in running.values():
            handle.cancel(check=False)
        raise SketchbenchError(f"interrupted: {len(running)} running job(s) stopped; launch again to resume",
                               exit_code=ExitCode.FAILED) from None
    finally:
        bar.close()
    return [outcomes[j.key] for j in jobs]


def _run_slurm(jobs: list[GridJob], executor: Any, options: LaunchOptions) -> list[Outcome]:
    """Submit every job now: one array per (level, needs), ``afterok`` on the jobs it needs."""
    groups: dict[tuple[int, tuple[str, ...]], list[GridJob]] = {}
    for job in jobs:  # in level order: a group's needs are submitted before it
        groups.setdefault((job.level, tuple(sorted(job.needs))), []).append(job)
    ids: dict[str, str] = {}
    handles: list[tuple[GridJob, Any]] = []
    for (level, needs), group in groups.items():
        extra = dict(options.resources.sbatch)
        after = [ids[n] for n in needs if n in ids]
        if after:
            extra.update({"dependency": "afterok:" + ":".join(after), "kill_on_invalid_dep": "yes"})
        executor.update_parameters(job_name=f"sketchbench-{level}", additional_parameters=extra)
        with executor.batch():
            submitted = [executor.submit(job) for job in group]
        for job, handle in zip(group, submitted, strict=True):
            ids[job.key] = str(handle.job_id)
            handles.append((job, handle))
    for job, handle in handles:
        _say(f"submitted {handle.job_id}: {job.name}" + (f" after {len(job.needs)} job(s)" if job.needs else ""))
    if not options.wait:
        _say(f"launch: {len(handles)} job(s) submitted; their cells go into the results file as they finish "
             "(sketchbench report FILE)")
        return [Outcome(job, "ok", "submitted") for job, _ in handles]
    outcomes: dict[str, Outcome] = {}
    for job, handle in tqdm(handles, desc="jobs", unit="job", leave=False, disable=hidden()):
        bad = [n for n in job.needs if outcomes[n].state != "ok"]  # needs come first: level order
        if bad:  # Slurm cancels it (--kill-on-invalid-dep); make sure, rather than wait for it
            handle.cancel(check=False)
            outcomes[job.key] = Outcome(job, "skipped", f"needs {outcomes[bad[0]].job.name}, which did not finish")
            continue
        while not handle.done():
            time.sleep(options.poll_s)
        outcomes[job.key] = _outcome(job, handle, local=False)
    return [outcomes[job.key] for job, _ in handles]
