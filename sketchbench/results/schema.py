"""The results file: one JSON per run, written atomically after every cell.

Top level: ``schema``, ``schema_version``, ``sketchbench_version``, ``git_commit``,
``environment``, ``config`` (resolved) and ``config_hash``, ``flops_convention``, ``cells``.
Each cell: ``method, teacher, dataset, canvas (int or "dynamic"), preset, seed, status, error,
acc1, acc10, mean_rank, gflops, params_m, latency_ms, train_seconds, flops_convention,
config_hash`` (of everything but the seed), ``params`` and optional extras. See docs/results.md.
"""

from __future__ import annotations

import datetime as _dt
import json
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

from sketchbench.base.artifacts import atomic_write_bytes
from sketchbench.base.errors import SketchbenchError
from sketchbench.base.machine import machine_info
from sketchbench.measure.flops import FLOPS_CONVENTION

SCHEMA = "sketchbench.results"
SCHEMA_VERSION = 1

CELL_KEYS = (
    "method", "teacher", "dataset", "canvas", "preset", "seed", "status", "error",
    "acc1", "acc10", "mean_rank", "gflops", "params_m", "latency_ms", "train_seconds",
    "flops_convention", "config_hash",
)


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
    from sketchbench import __version__

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


def load_results(path: str | Path) -> dict[str, Any]:
    """Read and validate a results file; one clear line for anything unusable."""
    p = Path(path)
    try:
        text = p.read_text()
    except FileNotFoundError:
        raise SketchbenchError(f"results file {str(p)!r} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SketchbenchError(f"results file {str(p)!r} cannot be read: {exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SketchbenchError(f"results file {str(p)!r} is not valid JSON (truncated?): {exc.msg} at line {exc.lineno}") from None
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
    for i, cell in enumerate(cells):
        missing = [k for k in ("method", "dataset", "canvas", "status") if k not in cell]
        if missing:
            raise SketchbenchError(f"results file {str(p)!r}: cell {i} lacks {', '.join(missing)}")
    return data


def baseline_for(path: str | Path) -> Path:
    """The baseline to compare against: ``NAME-<machine id>.json`` beside ``NAME.json`` when one was
    made on this machine type (see :mod:`sketchbench.base.machine`), else ``NAME.json`` itself."""
    p = Path(path)
    own = p.with_name(f"{p.stem}-{machine_info()['id']}{p.suffix}")
    return own if own.is_file() else p


def cell_id(cell: dict[str, Any]) -> tuple[str, int]:
    return str(cell.get("config_hash")), int(cell.get("seed", 0))


def print_err(msg: str) -> None:
    print(msg, file=sys.stderr)
