"""torchrun: two gloo processes train through the same code path as one process.

Each process takes its slice of every global triplet batch and the trainer's gradients are
averaged across processes by torch's DDP reducer (bucketed, during backward), so with a model free of batch statistics (ConvNeXt uses LayerNorm) and no
random augmentation, 2 processes reproduce 1 process with the same seed and global batch.
(With BatchNorm, each process normalises over its local slice, as plain DDP does; results then
differ by the usual DDP-vs-single-process amount — see docs/distributed.md.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed unavailable")


def _run(tmp_path, nproc: int) -> dict:
    out = tmp_path / f"n{nproc}.json"
    env = dict(os.environ, OMP_NUM_THREADS="1", SKETCHBENCH_CACHE_DIR=str(tmp_path / f"cache{nproc}"))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--master_port", str(29500 + nproc + os.getpid() % 1000),
           "-m", "sketchbench.cli", "run", "-m", "triplet-timm", "-d", "tiny", "-p", "smoke",
           "--param", "backbone=test_convnext", "--param", "augment=false", "--canvas", "32", "--set", "epochs=3",
           "-o", str(out)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(out.read_text())


def test_two_gloo_processes_match_one(tmp_path):
    one = _run(tmp_path, 1)["cells"][0]
    two = _run(tmp_path, 2)
    assert len(two["cells"]) == 1  # rank 0 alone wrote the results file
    cell = two["cells"][0]
    assert cell["status"] == "ok" and one["status"] == "ok"
    assert cell["num_queries"] == one["num_queries"]  # no query counted twice by padding
    assert cell["acc1"] == pytest.approx(one["acc1"], abs=1e-6)
    assert cell["mean_rank"] == pytest.approx(one["mean_rank"], abs=1e-4)


def test_gather_in_order_drops_padding_duplicates(tmp_path):
    script = tmp_path / "g.py"
    script.write_text(
        "import torch, torch.distributed as dist\n"
        "from sketchbench.method.distributed import gather_in_order\n"
        "dist.init_process_group('gloo')\n"
        "x = torch.arange(7 * 2, dtype=torch.uint8).view(7, 2)\n"
        "out = gather_in_order(lambda b: b.float() * 2, x, 2)\n"
        "assert out.shape == (7, 2), out.shape\n"
        "assert torch.equal(out, x.float() * 2)\n"
        "print('ok', dist.get_rank())\n"
        "dist.destroy_process_group()\n"
    )
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "3",
                           "--master_port", str(29600 + os.getpid() % 1000), str(script)],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("ok") == 3


_STEP_SCRIPT = """
import sys, torch
from sketchbench.method.distributed import init_from_env, local_slice, shutdown, world
from sketchbench.training import Trainer
init_from_env(torch.device("cpu"))
torch.manual_seed(0)
net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
spare = torch.nn.Linear(3, 3)  # in the trainer, in no loss: its gradient stays None, Adam leaves it
trainer = Trainer([*net.parameters(), *spare.parameters()], lr=0.05, device=torch.device("cpu"))
calls = []
if world()[1] > 1:
    from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook
    def counting(state, bucket):
        calls.append(len(bucket.parameters()))
        return allreduce_hook(state, bucket)
    trainer._sync._ddp.register_comm_hook(None, counting)
x, y = torch.randn(5, 4), torch.randn(5, 1)
for _ in range(3):
    idx = local_slice(torch.arange(5))  # 3 and 2 items: the slices weigh by their share
    trainer.step(((net(x[idx]) - y[idx]) ** 2).mean(), len(idx), 5)
if world()[0] == 0:
    torch.save({"net": [p.detach() for p in net.parameters()], "spare": spare.weight.detach(),
                "spare_grad": spare.weight.grad, "calls": calls}, sys.argv[1])
shutdown()
"""


def test_bucketed_gradient_sync_equals_one_process_step(tmp_path):
    """Three Adam steps on a global batch of 5 split 3/2 over two gloo processes equal one process
    on the whole batch; each step's gradients travel in one bucket (one all-reduce, not one per
    parameter), and a parameter no loss uses keeps a None gradient, as in one process."""
    script = tmp_path / "step.py"
    script.write_text(_STEP_SCRIPT)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    one, two = tmp_path / "one.pt", tmp_path / "two.pt"
    proc = subprocess.run([sys.executable, str(script), str(one)], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                           "--master_port", str(29700 + os.getpid() % 1000), str(script), str(two)],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Warning" not in proc.stderr, proc.stderr[-2000:]  # DDP's unused-parameter search stays quiet
    a, b = torch.load(one), torch.load(two)
    for p1, p2 in zip(a["net"], b["net"], strict=True):
        assert torch.allclose(p1, p2, atol=1e-6), (p1 - p2).abs().max()
    assert b["spare_grad"] is None and torch.equal(a["spare"], b["spare"])
    assert len(b["calls"]) == 3 and b["calls"][0] >= 6  # one bucket per step holds every parameter
