"""Hostile command lines and results files (issue 27, classes 3, 4, 5, 8, 9, 10, 11): values in range
that multiply into runaway work, reports that the files contradict, commands that would do nothing,
messages that name an exception instead of the input, names that leave their folder, the default
preset trap, and what the cache's checksums promise. Results files are written here by hand: no
training, each test takes a second or two."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sketchbench.testing import run_cli

ROOT = Path(__file__).resolve().parents[1]


def _cell(**changes) -> dict:
    """A finished cell whose numbers agree with its own ranks (acc@1 50, acc@10 100, mean rank 1.5)."""
    cell = {"method": "triplet-sn", "dataset": "tiny", "canvas": 32, "seed": 0, "status": "ok", "acc1": 50.0,
            "acc10": 100.0, "mean_rank": 1.5, "gflops": 0.1, "params_m": 1.0, "config_hash": "h1", "query_ranks": [1, 2],
            "num_queries": 2, "gallery_size": 4}
    cell.update(changes)
    return cell


def _results(path: Path, cells: list[dict], config: dict | None = None) -> Path:
    path.write_text(json.dumps({"schema": "sketchbench.results", "schema_version": 2, "config_hash": "c1",
                                "config": {"methods": ["triplet-sn"]} if config is None else config, "cells": cells}))
    return path


def _refused(result, *needles: str) -> str:
    code, _, err = result
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, (code, err)
    assert all(n in lines[0] for n in needles), lines[0]
    return lines[0]


# -- class 4: a report never prints a number its files contradict ----------------------------------------
def test_one_cell_twice_with_different_numbers_is_refused_in_a_file_and_across_files(tmp_path):
    one = _results(tmp_path / "one.json", [_cell(), _cell(acc1=0.0, acc10=100.0, mean_rank=1.5, query_ranks=None)])
    _refused(run_cli("report", str(one)), "one.json", "twice with different acc1")
    a = _results(tmp_path / "a.json", [_cell()])
    b = _results(tmp_path / "b.json", [_cell(acc1=100.0, query_ranks=[1, 1], mean_rank=1.0)])
    _refused(run_cli("report", str(a), str(b)), "a.json and", "b.json", "different acc1")
    _refused(run_cli("plot", str(a), str(b), "-o", str(tmp_path / "p")), "different acc1")
    same = _results(tmp_path / "same.json", [_cell()])
    code, out, err = run_cli("report", str(a), str(same), "--format", "json")
    assert code == 0 and json.loads(out)["rows"][0]["n"] == 1, err  # the same measurement counts once


def test_a_cell_whose_accuracy_contradicts_its_own_ranks_is_refused(tmp_path):
    lying = _results(tmp_path / "lying.json", [_cell(acc1=100.0, acc10=100.0, query_ranks=[1, 2, 3, 4, 5, 6, 7, 20],
                                                     num_queries=None, gallery_size=None, mean_rank=None)])
    _refused(run_cli("report", str(lying)), "lying.json", "acc1 is 100 but the cell's query_ranks give 12.5")
    beyond = _results(tmp_path / "beyond.json", [_cell(query_ranks=[1, 9], acc10=100.0, mean_rank=5.0)])
    _refused(run_cli("report", str(beyond)), "beyond the gallery of 4")


def test_compare_against_a_baseline_that_gates_nothing_fails(tmp_path):
    current = _results(tmp_path / "current.json", [_cell()])
    empty = _results(tmp_path / "empty.json", [])
    failed = _results(tmp_path / "failed.json", [_cell(status="error", acc1=None, acc10=None, error="boom")])
    for base in (empty, failed):
        code, out, err = run_cli("compare", str(base), str(current))
        assert code != 0 and "no regression" not in out + err and "gates nothing" in err, (code, err)


def test_a_report_of_a_file_without_cells_fails(tmp_path):
    empty = _results(tmp_path / "empty.json", [])
    _refused(run_cli("report", str(empty)), "empty.json", "no cells to report")


# -- class 3 and 8: merge checks what it is given -------------------------------------------------------
def test_merge_validates_configs_and_shard_specs_before_using_them(tmp_path):
    out = tmp_path / "m.json"
    bare = tmp_path / "bare.json"
    bare.write_text(json.dumps({"schema": "sketchbench.results", "schema_version": 2, "cells": [_cell()]}))
    _refused(run_cli("merge", str(bare), str(_results(tmp_path / "x.json", [_cell()])), "-o", str(out)),
             "bare.json", "has no 'config'")
    for spec in ([1, 50_000_000], ["a", "b"], [3, 2], [1], "1/2", [True, 2]):
        a = _results(tmp_path / "a.json", [_cell()], {"methods": ["triplet-sn"], "shard": spec})
        b = _results(tmp_path / "b.json", [_cell(seed=1)], {"methods": ["triplet-sn"], "shard": [2, 2]})
        _refused(run_cli("merge", str(a), str(b), "-o", str(out)), "a.json", "its shard")
    assert not out.exists()


# -- class 3 and 5: values in range that run away; commands that would do nothing ------------------------
@pytest.mark.parametrize("args,needles", [
    (["--set", "instances=100000", "--set", "sketches_per_instance=1000"], ["100,000,000 generated sketches"]),
    (["--set", "latency_threads=4096"], ["latency_threads=4096", "cores"]),
    (["--set", "eval_batch_size=8192", "--set", "canvases=1024"], ["eval_batch_size=8192"]),
    (["--set", "canvases="], ["canvases is empty"]),
    (["-m", "", "-d", "tiny"], ["--method ''", "names no method"]),
    (["-m", ",", "-d", "tiny"], ["names no method"]),
    (["-m", "triplet-sn", "-d", ""], ["--dataset ''", "names no dataset"]),
    (["--seed", "-1"], ["--seed"]),
    (["--seed", str(2**32)], ["--seed"]),
    (["--canvas", "32", "--shard", "2/2"], ["--shard 2/2", "holds none"]),  # one cell, two parts
])
def test_a_run_that_would_run_away_or_do_nothing_is_refused_up_front(tmp_path, args, needles):
    names = [] if "-m" in args else ["-m", "triplet-sn", "-d", "tiny"]
    base = ["run", *names, "-p", "smoke", "--cache-dir", str(tmp_path / "c"), "-o", str(tmp_path / "r.json")]
    code, _, err = run_cli(*base, *args)
    assert code == 2 and "Traceback" not in err and all(n in err for n in needles), err
    assert not (tmp_path / "r.json").exists()


def test_threads_are_capped_at_the_cores_where_latency_is_measured():
    from sketchbench.measure.latency import torch_threads

    with torch_threads(4096) as n:
        assert n == torch.get_num_threads() <= (os.cpu_count() or 1)


# -- class 8: one line naming the input, nothing half-written --------------------------------------------
def _full_disk(limit: int):
    """A preexec_fn: files of this process may not grow past ``limit`` bytes (writes fail with EFBIG, as
    on a full disk, instead of the default SIGXFSZ kill)."""
    def apply() -> None:
        import resource

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def _cli_on_a_full_disk(args: list[str], limit: int, tmp_path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLCONFIGDIR": str(tmp_path / "mpl"), "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run([sys.executable, "-m", "sketchbench", *args], capture_output=True, text=True, timeout=300,
                          env=env, preexec_fn=_full_disk(limit), cwd=tmp_path)


def test_plot_and_merge_onto_a_full_disk_leave_nothing_behind(tmp_path):
    pytest.importorskip("matplotlib")
    a = _results(tmp_path / "a.json", [_cell()], {"methods": ["triplet-sn"], "shard": [1, 2]})
    b = _results(tmp_path / "b.json", [_cell(seed=1)], {"methods": ["triplet-sn"], "shard": [2, 2]})
    out = tmp_path / "out"
    out.mkdir()
    proc = _cli_on_a_full_disk(["plot", str(a), "-o", str(out / "plot")], 4000, tmp_path)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 2 and len(errors) == 1 and "plot.png" in errors[0] and "Traceback" not in proc.stderr
    proc = _cli_on_a_full_disk(["merge", str(a), str(b), "-o", str(out / "m.json")], 600, tmp_path)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 2 and len(errors) == 1 and "m.json" in errors[0], proc.stderr
    assert sorted(p.name for p in out.iterdir()) == [], "a half-written file was left behind"


def test_export_refuses_an_infinite_tolerance_before_writing_anything(tmp_path):
    out = tmp_path / "export"
    for value in ("inf", "nan", "-1"):
        _refused(run_cli("export", str(tmp_path / "absent.json"), "--tolerance", value, "-o", str(out)),
                 f"--tolerance {value}")
    assert not out.exists()


def test_gallery_photos_with_non_utf8_names_are_listed_printably(tmp_path):
    from PIL import Image

    from sketchbench.run.retrieval import Gallery

    name = os.fsdecode(b"caf\xe9-\xff.png")
    Image.new("RGB", (8, 8), (10, 200, 30)).save(tmp_path / name)
    gallery = Gallery.from_folder(tmp_path)
    assert gallery.ids == ["caf\\xe9-\\xff.png"]
    json.dumps(gallery.ids).encode("utf-8")  # printable and JSON-safe: no lone surrogates left
    "".join(gallery.ids).encode("utf-8")


# -- class 9: names from the user never become paths outside their folder ---------------------------------
def test_a_backbone_name_that_is_a_path_is_refused_before_any_file_is_read(tmp_path, monkeypatch):
    from sketchbench.method import weights

    folder = tmp_path / "weights"
    (folder / "local").mkdir(parents=True)
    outside = tmp_path / "secret.pth"
    outside.write_bytes(b"not yours")
    monkeypatch.setenv("SKETCHBENCH_WEIGHTS_DIR", str(folder))
    read: list[Path] = []
    monkeypatch.setattr(weights, "file_sha256", lambda p: read.append(Path(p)) or "0" * 64)
    for name in ("../../secret", "../secret", "a/b", "..", "x\\..\\secret"):
        msg = _refused(run_cli("run", "-m", "triplet-timm", "--param", f"backbone={name}", "--pretrained", "local",
                               "-d", "tiny", "-p", "smoke", "--cache-dir", str(tmp_path / "c"),
                               "-o", str(tmp_path / "r.json")), "is not a model name")
        assert len(msg) < 300, msg  # one line, not a listing of timm's models
    assert read == [] and not (tmp_path / "r.json").exists()
    from sketchbench_weights.local import LocalFolder

    with pytest.raises(Exception, match="not a file name inside"):
        LocalFolder().locate("../secret")


# -- class 10: the default preset follows the weights the run needs ---------------------------------------
def test_the_default_preset_falls_back_to_cpu_when_the_runs_weights_are_missing(tmp_path, monkeypatch, capsys):
    from sketchbench.method.registries import get_host
    from sketchbench.method.weights import WeightsMissing
    from sketchbench.run.api import runner_for
    from sketchbench.run.config import RunConfig
    from sketchbench.run.presets import load_preset

    monkeypatch.setenv("SKETCHBENCH_WEIGHTS_DIR", str(tmp_path / "no-weights"))  # the extra, but no `weights fetch`
    config = RunConfig(methods=["sketchynet-v2"], datasets=["synthetic"], preset=load_preset("cpu-imagenet"),
                       cache_dir=tmp_path / "cache", device="cpu")  # the README main job
    runner = runner_for(config, get_host(), preset_named=False)
    assert runner.config.preset.name == "cpu"
    note = capsys.readouterr().err
    assert "cpu-imagenet" in note and "mobilenetv2" in note and "weights fetch" in note
    with pytest.raises(WeightsMissing):  # a preset the user named is never swapped
        runner_for(config, get_host(), preset_named=True)


# -- class 11: what the cache's checksums promise ---------------------------------------------------------
def test_the_cache_is_trusted_storage_its_checksums_catch_corruption_not_tampering(tmp_path, caplog):
    from sketchbench.base.artifacts import ArtifactCache

    cache = ArtifactCache(tmp_path / "cache", memory=False)
    cache.save("checkpoints", "k", {"w": torch.ones(3)})
    path = cache.path("checkpoints", "k")
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # corruption: caught, removed, recomputed
    path.write_bytes(bytes(data))
    with caplog.at_level("WARNING", logger="sketchbench"):
        assert cache.load("checkpoints", "k") is None
    assert "corrupt" in caplog.text and not path.exists()
    cache.save("checkpoints", "k", {"w": torch.ones(3)})
    torch.save({"w": torch.zeros(3)}, path)  # tampering with the digest recomputed: not detectable, as documented
    Path(str(path) + ".sha256").write_text(hashlib.sha256(path.read_bytes()).hexdigest() + "\n")
    assert torch.equal(cache.load("checkpoints", "k")["w"], torch.zeros(3))
    doc = (ROOT / "docs" / "guarantees.md").read_text()
    assert "trusted storage" in doc and "corruption, not tampering" in doc


def test_a_method_that_calls_sys_exit_fails_its_cell_and_the_grid_goes_on(tmp_path):
    """A plugin's sys.exit() inside training is its cell's error; the other cells finish and are kept."""
    from sketchbench_teachers.triplet_timm import TimmTriplet

    from sketchbench import hookimpl
    from sketchbench.testing import registered_plugin

    class Quitter(TimmTriplet):
        def train(self, data, canvases, teacher=None):
            sys.exit(5)

    class Plugin:
        @hookimpl
        def register_methods(self, register):
            register("quitter", Quitter)

    out = tmp_path / "r.json"
    with registered_plugin(Plugin(), "quit-test"):
        code, _, err = run_cli("run", "-m", "quitter", "-m", "triplet-timm", "-d", "tiny", "-p", "smoke", "-c", "32",
                               "--param", "backbone=test_efficientnet", "--cache-dir", str(tmp_path / "c"), "-o", str(out))
    assert code == 1 and "Traceback" not in err, err
    cells = {c["method"]: c for c in json.loads(out.read_text())["cells"]}
    assert cells["quitter"]["status"] == "error" and "sys.exit(5)" in cells["quitter"]["error"]
    assert cells["triplet-timm"]["status"] == "ok"
