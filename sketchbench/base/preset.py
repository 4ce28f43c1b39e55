"""The preset: one frozen record of how a run trains, evaluates and measures (canvases, epochs,
batch, limits, latency settings). Every layer reads it (a method from its context, the data for
its limits); presets are written as TOML and loaded by :mod:`sketchbench.run.presets`."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Preset:
    """A loaded preset (:func:`sketchbench.run.presets.load_preset`): read-only, hashable; its
    :meth:`identity` is what enters config hashes and checkpoint keys."""

    name: str
    description: str
    canvases: tuple[int, ...]
    photo_size: int
    epochs: int
    batch_size: int
    lr: float
    max_train_sketches: int
    max_test_sketches: int
    eval_batch_size: int
    latency_repeats: int
    latency_warmup: int
    instances: int
    sketches_per_instance: int
    #: the default ``--pretrained`` for methods with a pretrainable backbone: ``none``, ``auto`` or a source
    pretrained: str = "none"
    #: how latency is measured (sketchbench.measure.latency): the runtime, its threads (0 = torch's
    #: current count) and the encoder's batch; evaluation only, they never change a trained model
    latency_runtime: str = "torch"
    latency_threads: int = 0
    latency_batch: int = 1
    overrides: dict[str, Any] = field(default_factory=dict)

    @property
    def full_canvas(self) -> int:
        """The preset's largest canvas: "full resolution" for teachers."""
        return max(self.canvases)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["canvases"] = list(self.canvases)
        for key in LATENCY_KEYS:  # at their defaults they are left out, so run hashes stay as they were
            if d.get(key) == LATER_KEYS[key]:
                d.pop(key)
        return d

    def identity(self, exclude: tuple[str, ...] = ()) -> dict[str, Any]:
        """The values that make results and trained models differ: no description or override
        list, none of ``exclude``, and no key added after 0.1 while it is at its default (so adding
        a preset key never changes the identity of existing cells and checkpoints)."""
        d = self.to_dict()
        if any(key in LATENCY_KEYS or key == "latency_repeats" for key in exclude):
            # how latency is measured never changes a trained model: the runner's trained-model key
            # excludes latency_repeats/latency_warmup, and with them every latency key
            exclude = (*exclude, *LATENCY_KEYS)
        for key in ("description", "overrides", *exclude):
            d.pop(key, None)
        for key, default in LATER_KEYS.items():
            if d.get(key) == default:
                d.pop(key, None)
        return d


#: preset keys added after the first release, with the default that leaves identities unchanged
LATER_KEYS: dict[str, Any] = {"pretrained": "none", "latency_runtime": "torch", "latency_threads": 0, "latency_batch": 1}
#: the preset keys that say how latency is measured (added later: neutral at their defaults)
LATENCY_KEYS = ("latency_runtime", "latency_threads", "latency_batch")
