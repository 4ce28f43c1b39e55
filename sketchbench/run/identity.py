"""Every identity a run computes, in one place: a cell's ``config_hash`` (its configuration without
the seed: how cells are matched across results files), a run's hash (its results file's name), a
trained model's checkpoint key and an untrained model's memo key, and the variant label that keeps
the rows of a sweep apart.

Everything expensive is keyed by what it depends on (``stable_hash`` of a dict), so changing any
input (a parameter, the data, the teacher's identity, the initial weights) is a new key, and
nothing else is. Parameters and preset keys added after a release stay out of identities while at
their defaults, so existing results and checkpoints keep theirs (``tests/test_identity_pins.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sketchbench.base.artifacts import stable_hash
from sketchbench.run.config import RunConfig
from sketchbench.run.plan import GridCell, Plan

#: preset keys that only say how a model is evaluated: a trained model's key leaves them out
EVALUATION_ONLY = ("latency_repeats", "latency_warmup", "eval_batch_size")


def config_hash(config: RunConfig) -> str:
    """A run's hash: its resolved configuration (``results/run-<hash>.json``)."""
    return stable_hash(config.resolved())


class Identity:
    """The keys of one plan's cells and models."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan

    def cell_hash(self, cell: GridCell) -> str:
        plan = self.plan
        return stable_hash(
            {
                "method": cell.method,
                "teacher": cell.teacher,
                "dataset": cell.dataset,
                "canvas": cell.canvas,
                "preset": plan.preset.identity(),
                "params": plan.identity_params(cell.method),
                "teacher_params": plan.identity_params(cell.teacher) if cell.teacher else None,
                **({"upstream_params": up} if (up := plan.upstream_given(cell.method)) else {}),
                **plan.init_identity(cell.method),
                # what the teacher and upstream started from, when any is not random init (a selector
                # over a pretrained student is another cell than over one trained from scratch)
                **({"chain_init": chain} if (chain := self.chain_init(cell)) else {}),
                **({} if plan.config.train else {"trained": False}),
            }
        )

    def chain_init(self, cell: GridCell) -> dict[str, Any]:
        """The init identities of the methods ``cell.method`` is built on, if any is not the default."""
        plan = self.plan
        if not plan.config.train:
            return {}
        members, todo = [], [cell.method]
        while todo:
            name = todo.pop()
            cls = plan.method_class(name)
            nxt = [x for x in ((cell.teacher if cls.needs_teacher else None), plan.upstream_of(name)) if x]
            members += [m for m in nxt if m not in members]
            todo += nxt
        init = {m: plan.init_identity(m) for m in members}
        default = {"pretrained": False, "weights": None}
        return init if any(v != default for v in init.values()) else {}

    def trained_key(self, name: str, *, teacher_key: str | None, upstream_key: str | None, data_fingerprint: str,
                    canvases: Sequence[int], seed: int) -> str:
        """The checkpoint key of ``name`` trained on ``canvases`` from the data, teacher and upstream
        given by their own identities (the key is also the model's ``trained_key``)."""
        plan = self.plan
        return stable_hash(
            {
                "method": name,
                "version": plan.method_class(name).version,
                "params": plan.identity_params(name),
                "teacher": teacher_key,
                "upstream": upstream_key,
                "data": data_fingerprint,
                "preset": plan.preset.identity(exclude=EVALUATION_ONLY),
                "canvases": canvases,
                "seed": seed,
                **plan.init_identity(name),
            }
        )

    def untrained_key(self, name: str, seed: int) -> str:
        """The memo key of ``name`` as initialised (``train=False``): never trained, never stored."""
        plan = self.plan
        return stable_hash({"untrained": name, "params": plan.params_for(name), "seed": seed, **plan.init_identity(name)})

    def variant(self, name: str) -> str:
        """A short label of what this run changed for ``name`` (given params, preset overrides):
        rows of a sweep stay apart in reports."""
        plan = self.plan
        parts = [f"{k}={v}" for k, v in plan.given(name).items()]
        parts += [f"{k}={v}" for k, v in plan.upstream_given(name).items()]
        if name in plan.config.methods:
            parts += [f"{k}={v}" for k, v in plan.preset.overrides.items()]
        if not plan.config.train:
            # the floors beside every trained row: an ImageNet start untrained is "zero-shot"
            parts.insert(0, "zero-shot" if plan.init_identity(name)["pretrained"] else "random init")
        return ",".join(parts)
