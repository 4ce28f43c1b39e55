"""The Python API (``sketchbench.run_grid``, ``sketchbench.load_model``) is the command line's path,
not a second one: the README's main job run both ways gives the same cells, and a loaded model
retrieves exactly as ``sketchbench retrieve`` does and ranks its test sketches as evaluation did."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import sketchbench
from sketchbench.testing import run_cli, tiny_data

#: what a cell's numbers are; timing keys differ from run to run
COMPARED = ("method", "teacher", "dataset", "canvas", "seed", "role", "status", "config_hash", "variant", "acc1",
            "acc10", "mean_rank", "gflops", "params_m", "query_ranks", "canvas_histogram", "train_seconds", "init")
DRAWING = [[[20, 20], [100, 30], [110, 110]], [[30, 100], [60, 60]]]  # two strokes, pixels, y down


@pytest.fixture(scope="module")
def main_job(tmp_path_factory):
    """The README's main job (sketchynet-v2 on synthetic) at the smoke preset: through the command
    line, then through the Python API on the same cache (so the API restores what the CLI trained)."""
    tmp = tmp_path_factory.mktemp("api")
    cache = tmp / "cache"
    code, _, err = run_cli("run", "--method", "sketchynet-v2", "--dataset", "synthetic", "-p", "smoke",
                           "--cache-dir", str(cache), "-o", str(tmp / "cli.json"))
    assert code == 0, err[-2000:]
    results = sketchbench.run_grid("sketchynet-v2", "synthetic", preset="smoke", cache_dir=cache, out=tmp / "api.json")
    return tmp, cache, results


@pytest.mark.slow
def test_run_grid_gives_the_cells_of_sketchbench_run(main_job):
    tmp, _, results = main_job
    cli = json.loads((tmp / "cli.json").read_text())
    api = json.loads(results.path.read_text())
    assert results.exit_code == 0 and not results.failed
    assert api["config_hash"] == cli["config_hash"] and api["config"] == cli["config"]  # one run, two doors
    assert [{k: c.get(k) for k in COMPARED} for c in api["cells"]] == [{k: c.get(k) for k in COMPARED} for c in cli["cells"]]
    assert [(c.method, str(c.canvas), c.role) for c in results.cells] == [
        ("triplet-sn", "64", "teacher"), ("sketchynet-v1", "32", "upstream"), ("sketchynet-v1", "64", "upstream"),
        ("sketchynet-v2", "dynamic", "main")]
    assert "sketchynet-v2" in results.table() and results.table("csv").startswith("Method,Canvas")


@pytest.mark.slow
def test_load_model_retrieves_like_sketchbench_retrieve(main_job, tmp_path):
    tmp, cache, results = main_job
    model = sketchbench.load_model(results, method="sketchynet-v2", cache_dir=cache)
    assert model.canvas == "dynamic" and model.method.trained_key
    query = tmp_path / "drawing.json"
    query.write_text(json.dumps({"strokes": DRAWING}))
    code, out, err = run_cli("retrieve", "-r", str(results.path), "-m", "sketchynet-v2", str(query), "--format", "json",
                             "--top", "10", "--cache-dir", str(cache))
    assert code == 0, err
    (cli,) = json.loads(out)["queries"]
    for answer in (model.retrieve(DRAWING), model.retrieve(query)):  # drawn strokes, or the same strokes as a file
        assert answer.canvas == cli["canvas"] and answer.chosen
        assert [r["index"] for r in cli["results"]] == answer.order[:10]
        assert [r["distance"] for r in cli["results"]] == pytest.approx([answer.distances[i] for i in answer.order[:10]])
        assert answer.gflops == pytest.approx(cli["gflops"])


@pytest.mark.slow
def test_a_loaded_model_ranks_its_test_sketches_as_evaluation_did(main_job):
    _, cache, results = main_job
    model = sketchbench.load_model(results.path, method="sketchynet-v1", canvas=64, cache_dir=cache)
    items = model.data.items("test")
    answers = model.retrieve_all(items)
    assert [a.rank_of(item.photo) for a, item in zip(answers, items)] == model.cell["query_ranks"]
    photos = model.data.photos("test")[:2]
    assert model.encode_photo(photos).shape[0] == 2
    assert model.encode_sketch(model.data.sketches("test", 64)[:3]).shape[0] == 3


def test_api_errors_are_one_line_and_name_python_settings(tmp_path):
    with pytest.raises(sketchbench.SketchbenchError, match=r"^unknown method 'nope'"):
        sketchbench.run_grid("nope", "tiny", preset="smoke", cache_dir=tmp_path)
    with pytest.raises(sketchbench.SketchbenchError, match=r"^params epochs='-3': must be at least 1"):
        sketchbench.run_grid("triplet-timm", "tiny", preset="smoke", params={"epochs": -3}, cache_dir=tmp_path)
    with pytest.raises(sketchbench.SketchbenchError, match=r"needs a teacher|teacher 'sketchynet-v1' is itself a student"):
        sketchbench.run_grid("sketchynet-v1", "tiny", preset="smoke", teacher="sketchynet-v1", cache_dir=tmp_path)
    with pytest.raises(sketchbench.SketchbenchError, match="unknown settings: colour"):
        sketchbench.run_grid("triplet-timm", "tiny", preset="smoke", colour="red")
    with pytest.raises(sketchbench.SketchbenchError, match="does not exist"):
        sketchbench.load_model(tmp_path / "missing.json")


def test_the_api_is_not_the_run_package():
    """``sketchbench.run`` stays the package; the API's names cannot be shadowed by it."""
    import sketchbench.run.loop  # noqa: F401  (importing a submodule sets sketchbench.run)

    assert sketchbench.run.__name__ == "sketchbench.run" and callable(sketchbench.run_grid)
    assert sketchbench.load_model.__module__ == "sketchbench.run.api"


def test_run_grid_untrained_floor_in_seconds(tmp_path):
    """``train=False``: the random-init floor, nothing trained or cached; params and canvases as given."""
    results = sketchbench.run_grid(["triplet-timm"], ["tiny"], canvases=[32], preset="smoke", train=False,
                                   params={"backbone": "test_efficientnet"}, cache_dir=tmp_path / "c",
                                   out=tmp_path / "r.json")
    (cell,) = results.cells
    assert (cell.method, cell.canvas, cell.variant) == ("triplet-timm", 32, "random init,backbone=test_efficientnet")
    assert not any((tmp_path / "c").rglob("checkpoints/*.pt"))
    assert Path(results.path) == tmp_path / "r.json"
    assert len(tiny_data().items("test")) == cell.num_queries
