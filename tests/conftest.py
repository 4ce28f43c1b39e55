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
