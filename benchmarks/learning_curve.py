"""Test accuracy after every epoch of a Sketch-a-Net teacher's training (triplet-sn, holef-sn): does
training beat the random-init floor, and when does it peak? Uses only public pieces of the method
(its trainer, loss and embedding) and the shared triplet loop, so the epochs are exactly ``run``'s.

    OMP_NUM_THREADS=1 python benchmarks/learning_curve.py -m triplet-sn -d qmul-v1-shoes \
        --data-root ../shared/data/qmul-v1 -p cpu -c 96 --epochs 10 --param lr=1e-4

Prints one Markdown row per epoch (epoch 0 = untrained): last-batch loss, acc@1, acc@10.
"""

from __future__ import annotations

from pathlib import Path

import click
import torch

from sketchbench.measure.evaluate import evaluate
from sketchbench.method.params import parse_key_values
from sketchbench.testing import build_method, tiny_data
from sketchbench.training import seed_everything, triplet_epochs


@click.command()
@click.option("--method", "-m", default="triplet-sn", help="a Sketch-a-Net teacher: triplet-sn or holef-sn")
@click.option("--dataset", "-d", default="qmul-v1-shoes")
@click.option("--data-root", type=click.Path(path_type=Path), default=None)
@click.option("--preset", "-p", default="cpu")
@click.option("--canvas", "-c", type=int, default=96)
@click.option("--epochs", type=int, default=10)
@click.option("--seed", type=int, default=0)
@click.option("--param", "params", multiple=True, metavar="KEY=VALUE")
def main(method, dataset, data_root, preset, canvas, epochs, seed, params) -> None:
    seed_everything(seed)
    data = tiny_data(dataset, preset, seed=seed, root=data_root)
    m = build_method(method, preset=preset, seed=seed, **parse_key_values(params, "--param"))
    if not all(hasattr(m, a) for a in ("make_trainer", "loss", "embed")):
        raise click.UsageError(f"{method} is not a Sketch-a-Net teacher (needs make_trainer, loss, embed)")
    steps = -(-len(data.pairs("train")) // m.ctx.preset.batch_size)
    print(f"{method} on {dataset} @ {canvas}, preset {preset}, seed {seed}, params {dict(m.p)}\n")
    print("| epoch | loss | acc@1 (%) | acc@10 (%) |\n|---|---|---|---|")
    with torch.inference_mode():
        cell = evaluate(m, data, canvas)
    print(f"| 0 (untrained) | - | {cell['acc1']:.2f} | {cell['acc10']:.2f} |", flush=True)
    trainer = m.make_trainer(m.ctx.preset.lr)
    m.modules().train()
    for i, b in enumerate(triplet_epochs(data, trainer, epochs=epochs, canvases=[canvas], batch_size=m.ctx.preset.batch_size, seed=seed,
                                         augment=m.p.get("augment", True))):
        fp, fn = m.embed(b.pos), m.embed(b.neg)
        trainer.step(sum(m.loss(m.embed(s), fp, fn) for s in b.sketches.values()) / len(b.sketches))
        if (i + 1) % steps == 0:
            with torch.inference_mode():
                cell = evaluate(m, data, canvas)
            m.modules().train()
            print(f"| {(i + 1) // steps} | {trainer.last_loss:.3f} | {cell['acc1']:.2f} | {cell['acc10']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
