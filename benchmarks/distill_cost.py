"""What does distillation cost? SketchyNetV1 (triplet + triplet-RKD, cached teacher outputs) vs the
plain MobileNetV2-SN student (triplet only), same data, preset, backbone, canvases and seed.

The teacher is trained first and its outputs (training-split embeddings at the full canvas) are
put in the cache before any timing; sketch renders are warmed too. Then the two students are
trained alternately ``--repeats`` times each and the median wall times compared. The target
(issue): distillation with cached teacher outputs takes at most 1.2x the plain student's time.
A "cold" SketchyNetV1 run (teacher outputs computed inside ``train``) is reported separately.

This is a benchmark, not a timed test::

    OMP_NUM_THREADS=1 python benchmarks/distill_cost.py                       # synthetic, cpu preset, 2 epochs
    OMP_NUM_THREADS=1 python benchmarks/distill_cost.py -d tiny -p smoke --epochs 3
    python benchmarks/distill_cost.py --device cuda -p cpu --epochs 4 --json /tmp/distill.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from sketchbench.base.artifacts import ArtifactCache
from sketchbench.data.rundata import RunData
from sketchbench.run.presets import load_preset
from sketchbench.testing import build_method, tiny_data
from sketchbench.training import seed_everything

TARGET_RATIO = 1.2


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-d", "--dataset", default="synthetic", help="registered dataset (default: synthetic)")
    ap.add_argument("-p", "--preset", default="cpu", help="preset (default: cpu)")
    ap.add_argument("--epochs", type=int, default=2, help="student epochs (default 2; 0 = the preset's)")
    ap.add_argument("--teacher", default="triplet-sn", help="teacher method (default: triplet-sn)")
    ap.add_argument("--teacher-epochs", type=int, default=1, help="teacher epochs (its quality is irrelevant here)")
    ap.add_argument("--backbone", default="mobilenetv2_100", help="student backbone (both students)")
    ap.add_argument("--repeats", type=int, default=2, help="timed trainings per student (median is reported)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = leave as is)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    return ap.parse_args(argv)


def timed_train(name: str, data: RunData, args: argparse.Namespace, teacher=None) -> float:
    seed_everything(args.seed)  # identical initial weights and batches for both students
    m = build_method(name, preset=args.preset, seed=args.seed, device=args.device, backbone=args.backbone,
                     epochs=args.epochs)
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    m.train(data, m.ctx.preset.canvases, teacher=teacher)
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from sketchbench_students import teacher_cache

    base = tiny_data(args.dataset, args.preset, seed=args.seed)
    preset = load_preset(args.preset)
    with tempfile.TemporaryDirectory(prefix="distill-cost-") as tmp:
        data = RunData(base.dataset, preset, ArtifactCache(Path(tmp)), seed=args.seed)
        for c in preset.canvases:  # renders are shared by both students: not part of either's cost
            data.sketches("train", c)
        seed_everything(args.seed)
        teacher = build_method(args.teacher, preset=args.preset, seed=args.seed, device=args.device,
                               epochs=args.teacher_epochs)
        t0 = time.perf_counter()
        teacher.train(data, (preset.full_canvas,))
        teacher.eval()
        teacher_s = time.perf_counter() - t0

        # cold: the first SketchyNetV1 computes (and caches) the teacher's outputs inside train()
        teacher_cache.clear_memory()
        cold = timed_train("sketchynet-v1", data, args, teacher)
        plain, distilled = [], []
        for _ in range(args.repeats):  # alternate, so drifts in machine load hit both
            plain.append(timed_train("mobilenetv2-sn", data, args))
            distilled.append(timed_train("sketchynet-v1", data, args, teacher))

    med_plain, med_kd = statistics.median(plain), statistics.median(distilled)
    ratio = med_kd / med_plain
    out = {
        "dataset": args.dataset, "preset": args.preset, "epochs": args.epochs or preset.epochs,
        "train_sketches": len(data.items("train")), "canvases": list(preset.canvases),
        "backbone": args.backbone, "teacher": args.teacher, "device": args.device,
        "threads": torch.get_num_threads(), "teacher_train_s": teacher_s,
        "mobilenetv2_sn_s": plain, "sketchynet_v1_s": distilled, "sketchynet_v1_cold_s": cold,
        "ratio": ratio, "cold_ratio": cold / med_plain, "target_ratio": TARGET_RATIO, "ok": ratio <= TARGET_RATIO,
    }
    print(f"{args.dataset}/{args.preset}, {out['train_sketches']} train sketches, canvases {out['canvases']}, "
          f"{out['epochs']} epochs, {args.backbone}, teacher {args.teacher}, {args.device}, {out['threads']} threads")
    print(f"  mobilenetv2-sn (triplet only)          median {med_plain:8.2f} s  {[round(x, 2) for x in plain]}")
    print(f"  sketchynet-v1 (cached teacher outputs) median {med_kd:8.2f} s  {[round(x, 2) for x in distilled]}")
    print(f"  sketchynet-v1 cold (teacher pass inside)       {cold:8.2f} s")
    print(f"  ratio {ratio:.3f} (target <= {TARGET_RATIO}): {'OK' if out['ok'] else 'TOO SLOW'}; cold {out['cold_ratio']:.3f}")
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    return 0 if out["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
