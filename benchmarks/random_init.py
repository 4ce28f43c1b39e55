"""What an untrained (randomly initialised) encoder scores: the floor that a trained method must beat.

Builds each method with its defaults, skips training, and evaluates it like any cell (same data,
preset, canvas, metrics) over several seeds. Uses only the public API.

    OMP_NUM_THREADS=1 python benchmarks/random_init.py --dataset qmul-v1-shoes \
        --data-root ../shared/data/qmul-v1 --preset cpu --canvas 96 --seed 0 --seed 1 --seed 2 \
        -m triplet-sn -m holef-sn -m stylevae -m mobilenetv2-sn
"""

from __future__ import annotations

import statistics
from pathlib import Path

import click
import torch

from sketchbench.measure.evaluate import evaluate
from sketchbench.testing import build_method, tiny_data
from sketchbench.training import seed_everything


def _sd(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


@click.command()
@click.option("--method", "-m", "methods", multiple=True, required=True)
@click.option("--dataset", "-d", default="synthetic")
@click.option("--data-root", type=click.Path(path_type=Path), default=None)
@click.option("--preset", "-p", default="cpu")
@click.option("--canvas", "-c", type=int, default=96)
@click.option("--seed", "seeds", multiple=True, type=int, default=(0, 1, 2))
def main(methods, dataset, data_root, preset, canvas, seeds) -> None:
    rows = []
    for name in methods:
        acc1, acc10 = [], []
        for seed in seeds:
            seed_everything(seed)
            data = tiny_data(dataset, preset, seed=seed, root=data_root)
            method = build_method(name, preset=preset, seed=seed)
            with torch.inference_mode():
                cell = evaluate(method, data, canvas)
            acc1.append(cell["acc1"])
            acc10.append(cell["acc10"])
        rows.append(f"| {name} (random init) | {canvas}x{canvas} | {statistics.fmean(acc1):.2f} ± {_sd(acc1):.2f} | "
                    f"{statistics.fmean(acc10):.2f} ± {_sd(acc10):.2f} |")
    print(f"| method | canvas | {dataset} Top1 (%) | Top10 (%) |\n|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
