"""Hyper-parameters a method declares, with defaults per preset, validated ``--param`` values.

Every numeric parameter declares the range that makes sense (``min``/``max``) or its ``choices``:
``--param epochs=-5`` or ``--param lr=inf`` would otherwise train for nothing, or for ever, and
print a normal-looking row. A parameter whose ``0`` means "the preset's value" says so with
``zero_is_preset=True`` (its help then says it, in one wording).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sketchbench.base.errors import SketchbenchError, did_you_mean

#: :attr:`Param.added_default` when a parameter's default never changed
UNCHANGED: Any = type("Unchanged", (), {"__repr__": lambda self: "UNCHANGED"})()


@dataclass(frozen=True)
class Param:
    """One declared hyper-parameter. Its type is the default's type."""

    default: Any
    help: str = ""
    choices: tuple[Any, ...] | None = None
    #: default overrides per preset, e.g. ``{"smoke": 1}``
    presets: Mapping[str, Any] = field(default_factory=dict)
    #: the sketchbench version that added this parameter to an existing method: while it has its
    #: default value it stays out of the method's identity (config hashes, cache keys), so adding a
    #: parameter never changes the identity of existing results and checkpoints
    since: str | None = None
    #: the default it was added with (``since``), when the default changed later: identities then leave
    #: the parameter out at *that* value, so what was made before the change keeps its identity and the
    #: new default is a new one (``UNCHANGED``: the default never changed)
    added_default: Any = UNCHANGED
    #: the smallest and largest value that makes sense (numbers)
    min: float | None = None
    max: float | None = None
    #: ``0`` means "the preset's value" (epochs, lr, ...): allowed whatever ``min`` says
    zero_is_preset: bool = False

    @property
    def description(self) -> str:
        """The help with its range and the meaning of 0, as listings print it."""
        parts = [self.help]
        if self.zero_is_preset:
            parts.append("0 = the preset's value")
        if self.min is not None or self.max is not None:
            lo = "" if self.min is None else f"{self.min:g} ≤ "
            hi = "" if self.max is None else f" ≤ {self.max:g}"
            parts.append(f"range {lo}value{hi}")
        return "; ".join(p for p in parts if p)

    def check(self, name: str, value: Any, shown: Any = None) -> Any:
        """``value`` if it is allowed for this parameter, else one line naming it."""
        shown = value if shown is None else shown
        if self.choices is not None and value not in self.choices:
            raise SketchbenchError(f"{{params}} {name}={shown!r}: must be one of {', '.join(map(str, self.choices))}",
                                   settings=("params",))
        if isinstance(value, float) and not math.isfinite(value):
            raise SketchbenchError(f"{{params}} {name}={shown!r}: must be a finite number", settings=("params",))
        if isinstance(value, int | float) and not isinstance(value, bool):
            if self.zero_is_preset and value == 0:
                return value
            if self.min is not None and value < self.min:
                raise SketchbenchError(f"{{params}} {name}={shown!r}: must be at least {self.min:g}"
                                       + (" (or 0 for the preset's value)" if self.zero_is_preset else ""),
                                       settings=("params",))
            if self.max is not None and value > self.max:
                raise SketchbenchError(f"{{params}} {name}={shown!r}: must be at most {self.max:g}", settings=("params",))
        return value

    def default_for(self, preset: str) -> Any:
        return self.presets.get(preset, self.default)

    def parse(self, name: str, raw: Any) -> Any:
        kind = type(self.default)
        if isinstance(raw, str) and kind is not str:
            try:
                if kind is bool:
                    if raw.lower() not in ("1", "0", "true", "false", "yes", "no"):
                        raise ValueError
                    value: Any = raw.lower() in ("1", "true", "yes")
                elif self.default is None:
                    value = raw
                else:
                    value = kind(raw)
            except ValueError:
                raise SketchbenchError(f"{{params}} {name}={raw!r}: expected a {kind.__name__}",
                                       settings=("params",)) from None
        else:
            value = raw
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        return self.check(name, value, raw)


def resolve_params(
    method: str, declared: Mapping[str, Param], preset: str, given: Mapping[str, Any]
) -> dict[str, Any]:
    """Defaults for the preset, overridden by the given values; unknown keys are refused."""
    for key in given:
        if key not in declared:
            hint = did_you_mean(key, declared) if declared else " It declares no parameters."
            raise SketchbenchError(f"method {method!r} has no parameter {key!r}." + hint)
    out = {k: p.default_for(preset) for k, p in declared.items()}
    for key, raw in given.items():
        out[key] = declared[key].parse(key, raw)
    return out


def identity_params(declared: Mapping[str, Param], preset: str, values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` without the parameters added later (``since``) that are at the default they were
    added with (their preset default, or ``added_default`` where the default changed since)."""
    def added_with(p: Param) -> Any:
        return p.default_for(preset) if p.added_default is UNCHANGED else p.added_default

    return {k: v for k, v in values.items()
            if not (k in declared and declared[k].since is not None and v == added_with(declared[k]))}


def parse_key_values(items: tuple[str, ...] | list[str], option: str) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise SketchbenchError(f"{option} {item!r}: expected KEY=VALUE")
        out[key.strip()] = value.strip()
    return out
