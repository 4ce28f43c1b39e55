"""--launcher: a grid as submitit jobs (one per model, after the models it builds on).

The local launcher runs the same jobs as Slurm would, as processes here (submitit's LocalExecutor):
teachers are trained once, the results file equals the one-process run's, a killed job is resumed by
launching again with nothing finished redone. The Slurm launcher is checked up to ``sbatch`` (a
stand-in that records what it is given): arrays, ``afterok`` dependencies, resources.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from sketchbench.results.schema import load_results
from sketchbench.testing import run_cli

pytest.importorskip("submitit")

GRID = ["-m", "sketchynet-v2", "-d", "synthetic", "-p", "smoke", "--seed", "0", "--seed", "1"]


def _strip(cells: list[dict]) -> list[dict]:
    """The cells without what is measured in wall time (every ``*_ms``, ``train_seconds``)."""
    return sorted(({k: v for k, v in c.items() if not k.endswith("_ms") and k not in ("train_seconds", "traceback")}
                   for c in cells), key=lambda c: (c["config_hash"], c["seed"]))


def _events(folder: Path) -> list[tuple[str, str, str]]:
    """``(trained|restored, model, checkpoint key)`` from every job log under ``folder``."""
    out = []
    for log in sorted(folder.glob("*/*_log.out")):
        for m in re.finditer(r"^(trained|restored) (.+) \(checkpoint (\w+)\)$", log.read_text(), flags=re.M):
            out.append((m.group(1), m.group(2), m.group(3)))
    return out


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    """The grid run in one process: what the launched grid must equal. A fresh process with one
    thread, as each job is: this test process carries the state earlier tests left behind."""
    tmp = tmp_path_factory.mktemp("one")
    proc = subprocess.run([sys.executable, "-m", "sketchbench.cli", "run", *GRID, "--cache-dir", str(tmp / "cache"),
                           "-o", str(tmp / "one.json")], env=dict(os.environ, OMP_NUM_THREADS="1", TQDM_DISABLE="1"),
                          capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return load_results(tmp / "one.json")["cells"]


def test_launched_grid_trains_each_teacher_once_and_equals_one_process(one_process, tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    out, cache = tmp_path / "grid.json", tmp_path / "cache"
    code, _, err = run_cli("run", *GRID, "--cache-dir", str(cache), "-o", str(out), "--launcher", "local", "--jobs", "2")
    assert code == 0, err
    assert "launch: 6 job(s) on local" in err  # a teacher, SketchyNetV1, SketchyNetV2 per seed
    assert _strip(load_results(out)["cells"]) == _strip(one_process)  # same config hashes, same numbers

    events = _events(out.with_suffix(".jobs"))
    trained = Counter(model for what, model, _ in events if what == "trained")
    teachers = {f"{c['method']} synthetic c{c['canvas']} s{c['seed']}" for c in one_process if c["role"] == "teacher"}
    assert len(teachers) == 2 and all(trained[t] == 1 for t in teachers), trained
    assert len(trained) == 6 and set(trained.values()) == {1}, trained  # every model trained exactly once
    restored = Counter(model for what, model, _ in events if what == "restored")
    assert all(restored[t] == 2 for t in teachers), restored  # by the seed's SketchyNetV1 and V2 jobs
    # the cache holds one checkpoint per trained model, each the one its job logged
    keys = {key for what, _, key in events if what == "trained"}
    assert {p.stem for p in (cache / "checkpoints").glob("*.pt")} == keys

    code, _, err = run_cli("run", *GRID, "--cache-dir", str(cache), "-o", str(out), "--launcher", "local")
    assert code == 0 and "every cell of the grid is finished" in err


def test_a_killed_job_is_resumed_with_nothing_finished_redone(tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    out, cache, first, second = tmp_path / "g.json", tmp_path / "cache", tmp_path / "first", tmp_path / "second"
    grid = ["run", "-m", "sketchynet-v1", "-d", "synthetic", "-p", "smoke", "--cache-dir", str(cache), "-o", str(out),
            "--launcher", "local"]
    driver = subprocess.Popen([sys.executable, "-m", "sketchbench.cli", *grid, "--launch-dir", str(first)],
                              env=dict(os.environ, TQDM_DISABLE="1"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        pid, deadline = None, time.time() + 900
        while pid is None:  # the student's job has restored its teacher: it is training now
            assert driver.poll() is None and time.time() < deadline, driver.communicate()[1][-3000:]
            for log in first.glob("*/*_log.out"):
                text = log.read_text()
                if "sketchbench job sketchynet-v1" in text and "restored " in text:
                    pid = int(re.search(r"pid (\d+)", text).group(1))
            time.sleep(0.2)
        time.sleep(0.5)
        os.kill(pid, signal.SIGKILL)
        _, err = driver.communicate(timeout=600)
    finally:
        if driver.poll() is None:
            driver.kill()
    assert driver.returncode == 1, err
    assert "job failed: sketchynet-v1" in err and "killed" in err and "launch the same command again" in err
    before = load_results(out)["cells"]
    assert [c["role"] for c in before] == ["teacher"]  # the student's cells were never written
    teacher_ckpts = {p: p.stat().st_mtime_ns for p in (cache / "checkpoints").glob("*.pt")}
    assert len(teacher_ckpts) == 1  # the killed student left no checkpoint

    code, _, err = run_cli(*grid, "--launch-dir", str(second))
    assert code == 0, err
    after = load_results(out)["cells"]
    assert [c for c in after if c["role"] == "teacher"] == before  # not evaluated again (same latency too)
    assert sorted(c["canvas"] for c in after if c["method"] == "sketchynet-v1") == [32, 64]
    assert all(c["status"] == "ok" for c in after)
    events = _events(second)
    assert [m for what, m, _ in events if what == "trained"] == ["sketchynet-v1 synthetic c32_64 s0"], events
    assert any(what == "restored" and m.startswith("triplet-sn") for what, m, _ in events)
    assert all(p.stat().st_mtime_ns == t for p, t in teacher_ckpts.items())  # the teacher was not trained again


def test_a_job_of_two_processes_trains_with_ddp(tmp_path, monkeypatch):
    """--gpus 2: each job is two processes (here gloo on CPU) joined by submitit's description of the
    job; they train with DDP and equal one process (no batch statistics, no augmentation)."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    fast = ["run", "-m", "triplet-timm", "-d", "tiny", "-p", "smoke", "--param", "backbone=test_convnext",
            "--param", "augment=false", "--canvas", "32", "--set", "epochs=3", "--cache-dir", str(tmp_path / "cache")]
    code, _, err = run_cli(*fast, "-o", str(tmp_path / "one.json"))
    assert code == 0, err
    code, _, err = run_cli(*fast, "-o", str(tmp_path / "two.json"), "--launcher", "local", "--gpus", "2",
                           "--cache-dir", str(tmp_path / "cache2"))
    assert code == 0, err
    logs = "".join(p.read_text() for p in (tmp_path / "two.jobs").glob("*/*_log.out"))
    assert "process 0 of 2" in logs and "process 1 of 2" in logs
    assert logs.count("trained triplet-timm") == 1  # one line per model: rank 0's
    one, two = (load_results(tmp_path / f"{n}.json")["cells"] for n in ("one", "two"))
    assert len(two) == 1 and two[0]["config_hash"] == one[0]["config_hash"]
    assert two[0]["acc1"] == pytest.approx(one[0]["acc1"], abs=1e-6)
    assert two[0]["mean_rank"] == pytest.approx(one[0]["mean_rank"], abs=1e-4)


FAKE_SBATCH = """#!/bin/sh
n=$(( $(cat "{d}/count" 2>/dev/null || echo 100) + 1 ))
echo $n > "{d}/count"
cp "$1" "{d}/$n.sh"
echo "Submitted batch job $n"
"""


def test_slurm_jobs_follow_the_method_graph(tmp_path, monkeypatch):
    """Teachers first as one array; each student after its own teacher's array task, each selector after
    its student; every job with the resources asked for. (A stand-in sbatch records the scripts.)"""
    bindir, subs = tmp_path / "bin", tmp_path / "subs"
    bindir.mkdir()
    subs.mkdir()
    (bindir / "sbatch").write_text(FAKE_SBATCH.format(d=subs))
    (bindir / "srun").write_text("#!/bin/sh\nexit 0\n")
    for f in bindir.iterdir():
        f.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    code, _, err = run_cli("run", *GRID, "-o", str(tmp_path / "g.json"), "--launcher", "slurm", "--partition", "gpu",
                           "--gpus", "1", "--cpus", "4", "--mem", "16", "--time", "90", "--no-wait")
    assert code == 0, err
    scripts = {int(p.stem): p.read_text() for p in subs.glob("*.sh")}
    assert sorted(scripts) == [101, 102, 103, 104, 105]  # one teacher array, then one job per student/selector
    assert "#SBATCH --array=0-1%2" in scripts[101] and "--dependency" not in scripts[101]
    submitted = dict(re.findall(r"submitted (\S+): (.+?)(?: after \d+ job\(s\))?$", err, flags=re.M))
    by_name = {v: k for k, v in submitted.items()}
    for seed in (0, 1):
        teacher = by_name[f"triplet-sn synthetic c64 s{seed}"]
        v1 = by_name[f"sketchynet-v1<-triplet-sn synthetic c32_64 s{seed}"]
        v2 = by_name[f"sketchynet-v2<-triplet-sn synthetic c32_64 s{seed}"]
        assert teacher == f"101_{seed}"
        assert f"#SBATCH --dependency=afterok:{teacher}\n" in scripts[int(v1)]
        assert f"#SBATCH --dependency=afterok:{v1}\n" in scripts[int(v2)]
    for text in scripts.values():
        for line in ("--partition=gpu", "--gpus-per-node=1", "--cpus-per-task=4", "--mem=16384M", "--time=90",
                     "--ntasks-per-node=1", "--job-name=sketchbench-"):
            assert f"#SBATCH {line}" in text, (line, text)
        assert "export OMP_NUM_THREADS=4" in text
    assert all("--kill-on-invalid-dep=yes" in t for n, t in scripts.items() if n != 101)


@pytest.mark.parametrize("args, message", [
    (["--partition", "gpu"], "--partition is for --launcher slurm"),
    (["--launcher", "local", "--no-wait"], "--no-wait is for --launcher slurm"),
    (["--jobs", "2"], "are for --launcher local|slurm"),
    (["--launcher", "local", "--shard", "1/2"], "--shard and --launcher do not go together"),
    (["--launcher", "slurm"], "--launcher slurm: Could not detect \"srun\""),
])
def test_launcher_options_refused_with_one_line(tmp_path, monkeypatch, args, message):
    monkeypatch.setenv("PATH", str(tmp_path))  # no srun here
    code, _, err = run_cli("run", "-m", "triplet-sn", "-d", "tiny", "-p", "smoke", "-o", str(tmp_path / "r.json"), *args)
    assert code != 0 and message in err, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("text, message", [
    ("partition = 'gpu'\n", "no [slurm] table"),
    ("[slurm]\ngpu = 2\n", "unknown key(s) gpu"),
    ("[slurm]\ngpus = -1\n", "gpus must be a whole number >= 0"),
    ("[slurm\n", "invalid TOML"),
])
def test_resources_file_refused_with_one_line(tmp_path, text, message):
    path = tmp_path / "slurm.toml"
    path.write_text(text)
    code, _, err = run_cli("run", "-m", "triplet-sn", "-d", "tiny", "-p", "smoke", "--launcher", "slurm",
                           "--resources", str(path), "-o", str(tmp_path / "r.json"))
    assert code != 0 and message in err, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_local_jobs_get_gpus_of_their_own():
    from sketchbench.run.launch import GpuSlots

    slots = GpuSlots(4, 2)
    a, b = slots.take(), slots.take()
    assert (a, b, slots.take()) == ([0, 1], [2, 3], None)  # the third job waits for a free pair
    slots.give_back(a)
    assert slots.take() == [0, 1]
    assert GpuSlots(0, 2).take() == []  # no GPUs: CPU jobs, never waiting for one
    with pytest.raises(Exception, match="this machine has 1 GPU"):
        GpuSlots(1, 2)


def test_a_job_never_trains_what_it_builds_on(tmp_path):
    """A student's job whose teacher is not in the cache (a node-local cache, a cleared one) stops
    with one line naming the cache: it does not train the teacher itself."""
    from sketchbench.base.errors import SketchbenchError
    from sketchbench.run.config import RunConfig
    from sketchbench.run.jobs import plan_jobs
    from sketchbench.run.presets import load_preset

    config = RunConfig(methods=["sketchynet-v1"], datasets=["synthetic"], preset=load_preset("smoke"),
                       cache_dir=tmp_path / "empty-cache", out=tmp_path / "r.json")
    jobs = plan_jobs([config])
    assert [(j.level, j.name) for j in jobs] == [(0, "triplet-sn synthetic c64 s0"),
                                                 (1, "sketchynet-v1<-triplet-sn synthetic c32_64 s0")]
    student = jobs[1]
    assert student.needs == [jobs[0].key]
    with pytest.raises(SketchbenchError, match=r"cannot restore triplet-sn synthetic @64 s0, which it builds on, "
                                               r"from the cache .*empty-cache"):
        student()
    assert not list((tmp_path / "empty-cache").glob("checkpoints/*.pt"))  # nothing was trained
