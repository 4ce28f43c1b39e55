"""The grid runner: methods × datasets × canvases × seeds.

Each teacher is trained once per (teacher, dataset, preset, seed, params) and reused for every
student through a content-addressed artifact cache. Finished cells are skipped on a rerun, a
failing cell is recorded with its error and the grid goes on, and the results file is written
atomically after every cell.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from sketchbench.base.artifacts import ArtifactCache, stable_hash
from sketchbench.base.errors import ExitCode, SketchbenchError
from sketchbench.base.progress import hidden
from sketchbench.data.dataset import DatasetOptions, DatasetSource
from sketchbench.data.rundata import RunData
from sketchbench.host.plugins import PluginHost, get_host
from sketchbench.measure.evaluate import evaluate
from sketchbench.measure.flops import FLOPS_CONVENTION
from sketchbench.method.distributed import barrier, init_from_env, is_main
from sketchbench.method.interface import Method, MethodContext
from sketchbench.method.params import identity_params, resolve_params
from sketchbench.method.training import seed_everything
from sketchbench.method.weights import AUTO, NONE, file_sha256
from sketchbench.method.weights import identity as weights_identity
from sketchbench.results.cells import Cell as ResultCell
from sketchbench.results.schema import cell_id, load_results, locked, new_results, record_cell, write_results
from sketchbench.run.presets import Preset

log = logging.getLogger("sketchbench")


@dataclass
class RunConfig:
    methods: list[str]
    datasets: list[str]
    preset: Preset
    canvases: list[int] | None = None  # None = the preset's canvases
    teacher: str | None = None
    seeds: list[int] = field(default_factory=lambda: [0])
    params: dict[str, str] = field(default_factory=dict)
    device: str = "auto"
    data_root: Path | None = None
    cache_dir: Path | None = None
    out: Path | None = None
    #: ``--pretrained`` values: ``auto``, a source, ``none`` (for every method with a pretrainable
    #: backbone), or ``METHOD=SOURCE``; empty = the preset's ``pretrained``
    pretrained: tuple[str, ...] = ()
    #: ``--weights``: ``FILE`` (the run's own methods) or ``METHOD=FILE``
    weights: tuple[str, ...] = ()
    #: allow a ``--weights`` file that fills only part of a network
    partial_weights: bool = False
    #: ``--no-train``: evaluate the methods as initialised (the random-init or zero-shot floor)
    train: bool = True
    #: train what is not in the cache (``False`` for commands that use trained models: export, retrieve)
    allow_training: bool = True
    #: also evaluate the teacher and upstream methods a method builds on
    chain: bool = True
    shard: tuple[int, int] = (1, 1)
    debug: bool = False
    #: write each trained model's weights here (``--save-weights``), loadable with ``--weights``
    save_weights: Path | None = None

    def resolved(self) -> dict[str, Any]:
        return {
            "methods": self.methods,
            "datasets": self.datasets,
            "teacher": self.teacher,
            "canvases": self.canvases,
            "seeds": self.seeds,
            "params": self.params,
            "preset": self.preset.to_dict(),
            "pretrained": list(self.pretrained) or False,
            "weights": [f"{k}={_file_digest(v)}" if k else _file_digest(v) for k, v in _split_specs(self.weights, "--weights")]
            or None,
            "chain": self.chain,
            **({} if self.train else {"train": False}),
        }

    def rebuild_record(self) -> dict[str, Any]:
        """What a results cell keeps to rebuild the run that made it (``RunConfig.from_record``):
        the resolved configuration with the preset's name and overrides and the ``--weights`` paths."""
        return {**self.resolved(), "preset": {"name": self.preset.name, "overrides": dict(self.preset.overrides)},
                "weights_files": list(self.weights), "partial_weights": self.partial_weights}

    @classmethod
    def from_record(cls, record: dict[str, Any], **overrides: Any) -> RunConfig:
        """The configuration a cell's ``run`` record describes (``overrides``: e.g. ``data_root``,
        ``cache_dir``, ``device``). Raises a one-line error when the record is not usable."""
        from sketchbench.run.presets import load_preset

        try:
            preset = load_preset(record["preset"]["name"], {k: str(v) for k, v in record["preset"].get("overrides", {}).items()})
            config = cls(
                methods=list(record["methods"]), datasets=list(record["datasets"]), preset=preset,
                canvases=record.get("canvases"), teacher=record.get("teacher"), seeds=list(record.get("seeds") or [0]),
                params=dict(record.get("params") or {}), pretrained=tuple(record.get("pretrained") or ()),
                weights=tuple(record.get("weights_files") or ()), partial_weights=bool(record.get("partial_weights")),
                chain=bool(record.get("chain", True)), train=bool(record.get("train", True)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise SketchbenchError(f"the cell's run record is incomplete ({type(exc).__name__}: {exc})") from None
        return dataclasses.replace(config, **overrides)


def _file_digest(path: Path | str | None) -> str | None:
    """The first 16 hex digits of a ``--weights`` file's sha256 (hashed once per process)."""
    if path is None:
        return None
    p = Path(path)
    if not p.is_file():
        raise SketchbenchError(f"--weights {str(p)!r}: no such file")
    return file_sha256(p)[:16]


def _split_specs(values: Sequence[str], option: str) -> list[tuple[str | None, str]]:
    """``VALUE`` or ``METHOD=VALUE`` items of a repeatable option → ``(method or None, value)``."""
    out = []
    for raw in values:
        key, sep, value = str(raw).partition("=")
        if sep and not key.strip():
            raise SketchbenchError(f"{option} {raw!r}: expected VALUE or METHOD=VALUE")
        out.append((key.strip(), value.strip()) if sep else (None, str(raw).strip()))
    return out


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise SketchbenchError("--device cuda was asked for, but no CUDA device is available")
    try:
        return torch.device(name)
    except RuntimeError:
        raise SketchbenchError(f"unknown device {name!r} (use auto, cpu or cuda)") from None


@dataclass(frozen=True)
class GridCell:
    method: str
    teacher: str | None
    dataset: str
    canvas: int | str
    seed: int
    role: str = "main"  # "main", or "teacher"/"upstream" for chain rows


class Runner:
    def __init__(self, config: RunConfig, host: PluginHost | None = None) -> None:
        self.config = config
        self.host = host or get_host()
        self.preset = config.preset
        self.device = resolve_device(config.device)
        init_from_env(self.device)  # under torchrun: join the process group
        self.cache = ArtifactCache(config.cache_dir)
        self._trained: dict[str, Method] = {}
        self._data: dict[tuple[str, int], RunData] = {}
        self._init: dict[str, dict[str, Any]] = {}
        self._specs = self._init_specs()
        self._validate()

    # -- validation ------------------------------------------------------------------------
    def method_class(self, name: str) -> type[Method]:
        return self.host.methods.get(name)

    def upstream_of(self, name: str) -> str | None:
        """The method ``name`` builds on with this run's parameters (``Method.upstream_for``)."""
        return self.method_class(name).upstream_for(self.params_for(name))

    def takes_teacher(self, name: str) -> bool:
        cls = self.method_class(name)
        up = self.upstream_of(name)
        return cls.needs_teacher or (up is not None and self.takes_teacher(up))

    def teacher_for(self, name: str) -> str | None:
        if not self.takes_teacher(name):
            return None
        cls = self.method_class(name)
        teacher = self.config.teacher or cls.default_teacher
        up = self.upstream_of(name)
        if teacher is None and up is not None:
            teacher = self.teacher_for(up)
        if teacher is None:
            raise SketchbenchError(f"method {name!r} needs a teacher: pass --teacher NAME")
        return teacher

    def _validate(self) -> None:
        c = self.config
        for name in c.methods:
            self.host.methods.entry(name)
        for name in c.datasets:
            self.host.datasets.entry(name)
        for name in c.methods:  # each upstream chain names registered methods and ends
            seen = [name]
            while (up := self.upstream_of(seen[-1])) is not None:
                self.host.methods.entry(up)
                if up in seen:
                    raise SketchbenchError(f"method {name!r}: its upstream chain loops ({' -> '.join([*seen, up])})")
                seen.append(up)
        if c.teacher is not None:
            self.host.methods.entry(c.teacher)
            tcls = self.method_class(c.teacher)
            if self.takes_teacher(c.teacher) or tcls.dynamic:
                raise SketchbenchError(
                    f"--teacher {c.teacher!r} is itself a {'dynamic method' if tcls.dynamic else 'student'}; "
                    "pick a teacher method (sketchbench list methods)"
                )
            no_teacher = [m for m in c.methods if not self.takes_teacher(m)]
            if no_teacher and len(no_teacher) == len(c.methods):
                raise SketchbenchError(f"method {no_teacher[0]!r} takes no teacher, but --teacher {c.teacher} was given")
        for m in c.methods:
            self.teacher_for(m)  # raises when a student has no teacher
        # --param KEY=VALUE or METHOD.KEY=VALUE: each key must be declared by a method that gets it
        for key in c.params:
            target, _, k = key.rpartition(".")
            names = [target] if target else c.methods
            if not any(k in self.method_class(n).params for n in names if n in self.host.methods):
                if target and target not in self.host.methods:
                    self.host.methods.entry(target)
                resolve_params(names[0], self.method_class(names[0]).params, self.preset.name, {k: ""})
        for name in c.methods:
            self.params_for(name)
        if not c.train:
            dynamic = [m for m in c.methods if self.method_class(m).dynamic]
            if dynamic:
                raise SketchbenchError(f"--no-train: {dynamic[0]!r} picks canvases with a trained selector; "
                                       "evaluate its upstream untrained instead")
        for name in self.chain_methods():
            self.init_identity(name)
        per_p, blanket_p, per_w, _ = self._specs
        chain = set(self.chain_methods())
        for name in [*per_p, *per_w]:
            if name not in chain:
                raise SketchbenchError(f"--pretrained/--weights name {name!r}, which this run does not train "
                                       f"(it trains {', '.join(sorted(chain))})")
        if blanket_p not in (None, NONE) and not any(self.pretrained_for(n) for n in chain):
            raise SketchbenchError(f"--pretrained {blanket_p}: no method of this run has a backbone a weight source can fill "
                                   f"({', '.join(sorted(chain))} train from scratch)")
        if not c.datasets:
            raise SketchbenchError("no dataset: pass --dataset NAME (sketchbench list datasets)")

    def chain_methods(self) -> list[str]:
        """The run's methods with every teacher and upstream they build on (only the run's
        methods under ``--no-train``: nothing is trained, so nothing is distilled)."""
        if not self.config.train:
            return list(self.config.methods)
        out: list[str] = []
        for name in self.config.methods:
            todo = [name]
            while todo:
                n = todo.pop()
                if n in out:
                    continue
                out.append(n)
                cls = self.method_class(n)
                t = self.teacher_for(n) if cls.needs_teacher else None
                todo += [x for x in (t, self.upstream_of(n)) if x]
        return out

    def _given(self, name: str) -> dict[str, str]:
        """The ``--param`` values that apply to ``name``: ``METHOD.KEY`` for it, or a bare ``KEY``
        when it is one of the run's methods and declares the key."""
        declared = self.method_class(name).params
        given = {}
        for key, value in self.config.params.items():
            target, _, k = key.rpartition(".")
            if (target == name or (not target and name in self.config.methods)) and k in declared:
                given[k] = value
        return given

    # -- initial weights ----------------------------------------------------------------------
    def _init_specs(self) -> tuple[dict[str, str], str | None, dict[str, Path], Path | None]:
        """(per-method ``--pretrained``, blanket ``--pretrained``, per-method ``--weights``, blanket ``--weights``)."""
        per_p: dict[str, str] = {}
        blanket_p: str | None = None
        for method, value in _split_specs(self.config.pretrained, "--pretrained"):
            if method is None:
                blanket_p = value or AUTO
            else:
                per_p[self.host.methods.entry(method).name] = value or AUTO
        per_w: dict[str, Path] = {}
        blanket_w: Path | None = None
        for method, value in _split_specs(self.config.weights, "--weights"):
            if method is None:
                blanket_w = Path(value)
            else:
                per_w[self.host.methods.entry(method).name] = Path(value)
        return per_p, blanket_p, per_w, blanket_w

    def pretrained_for(self, name: str) -> str | None:
        """The ``--pretrained`` choice for ``name``'s backbones: ``METHOD=SOURCE``, else the blanket
        value, else the preset's; ``None`` when it starts from random weights (or has no backbone a
        weight source can fill, such as Sketch-a-Net)."""
        per, blanket, _, _ = self._specs
        backbones = self.method_class(name).pretrained_backbones(self.params_for(name))
        if name in per:
            if per[name] != NONE and not backbones:
                raise SketchbenchError(f"--pretrained {name}={per[name]}: {name!r} has no backbone a weight source can fill "
                                       "(it trains from scratch)")
            choice: str | None = per[name]
        else:
            choice = blanket if blanket is not None else self.preset.pretrained
        if not backbones or choice in (None, NONE):
            return None
        return choice

    def weights_file_for(self, name: str) -> Path | None:
        """The ``--weights`` file for ``name``: ``METHOD=FILE``, else a bare ``FILE`` for the run's own methods."""
        _, _, per, blanket = self._specs
        if name in per:
            return per[name]
        return blanket if name in self.config.methods else None

    def init_identity(self, name: str) -> dict[str, Any]:
        """What ``name`` starts from, as it enters cache keys and cells: the pretrained weights of
        each backbone (source, backbone, sha256) and the ``--weights`` file's digest. Resolving it
        fails with one line when a source is not installed."""
        if name not in self._init:
            choice = self.pretrained_for(name)
            backbones = self.method_class(name).pretrained_backbones(self.params_for(name))
            idents = [weights_identity(b, choice).to_dict() for b in backbones] if choice is not None else []
            path = self.weights_file_for(name)
            self._init[name] = {"pretrained": idents or False, "weights": _file_digest(path)}
        return self._init[name]

    def params_for(self, name: str) -> dict[str, Any]:
        return resolve_params(name, self.method_class(name).params, self.preset.name, self._given(name))

    def identity_params(self, name: str) -> dict[str, Any]:
        """``params_for`` as it enters hashes: parameters added later at their default left out."""
        return identity_params(self.method_class(name).params, self.preset.name, self.params_for(name))

    def variant(self, name: str) -> str:
        """A short label of what this run changed for ``name`` (given params, preset overrides):
        rows of a sweep stay apart in reports."""
        parts = [f"{k}={v}" for k, v in self._given(name).items()]
        parts += [f"{k}={v}" for k, v in self.upstream_given(name).items()]
        if name in self.config.methods:
            parts += [f"{k}={v}" for k, v in self.preset.overrides.items()]
        if not self.config.train:
            # the floors beside every trained row: an ImageNet start untrained is "zero-shot"
            parts.insert(0, "zero-shot" if self.init_identity(name)["pretrained"] else "random init")
        return ",".join(parts)

    def upstream_given(self, name: str) -> dict[str, Any]:
        """The ``--param`` values that apply to the methods ``name`` builds on (its upstream chain),
        as ``UPSTREAM.KEY``: they change what ``name`` evaluates, so they enter its cells' hash and
        variant (empty, and so leaving both as they were, when none is given)."""
        out: dict[str, Any] = {}
        seen, up = {name}, self.upstream_of(name)
        while up is not None and up not in seen:
            seen.add(up)
            resolved = self.params_for(up)
            out.update({f"{up}.{k}": resolved[k] for k in self._given(up)})
            up = self.upstream_of(up)
        return out

    # -- the grid --------------------------------------------------------------------------
    def cells(self) -> list[GridCell]:
        c = self.config
        out: list[GridCell] = []
        canvases = c.canvases or list(self.preset.canvases)
        for dataset in c.datasets:
            for seed in c.seeds:
                for name in c.methods:
                    cls = self.method_class(name)
                    teacher = self.teacher_for(name) if c.train else None
                    if c.chain and c.train:
                        if teacher is not None:
                            out.append(GridCell(teacher, None, dataset, self.preset.full_canvas, seed, "teacher"))
                        up = self.upstream_of(name)
                        while up is not None:
                            upcls = self.method_class(up)
                            for cv in ("dynamic",) if upcls.dynamic else canvases:
                                out.append(GridCell(up, self.teacher_for(up), dataset, cv, seed, "upstream"))
                            up = self.upstream_of(up)
                    for cv in ("dynamic",) if cls.dynamic else canvases:
                        out.append(GridCell(name, teacher, dataset, cv, seed))
        unique = list(dict.fromkeys(out))
        k, n = c.shard
        return [cell for i, cell in enumerate(unique) if i % n == k - 1]

    def cell_hash(self, cell: GridCell) -> str:
        return stable_hash(
            {
                "method": cell.method,
                "teacher": cell.teacher,
                "dataset": cell.dataset,
                "canvas": cell.canvas,
                "preset": self.preset.identity(),
                "params": self.identity_params(cell.method),
                "teacher_params": self.identity_params(cell.teacher) if cell.teacher else None,
                **({"upstream_params": up} if (up := self.upstream_given(cell.method)) else {}),
                **self.init_identity(cell.method),
                # what the teacher and upstream started from, when any is not random init (a selector
                # over a pretrained student is another cell than over one trained from scratch)
                **({"chain_init": chain} if (chain := self._chain_init(cell)) else {}),
                **({} if self.config.train else {"trained": False}),
            }
        )

    def _chain_init(self, cell: GridCell) -> dict[str, Any]:
        """The init identities of the methods ``cell.method`` is built on, if any is not the default."""
        if not self.config.train:
            return {}
        members, todo = [], [cell.method]
        while todo:
            name = todo.pop()
            cls = self.method_class(name)
            nxt = [x for x in ((cell.teacher if cls.needs_teacher else None), self.upstream_of(name)) if x]
            members += [m for m in nxt if m not in members]
            todo += nxt
        init = {m: self.init_identity(m) for m in members}
        default = {"pretrained": False, "weights": None}
        return init if any(v != default for v in init.values()) else {}

    # -- data and training -----------------------------------------------------------------
    def data(self, dataset: str, seed: int) -> RunData:
        key = (dataset, seed)
        if key not in self._data:
            source_cls: type[DatasetSource] = self.host.datasets.get(dataset)
            root = self.config.data_root or os.environ.get("SKETCHBENCH_DATA") or None
            opts = DatasetOptions.for_preset(self.preset, root=root, seed=seed, cache_dir=self.cache.root)
            ds = source_cls().load(opts)
            self._data[key] = RunData(ds, self.preset, self.cache, seed=seed)
        return self._data[key]

    def train_canvases(self, name: str, canvas: int | str) -> tuple[int, ...]:
        cls = self.method_class(name)
        if cls.multi_canvas or cls.dynamic or canvas == "dynamic":
            return tuple(self.preset.canvases)
        return (int(canvas),)

    def obtain(self, name: str, teacher: str | None, dataset: str, canvas: int | str, seed: int) -> tuple[Method, str, float]:
        """A trained method (from memory, the artifact cache, or trained now) and its key."""
        cls = self.method_class(name)
        canvases = self.train_canvases(name, canvas)
        if not self.config.train:
            return self._untrained(name, dataset, seed)
        teacher_obj, teacher_key = None, None
        if cls.needs_teacher:
            assert teacher is not None
            teacher_obj, teacher_key, _ = self.obtain(teacher, None, dataset, self.preset.full_canvas, seed)
        upstream_obj, upstream_key = None, None
        up = self.upstream_of(name)
        if up is not None:
            up_teacher = teacher if self.takes_teacher(up) else None
            upstream_obj, upstream_key, _ = self.obtain(up, up_teacher, dataset, "dynamic", seed)
        data = self.data(dataset, seed)
        params = self.params_for(name)
        key = stable_hash(
            {
                "method": name,
                "version": cls.version,
                "params": self.identity_params(name),
                "teacher": teacher_key,
                "upstream": upstream_key,
                "data": data.fingerprint,
                # evaluation-only values do not change a trained model
                "preset": self.preset.identity(exclude=("latency_repeats", "latency_warmup", "eval_batch_size")),
                "canvases": canvases,
                "seed": seed,
                **self.init_identity(name),
            }
        )
        if key in self._trained:
            return self._trained[key], key, 0.0
        seed_everything(seed)
        ctx = MethodContext(
            name=name, params=params, preset=self.preset, device=self.device, seed=seed,
            pretrained=self.pretrained_for(name), weights=self.weights_file_for(name),
            partial_weights=self.config.partial_weights,
        )
        method = cls(ctx)
        if upstream_obj is not None:
            method.bind_upstream(upstream_obj)  # also when restored from a checkpoint below
        state = self.cache.load("checkpoints", key)
        seconds = 0.0
        if state is not None:
            try:
                method.load_state(state)
            except (RuntimeError, KeyError, TypeError, ValueError) as exc:
                # a checkpoint whose tensors do not fit this network (stale code, a collision): a miss
                detail = " ".join(ln.strip() for ln in str(exc).splitlines() if ln.strip()) or type(exc).__name__
                self.cache.remove("checkpoints", key, f"does not fit {name}'s network ({detail[:160]})")
                seed_everything(seed)  # the fresh network a first run would have built
                method = cls(ctx)
                if upstream_obj is not None:
                    method.bind_upstream(upstream_obj)
                state = None
        if state is not None:
            pass
        elif not self.config.allow_training:
            raise SketchbenchError(
                f"{name} on {dataset} (seed {seed}) is not trained yet: no checkpoint in {self.cache.root}; "
                "train it first with the sketchbench run that made the results file (same --cache-dir)"
            )
        else:
            if not (ctx.pretrained or ctx.weights):
                log.info("%s: weights are randomly initialised (no --pretrained or --weights)", name)
            t0 = time.perf_counter()
            method.bind_upstream(upstream_obj)
            method.train(data, canvases, teacher=teacher_obj)
            seconds = time.perf_counter() - t0
            state = method.state()
            state["train_seconds"] = seconds
            if is_main():  # under torchrun, rank 0 alone writes checkpoints
                self.cache.save("checkpoints", key, state)
            barrier()
        seconds = float(state.get("train_seconds", seconds)) if isinstance(state, dict) else seconds
        method.eval()
        method.trained_key = key  # the trained model's identity, for the students and caches built on it
        self._trained[key] = method
        if self.config.save_weights is not None and is_main():
            self.export_weights(method, name, dataset, canvases, seed)
        return method, key, seconds

    def _untrained(self, name: str, dataset: str, seed: int) -> tuple[Method, str, float]:
        """``name`` as initialised (``--no-train``): seeded, pretrained where asked, never trained or cached."""
        key = stable_hash({"untrained": name, "params": self.params_for(name), "seed": seed, **self.init_identity(name)})
        if key not in self._trained:
            self.data(dataset, seed)  # load the data first: the same failures as a trained cell
            seed_everything(seed)
            ctx = MethodContext(name=name, params=self.params_for(name), preset=self.preset, device=self.device, seed=seed,
                                pretrained=self.pretrained_for(name), weights=self.weights_file_for(name),
                                partial_weights=self.config.partial_weights)
            self._trained[key] = self.method_class(name)(ctx).eval()
        return self._trained[key], key, 0.0

    def export_weights(self, method: Method, name: str, dataset: str, canvases: Sequence[int], seed: int) -> Path | None:
        """Save a trained model's state dict as ``<dir>/<method>-<dataset>-c<canvases>-s<seed>.pt``, the
        format ``--weights FILE`` loads (e.g. pre-train on one dataset, fine-tune on another)."""
        folder = Path(self.config.save_weights)  # type: ignore[arg-type]
        path = folder / f"{name}-{dataset}-c{'_'.join(str(c) for c in canvases)}-s{seed}.pt"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            torch.save({"state_dict": method.modules().state_dict()}, path)
        except OSError as exc:
            # the model is trained and cached and its cell will be evaluated: losing the export only warns
            tqdm.write(f"warning: --save-weights: cannot write {str(path)!r}: {exc.strerror}")
            return None
        log.info("saved %s weights to %s", name, path)
        return path

    # -- running ---------------------------------------------------------------------------
    def output_path(self) -> Path:
        if self.config.out is not None:
            return Path(self.config.out)
        return Path("results") / f"run-{self.config_hash()}.json"

    def config_hash(self) -> str:
        resolved = self.config.resolved()
        return stable_hash(resolved)

    def run(self) -> tuple[dict[str, Any], ExitCode]:
        """Run every cell not finished yet in the results file. Each finished cell goes into the
        file at once, under its lock and re-read first, so a concurrent run writing the same file
        loses nothing (each cell's ``run`` record says which configuration made it)."""
        out = self.output_path()
        main = is_main()
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SketchbenchError(f"cannot create the output folder {str(out.parent)!r}: {exc.strerror}") from None
        header = new_results(self.config.resolved(), self.config_hash(), str(self.device))
        if self.config.shard != (1, 1):
            header["config"]["shard"] = list(self.config.shard)
        if out.exists():
            results = load_results(out)
        else:
            results = header
            if main:
                with locked(out):  # fail early when the path is not writable
                    if not out.exists():
                        write_results(out, header)
                results = load_results(out)
        done = {cell_id(c) for c in results["cells"] if c.get("status") == "ok"}
        cells = self.cells()
        failed = 0
        bar = tqdm(cells, desc="cells", unit="cell", leave=False, disable=hidden(not main))
        try:
            for cell in bar:
                h = self.cell_hash(cell)
                if (h, cell.seed) in done:
                    continue
                bar.set_postfix_str(f"{cell.method} {cell.dataset} @{cell.canvas} s{cell.seed}")
                record = self.run_cell(cell, h)
                if main:
                    results = record_cell(out, record, header)
                else:
                    results["cells"] = [c for c in results["cells"] if cell_id(c) != (h, cell.seed)] + [record]
                if record["status"] != "ok":
                    failed += 1
                    tqdm.write(f"error: {cell.method} on {cell.dataset} @ {cell.canvas}: {record['error']}")
        finally:
            bar.close()
        results["path"] = str(out)
        return results, (ExitCode.FAILED if failed else ExitCode.OK)

    def run_cell(self, cell: GridCell, h: str) -> dict[str, Any]:
        record: dict[str, Any] = {
            "method": cell.method,
            "teacher": cell.teacher,
            "dataset": cell.dataset,
            "canvas": cell.canvas,
            "preset": self.preset.name,
            "seed": cell.seed,
            "role": cell.role,
            "status": "error",
            "error": None,
            "acc1": None, "acc10": None, "mean_rank": None,
            "gflops": None, "params_m": None, "latency_ms": None, "train_seconds": None,
            "flops_convention": FLOPS_CONVENTION,
            "config_hash": h,
            "params": self.params_for(cell.method),
            "variant": self.variant(cell.method),
            "kind": self.method_class(cell.method).kind,
            "device": str(self.device),
            # what the network started from: pretrained weights per backbone (source, sha256), --weights digest
            "init": self.init_identity(cell.method),
            "trained": self.config.train,
            # enough to rebuild this run (export, retrieve): RunConfig.from_record
            "run": self.config.rebuild_record(),
        }
        try:
            method, _, seconds = self.obtain(cell.method, cell.teacher, cell.dataset, cell.canvas, cell.seed)
            data = self.data(cell.dataset, cell.seed)
            scores = evaluate(method, data, cell.canvas)
            gallery = int(scores.get("gallery_size", 0))
            if gallery < 2:
                raise SketchbenchError(f"the test gallery holds {gallery} photo(s): retrieval cannot be scored "
                                       "(raise max_test_sketches, or 0 for the whole split)")
            record.update(scores)
            record["warnings"] = gallery_warnings(gallery)
            record["train_seconds"] = seconds
            record["skipped_items"] = int(data.dataset.meta.get("skipped_sketches", 0))
            record["status"] = "ok"
            record = ResultCell.from_json(record, f"{cell.method} @ {cell.canvas}").to_json()  # typed, ranges checked
        except KeyboardInterrupt:
            raise
        except SketchbenchError as exc:
            record["status"], record["error"] = "error", str(exc)
        except Exception as exc:  # one failing cell must not stop the grid
            if self.config.debug:
                raise
            record["status"], record["error"] = "error", f"{type(exc).__name__}: {exc}"
            record["traceback"] = traceback.format_exc(limit=8)
        return record


def gallery_warnings(gallery: int) -> list[str]:
    """What a reader must know of a small gallery: with at most 10 photos acc@10 is 100 % by construction."""
    if gallery <= 10:
        return [f"the gallery holds {gallery} photos: acc@10 is 100% by construction and means nothing"]
    return []
