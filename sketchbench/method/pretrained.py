"""``--pretrained``: which registered weight source fills a backbone (``auto``: the first installed
one, offline sources first; or the one named), what its identity is, and loading it (complete or
refused). The sources themselves are :class:`~sketchbench.method.weights.WeightSource` plugins."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sketchbench.base.errors import SketchbenchError, did_you_mean
from sketchbench.host.registry import Registry
from sketchbench.method.registries import get_host
from sketchbench.method.weights import (
    AUTO,
    NONE,
    WeightsIdentity,
    WeightsMissing,
    WeightSource,
    check_backbone,
    load_complete,
)

if TYPE_CHECKING:
    from torch import nn


def _registry() -> Registry[type[WeightSource]]:
    return get_host().weights


def source(name: str) -> WeightSource:
    """The registered weight source ``name``, instantiated."""
    entry = _registry().entry(name)
    cls = entry.load()  # a WeightSource subclass: the registry checks it
    obj = cls()
    obj.name = entry.name  # type: ignore[misc]  # the registered name is the source's name
    return obj


def sources() -> list[WeightSource]:
    """Every registered source, offline ones first, then by name."""
    out = [source(e.name) for e in _registry()]
    return sorted(out, key=lambda s: (s.online, s.name))


def resolve(backbone: str, choice: str | None) -> WeightSource | None:
    """The source that fills ``backbone`` for ``--pretrained`` value ``choice`` (``auto``, a source
    name, ``none``/``None``), or one clear line saying which sources would serve it."""
    if choice in (None, NONE, ""):
        return None
    check_backbone(backbone)
    if choice != AUTO:
        registry = _registry()
        if choice not in registry:
            raise SketchbenchError(f"unknown weight source {choice!r}." + did_you_mean(choice, [*registry.names(), AUTO, NONE]))
        src = source(choice)
        if not src.serves(backbone):
            raise SketchbenchError(f"weight source {choice!r} has no weights for backbone {backbone!r} "
                                   f"(it serves {', '.join(src.backbones) or 'nothing'})")
        if not src.available(backbone):
            raise WeightsMissing(f"weight source {choice!r} is not installed here: {src.install_hint()}")
        return src
    serving = [s for s in sources() if s.serves(backbone)]
    if not serving:
        listed = "; ".join(f"{s.name} ({', '.join(s.backbones)})" for s in sources()) or "none registered"
        raise SketchbenchError(f"no weight source serves backbone {backbone!r}: sources are {listed}")
    for s in serving:
        if s.available(backbone):
            return s
    hints = "; ".join(f"{s.name}: {s.install_hint()}" for s in serving)
    raise WeightsMissing(f"no pretrained weights for backbone {backbone!r} are installed here ({hints})")


def identity(backbone: str, choice: str | None) -> WeightsIdentity | None:
    """What ``choice`` resolves to for ``backbone``, without building anything (cache keys, cells)."""
    src = resolve(backbone, choice)
    return None if src is None else src.identity(backbone)


def load_pretrained(model: nn.Module, backbone: str, choice: str | None) -> WeightsIdentity | None:
    """Fill ``model`` (the timm ``backbone``) from the source ``choice`` resolves to; complete or refused."""
    src = resolve(backbone, choice)
    if src is None:
        return None
    ident = src.identity(backbone)
    state = src.state_dict(backbone, model)
    load_complete(model, state, f"weights of {backbone!r} from source {src.name!r}")
    return ident
