"""Join the results files of shards (``run --shard i/N``) into one; refuse files whose
configuration differs (the shard itself aside)."""

from __future__ import annotations

import copy
from typing import Any

from sketchbench.base.artifacts import stable_hash
from sketchbench.base.errors import SketchbenchError
from sketchbench.results.schema import cell_id


def config_without_shard(results: dict[str, Any]) -> str:
    cfg = {k: v for k, v in results.get("config", {}).items() if k != "shard"}
    return stable_hash(cfg)


def merge(files: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    if not files:
        raise SketchbenchError("nothing to merge")
    first_name, first = files[0]
    key = config_without_shard(first)
    merged = copy.deepcopy(first)
    merged["config"].pop("shard", None)
    seen = {cell_id(c): c for c in merged["cells"] if c.get("status") == "ok"}
    others = [c for c in merged["cells"] if c.get("status") != "ok"]
    for name, res in files[1:]:
        if config_without_shard(res) != key:
            raise SketchbenchError(f"{name} was made with a different configuration than {first_name}: refusing to merge")
        for cell in res["cells"]:
            if cell.get("status") == "ok":
                seen.setdefault(cell_id(cell), cell)
            else:
                others.append(cell)
    others = [c for c in others if cell_id(c) not in seen]
    merged["cells"] = list(seen.values()) + others
    merged["merged_from"] = [name for name, _ in files]
    return merged
