"""No silent wrong answers: one test per example of the reliability review, grouped by class.

Each bad input or fault must give one clear line (naming the input) and a non-zero exit, or be
detected and repaired (a corrupt cache entry recomputed), and never change a printed number
without a word or lose a finished result.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sketchbench import hookimpl
from sketchbench.base.artifacts import ArtifactCache
from sketchbench.results.schema import load_results
from sketchbench.testing import registered_plugin, run_cli

FAST = ["-m", "triplet-timm", "--param", "backbone=test_efficientnet", "-d", "tiny", "-p", "smoke"]


def _run(tmp_path: Path, *args: str, out: str = "r.json") -> tuple[int, str, str, dict | None]:
    path = tmp_path / out
    code, stdout, stderr = run_cli("run", "--cache-dir", str(tmp_path / "cache"), "-o", str(path), *args)
    return code, stdout, stderr, (json.loads(path.read_text()) if path.exists() else None)


def _one_line(err: str) -> str:
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, err
    return lines[0]


# -- cache integrity ------------------------------------------------------------------------------------
def _entries(tmp_path: Path, kind: str) -> list[Path]:
    return sorted((tmp_path / "cache" / kind).glob("*.pt"))


@pytest.mark.parametrize("damage", ["flip-bytes", "random-tensors-same-shapes"])
def test_a_corrupted_checkpoint_is_reported_removed_and_retrained(tmp_path, damage, caplog):
    code, _, _, first = _run(tmp_path, *FAST, "-c", "32")
    assert code == 0
    (ckpt,) = _entries(tmp_path, "checkpoints")
    if damage == "flip-bytes":
        data = bytearray(ckpt.read_bytes())
        data[len(data) // 2] ^= 0xFF
        ckpt.write_bytes(bytes(data))
    else:  # a well-formed checkpoint of the right shapes, but not the trained one
        state = torch.load(ckpt, weights_only=True)
        state["state_dict"] = {k: torch.randn_like(v.float()).to(v.dtype) for k, v in state["state_dict"].items()}
        torch.save(state, ckpt)
    (tmp_path / "r.json").unlink()
    with caplog.at_level("WARNING", logger="sketchbench"):
        code, _, _, second = _run(tmp_path, *FAST, "-c", "32")
    assert code == 0
    assert any("is corrupt" in r.getMessage() and str(ckpt) in r.getMessage() for r in caplog.records)
    # recomputed, not used: the same numbers as the first run
    assert second["cells"][0]["query_ranks"] == first["cells"][0]["query_ranks"]


def test_corrupted_canvases_and_teacher_outputs_are_recomputed(tmp_path, caplog):
    args = ["-m", "sketchynet-v1", "--param", "sketchynet-v1.backbone=test_efficientnet", "-d", "tiny", "-p", "smoke",
            "-c", "32", "--no-chain"]
    code, _, _, first = _run(tmp_path, *args)
    assert code == 0
    damaged = []
    for kind in ("canvases", "teacher-outputs"):
        for entry in _entries(tmp_path, kind):
            obj = torch.load(entry, weights_only=True)
            def noise(t):
                return torch.randint_like(t, 0, 255) if t.dtype == torch.uint8 else torch.randn_like(t)

            obj = noise(obj) if isinstance(obj, torch.Tensor) else {k: noise(v) for k, v in obj.items()}
            torch.save(obj, entry)
            damaged.append(str(entry))
    for ckpt in _entries(tmp_path, "checkpoints"):  # force retraining on the damaged inputs
        ckpt.unlink()
    (tmp_path / "r.json").unlink()
    with caplog.at_level("WARNING", logger="sketchbench"):
        code, _, _, second = _run(tmp_path, *args)
    assert code == 0
    warned = " ".join(r.getMessage() for r in caplog.records)
    assert damaged and all(d in warned for d in damaged)
    assert second["cells"][0]["query_ranks"] == first["cells"][0]["query_ranks"]


def test_a_checkpoint_that_does_not_fit_is_a_cache_miss(tmp_path, caplog):
    code, _, _, first = _run(tmp_path, *FAST, "-c", "32")
    (ckpt,) = _entries(tmp_path, "checkpoints")
    cache = ArtifactCache(tmp_path / "cache")
    cache.save("checkpoints", ckpt.stem, {"state_dict": {"conv_stem.weight": torch.zeros(1, 2, 3)}})  # valid digest
    (tmp_path / "r.json").unlink()
    with caplog.at_level("WARNING", logger="sketchbench"):
        code, _, err, second = _run(tmp_path, *FAST, "-c", "32")
    assert code == 0 and second["cells"][0]["status"] == "ok"
    assert any("does not fit" in r.getMessage() for r in caplog.records)
    assert second["cells"][0]["query_ranks"] == first["cells"][0]["query_ranks"]


def test_an_unwritable_cache_keeps_the_trained_cells_results(tmp_path, monkeypatch, caplog):
    import sketchbench.base.artifacts as artifacts

    def full(path, data):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(artifacts, "atomic_write_bytes", full)
    with caplog.at_level("WARNING", logger="sketchbench"):
        code, _, _, res = _run(tmp_path, *FAST, "-c", "32")
    assert code == 0 and res["cells"][0]["status"] == "ok"
    assert any("cannot write the cache entry" in r.getMessage() for r in caplog.records)


# -- concurrent and mixed-configuration results files ---------------------------------------------------------
def test_two_concurrent_runs_into_one_file_lose_nothing(tmp_path):
    out = tmp_path / "O.json"
    env = dict(os.environ, OMP_NUM_THREADS="1", TQDM_DISABLE="1", SKETCHBENCH_CACHE_DIR=str(tmp_path / "cache"))
    base = [sys.executable, "-m", "sketchbench.cli", "run", *FAST, "-o", str(out)]
    a = subprocess.Popen([*base, "-c", "48", "-c", "64"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    b = subprocess.Popen([*base, "-c", "40", "-c", "56", "-c", "72"], env=env, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True)
    assert a.wait(timeout=600) == 0, a.stderr.read()
    assert b.wait(timeout=600) == 0, b.stderr.read()
    res = load_results(out)
    assert sorted(c["canvas"] for c in res["cells"]) == [40, 48, 56, 64, 72]
    assert len(res["runs"]) == 2  # two configurations wrote into the file, both recorded
    by_canvas = {c["canvas"]: c["run"]["canvases"] for c in res["cells"]}
    assert by_canvas[48] == [48, 64] and by_canvas[72] == [40, 56, 72]  # each cell says which run made it


# -- parameter and preset ranges ---------------------------------------------------------------------------
@pytest.mark.parametrize("args,message", [
    (["--param", "epochs=-5"], "--param epochs='-5': must be at least 1 (or 0 for the preset's value)"),
    (["--set", "batch_size=1"], "preset value batch_size=1: must be between 2 and 4096"),
    (["--param", "lr=inf"], "--param lr='inf': must be a finite number"),
    (["--param", "lr=nan"], "--param lr='nan': must be a finite number"),
    (["--set", "lr=nan"], "preset value lr=nan: must be a finite number"),
    (["--set", "photo_size=100000"], "preset value photo_size=100000: must be between 8 and 1024"),
    (["--param", "margin=-1"], "--param margin='-1': must be at least 0"),
])
def test_vacuous_or_hostile_values_are_refused(tmp_path, args, message):
    code, _, err, _ = _run(tmp_path, *FAST, *args)
    assert code == 2 and _one_line(err) == f"error: {message}" or message in err, err


def test_a_one_photo_gallery_is_refused_and_a_small_one_flagged(tmp_path):
    code, _, _, res = _run(tmp_path, *FAST, "-c", "32", "--set", "max_test_sketches=1")
    assert code == 1 and "cannot be scored" in res["cells"][0]["error"]
    code, out, _, res = _run(tmp_path, *FAST, "-c", "32", "--set", "max_test_sketches=4", out="small.json")
    assert code == 0 and "acc@10 is 100% by construction" in res["cells"][0]["warnings"][0]
    assert "acc@10 is 100% by construction" in out  # and the table says so


def test_every_numeric_parameter_declares_a_range():
    from sketchbench.method.registries import get_host

    missing = []
    for entry in get_host().methods:
        for name, p in entry.load().params.items():
            numeric = isinstance(p.default, int | float) and not isinstance(p.default, bool)
            if numeric and p.choices is None and p.min is None and p.max is None:
                missing.append(f"{entry.name}.{name}")
            if numeric and p.choices is None:
                p.check(name, p.default)  # every default is inside its own range
    assert not missing, f"numeric parameters without a declared range: {missing}"


# -- compare, merge, report, plot ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small_results(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("small")
    code, _, err = run_cli("run", "--cache-dir", str(tmp / "cache"), *FAST, "-c", "32", "-o", str(tmp / "a.json"))
    assert code == 0, err
    return tmp / "a.json"


@pytest.mark.parametrize("value,message", [("nan", "--tolerance nan: must be a finite number"),
                                           ("-5", "--tolerance -5.0: must be a finite number of points, 0 or more")])
def test_compare_refuses_a_tolerance_that_switches_the_gate_off(small_results, value, message):
    code, _, err = run_cli("compare", str(small_results), str(small_results), "--tolerance", value)
    assert code == 2 and message.split(":")[0] in err and len(err.strip().splitlines()) == 1


def _edit(src: Path, dst: Path, **changes) -> Path:
    data = json.loads(src.read_text())
    for key, value in changes.items():
        if value is None:
            data["cells"][0].pop(key, None)
        else:
            data["cells"][0][key] = value
    dst.write_text(json.dumps(data))
    return dst


@pytest.mark.parametrize("change,message", [
    ({"acc1": 1e308}, "acc1: Input should be less than or equal to 100"),
    ({"config_hash": None}, "config_hash: Field required"),
    ({"gflops": -1}, "gflops: Input should be greater than or equal to 0"),
    ({"acc1": "abc"}, "acc1: Input should be a valid number"),
    ({"acc1": None}, "a finished cell needs acc1"),
])
@pytest.mark.parametrize("command", ["report", "compare", "merge", "plot"])
def test_invalid_cells_are_refused_naming_file_and_cell(small_results, tmp_path, change, message, command):
    bad = _edit(small_results, tmp_path / "bad.json", **{k: (None if v is None else v) for k, v in change.items()})
    if "config_hash" in change:
        bad = _edit(small_results, tmp_path / "bad.json", config_hash=None)
    args = {"report": [str(bad)], "compare": [str(small_results), str(bad)], "merge": [str(bad), "-o", str(tmp_path / "m.json")],
            "plot": [str(bad), "-o", str(tmp_path / "p")]}[command]
    code, _, err = run_cli(command, *args)
    line = _one_line(err)
    assert code == 2 and str(bad) in line and "cell 0 (triplet-timm @ 32, seed 0)" in line and message in line, line


def test_merge_refuses_conflicts_repeats_missing_shards_and_foreign_outputs(small_results, tmp_path):
    # a cell two files measured differently
    other = _edit(small_results, tmp_path / "other.json", acc1=0.0, query_ranks=None)
    code, _, err = run_cli("merge", str(small_results), str(other), "-o", str(tmp_path / "m.json"))
    assert code == 2 and "different acc1" in _one_line(err)
    # the same file twice
    code, _, err = run_cli("merge", str(small_results), str(small_results), "-o", str(tmp_path / "m.json"))
    assert code == 2 and "is given twice" in _one_line(err)
    # shards: 1/2 alone looks complete but is not
    code, _, err = run_cli("run", "--cache-dir", str(tmp_path / "c"), *FAST, "-c", "32", "-c", "48", "--shard", "1/2",
                           "-o", str(tmp_path / "s1.json"))
    assert code == 0, err
    code, _, err = run_cli("merge", str(tmp_path / "s1.json"), "-o", str(tmp_path / "m.json"))
    assert code == 2 and "shard(s) 2/2 are missing" in _one_line(err)
    code, _, err = run_cli("merge", str(tmp_path / "s1.json"), "-o", str(tmp_path / "m.json"), "--allow-partial")
    assert code == 0, err
    # an --out that is some other JSON
    foreign = tmp_path / "package.json"
    foreign.write_text('{"name": "mine"}')
    code, _, err = run_cli("merge", str(small_results), "-o", str(foreign))
    assert code == 2 and "not a sketchbench results file" in _one_line(err) and foreign.read_text() == '{"name": "mine"}'


def test_plot_prefix_with_dots_keeps_each_name(small_results, tmp_path):
    pytest.importorskip("matplotlib")
    for name in ("main.v2", "main.v3"):
        code, out, err = run_cli("plot", str(small_results), "-o", str(tmp_path / name))
        assert code == 0, err
    assert (tmp_path / "main.v2.png").is_file() and (tmp_path / "main.v3.png").is_file()


# -- plugins and non-finite embeddings ------------------------------------------------------------------------
def test_a_plugin_command_named_like_a_builtin_is_refused(capsys):
    import click

    class Plugin:
        @hookimpl
        def register_commands(self, cli):
            @cli.command(name="run")
            def hijack():
                """Not the real run."""
                click.echo("hijacked")

            @cli.command(name="mine")
            def mine():
                """Its own command.

                \b
                Examples:
                  sketchbench mine
                """
                click.echo("mine ran")

    with registered_plugin(Plugin(), "hijacker"):
        code, out, err = run_cli("run", "--help")
        err += capsys.readouterr().err  # the warning is printed while the commands are added
        assert code == 0 and "hijacked" not in out and "Train and evaluate" in out
        assert "it adds a command 'run', which sketchbench has already: refused" in err
        code, out, _ = run_cli("mine")
        assert code == 0 and "mine ran" in out


def test_nan_embeddings_fail_the_cell_instead_of_scoring_zero(tmp_path):
    from sketchbench_teachers.triplet_timm import TimmTriplet

    class NaNEmbeddings(TimmTriplet):
        def encode_sketch(self, images):
            return torch.full((len(images), 8), float("nan"))

        def encode_photo(self, images):
            return torch.zeros(len(images), 8)

    class Plugin:
        @hookimpl
        def register_methods(self, register):
            register("nan-embed", NaNEmbeddings, kind="baseline")

    with registered_plugin(Plugin(), "nan-plugin"):
        code, out, err, res = _run(tmp_path, "-m", "nan-embed", "--param", "backbone=test_efficientnet", "-d", "tiny",
                                   "-p", "smoke", "-c", "32")
    assert code == 1 and res["cells"][0]["status"] == "error"
    assert "NaN or infinite distances" in res["cells"][0]["error"]


def test_temporaries_of_killed_writers_are_removed_and_live_ones_kept(tmp_path):
    """kill -9 skips atomic_write_bytes' cleanup: the next cache open / results write sweeps the old
    ``*.tmp`` files, never a fresh one (a live writer's)."""
    import os
    import time

    from sketchbench import ArtifactCache
    from sketchbench.results.schema import locked

    cache = tmp_path / "cache"
    (cache / "checkpoints").mkdir(parents=True)
    old_ckpt = cache / "checkpoints" / "abc.pt.x1y2.tmp"
    live_ckpt = cache / "checkpoints" / "def.pt.z3w4.tmp"
    out = tmp_path / "r.json"
    old_res, live_res, other = (tmp_path / "r.json.k9.tmp", tmp_path / "r.json.k8.tmp", tmp_path / "s.json.k7.tmp")
    hour_ago = time.time() - 7200
    for f in (old_ckpt, live_ckpt, old_res, live_res, other):
        f.write_bytes(b"partial")
    for f in (old_ckpt, old_res, other):
        os.utime(f, (hour_ago, hour_ago))
    ArtifactCache(cache)
    assert not old_ckpt.exists() and live_ckpt.exists()
    with locked(out):
        pass
    assert not old_res.exists() and live_res.exists() and other.exists()  # only this file's temporaries
