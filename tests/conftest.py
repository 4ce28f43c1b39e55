import os
from pathlib import Path

import pytest
import torch

# tests run tiny tensors, where thread synchronisation costs more than it saves (measured 7x
# slower with 2 threads on a loaded 2-core machine): one thread per test process
torch.set_num_threads(1)

SHARED_DATA = Path(os.environ.get("SKETCHBENCH_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


@pytest.fixture
def shared_data() -> Path:
    """The real datasets in ../shared/data; the test is skipped when they are absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA} (set SKETCHBENCH_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SKETCHBENCH_CACHE_DIR", str(tmp_path / "cache"))


# -- hostile inputs under a memory cap -------------------------------------------------------------
#: what one hostile input may cost on top of a process that has imported everything (docs/guarantees.md)
HOSTILE_MEMORY = 2**30
HOSTILE_SECONDS = 60
_BASELINE: list[int] = []


def _address_space_after_imports() -> int:
    """Virtual memory (bytes) of a Python process that imported the whole CLI stack: torch alone maps
    gigabytes of address space it never touches, so a cap is this plus the hostile input's allowance."""
    if not _BASELINE:
        import subprocess
        import sys

        code = ("import sketchbench.cli.main, sketchbench.run.loop, torch, timm, scipy.io, PIL.Image, svgelements\n"
                "print([int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmPeak')][0] * 1024)")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
        _BASELINE.append(int(out.stdout.strip().splitlines()[-1]))
    return _BASELINE[0]


@pytest.fixture
def capped():
    """``capped(args, env=None, memory=HOSTILE_MEMORY, seconds=HOSTILE_SECONDS)`` runs ``python ARGS`` in a
    subprocess whose address space is capped at the import baseline plus ``memory`` and that is killed
    after ``seconds``: a hostile input that expands past the cap fails the test (MemoryError or a kill)
    instead of swapping the machine. Returns the CompletedProcess (text)."""
    import resource
    import subprocess
    import sys

    if not Path("/proc/self/status").exists():
        pytest.skip("needs /proc to measure the address space")

    def run(args, env=None, memory=HOSTILE_MEMORY, seconds=HOSTILE_SECONDS, cwd=None):
        cap = _address_space_after_imports() + memory

        def limit():
            resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

        full_env = {**os.environ, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1", **(env or {})}
        return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=seconds,
                              preexec_fn=limit, env=full_env, cwd=cwd)

    return run
