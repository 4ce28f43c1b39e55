"""Which machine a number was measured on: a short id of the CPU (model and instruction-set flags)
and the torch build, recorded in every results file.

Float results of the same code differ between CPU types (vectorised kernels round differently,
and the smoke grid's 16-query cells move by whole queries; a pruning criterion's near-ties fall the
other way). A regression baseline is therefore only exact on the machine type that made it:
``compare`` looks for a baseline made on the current machine type first (``NAME-<machine id>.json``
beside ``NAME.json``), as pytest-benchmark keeps its storage per machine.
"""

from __future__ import annotations

import hashlib
import platform
from functools import lru_cache
from typing import Any


@lru_cache(maxsize=1)
def machine_info() -> dict[str, Any]:
    """``{"cpu", "arch", "isa_sha", "id"}``: the CPU model, the architecture, a digest of its
    instruction-set flags, and a 12-hex-digit id of all three with the torch build."""
    model, flags = platform.processor() or "", ""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name" and not model:
                    model = value.strip()
                elif key in ("flags", "Features") and not flags:
                    flags = " ".join(sorted(value.split()))
    except OSError:
        pass
    try:
        import torch

        build = torch.__version__
    except ImportError:  # pragma: no cover - torch is a dependency
        build = "?"
    isa = hashlib.sha256(flags.encode()).hexdigest()[:12]
    ident = hashlib.sha256("|".join([model, platform.machine(), isa, build]).encode()).hexdigest()[:12]
    return {"cpu": model, "arch": platform.machine(), "isa_sha": isa, "id": ident}
