"""What a run is asked to do: the :class:`RunConfig` record (from the CLI, a benchmark TOML, the Python
API or a results cell's ``run`` record) and the device it names.

A run's configuration is data: :meth:`RunConfig.resolved` is what its results file says it was (and
what the run's hash is taken of), :meth:`RunConfig.rebuild_record` what each cell keeps so that the
commands that use trained models (export, retrieve, demo) can rebuild it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from sketchbench.base.errors import SketchbenchError
from sketchbench.base.preset import Preset
from sketchbench.method.weights import file_sha256


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
            "weights": [f"{k}={file_digest(v)}" if k else file_digest(v) for k, v in split_specs(self.weights, "weights")]
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


def file_digest(path: Path | str | None) -> str | None:
    """The first 16 hex digits of a ``--weights`` file's sha256 (hashed once per process)."""
    if path is None:
        return None
    p = Path(path)
    if not p.is_file():
        raise SketchbenchError(f"{{weights}} {str(p)!r}: no such file", settings=("weights",))
    return file_sha256(p)[:16]


def split_specs(values: Sequence[str], setting: str) -> list[tuple[str | None, str]]:
    """``VALUE`` or ``METHOD=VALUE`` items of a repeatable setting (``pretrained``, ``weights``) →
    ``(method or None, value)``."""
    out = []
    for raw in values:
        key, sep, value = str(raw).partition("=")
        if sep and not key.strip():
            raise SketchbenchError(f"{{{setting}}} {raw!r}: expected VALUE or METHOD=VALUE", settings=(setting,))
        out.append((key.strip(), value.strip()) if sep else (None, str(raw).strip()))
    return out


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise SketchbenchError("{device} cuda was asked for, but no CUDA device is available", settings=("device",))
    try:
        return torch.device(name)
    except RuntimeError:
        raise SketchbenchError(f"unknown device {name!r} (use auto, cpu or cuda)") from None
