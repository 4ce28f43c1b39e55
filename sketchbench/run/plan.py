"""What a run trains and evaluates, before anything is built: the method graph (teacher → student →
selector), each method's resolved parameters and where its weights start, and the grid of cells.

A :class:`Plan` reads the registries and the configuration only: it builds no network and loads no
data. Everything that is keyed or trained (:mod:`~sketchbench.run.identity`,
:mod:`~sketchbench.run.models`) and every launcher that splits a grid asks it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sketchbench.base.canvas import DYNAMIC, is_dynamic
from sketchbench.base.errors import SketchbenchError
from sketchbench.method.interface import Method
from sketchbench.method.params import identity_params, resolve_params
from sketchbench.method.pretrained import identity as weights_identity
from sketchbench.method.registries import Host
from sketchbench.method.weights import AUTO, NONE
from sketchbench.run.config import RunConfig, file_digest, split_specs


@dataclass(frozen=True)
class GridCell:
    method: str
    teacher: str | None
    dataset: str
    canvas: int | str
    seed: int
    role: str = "main"  # "main", or "teacher"/"upstream" for chain rows


class Plan:
    """The run's method graph, parameters, initial weights and cells; validated when built."""

    def __init__(self, config: RunConfig, host: Host) -> None:
        self.config = config
        self.host = host
        self.preset = config.preset
        self._init: dict[str, dict[str, Any]] = {}
        self._specs = self._init_specs()
        self._validate()

    # -- the method graph ------------------------------------------------------------------
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
            raise SketchbenchError(f"method {name!r} needs a teacher: pass {{teacher}} NAME", settings=("teacher",))
        return teacher

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

    def train_canvases(self, name: str, canvas: int | str) -> tuple[int, ...]:
        """The canvases ``name`` trains on to be evaluated at ``canvas``."""
        cls = self.method_class(name)
        if cls.multi_canvas or cls.dynamic or is_dynamic(canvas):
            return tuple(self.preset.canvases)
        return (int(canvas),)

    # -- parameters ------------------------------------------------------------------------
    def given(self, name: str) -> dict[str, str]:
        """The ``--param`` values that apply to ``name``: ``METHOD.KEY`` for it, or a bare ``KEY``
        when it is one of the run's methods and declares the key."""
        declared = self.method_class(name).params
        given = {}
        for key, value in self.config.params.items():
            target, _, k = key.rpartition(".")
            if (target == name or (not target and name in self.config.methods)) and k in declared:
                given[k] = value
        return given

    def params_for(self, name: str) -> dict[str, Any]:
        return resolve_params(name, self.method_class(name).params, self.preset.name, self.given(name))

    def identity_params(self, name: str) -> dict[str, Any]:
        """``params_for`` as it enters hashes: parameters added later at their default left out."""
        return identity_params(self.method_class(name).params, self.preset.name, self.params_for(name))

    def upstream_given(self, name: str) -> dict[str, Any]:
        """The ``--param`` values that apply to the methods ``name`` builds on (its upstream chain),
        as ``UPSTREAM.KEY``: they change what ``name`` evaluates, so they enter its cells' hash and
        variant (empty, and so leaving both as they were, when none is given)."""
        out: dict[str, Any] = {}
        seen, up = {name}, self.upstream_of(name)
        while up is not None and up not in seen:
            seen.add(up)
            resolved = self.params_for(up)
            out.update({f"{up}.{k}": resolved[k] for k in self.given(up)})
            up = self.upstream_of(up)
        return out

    # -- initial weights -------------------------------------------------------------------
    def _init_specs(self) -> tuple[dict[str, str], str | None, dict[str, Path], Path | None]:
        """(per-method ``--pretrained``, blanket ``--pretrained``, per-method ``--weights``, blanket ``--weights``)."""
        per_p: dict[str, str] = {}
        blanket_p: str | None = None
        for method, value in split_specs(self.config.pretrained, "pretrained"):
            if method is None:
                blanket_p = value or AUTO
            else:
                per_p[self.host.methods.entry(method).name] = value or AUTO
        per_w: dict[str, Path] = {}
        blanket_w: Path | None = None
        for method, value in split_specs(self.config.weights, "weights"):
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
                raise SketchbenchError(f"{{pretrained}} {name}={per[name]}: {name!r} has no backbone a weight source can "
                                       "fill (it trains from scratch)", settings=("pretrained",))
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
            self._init[name] = {"pretrained": idents or False, "weights": file_digest(path)}
        return self._init[name]

    # -- the grid --------------------------------------------------------------------------
    def cells(self) -> list[GridCell]:
        """Every cell of this run (this shard's), chain rows before the rows that build on them."""
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
                            for cv in (DYNAMIC,) if upcls.dynamic else canvases:
                                out.append(GridCell(up, self.teacher_for(up), dataset, cv, seed, "upstream"))
                            up = self.upstream_of(up)
                    for cv in (DYNAMIC,) if cls.dynamic else canvases:
                        out.append(GridCell(name, teacher, dataset, cv, seed))
        unique = list(dict.fromkeys(out))
        k, n = c.shard
        mine = [cell for i, cell in enumerate(unique) if i % n == k - 1]
        if not mine and unique:  # a part that would do nothing: more parts than cells
            raise SketchbenchError(f"{{shard}} {k}/{n}: the grid has {len(unique)} cell(s), so part {k} of {n} holds none; "
                                   f"use at most {len(unique)} parts", settings=("shard",))
        return mine

    # -- validation ------------------------------------------------------------------------
    def _validate(self) -> None:
        c = self.config
        for name in c.methods:
            self.host.methods.entry(name)
        for name in c.datasets:
            self.host.datasets.entry(name)
        self._check_chains()
        self._check_teacher()
        self._check_params()
        if not c.train:
            dynamic = [m for m in c.methods if self.method_class(m).dynamic]
            if dynamic:
                raise SketchbenchError(f"{{train}}: {dynamic[0]!r} picks canvases with a trained selector; "
                                       "evaluate its upstream untrained instead", settings=("train",))
        self._check_init()
        if not c.datasets:
            raise SketchbenchError("no dataset: pass {datasets} NAME (sketchbench list datasets)", settings=("datasets",))

    def _check_chains(self) -> None:
        """Each upstream chain names registered methods and ends."""
        for name in self.config.methods:
            seen = [name]
            while (up := self.upstream_of(seen[-1])) is not None:
                self.host.methods.entry(up)
                if up in seen:
                    raise SketchbenchError(f"method {name!r}: its upstream chain loops ({' -> '.join([*seen, up])})")
                seen.append(up)

    def _check_teacher(self) -> None:
        c = self.config
        if c.teacher is not None:
            self.host.methods.entry(c.teacher)
            tcls = self.method_class(c.teacher)
            if self.takes_teacher(c.teacher) or tcls.dynamic:
                raise SketchbenchError(
                    f"{{teacher}} {c.teacher!r} is itself a {'dynamic method' if tcls.dynamic else 'student'}; "
                    "pick a teacher method (sketchbench list methods)", settings=("teacher",)
                )
            no_teacher = [m for m in c.methods if not self.takes_teacher(m)]
            if no_teacher and len(no_teacher) == len(c.methods):
                raise SketchbenchError(f"method {no_teacher[0]!r} takes no teacher, but {{teacher}} {c.teacher} was given",
                                       settings=("teacher",))
        for m in c.methods:
            self.teacher_for(m)  # raises when a student has no teacher

    def _check_params(self) -> None:
        """``--param KEY=VALUE`` or ``METHOD.KEY=VALUE``: each key declared by a method that gets it."""
        c = self.config
        for key in c.params:
            target, _, k = key.rpartition(".")
            names = [target] if target else c.methods
            if not any(k in self.method_class(n).params for n in names if n in self.host.methods):
                if target and target not in self.host.methods:
                    self.host.methods.entry(target)
                resolve_params(names[0], self.method_class(names[0]).params, self.preset.name, {k: ""})
        for name in c.methods:
            self.params_for(name)

    def _check_init(self) -> None:
        for name in self.chain_methods():
            self.init_identity(name)
        per_p, blanket_p, per_w, _ = self._specs
        chain = set(self.chain_methods())
        for name in [*per_p, *per_w]:
            if name not in chain:
                raise SketchbenchError(f"{{pretrained}}/{{weights}} name {name!r}, which this run does not train "
                                       f"(it trains {', '.join(sorted(chain))})", settings=("pretrained", "weights"))
        if blanket_p not in (None, NONE) and not any(self.pretrained_for(n) for n in chain):
            raise SketchbenchError(f"{{pretrained}} {blanket_p}: no method of this run has a backbone a weight source can "
                                   f"fill ({', '.join(sorted(chain))} train from scratch)", settings=("pretrained",))
