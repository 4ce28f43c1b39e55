"""The results file: one JSON per run, written atomically after every cell, under a lock.

Top level: ``schema``, ``schema_version``, ``sketchbench_version``, ``git_commit``,
``environment``, ``config`` (the first run's, resolved) and ``config_hash``, ``runs`` (the config
hash of every run that wrote cells into the file), ``flops_convention``, ``cells``. Each cell is a
:class:`~sketchbench.results.cells.Cell` (typed, validated on load; its own ``run`` record says
which configuration made it). See docs/results.md.

Version 2 added per-cell ``run``, ``init``, ``trained`` and ``warnings`` and the top-level
``runs``; version-1 files are read as they are (the new keys take their defaults).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import glob
import json
import os
import platform
import subprocess
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from sketchbench.base.artifacts import atomic_write_bytes, remove_orphaned_temporaries
from sketchbench.base.bounded import read_json
from sketchbench.base.errors import SketchbenchError
from sketchbench.base.machine import machine_info
from sketchbench.measure.flops import FLOPS_CONVENTION
from sketchbench.results.cells import Cell, describe, measurement_difference

SCHEMA = "sketchbench.results"
SCHEMA_VERSION = 2


def git_commit() -> str | None:
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5, check=False
        )
        commit = out.stdout.strip()
        if out.returncode != 0 or not commit:
            return None
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=here, capture_output=True, text=True,
            timeout=5, check=False,
        ).stdout.strip()
        return commit + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def environment(device: str) -> dict[str, Any]:
    import numpy
    import timm
    import torch
    import torch_pruning

    env = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "timm": timm.__version__,
        "torch_pruning": getattr(torch_pruning, "__version__", "?"),
        "numpy": numpy.__version__,
        "device": device,
        "cpu_threads": torch.get_num_threads(),
        "machine": machine_info(),
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        env["gpu"] = torch.cuda.get_device_name(0)
        env["cuda"] = torch.version.cuda
    return env


def new_results(config: dict[str, Any], config_hash: str, device: str) -> dict[str, Any]:
    from sketchbench.base.version import __version__

    return {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "sketchbench_version": __version__,
        "git_commit": git_commit(),
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "environment": environment(device),
        "config": config,
        "config_hash": config_hash,
        "flops_convention": FLOPS_CONVENTION,
        "cells": [],
    }


def write_results(path: Path, results: dict[str, Any]) -> None:
    """Atomically (temporary file + rename), so a killed run never leaves half a file."""
    results["updated"] = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    data = json.dumps(results, indent=1, sort_keys=False, allow_nan=False, default=str).encode()
    try:
        atomic_write_bytes(Path(path), data + b"\n")
    except OSError as exc:
        raise SketchbenchError(f"cannot write results to {str(path)!r}: {exc.strerror or exc}") from None


#: bytes of one results file at most (a paper-sized grid with per-query ranks is a few MB)
MAX_RESULTS_BYTES = 32 * 2**20
RESULTS_BYTES_ENV = "SKETCHBENCH_MAX_RESULTS_BYTES"


def _results_limit() -> int:
    raw = os.environ.get(RESULTS_BYTES_ENV, "").strip()
    try:
        return int(raw) if raw else MAX_RESULTS_BYTES
    except ValueError:
        raise SketchbenchError(f"{RESULTS_BYTES_ENV}={raw!r} is not an integer") from None


def load_results(path: str | Path) -> dict[str, Any]:
    """Read and validate a results file; one clear line for anything unusable: not a regular file
    (``/dev/zero``, a FIFO), over ``SKETCHBENCH_MAX_RESULTS_BYTES``, not JSON, nested too deep, a cell
    out of range or contradicting its own ranks, or one cell twice with different numbers."""
    p = Path(path)
    where = f"results file {str(p)!r}"
    data = read_json(p, _results_limit(), where, RESULTS_BYTES_ENV)
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise SketchbenchError(f"{str(p)!r} is not a sketchbench results file")
    version = data.get("schema_version")
    if not isinstance(version, int):
        raise SketchbenchError(f"results file {str(p)!r} has no schema version")
    if version > SCHEMA_VERSION:
        raise SketchbenchError(
            f"results file {str(p)!r} has schema version {version}, newer than this sketchbench reads "
            f"({SCHEMA_VERSION}): upgrade sketchbench"
        )
    cells = data.get("cells")
    if not isinstance(cells, list) or not all(isinstance(c, dict) for c in cells):
        raise SketchbenchError(f"results file {str(p)!r} has no valid 'cells' list")
    typed = [Cell.from_json(cell, f"results file {str(p)!r}: {describe(cell, i)}") for i, cell in enumerate(cells)]
    distinct_cells([(str(p), c) for c in typed])  # one cell twice with different numbers: the file contradicts itself
    if not isinstance(data.get("config", {}), dict):
        raise SketchbenchError(f"results file {str(p)!r}: 'config' is not an object")
    return data


def distinct_cells(cells: Iterable[tuple[str, Cell]]) -> list[Cell]:
    """Each cell once: a finished cell found again (same config hash and seed) with the same numbers
    counts once; with different numbers it is refused, naming both places (a report would otherwise
    print one and drop the other). A failed cell is dropped when the same cell finished somewhere."""
    done: dict[tuple[str, int], tuple[str, Cell]] = {}
    failed: dict[tuple[str, int], Cell] = {}
    for where, cell in cells:
        if not cell.ok:
            failed.setdefault(cell.id, cell)
            continue
        if cell.id in done:
            first_where, first = done[cell.id]
            diff = measurement_difference(first.model_dump(), cell.model_dump())
            if diff is not None:
                a, b = getattr(first, diff), getattr(cell, diff)
                place = first_where if first_where == where else f"{first_where} and {where}"
                raise SketchbenchError(
                    f"{first.key.label()} (seed {cell.seed}) is in {place} twice with different {diff} "
                    f"({a!r:.40} vs {b!r:.40}): the files contradict each other; remove one of the two")
            continue
        done[cell.id] = (where, cell)
    return [c for _, c in done.values()] + [c for k, c in failed.items() if k not in done]


def cells_of(results: dict[str, Any]) -> list[Cell]:
    """The typed cells of a loaded results file (validated by :func:`load_results`), each once."""
    return distinct_cells(("this file", Cell.model_validate(c)) for c in results["cells"])


def load_cells(paths: Iterable[str | Path]) -> list[Cell]:
    """The cells of several files, each once (see :func:`distinct_cells`)."""
    return distinct_cells((str(path), cell) for path in paths for cell in cells_of(load_results(path)))


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """An exclusive lock on ``path`` (a ``.lock`` file beside it) for a read-modify-write: two runs
    writing the same results file wait for each other instead of losing each other's cells."""
    lock_path = Path(str(path) + ".lock")
    try:
        fh = open(lock_path, "a+")
    except OSError as exc:
        raise SketchbenchError(f"cannot lock {str(path)!r}: {exc.strerror or exc}") from None
    try:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX: no locking
            yield
            return
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        # with the lock held no other run writes this file: a temporary of it older than a few
        # minutes is a killed writer's (write_results' temporaries live for milliseconds)
        remove_orphaned_temporaries(path.parent.glob(f"{glob.escape(path.name)}.*.tmp"), older_than_s=300)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
    finally:
        fh.close()


def record_cell(path: Path, record: dict[str, Any], header: dict[str, Any]) -> dict[str, Any]:
    """Put one cell into the results file at ``path`` under its lock: the file is read again (another
    run may have written cells since), the cell replaces any with the same id, and the file is
    written atomically. ``header`` makes a new file (and names the run in ``runs``). Returns the file."""
    with locked(path):
        results = load_results(path) if path.exists() else dict(header, cells=[])
        runs = results.setdefault("runs", [results.get("config_hash")])
        if header.get("config_hash") not in runs:
            runs.append(header.get("config_hash"))
        key = (str(record.get("config_hash")), int(record.get("seed", 0)))
        results["cells"] = [c for c in results["cells"] if cell_id(c) != key]
        results["cells"].append(record)
        write_results(path, results)
    return results


def baseline_for(path: str | Path) -> Path:
    """The baseline to compare against: ``NAME-<machine id>.json`` beside ``NAME.json`` when one was
    made on this machine type (see :mod:`sketchbench.base.machine`), else ``NAME.json`` itself."""
    p = Path(path)
    own = p.with_name(f"{p.stem}-{machine_info()['id']}{p.suffix}")
    return own if own.is_file() else p


def cell_id(cell: dict[str, Any]) -> tuple[str, int]:
    """``(config_hash, seed)`` of a raw JSON cell."""
    return str(cell.get("config_hash")), int(cell.get("seed", 0))
