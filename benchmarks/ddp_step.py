"""What does a torchrun process group cost per training step? One triplet step of a real backbone
(the trainer's code path: forward of anchor, positive and negative, triplet loss, ``Trainer.step``)
timed in one process on the global batch and in two gloo processes on half of it each, with the
gradients averaged by DDP's bucketed reducer (``GradientSync``, what the trainer does) and, for
comparison, by one all-reduce per parameter (what the trainer did before).

Each process runs one thread. The overhead is the two-process step time minus half the
one-process step time (perfect scaling), i.e. what communication and synchronisation add; on a
machine with other work running, the medians carry that load too (the load average is printed). This
is a benchmark, not a timed test::

    OMP_NUM_THREADS=1 python benchmarks/ddp_step.py                              # mobilenetv2_100 @ 128, batch 16
    OMP_NUM_THREADS=1 python benchmarks/ddp_step.py --backbone vgg16 --canvas 64 --batch 8 --steps 5
    python benchmarks/ddp_step.py --json /tmp/ddp_step.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backbone", default="mobilenetv2_100", help="timm backbone (default: mobilenetv2_100)")
    ap.add_argument("--canvas", type=int, default=128, help="image side in pixels (default: 128)")
    ap.add_argument("--batch", type=int, default=16, help="global batch of triplets (default: 16)")
    ap.add_argument("--steps", type=int, default=15, help="timed steps after 3 warm-up steps (default: 15)")
    ap.add_argument("--json", type=Path, default=None, help="also write the timings here")
    ap.add_argument("--worker", choices=["bucketed", "per-parameter"], default=None, help=argparse.SUPPRESS)
    ap.add_argument("--worker-out", type=Path, default=None, help=argparse.SUPPRESS)
    return ap.parse_args(argv)


def worker(args: argparse.Namespace) -> None:
    """One process of a measurement (alone, or one of torchrun's two)."""
    import torch.distributed as dist

    from sketchbench.method.distributed import init_from_env, local_slice, shutdown, world
    from sketchbench.training import Trainer, create_backbone, triplet_loss

    torch.set_num_threads(1)
    init_from_env(torch.device("cpu"))
    rank, size = world()
    torch.manual_seed(0)
    net = create_backbone(args.backbone)
    trainer = Trainer(net.parameters(), lr=1e-4, device=torch.device("cpu"), desc="ddp-step")
    if args.worker == "per-parameter":
        trainer._sync = None  # the old path below: backward, then one all-reduce per parameter
    images = torch.rand(3, args.batch, 3, args.canvas, args.canvas)
    times = []
    for step in range(3 + args.steps):
        idx = local_slice(torch.arange(args.batch))
        t0 = time.perf_counter()
        a, p, n = (F.normalize(net(images[i][idx]), dim=-1) for i in range(3))
        loss = triplet_loss(a, p, n, 0.2)
        if args.worker == "per-parameter" and size > 1:
            trainer.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            for q in net.parameters():
                q.grad.mul_(1.0 / size)
                dist.all_reduce(q.grad)
            trainer.optimizer.step()
        else:
            trainer.step(loss, len(idx), args.batch)
        if step >= 3:
            times.append(time.perf_counter() - t0)
    comm = communication(list(net.parameters())) if size > 1 and args.worker == "bucketed" else {}
    if rank == 0 and args.worker_out is not None:
        params = sum(q.numel() for q in net.parameters())
        args.worker_out.write_text(json.dumps({"median_s": statistics.median(times), "min_s": min(times), "params": params,
                                               "tensors": len(list(net.parameters())), "comm": comm}))
    shutdown()


def communication(params: list[torch.nn.Parameter], repeats: int = 30) -> dict[str, float]:
    """The all-reduce alone, without compute: the gradients' bytes as one all-reduce per tensor, and
    as one flat buffer (what a DDP bucket sends; these gradients fit in one 25 MB bucket)."""
    import torch.distributed as dist

    grads = [torch.randn_like(q) for q in params]
    flat = torch.cat([g.flatten() for g in grads])

    def timed(fn) -> list[float]:
        out = []
        for _ in range(repeats):
            dist.barrier()
            t0 = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t0)
        return out

    per = timed(lambda: [dist.all_reduce(g) for g in grads])
    one = timed(lambda: dist.all_reduce(flat))
    return {"per_tensor_median_s": statistics.median(per), "per_tensor_min_s": min(per),
            "flat_median_s": statistics.median(one), "flat_min_s": min(one), "mbytes": flat.numel() * 4 / 1e6}


def measure(args: argparse.Namespace, nproc: int, mode: str, tmp: Path) -> dict:
    out = tmp / f"{mode}-{nproc}.json"
    flags = ["--backbone", args.backbone, "--canvas", str(args.canvas), "--batch", str(args.batch),
             "--steps", str(args.steps), "--worker", mode, "--worker-out", str(out)]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    if nproc == 1:
        cmd = [sys.executable, __file__, *flags]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc),
               "--master_port", str(29400 + os.getpid() % 1000), __file__, *flags]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"ddp_step: {' '.join(cmd[:4])} failed:\n{proc.stderr[-2000:]}")
    return json.loads(out.read_text())


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.worker:
        worker(args)
        return
    with tempfile.TemporaryDirectory() as tmp:
        one = measure(args, 1, "bucketed", Path(tmp))
        bucketed = measure(args, 2, "bucketed", Path(tmp))
        per_param = measure(args, 2, "per-parameter", Path(tmp))
    rows = {
        "1 process (global batch)": one,
        "2 gloo processes, DDP buckets": bucketed,
        "2 gloo processes, one all-reduce per parameter": per_param,
    }
    print(f"{args.backbone} @ {args.canvas}px, global batch {args.batch} triplets, "
          f"{one['params'] / 1e6:.2f} M params in {one['tensors']} tensors, CPU, 1 thread per process, "
          f"{args.steps} steps; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores at the end")
    print(f"{'':48s} {'median (ms)':>12s} {'min (ms)':>9s} {'median - ideal (ms)':>20s}")
    for name, r in rows.items():
        over = "" if name.startswith("1 ") else f"{(r['median_s'] - one['median_s'] / 2) * 1e3:+.1f}"
        print(f"{name:48s} {r['median_s'] * 1e3:12.1f} {r['min_s'] * 1e3:9.1f} {over:>20s}")
    c = bucketed["comm"]
    print(f"all-reduce alone ({c['mbytes']:.1f} MB of gradients, 2 processes, median / min ms): "
          f"one per tensor {c['per_tensor_median_s'] * 1e3:.1f} / {c['per_tensor_min_s'] * 1e3:.1f}, "
          f"one flat buffer {c['flat_median_s'] * 1e3:.1f} / {c['flat_min_s'] * 1e3:.1f}")
    if args.json is not None:
        args.json.write_text(json.dumps({"args": {k: v for k, v in vars(args).items() if not k.startswith("worker")
                                                  and k != "json"}, "rows": rows, "load": os.getloadavg()},
                                        indent=1, default=str))


if __name__ == "__main__":
    main()
