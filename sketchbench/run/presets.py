"""Presets are data (``sketchbench/presets/*.toml``), not code: loaded and checked here into the
frozen :class:`~sketchbench.base.preset.Preset` record; every value can be overridden with
``--set KEY=VALUE``."""

from __future__ import annotations

import dataclasses
import math
import tomllib
from importlib import resources
from typing import Any

from sketchbench.base.errors import SketchbenchError, did_you_mean
from sketchbench.base.preset import LATER_KEYS, Preset

MAX_CANVAS = 1024


def preset_names() -> list[str]:
    files = resources.files("sketchbench").joinpath("presets")
    return sorted(p.name[:-5] for p in files.iterdir() if p.name.endswith(".toml"))


def default_preset(device: str = "auto") -> str:
    """The preset a run gets when none is named: ``paper`` on CUDA; on a CPU ``cpu-imagenet`` (the
    CPU recipe from ImageNet starts) when an offline weight source is installed, ``cpu`` otherwise."""
    import torch

    if device != "cpu" and torch.cuda.is_available():
        return "paper"
    from sketchbench.method.pretrained import sources

    offline = [s for s in sources() if not s.online and any(s.available(b) for b in s.backbones if "*" not in b)]
    return "cpu-imagenet" if offline else "cpu"


#: a preset chosen by default (not named) that needs weights -> the preset to run when they are missing
FALLBACK_PRESET = {"cpu-imagenet": "cpu"}


def fit_machine(preset: Preset) -> None:
    """Refuse preset values this machine cannot honour (checked for a new run, not when a recorded
    run is rebuilt): more latency threads than it has cores."""
    import os

    cores = os.cpu_count() or 1
    if preset.latency_threads > cores:
        raise SketchbenchError(f"preset value latency_threads={preset.latency_threads}: this machine has {cores} "
                               "cores (0 = torch's current count)")


def check_canvas(value: Any) -> int:
    """A canvas size: a positive integer up to 1024."""
    try:
        c = int(str(value))
    except ValueError:
        raise SketchbenchError(f"canvas {value!r} is not a positive integer") from None
    if c <= 0 or c > MAX_CANVAS or str(value).strip() not in (str(c), f"+{c}"):
        raise SketchbenchError(f"canvas {value!r} must be an integer between 1 and {MAX_CANVAS}")
    return c


def _coerce(key: str, raw: Any, like: Any) -> Any:
    if isinstance(like, tuple):
        parts = raw if isinstance(raw, list | tuple) else str(raw).replace(",", " ").split()
        return tuple(check_canvas(p) for p in parts)
    if isinstance(raw, str):
        try:
            if isinstance(like, bool):
                if raw.lower() not in ("1", "0", "true", "false", "yes", "no"):
                    raise ValueError
                return raw.lower() in ("1", "true", "yes")
            return type(like)(raw)
        except ValueError:
            raise SketchbenchError(
                f"preset value {key}={raw!r} is not a valid {type(like).__name__}"
            ) from None
    return raw


def load_preset(name: str, overrides: dict[str, str] | None = None) -> Preset:
    names = preset_names()
    if name not in names:
        raise SketchbenchError(f"unknown preset {name!r}." + did_you_mean(name, names))
    text = resources.files("sketchbench").joinpath("presets", f"{name}.toml").read_text()
    data = tomllib.loads(text)
    data["canvases"] = tuple(check_canvas(c) for c in data["canvases"])
    for key, default in LATER_KEYS.items():
        data.setdefault(key, default)
    fields = {f.name for f in dataclasses.fields(Preset)} - {"name", "overrides"}
    for key, raw in (overrides or {}).items():
        if key not in fields:
            raise SketchbenchError(f"unknown preset key {key!r}." + did_you_mean(key, fields))
        data[key] = _coerce(key, raw, data[key])
    if data.get("latency_runtime", "torch") != "torch":
        from sketchbench.measure.latency import check_runtime

        check_runtime(str(data["latency_runtime"]))
    for key, (lo, hi, why) in RANGES.items():
        value = data.get(key)
        if value is None or isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if isinstance(value, float) and not math.isfinite(value):
            raise SketchbenchError(f"preset value {key}={value}: must be a finite number")
        if value < lo or value > hi:
            raise SketchbenchError(f"preset value {key}={value}: must be between {lo:g} and {hi:g} ({why})")
    check_work(data)
    return Preset(name=name, overrides=dict(overrides or {}), **data)


#: sketches a generated dataset may have (instances x sketches_per_instance): 12x the paper preset's;
#: each takes ~0.05-0.2 s to draw on one core
MAX_GENERATED_SKETCHES = 20_000
#: pixels of one batch of images (a batch x its canvas or photo size squared): 8x the paper preset's
MAX_BATCH_PIXELS = 2**26


def check_work(values: dict[str, Any]) -> None:
    """Values each within its range can still multiply into work that never ends or memory no machine
    has: refuse the products up front (one line naming the keys), and a preset without canvases."""
    if not values.get("canvases"):
        raise SketchbenchError("preset value canvases is empty: a run would evaluate nothing")
    generated = int(values["instances"]) * int(values["sketches_per_instance"])
    if generated > MAX_GENERATED_SKETCHES:
        raise SketchbenchError(f"preset values instances={values['instances']} x sketches_per_instance="
                               f"{values['sketches_per_instance']} ask for {generated:,} generated sketches, more than "
                               f"{MAX_GENERATED_SKETCHES:,}: lower one of them")
    canvas, photo = max(values["canvases"]), int(values["photo_size"])
    for key, images, size in (("eval_batch_size", int(values["eval_batch_size"]), max(canvas, photo)),
                              ("batch_size", 3 * int(values["batch_size"]), max(canvas, photo))):
        if images * size * size > MAX_BATCH_PIXELS:
            raise SketchbenchError(f"preset value {key}={values[key]} at {size} x {size} pixels makes batches of "
                                   f"{images * size * size:,} pixels, more than {MAX_BATCH_PIXELS:,}: lower {key}")


#: the range of every numeric preset value, and why (a value outside trains for nothing, measures
#: nothing, or exhausts memory, while printing a normal-looking row)
RANGES: dict[str, tuple[float, float, str]] = {
    "photo_size": (8, 1024, "photos are decoded at this size: 1024 px already takes 3 MB a photo"),
    "epochs": (1, 10000, "0 epochs trains nothing"),
    "batch_size": (2, 4096, "a triplet batch of 1 is dropped: nothing would train"),
    "lr": (1e-12, 10.0, "a learning rate of 0 trains nothing"),
    "max_train_sketches": (0, 10**8, "0 = the whole split"),
    "max_test_sketches": (0, 10**8, "0 = the whole split; fewer than 2 photos cannot be scored"),
    "eval_batch_size": (1, 8192, "the evaluation batch"),
    "latency_repeats": (1, 100000, "at least one timed repeat"),
    "latency_warmup": (0, 100000, "warm-up runs before timing"),
    "latency_threads": (0, 4096, "0 = torch's current thread count"),
    "latency_batch": (1, 4096, "queries per encoder call"),
    "instances": (2, 100000, "a generated dataset needs two photos to retrieve among"),
    "sketches_per_instance": (1, 1000, "sketches per generated photo"),
}
