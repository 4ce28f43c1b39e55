"""Rendering throughput on ONE core: sketches/s of the renderer, the raster downscale and the vectoriser.

    OMP_NUM_THREADS=1 python benchmarks/render_speed.py [--data ../shared/data] [--limit 300] [--repeat 3]

* ChairV2 vectors (``chairv2/ChairV2_Coordinate``) → ``render_sketch`` at 32, 64, 128, 256;
* QMUL-V1 shoe rasters (``qmul-v1/shoes/shoes_sketch_db_test.mat``) → ``downscale_raster`` at the
  same canvases (256 is the native size: a copy) and → ``vectorise``.

The process is pinned to one CPU (where the OS allows) with one BLAS/OpenMP/torch thread. Each
measurement is repeated and the best and median wall-clock rates are printed (on a shared
machine the best pass is the one least disturbed by other processes), with the rate per CPU-second
of this process, which other load hardly changes. This is a benchmark, not a test.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import pickle  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Sequence  # noqa: E402
from datetime import date  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import scipy.io  # noqa: E402
import torch  # noqa: E402

from sketchbench import Sketch, downscale_raster, render_sketch, vectorise  # noqa: E402

CANVASES = (32, 64, 128, 256)
DEFAULT_DATA = Path(os.environ.get("SKETCHBENCH_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


class ArraysOnlyUnpickler(pickle.Unpickler):
    """Admits numpy's array reconstruction and nothing else (the ChairV2 pickle is a dict of
    float arrays): a pickle that names any other callable is refused, not executed."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str) -> object:
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from the ChairV2 pickle")


def load_chairv2(root: Path, limit: int) -> list[Sketch]:
    with (root / "chairv2" / "ChairV2_Coordinate").open("rb") as fh:
        coords = ArraysOnlyUnpickler(fh).load()
    return [Sketch.from_xyp(coords[k]) for k in sorted(coords)[:limit]]


def load_qmul(root: Path, limit: int) -> np.ndarray:
    return scipy.io.loadmat(root / "qmul-v1" / "shoes" / "shoes_sketch_db_test.mat")["data"][:limit]


def rate(fn: Callable[[object], object], items: Sequence[object], repeat: int) -> tuple[float, float, float]:
    """(best, median) items per wall-clock second over ``repeat`` passes, and items per CPU
    second of this process in the best pass (what the code costs, whatever else runs)."""
    rates, cpu_rates = [], []
    for _ in range(repeat):
        start, cpu = time.perf_counter(), time.process_time()
        for item in items:
            fn(item)
        rates.append(len(items) / (time.perf_counter() - start))
        cpu_rates.append(len(items) / max(time.process_time() - cpu, 1e-9))
    return max(rates), statistics.median(rates), max(cpu_rates)


def pin_one_core() -> str:
    torch.set_num_threads(1)
    if hasattr(os, "sched_setaffinity"):
        cpu = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpu})
        return f"pinned to CPU {cpu}"
    return "not pinned (no sched_setaffinity)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the shared data root")
    ap.add_argument("--limit", type=int, default=300, help="sketches per dataset")
    ap.add_argument("--repeat", type=int, default=3, help="passes per measurement")
    args = ap.parse_args()

    pinned = pin_one_core()
    print(f"# render_speed  {date.today()}  {platform.processor() or platform.machine()}  "
          f"{os.cpu_count()} CPUs visible, {pinned}, torch threads {torch.get_num_threads()}")
    chairs = load_chairv2(args.data, args.limit)
    shoes = load_qmul(args.data, args.limit)
    for s in chairs[:20]:  # warm-up (imports, allocator)
        render_sketch(s, 64)
    print(f"# ChairV2 vectors: {len(chairs)} sketches, {np.mean([len(s) for s in chairs]):.0f} points, "
          f"{np.mean([s.num_strokes for s in chairs]):.1f} strokes on average; QMUL-V1 rasters: {len(shoes)}")
    print(f"{'what':<34}{'canvas':>8}{'best /s':>12}{'median /s':>12}{'per CPU-s':>12}")
    for canvas in CANVASES:
        best, med, cpu = rate(lambda s, c=canvas: render_sketch(s, c), chairs, args.repeat)
        print(f"{'render_sketch (ChairV2 vectors)':<34}{canvas:>8}{best:>12.0f}{med:>12.0f}{cpu:>12.0f}")
    for canvas in CANVASES:
        best, med, cpu = rate(lambda r, c=canvas: downscale_raster(r, c), list(shoes), args.repeat)
        print(f"{'downscale_raster (QMUL rasters)':<34}{canvas:>8}{best:>12.0f}{med:>12.0f}{cpu:>12.0f}")
    vec_items = list(shoes[: max(1, args.limit // 3)])
    best, med, cpu = rate(vectorise, vec_items, args.repeat)
    print(f"{'vectorise (QMUL rasters, 256)':<34}{'-':>8}{best:>12.1f}{med:>12.1f}{cpu:>12.1f}")
    strokes = [vectorise(r).num_strokes for r in vec_items]
    print(f"# vectorise: {len(vec_items)} rasters, strokes per sketch min {min(strokes)} / "
          f"median {int(np.median(strokes))} / max {max(strokes)}")


if __name__ == "__main__":
    main()
