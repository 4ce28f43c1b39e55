"""Join the results files of shards (``run --shard I/N``) into one.

Refused, each in one line: files whose configuration differs (the shard itself aside); the same
file (or the same shard) given twice; an incomplete set of shards (every I of 1..N exactly once,
unless ``allow_partial``); a cell that two shards finished with different numbers (a finished
cell must be the same measurement wherever it appears). Failed cells are kept unless some shard
finished the same cell.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from sketchbench.base.artifacts import stable_hash
from sketchbench.base.errors import SketchbenchError
from sketchbench.results.cells import measurement_difference
from sketchbench.results.schema import cell_id

#: shards of one grid at most (a grid of the paper's size has a few hundred cells)
MAX_SHARDS = 10_000


def config_without_shard(results: dict[str, Any]) -> str:
    cfg = {k: v for k, v in results.get("config", {}).items() if k != "shard"}
    return stable_hash(cfg)


def _config(name: str, results: dict[str, Any]) -> dict[str, Any]:
    config = results.get("config")
    if not isinstance(config, dict) or not config:
        raise SketchbenchError(f"{name} has no 'config' (it was not written by 'sketchbench run'): it cannot be merged, "
                               "since what it measured is unknown")
    return config


def shard_of(name: str, results: dict[str, Any]) -> tuple[int, int] | None:
    """``(i, n)`` of a file's ``config.shard``, checked before it is used: two integers with
    ``1 <= i <= n <= MAX_SHARDS``; ``None`` for a file that is not a shard."""
    shard = _config(name, results).get("shard")
    if shard is None:
        return None
    ok = (isinstance(shard, list | tuple) and len(shard) == 2
          and all(isinstance(x, int) and not isinstance(x, bool) for x in shard))
    if not ok or not 1 <= shard[0] <= shard[1] <= MAX_SHARDS:
        raise SketchbenchError(f"{name}: its shard {shard!r:.40} is not [I, N] with 1 <= I <= N <= {MAX_SHARDS:,}: "
                               "the file is corrupt or was not written by 'sketchbench run --shard'")
    return int(shard[0]), int(shard[1])


def merge(files: list[tuple[str, dict[str, Any]]], allow_partial: bool = False) -> dict[str, Any]:
    if not files:
        raise SketchbenchError("nothing to merge")
    resolved = [str(Path(name).resolve()) for name, _ in files]
    twice = next((name for name, r in zip([n for n, _ in files], resolved) if resolved.count(r) > 1), None)
    if twice is not None:
        raise SketchbenchError(f"{twice} is given twice: each shard must be merged once")
    first_name, first = files[0]
    for name, res in files:
        _config(name, res)
    key = config_without_shard(first)
    shards: dict[int, str] = {}
    total: int | None = None
    for name, res in files:
        if config_without_shard(res) != key:
            raise SketchbenchError(f"{name} was made with a different configuration than {first_name}: refusing to merge")
        shard = shard_of(name, res)
        if shard is None:
            continue
        i, n = shard
        if total is not None and n != total:
            raise SketchbenchError(f"{name} is shard {i}/{n}, but the others are of {total}: refusing to merge")
        total = n
        if i in shards:
            raise SketchbenchError(f"{name} and {shards[i]} are both shard {i}/{n}: each shard must be merged once")
        shards[i] = name
    if total is not None and not allow_partial and len(shards) < total:
        missing = [i for i in range(1, total + 1) if i not in shards][:5]  # total <= MAX_SHARDS
        more = total - len(shards) - len(missing)
        raise SketchbenchError(f"shard(s) {', '.join(f'{i}/{total}' for i in missing)}{f' and {more} more' if more else ''} "
                               "are missing: the merged file would look complete without them (pass --allow-partial to "
                               "merge what is there)")
    merged = copy.deepcopy(first)
    merged["config"].pop("shard", None)
    seen: dict[tuple[str, int], tuple[str, dict[str, Any]]] = {}
    others: list[dict[str, Any]] = []
    for name, res in files:
        for cell in res["cells"]:
            if cell.get("status") != "ok":
                others.append(cell)
                continue
            cid = cell_id(cell)
            if cid in seen:
                prev_name, prev = seen[cid]
                diff = measurement_difference(prev, cell)
                if diff is not None:
                    raise SketchbenchError(
                        f"{cell['method']} @ {cell['canvas']} (seed {cell.get('seed', 0)}) is in {prev_name} and {name} with "
                        f"different {diff} ({prev.get(diff)!r:.40} vs {cell.get(diff)!r:.40}): refusing to merge conflicting results"
                    )
                continue
            seen[cid] = (name, cell)
    others = [c for c in others if cell_id(c) not in seen]
    merged["cells"] = [c for _, c in seen.values()] + others
    merged["merged_from"] = [name for name, _ in files]
    return merged
