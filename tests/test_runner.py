"""The runner and CLI end to end on the generated ``tiny`` dataset."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from sketchbench import Method, Param, hookimpl
from sketchbench.method.training import Trainer
from sketchbench.results.cells import Cell
from sketchbench.results.schema import load_results
from sketchbench.testing import registered_plugin, run_cli

FAST = ["--param", "backbone=test_efficientnet", "-p", "smoke"]


def _run(tmp_path: Path, *args: str) -> tuple[int, str, str]:
    return run_cli("run", "--cache-dir", str(tmp_path / "cache"), *args)


def test_run_writes_every_key_and_report_prints(tmp_path):
    out = tmp_path / "r.json"
    code, stdout, _ = _run(tmp_path, "-m", "triplet-timm", "-d", "tiny", "--canvas", "32", "--canvas", "48", "-o", str(out), *FAST)
    assert code == 0, stdout
    res = load_results(out)
    for key in ("schema", "schema_version", "sketchbench_version", "git_commit", "environment", "config",
                "config_hash", "flops_convention", "cells"):
        assert key in res
    assert {"python", "torch", "device"} <= set(res["environment"])
    assert [c["canvas"] for c in res["cells"]] == [32, 48]
    for cell in res["cells"]:
        assert set(Cell.model_fields) <= set(cell), set(Cell.model_fields) - set(cell)  # every declared key, written
        assert cell["status"] == "ok" and 0 <= cell["acc1"] <= cell["acc10"] <= 100
        assert cell["gflops"] > 0 and cell["params_m"] > 0 and cell["latency_ms"] > 0
    assert res["cells"][1]["gflops"] > res["cells"][0]["gflops"]
    code, table, _ = run_cli("report", str(out))
    assert code == 0 and "triplet-timm" in table and "32x32" in table and "48x48" in table
    code, md, _ = run_cli("report", str(out), "--format", "markdown")
    assert md.startswith("| Method")
    code, csv_text, _ = run_cli("report", str(out), "--format", "csv")
    assert csv_text.splitlines()[0].startswith("Method,Canvas")


def test_teacher_is_trained_once_and_reused(tmp_path, monkeypatch):
    calls = []
    orig = Method.__init__

    class Student(Method):
        kind = "student"
        needs_teacher = True
        multi_canvas = True
        params = {}

        def __init__(self, ctx):
            super().__init__(ctx)
            self.net = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2), nn.AdaptiveAvgPool2d(1), nn.Flatten())

        def train(self, data, canvases, teacher=None):
            assert teacher is not None
            calls.append(("student", tuple(canvases)))

        def encode_sketch(self, images):
            from sketchbench.method.inputs import to_input
            return self.net(to_input(images))

        encode_photo = encode_sketch

        def sketch_branch(self):
            return self.net

        def modules(self):
            return self.net

    class P:
        @staticmethod
        @hookimpl
        def register_methods(register):
            register("test-student", Student, kind="student", needs_teacher=True)

    orig_train = __import__("sketchbench_teachers.triplet_timm", fromlist=["TimmTriplet"]).TimmTriplet.train

    def counting_train(self, *a, **k):
        calls.append(("teacher",))
        return orig_train(self, *a, **k)

    monkeypatch.setattr("sketchbench_teachers.triplet_timm.TimmTriplet.train", counting_train)
    with registered_plugin(P, "test-student-plugin"):
        code, out, err = _run(tmp_path, "-m", "test-student", "--teacher", "triplet-timm", "-d", "tiny",
                              "--param", "triplet-timm.backbone=test_efficientnet", "-p", "smoke",
                              "-o", str(tmp_path / "s.json"))
        assert code == 0, err
        assert calls.count(("teacher",)) == 1  # trained once, used by both student cells and its own row
        res = load_results(tmp_path / "s.json")
        roles = [(c["method"], c["role"]) for c in res["cells"]]
        assert ("triplet-timm", "teacher") in roles and roles.count(("test-student", "main")) == 2
        # a second run with another output reuses the cached teacher checkpoint: no training at all
        calls.clear()
        code, _, err = _run(tmp_path, "-m", "test-student", "--teacher", "triplet-timm", "-d", "tiny",
                            "--param", "triplet-timm.backbone=test_efficientnet", "-p", "smoke",
                            "-o", str(tmp_path / "s2.json"))
        assert code == 0, err
        assert ("teacher",) not in calls
    del orig


class _Flaky(Method):
    kind = "baseline"
    params = {"nan": Param(False)}

    def __init__(self, ctx):
        super().__init__(ctx)
        self.net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())

    def train(self, data, canvases, teacher=None):
        if canvases == (32,):
            raise RuntimeError("boom at 32")
        trainer = Trainer(self.net.parameters(), lr=0.1, device=self.device, desc="flaky")
        for _ in trainer.epochs(1, 1):
            x = self.net(torch.zeros(1, 3, 8, 8)).sum()
            trainer.step(x * float("nan") if self.p["nan"] else x)

    def encode_sketch(self, images):
        from sketchbench.method.inputs import to_input
        return self.net(to_input(images))

    encode_photo = encode_sketch

    def sketch_branch(self):
        return self.net

    def modules(self):
        return self.net


class _FlakyPlugin:
    @staticmethod
    @hookimpl
    def register_methods(register):
        register("flaky", _Flaky, kind="baseline")


def test_failing_cell_is_recorded_and_grid_goes_on(tmp_path):
    with registered_plugin(_FlakyPlugin, "flaky-plugin"):
        code, out, err = _run(tmp_path, "-m", "flaky", "-d", "tiny", "-p", "smoke", "-o", str(tmp_path / "f.json"))
    assert code == 1
    cells = load_results(tmp_path / "f.json")["cells"]
    assert [c["status"] for c in cells] == ["error", "ok"]
    assert "boom at 32" in cells[0]["error"]
    assert "boom at 32" in out  # the table lists failed cells


def test_nan_loss_is_one_line_error(tmp_path):
    with registered_plugin(_FlakyPlugin, "flaky-plugin"):
        code, out, err = _run(tmp_path, "-m", "flaky", "-d", "tiny", "-p", "smoke", "--canvas", "64",
                              "--param", "nan=true", "-o", str(tmp_path / "n.json"))
    assert code == 1
    cell = load_results(tmp_path / "n.json")["cells"][0]
    assert cell["status"] == "error" and "loss became nan" in cell["error"] and "\n" not in cell["error"]


@pytest.mark.parametrize(
    "args,message",
    [
        (["-m", "no-such-method"], "unknown method 'no-such-method'"),
        (["-m", "triplet-tim"], "Did you mean 'triplet-timm'"),
        (["-m", "triplet-timm", "-d", "nope"], "unknown dataset"),
        (["-m", "triplet-timm"], "no dataset: pass --dataset"),
        (["-m", "triplet-timm", "--canvas", "0"], "canvas '0'"),
        (["-m", "triplet-timm", "--canvas", "4096"], "between 1 and 1024"),
        (["-m", "triplet-timm", "--canvas", "big"], "not a positive integer"),
        (["-m", "triplet-timm", "--teacher", "vgg16-sn"], "takes no teacher"),
        (["-m", "sketchynet-v1", "--teacher", "sketchynet-v2"], "is itself a dynamic method"),
        (["-m", "sketchynet-v1", "--teacher", "b-pkt"], "is itself a student"),
        (["-m", "triplet-timm", "--param", "nope=1"], "has no parameter 'nope'"),
        (["-m", "triplet-timm", "--param", "margin=wide"], "expected a float"),
        (["-m", "triplet-timm", "--set", "epochs=-1"], "preset value epochs=-1: must be between 1 and 10000"),
        (["-m", "triplet-timm", "-p", "huge"], "unknown preset"),
        (["-m", "triplet-timm", "--shard", "3/2"], "--shard"),
        (["-m", "triplet-timm", "--weights", "/no/such/file.pth"], "no such file"),
    ],
)
def test_bad_cli_values_give_one_line(tmp_path, args, message):
    if "-d" not in args and not message.startswith("no dataset"):
        args = [*args, "-d", "tiny"]
    code, out, err = _run(tmp_path, *args, "-o", str(tmp_path / "x.json"))
    assert code == 2, (out, err)
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], err


def test_unwritable_output_is_one_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, _, err = _run(tmp_path, "-m", "triplet-timm", "-d", "tiny", *FAST, "-o", str(blocker / "sub" / "r.json"))
    assert code == 2 and err.strip().startswith("error:") and len(err.strip().splitlines()) == 1


def test_report_bad_files(tmp_path):
    (tmp_path / "t.json").write_text('{"schema": "sketchbench.results", "schema_version": 1, "cel')
    for path, msg in ((tmp_path / "t.json", "not valid JSON"), (tmp_path / "none.json", "does not exist")):
        code, _, err = run_cli("report", str(path))
        assert code == 2 and msg in err and len(err.strip().splitlines()) == 1


def test_killed_run_resumes_without_redoing_finished_cells(tmp_path):
    out = tmp_path / "k.json"
    env = dict(os.environ, SKETCHBENCH_CACHE_DIR=str(tmp_path / "cache"), OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-c", "from sketchbench.cli.main import main; main()", "run", "-m", "triplet-timm", "-d", "tiny",
           "--canvas", "32", "--canvas", "40", "--canvas", "48", "--canvas", "56", "--set", "epochs=3",
           "-o", str(out), *FAST]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    first = None
    while time.time() < deadline:
        if out.exists():
            cells = json.loads(out.read_text())["cells"]
            if cells:
                first = cells[0]
                break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert first is not None, "no cell finished in time"
    killed_cells = json.loads(out.read_text())["cells"]  # the file is whole: written atomically
    assert len(killed_cells) < 4
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    cells = load_results(out)["cells"]
    assert sorted(c["canvas"] for c in cells) == [32, 40, 48, 56]
    assert cells[0] == first  # untouched: not recomputed


def test_save_weights_writes_a_file_that_weights_loads(tmp_path):
    """Pre-train once, start another run from it: the recipe docs/methods.md gives for small datasets."""
    folder = tmp_path / "w"
    code, _, err = run_cli("run", "-m", "triplet-timm", "-d", "tiny", "-p", "smoke", "-c", "32",
                           "--param", "backbone=test_efficientnet", "--save-weights", str(folder),
                           "-o", str(tmp_path / "a.json"))
    assert code == 0, err
    saved = folder / "triplet-timm-tiny-c32-s0.pt"
    assert saved.is_file()
    state = torch.load(saved, weights_only=True)["state_dict"]
    from sketchbench.method.interface import MethodContext
    from sketchbench.method.registries import get_host
    from sketchbench.run.presets import load_preset

    cls = get_host().methods.get("triplet-timm")
    params = {**{k: p.default for k, p in cls.params.items()}, "backbone": "test_efficientnet"}
    m = cls(MethodContext(name="triplet-timm", params=params, preset=load_preset("smoke"),
                          device=torch.device("cpu"), seed=5, weights=saved))
    for k, v in m.modules().state_dict().items():
        assert torch.equal(v, state[k]), k
    code, _, err = run_cli("run", "-m", "triplet-timm", "-d", "tiny", "-p", "smoke", "-c", "32",
                           "--param", "backbone=test_efficientnet", "--weights", str(saved),
                           "-o", str(tmp_path / "b.json"))
    assert code == 0, err


def test_save_weights_to_an_unwritable_place_fails_before_training(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    code, out, err = run_cli("run", "-m", "triplet-timm", "-d", "tiny", "-p", "smoke", "-c", "32",
                             "--param", "backbone=test_efficientnet", "--save-weights", str(blocker / "w"),
                             "-o", str(tmp_path / "r.json"))
    assert code != 0 and "--save-weights" in err and "cannot create the folder" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err + out
    assert not (tmp_path / "r.json").exists()


def test_bench_finds_the_repositorys_benchmarks_from_another_folder(tmp_path, monkeypatch):
    """Run from outside the repository (an editable install), `bench` still lists the paper's tables."""
    from sketchbench.run.bench import bench_names, default_bench_dir

    monkeypatch.chdir(tmp_path)
    assert {"main", "smoke", "latency", "pilot"} <= set(bench_names(default_bench_dir()))
    code, out, _ = run_cli("bench")
    assert code == 0 and "latency" in out
