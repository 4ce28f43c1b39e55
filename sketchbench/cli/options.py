"""Helpers the commands share: the plugin host, canvas/shard/name parsing."""

from __future__ import annotations

from typing import Any

from sketchbench.base.errors import SketchbenchError


def plugin_host() -> Any:
    """The process-wide plugin host (loaded on first use)."""
    from sketchbench.host.plugins import get_host

    return get_host()


def canvas_option(value: tuple[str, ...], preset) -> list[int] | None:
    from sketchbench.run.presets import check_canvas

    if not value or "all" in value:
        return None
    return [check_canvas(v) for v in value]


def parse_shard(value: str | None) -> tuple[int, int]:
    if value is None:
        return (1, 1)
    try:
        i, n = (int(x) for x in value.split("/"))
    except ValueError:
        raise SketchbenchError(f"--shard {value!r}: expected I/N, e.g. 1/4") from None
    if n < 1 or not 1 <= i <= n:
        raise SketchbenchError(f"--shard {value!r}: need 1 <= I <= N")
    return (i, n)


def expand_names(names: tuple[str, ...], registry) -> list[str]:
    out: list[str] = []
    for n in names:
        for part in n.split(","):
            part = part.strip()
            if part == "all":
                out += registry.names()
            elif part:
                out.append(registry.entry(part).name)
    return list(dict.fromkeys(out))


