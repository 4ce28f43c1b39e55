"""What does one B-VGG16-SN training step cost with the early VGG16 stages frozen and cached?

A step is the teacher's: a batch of triplets (``--batch`` sketches, their positive and negative
photos: 3 × batch images at ``--canvas``), forward, triplet loss, backward and an Adam step. Three
ways are timed on the same random images (weights do not change the cost):

- ``whole``: the whole VGG16 trains (the ``paper`` preset's way);
- ``conv1-3`` / ``conv1-4`` frozen: the cached trunk's way (``--param freeze_stages=3|4``): a step
  runs only the rest of the network on stored trunk outputs. The one-off cost of computing those
  outputs (per image, forward only) is timed too, and the whole run is estimated from both.

Times are CPU seconds of this process (``time.process_time``; with one thread, the time on one core),
so a shared machine does not inflate them; the wall time of the same steps is printed beside.

This is a benchmark, not a test::

    OMP_NUM_THREADS=1 python benchmarks/frozen_trunk_cost.py                      # canvas 96
    OMP_NUM_THREADS=1 python benchmarks/frozen_trunk_cost.py --canvas 128 --skip-whole
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from sketchbench_teachers.frozen_trunk import trunk_outputs

from sketchbench.training import create_backbone, split_backbone, to_input, triplet_loss

#: ChairV2 as released: training sketches and photos; the cpu-imagenet preset's batch and epochs
CHAIRV2_TRAIN_SKETCHES, CHAIRV2_TRAIN_PHOTOS = 952, 300


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--canvas", type=int, default=96, help="canvas (and photo size) in pixels (default 96)")
    ap.add_argument("--batch", type=int, default=16, help="triplets per step (default 16, the cpu-imagenet preset's)")
    ap.add_argument("--steps", type=int, default=3, help="timed steps per way (median reported; default 3)")
    ap.add_argument("--epochs", type=int, default=10, help="epochs for the per-run estimate (default 10)")
    ap.add_argument("--skip-whole", action="store_true", help="do not time the whole network (≈ 8 s a step at 96)")
    ap.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    return ap.parse_args(argv)


def time_steps(net: torch.nn.Module, inputs: torch.Tensor, batch: int, steps: int) -> tuple[float, float]:
    """Median CPU and wall seconds of one triplet step of ``net`` on ``inputs`` (3 × batch rows: a, p, n)."""
    opt = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=1e-4)
    cpu, wall = [], []
    for i in range(steps + 1):  # the first step warms up allocators and is not counted
        c0, w0 = time.process_time(), time.perf_counter()
        emb = torch.nn.functional.normalize(net(inputs), dim=-1)
        loss = triplet_loss(emb[:batch], emb[batch : 2 * batch], emb[2 * batch :], 0.2)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if i:
            cpu.append(time.process_time() - c0)
            wall.append(time.perf_counter() - w0)
    return statistics.median(cpu), statistics.median(wall)


def time_trunk(early: torch.nn.Module, images: torch.Tensor) -> tuple[float, tuple[int, ...]]:
    """CPU seconds per uint8 image of the frozen trunk as the cache computes it
    (:func:`sketchbench_teachers.frozen_trunk.trunk_outputs`), and its output shape."""
    trunk_outputs(early, images[:4])  # warm-up
    c0 = time.process_time()
    out = trunk_outputs(early, images)
    return (time.process_time() - c0) / len(images), tuple(out.shape[1:])


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.manual_seed(0)
    c, b = args.canvas, args.batch
    raw = torch.randint(0, 256, (3 * b, 3, c, c), dtype=torch.uint8)
    images = to_input(raw, 3)
    steps_per_epoch = -(-CHAIRV2_TRAIN_SKETCHES // b)
    trunk_images = 2 * (CHAIRV2_TRAIN_SKETCHES + CHAIRV2_TRAIN_PHOTOS)  # plain and flipped views
    out: dict = {"canvas": c, "batch": b, "threads": torch.get_num_threads(), "torch": torch.__version__,
                 "steps_per_epoch": steps_per_epoch, "epochs": args.epochs, "ways": {}}
    print(f"VGG16, canvas {c}, {b} triplets a step ({3 * b} images), {torch.get_num_threads()} thread(s)")
    if not args.skip_whole:
        net = create_backbone("vgg16")
        s, w = time_steps(net, images, b, args.steps)
        out["ways"]["whole"] = {"step_s": s, "step_wall_s": w, "run_s": s * steps_per_epoch * args.epochs}
        print(f"  whole network     step {s:7.3f} s (wall {w:6.2f})   "
              f"{args.epochs}-epoch ChairV2 run ≈ {s * steps_per_epoch * args.epochs / 60:6.1f} min")
    for stages in (3, 4):
        net = create_backbone("vgg16")
        early, rest = split_backbone(net, stages)
        for p in early.parameters():
            p.requires_grad_(False)
        per_image, shape = time_trunk(early, raw)
        with torch.no_grad():
            feats = early(images)
        s, w = time_steps(rest, feats, b, args.steps)
        run = s * steps_per_epoch * args.epochs + per_image * trunk_images
        out["ways"][f"conv1-{stages}"] = {"step_s": s, "step_wall_s": w, "trunk_s_per_image": per_image,
                                          "trunk_shape": shape, "trunk_s_chairv2": per_image * trunk_images, "run_s": run}
        print(f"  conv1-{stages} frozen   step {s:7.3f} s (wall {w:6.2f})   trunk {per_image * 1000:6.1f} ms/image → "
              f"{shape}, ChairV2 once {per_image * trunk_images:5.0f} s; {args.epochs}-epoch run ≈ {run / 60:6.1f} min")
    if args.json:
        args.json.write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
