"""``sketchbench export`` (ONNX graphs + manifest, self-checked), the latency runtimes, and the
latency benchmark's analysis. One smoke training (Triplet-SN → SketchyNetV1 → SketchyNetV2 on the
synthetic set) serves every test of the module."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from sketchbench.testing import run_cli

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A results file with finished sketchynet-v1 (32, 64) and sketchynet-v2 (dynamic) cells, and the cache."""
    root = tmp_path_factory.mktemp("export")
    results, cache = root / "r.json", root / "cache"
    code, _, err = run_cli("run", "-m", "sketchynet-v2", "-d", "synthetic", "-p", "smoke", "-o", str(results),
                           "--cache-dir", str(cache))
    assert code == 0, err
    return results, cache


@pytest.fixture(scope="module")
def trained_gru(trained):
    """The poster's GRU selector on the same SketchyNetV1 (restored from the cache): its own results file."""
    results, cache = trained
    gru = results.with_name("gru.json")
    code, _, err = run_cli("run", "-m", "sketchynet-v2", "-d", "synthetic", "-p", "smoke", "--param", "encoder=gru",
                           "--no-chain", "-o", str(gru), "--cache-dir", str(cache))
    assert code == 0, err
    return gru, cache


def _session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _cell(results: Path, method: str, canvas) -> dict:
    cells = json.loads(results.read_text())["cells"]
    return next(c for c in cells if c["method"] == method and str(c["canvas"]) == str(canvas))


def _ranks(queries: np.ndarray, gallery: np.ndarray, targets: np.ndarray) -> list[int]:
    """Euclidean, ties against: what the manifest's ``distance`` says, in numpy only."""
    d = np.sqrt(((queries[:, None, :] - gallery[None, :, :]) ** 2).sum(-1))
    true = d[np.arange(len(targets)), targets]
    return [int(x) for x in (d <= true[:, None]).sum(1)]


def _deploy_ranks(folder: Path, data, canvas: int | None) -> tuple[list[int], list[int]]:
    """Retrieval from the export folder alone: the manifest, the ONNX files, sketchbench's renderer
    (numpy + Pillow) and, for a dynamic method, the selector input made from the manifest's recipe."""
    from sketchbench import render_sketch
    from sketchbench_query.render import render_points

    manifest = json.loads((folder / "manifest.json").read_text())
    graphs = manifest["graphs"]
    photo = _session(folder / graphs["photo_encoder"]["file"])
    gallery = photo.run(None, {photo.get_inputs()[0].name: data.photos("test").numpy()})[0]
    chosen, embeddings = [], []
    selector = _session(folder / graphs["selector"]["file"]) if "selector" in graphs else None
    for item in data.items("test"):
        c = canvas
        if selector is not None:
            recipe = graphs["selector"]["input"]
            if recipe["kind"] == "thumbnail":  # SketchyNetV2's default selector
                assert recipe == {"kind": "thumbnail", "size": 32, "supersample": 2}
                x = render_points(item.vector.points, recipe["size"], recipe["supersample"])
            else:  # the poster's GRU
                assert recipe["kind"] == "stroke5" and recipe["coords"] == "absolute"
                x = item.vector.simplify(recipe["max_points"]).to_stroke5().astype(np.float32)
                x[:, :2] = np.cumsum(x[:, :2], axis=0) * 2.0 - 1.0
            logits = selector.run(None, {selector.get_inputs()[0].name: x[None]})[0]
            c = graphs["selector"]["canvas_set"][int(np.argmax(logits[0]))]
        chosen.append(c)
        enc = _session(folder / graphs["sketch_encoder"]["files"][str(c)])
        image = render_sketch(item.vector, c)[None]
        embeddings.append(enc.run(None, {enc.get_inputs()[0].name: image})[0][0])
    return _ranks(np.stack(embeddings), gallery, data.pairs("test").numpy()), chosen


@pytest.mark.parametrize("method,canvas,selector", [("sketchynet-v1", 64, None), ("sketchynet-v2", "dynamic", "thumbnail"),
                                                    ("sketchynet-v2", "dynamic", "gru")])
def test_export_runs_in_onnxruntime_with_equal_embeddings_and_ranks(request, tmp_path, method, canvas, selector):
    from sketchbench.run.trained import load_trained

    results, cache = request.getfixturevalue("trained_gru" if selector == "gru" else "trained")
    out = tmp_path / "out"
    code, stdout, err = run_cli("export", str(results), "-m", method, "--cache-dir", str(cache), "-o", str(out))
    assert code == 0, err
    assert "self-check passed" in stdout
    manifest = json.loads((out / "manifest.json").read_text())
    check = manifest["check"]
    assert check["passed"] and check["ranks_identical"] and check["embeddings_within_tolerance"]
    assert check["tolerance_max_abs"] == 1e-4 and check["worst_max_abs_diff"] <= 1e-4
    assert manifest["distance"]["kind"] == "euclidean"
    assert manifest["canvases"] == [32, 64]
    assert set(manifest["graphs"]["sketch_encoder"]["files"]) == {"32", "64"}
    assert manifest["graphs"]["sketch_encoder"]["inputs"][0]["type"] == "tensor(uint8)"
    assert manifest["renderer"]["margin"] == pytest.approx(0.06)
    assert manifest["renderer"]["per_canvas"]["32"]["supersample"] == 8
    if canvas == "dynamic":
        assert check["selector_choices_identical"]
        sel = manifest["graphs"]["selector"]
        assert sel["canvas_set"] == [32, 64] and sel["input"]["kind"] == {"gru": "stroke5"}.get(selector, selector)
    # every test query and photo through the exported graphs alone gives the run's own ranks
    model = load_trained(results, method=method, cache_dir=cache)
    ranks, chosen = _deploy_ranks(out, model.data, None if canvas == "dynamic" else canvas)
    cell = _cell(results, method, canvas)
    assert ranks == cell["query_ranks"]
    if canvas == "dynamic":
        hist = {str(c): chosen.count(c) for c in (32, 64)}
        assert hist == cell["canvas_histogram"]


#: run in a fresh interpreter where torch (and sketchbench itself) cannot be imported: the deployed query
_TORCH_FREE = """
import json, sys
import numpy as np

class Blocked:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "sketchbench", "torchvision", "timm"):
            raise ImportError(f"{name} is blocked: the query must not need it")

sys.meta_path.insert(0, Blocked())
try:
    import torch  # noqa: F401
    sys.exit("torch imported")
except ImportError:
    pass
from sketchbench_query import Retriever, query

folder, inputs = sys.argv[1], np.load(sys.argv[2])
sketches = [inputs[k] for k in sorted(inputs.files, key=int)]
one = [query(folder, s) for s in sketches]
r = Retriever(folder)
pixels = [[(p[:, :2] * 200 + 30).tolist() for p in np.split(s, np.flatnonzero(s[:, 2])[:-1] + 1)] for s in sketches]
print(json.dumps({"one": one, "batch": r.query_batch(sketches), "pixels": r.query_batch(pixels),
                  "chosen": [r.choose_canvas(s) for s in sketches], "ids": r.photo_ids,
                  "modules": sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "sketchbench"))}))
"""


def test_torch_free_query_gives_the_runs_ranks(trained, tmp_path):
    """``sketchbench_query.query`` on an export folder, in a process where torch cannot be imported,
    ranks the gallery as the run did: the true photo's position is the cell's recorded rank."""
    import os
    import subprocess
    import sys

    from sketchbench.run.trained import load_trained

    results, cache = trained
    out = tmp_path / "v2"
    assert run_cli("export", str(results), "-m", "sketchynet-v2", "--cache-dir", str(cache), "-o", str(out))[0] == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["gallery"]["file"] == "gallery.npy" and (out / "gallery.npy").is_file()
    data = load_trained(results, method="sketchynet-v2", cache_dir=cache).data
    items = data.items("test")
    np.savez(tmp_path / "q.npz", **{str(i): it.vector.points for i, it in enumerate(items)})
    script = tmp_path / "query.py"
    script.write_text(_TORCH_FREE)
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, str(script), str(out), str(tmp_path / "q.npz")], capture_output=True,
                          text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = json.loads(proc.stdout)
    assert got["modules"] == []
    ids = data.split("test").photo_ids
    assert got["ids"] == list(ids)
    truth = [ids[int(p)] for p in data.pairs("test")]
    cell = _cell(results, "sketchynet-v2", "dynamic")
    assert [ranked.index(t) + 1 for ranked, t in zip(got["one"], truth)] == cell["query_ranks"]
    assert got["batch"] == got["one"] and got["pixels"] == got["one"]
    assert {str(c): got["chosen"].count(c) for c in (32, 64)} == cell["canvas_histogram"]


def test_export_sketch_encoder_is_torch_exact_at_every_canvas(trained, tmp_path):
    from sketchbench.run.trained import load_trained

    results, cache = trained
    out = tmp_path / "v1"
    assert run_cli("export", str(results), "-m", "sketchynet-v1", "--cache-dir", str(cache), "-o", str(out))[0] == 0
    model = load_trained(results, method="sketchynet-v1", cache_dir=cache)
    files = json.loads((out / "manifest.json").read_text())["graphs"]["sketch_encoder"]["files"]
    for c in (32, 64):
        images = model.data.sketches("test", c)
        session = _session(out / files[str(c)])
        got = session.run(None, {session.get_inputs()[0].name: images.numpy()})[0]
        with torch.inference_mode():
            want = model.method.encode_sketch(images).numpy()
        assert np.abs(got - want).max() <= 1e-4


def test_export_self_check_failure_is_one_line_and_recorded(trained, tmp_path):
    results, cache = trained
    out = tmp_path / "strict"
    code, _, err = run_cli("export", str(results), "-m", "sketchynet-v1", "--canvas", "32", "--cache-dir", str(cache),
                           "-o", str(out), "--tolerance", "0")
    diff = json.loads((out / "manifest.json").read_text())["check"]
    if diff["worst_max_abs_diff"] == 0:
        pytest.skip("onnxruntime matched PyTorch bit for bit: a zero tolerance holds")
    assert code == 1 and err.strip().count("\n") == 0 and "self-check failed" in err
    assert diff["passed"] is False and diff["tolerance_max_abs"] == 0


def test_export_bad_input_is_one_line_exit_2(trained, tmp_path):
    results, cache = trained
    cases = [
        ("export", str(tmp_path / "missing.json"), "--cache-dir", str(cache)),
        ("export", str(results), "-m", "sketchynet-v1", "--cache-dir", str(tmp_path / "empty-cache")),
        ("export", str(results), "-m", "no-such-method", "--cache-dir", str(cache)),
        ("export", str(results), "-m", "sketchynet-v1", "--canvas", "0", "--cache-dir", str(cache)),
    ]
    for args in cases:
        code, _, err = run_cli(*args, "-o", str(tmp_path / "out"))
        assert code == 2, (args, err)
        assert err.strip().startswith("error:") and err.strip().count("\n") == 0, err
    _, _, err = run_cli(*cases[1], "-o", str(tmp_path / "out"))
    assert "not trained yet" in err
    _, _, err = run_cli(*cases[2], "-o", str(tmp_path / "out"))
    assert "no finished cell" in err and "sketchynet-v1" in err


def test_export_refuses_a_distance_that_is_not_euclidean(tmp_path):
    results, cache = tmp_path / "h.json", tmp_path / "cache"
    code, _, err = run_cli("run", "-m", "holef-sn", "-d", "tiny", "-p", "smoke", "-c", "32", "-o", str(results),
                           "--cache-dir", str(cache))
    assert code == 0, err
    code, _, err = run_cli("export", str(results), "--cache-dir", str(cache), "-o", str(tmp_path / "out"))
    assert code == 2 and "not the Euclidean distance" in err and err.strip().count("\n") == 0


# -- latency runtimes --------------------------------------------------------------------------
class _Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                                 nn.AdaptiveAvgPool2d(1), nn.Flatten())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


@pytest.mark.parametrize("runtime", ["torch", "onnxruntime", "torch-compile"])
def test_each_runtime_times_the_module_it_runs(runtime):
    from sketchbench.base.errors import SketchbenchError
    from sketchbench.measure.latency import Runtime, torch_threads

    module = _Tiny().eval()
    x = torch.randn(2, 3, 16, 16)
    with torch_threads(1) as threads:
        rt = Runtime(runtime, threads)
        fn = rt.callable(module, (x,))
        try:
            with torch.inference_mode():
                out = fn(x)
        except SketchbenchError as exc:
            if runtime == "torch-compile":
                pytest.skip(f"torch.compile cannot compile here: {exc}")
            raise
        ms = rt.time_ms(fn, (x,), repeats=3, warmup=1)
    got = torch.as_tensor(np.asarray(out[0] if runtime == "onnxruntime" else out))
    with torch.inference_mode():
        assert torch.allclose(got, module(x), atol=1e-5)
    assert math.isfinite(ms) and ms > 0
    assert threads == 1


def test_unknown_runtime_and_neutral_preset_keys():
    from sketchbench.base.errors import SketchbenchError
    from sketchbench.run.presets import load_preset

    base = load_preset("smoke")
    assert "latency_runtime" not in base.to_dict()  # run hashes of earlier results stay
    assert load_preset("smoke", {"latency_runtime": "torch"}).identity() == base.identity()
    other = load_preset("smoke", {"latency_runtime": "onnxruntime", "latency_threads": "1", "latency_batch": "4"})
    assert other.identity() != base.identity()  # a cell timed otherwise is another cell
    trained_key = ("latency_repeats", "latency_warmup", "eval_batch_size")
    assert other.identity(exclude=trained_key) == base.identity(exclude=trained_key)  # but the same trained model
    with pytest.raises(SketchbenchError, match="unknown latency_runtime"):
        load_preset("smoke", {"latency_runtime": "tensorrt"})
    with pytest.raises(SketchbenchError, match="latency_batch"):
        load_preset("smoke", {"latency_batch": "0"})


def test_run_in_onnxruntime_records_latency_without_changing_accuracy_or_flops(trained, tmp_path):
    results, cache = trained
    checkpoints = sorted((cache / "checkpoints").iterdir())
    out = tmp_path / "ort.json"
    code, _, err = run_cli("run", "-m", "sketchynet-v2", "-d", "synthetic", "-p", "smoke", "--no-chain", "-o", str(out),
                           "--cache-dir", str(cache), "--set", "latency_runtime=onnxruntime", "--set", "latency_threads=1")
    assert code == 0, err
    assert sorted((cache / "checkpoints").iterdir()) == checkpoints  # nothing retrained
    cell = _cell(out, "sketchynet-v2", "dynamic")
    base = _cell(results, "sketchynet-v2", "dynamic")
    for key in ("acc1", "acc10", "gflops", "params_m", "query_ranks", "canvas_histogram"):
        assert cell[key] == base[key], key
    assert cell["latency_runtime"] == "onnxruntime" and cell["latency_threads"] == 1 and cell["latency_batch"] == 1
    assert cell["latency_ms"] > 0 and cell["query_latency_ms"] > 0
    assert cell["query_selector_runtime"] == "onnxruntime"
    assert set(cell["query_breakdown_ms"]) == {"select", "render", "encode"}
    assert base["latency_runtime"] == "torch" and base["query_latency_ms"] > 0
    # the same sketches without their selection (each run's total includes it, so the medians order too)
    assert 0 < cell["query_upstream_ms"] <= cell["query_latency_ms"]
    sel = cell["query_selection_ms"]
    assert sel["sketches"] == min(32, cell["num_queries"]) and 0 < sel["median"] <= sel["p90"] <= sel["max"]


def test_compute_bound_is_measured():
    from sketchbench.measure.latency import compute_bound

    b = compute_bound(1, repeats=1, warmup=0)
    assert b["threads"] == 1 and b["bound_gflops_per_s"] == max(b["matmul_gflops_per_s"], b["conv_gflops_per_s"]) > 0


def test_latency_bench_tables_the_runtimes_against_the_bound(trained, tmp_path):
    results, cache = trained
    bench_dir = tmp_path / "benchmarks"
    bench_dir.mkdir()
    (bench_dir / "lat.toml").write_text(
        'title = "latency"\ndatasets = ["synthetic"]\nseeds = [0]\nanalyses = ["latency"]\n\n[[grid]]\n'
        'methods = ["sketchynet-v1", "sketchynet-v2"]\ncanvases = "all"\nchain = false\n'
        'set = { latency_runtime = ["torch", "onnxruntime"] }\n')
    out = tmp_path / "out"
    code, stdout, err = run_cli("bench", "lat", "-p", "smoke", "--bench-dir", str(bench_dir), "--out-dir", str(out),
                                "--cache-dir", str(cache), "--set", "latency_repeats=2")
    assert code == 0, err
    data = json.loads((out / "lat.json").read_text())
    assert set(data["compute_bound"]) == {str(torch.get_num_threads())}
    assert "## Latency per runtime" in stdout and "of bound" in stdout and "onnxruntime" in stdout
    assert (out / "lat-runtimes.png").is_file() and (out / "lat-runtimes.svg").is_file()
    runtimes = {c["latency_runtime"] for c in data["cells"]}
    assert runtimes == {"torch", "onnxruntime"}
    # SketchyNetV2 beside SketchyNetV1's query at the canvases it chose and at its largest, per runtime
    from sketchbench.results.latency import dynamic_against_upstream, latency_rows
    from sketchbench.results.schema import cells_of

    rows = latency_rows(cells_of(data), data["compute_bound"])
    dyn = {r["runtime"]: r for r in dynamic_against_upstream(rows)}
    assert set(dyn) == {"torch", "onnxruntime"}
    for r in dyn.values():
        v1 = {x["canvas"]: x["query_ms"] for x in rows if x["method"] == "sketchynet-v1" and x["runtime"] == r["runtime"]}
        hist = {int(c): n for c, n in r["histogram"].items()}
        assert r["upstream_at_chosen_ms"] == pytest.approx(sum(n * v1[c] for c, n in hist.items()) / sum(hist.values()))
        assert r["upstream_largest_canvas"] == 64 and r["upstream_largest_ms"] == v1[64]
        assert r["ratio_chosen"] == pytest.approx(r["query_ms"] / r["upstream_at_chosen_ms"])
    assert "÷ upstream @ chosen" in stdout and "select median ms" in stdout
