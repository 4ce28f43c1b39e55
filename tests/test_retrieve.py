"""``sketchbench retrieve``: a trained model (a results cell, restored from the cache) ranks a gallery
for query files exactly as evaluation ranks the test split; the gallery's embeddings are cached; bad
input is one line and exit code 2."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from PIL import Image

from sketchbench import render_sketch
from sketchbench.data.queries import read_query, sketch_from_polylines, write_stroke_file
from sketchbench.data.svg import read_svg_sketch
from sketchbench.results.schema import load_results
from sketchbench.run.trained import load_trained
from sketchbench.testing import run_cli


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """SketchyNetV2 (with its teacher and V1) trained on synthetic at the smoke preset: (results, cache)."""
    root = tmp_path_factory.mktemp("retrieve")
    results, cache = root / "smoke.json", root / "cache"
    code, _, err = run_cli("run", "-m", "sketchynet-v2", "-d", "synthetic", "-p", "smoke", "--device", "cpu",
                           "--cache-dir", str(cache), "-o", str(results))
    assert code == 0, err
    return results, cache


def retrieve(trained, *args: str) -> tuple[int, str, str]:
    results, cache = trained
    return run_cli("retrieve", "-r", str(results), "--cache-dir", str(cache), *args)


def retrieve_json(trained, *args: str) -> dict:
    code, out, err = retrieve(trained, "--format", "json", *args)
    assert code == 0, err
    return json.loads(out)


def test_sketch_file_rules():
    # unit-box coordinates are kept as they are; pixels are scaled into the unit box
    s = sketch_from_polylines([[[0.1, 0.2], [0.3, 0.4]], [[0.5, 0.5]]])
    assert np.allclose(s.points, [[0.1, 0.2, 0], [0.3, 0.4, 1], [0.5, 0.5, 1]])
    px = sketch_from_polylines([[[10, 20], [110, 70]]])
    assert np.allclose(px.points[:, :2], [[0, 0.25], [1, 0.75]])


@pytest.mark.parametrize("spec", [("sketchynet-v2", "dynamic"), ("sketchynet-v1", "32"), ("triplet-sn", "64")],
                         ids=lambda s: f"{s[0]}@{s[1]}")
def test_ranks_queries_as_evaluation_does(trained, tmp_path, spec):
    results, cache = trained
    method, canvas = spec
    model = load_trained(results, method=method, canvas=canvas, cache_dir=cache)
    items, pairs = model.data.items("test"), model.data.pairs("test").tolist()
    files = []
    for i, item in enumerate(items):  # the test split's sketches as stroke files, both kinds
        files.append(tmp_path / f"q{i:02d}.{'npy' if i % 2 else 'json'}")
        write_stroke_file(files[-1], item.vector)
        assert read_query(files[-1]).vector == item.vector
    out = retrieve_json(trained, "-m", method, "-c", canvas, "--top", "1000", *map(str, files))
    gallery = model.data.split("test").photo_ids
    assert out["gallery"] == {"source": "test", "size": len(gallery), "cached": False}
    ranks = []
    for q, photo in zip(out["queries"], pairs):
        assert [r["photo"] for r in q["results"]] == [gallery[r["index"]] for r in q["results"]]
        assert len(q["results"]) == len(gallery)
        dist = {r["index"]: r["distance"] for r in q["results"]}
        ranks.append(sum(1 for d in dist.values() if d <= dist[photo]))
    cell = model.cell
    assert ranks == cell["query_ranks"]
    assert sum(q["gflops"] for q in out["queries"]) / len(pairs) == pytest.approx(cell["gflops"], rel=1e-6)
    if canvas == "dynamic":
        chosen = [q["canvas"] for q in out["queries"]]
        assert {str(c): chosen.count(int(c)) for c in cell["canvas_histogram"]} == cell["canvas_histogram"]
        assert all(q["canvas_chosen"] and q["selector_gflops"] > 0 for q in out["queries"])
    else:
        assert all(q["canvas"] == int(canvas) and q["selector_gflops"] == 0 for q in out["queries"])


def test_gallery_folder_and_its_cache(trained, tmp_path):
    results, cache = trained
    model = load_trained(results, method="sketchynet-v1", canvas="64", cache_dir=cache)
    split = model.data.split("test")
    folder = tmp_path / "photos"
    folder.mkdir()
    for pid, photo in zip(split.photo_ids, split.photos):  # lossless, at the model's photo size
        Image.fromarray(photo).save(folder / f"{pid}.png")
    query = tmp_path / "q.json"
    write_stroke_file(query, model.data.items("test")[3].vector)
    args = ("-m", "sketchynet-v1", "-c", "64", "--top", "5", str(query))
    first = retrieve_json(trained, "-g", str(folder), *args)
    assert first["gallery"]["cached"] is False and first["gallery"]["size"] == len(split.photo_ids)
    again = retrieve_json(trained, "-g", str(folder), *args)
    assert again["gallery"]["cached"] is True and again["queries"] == [
        {**first["queries"][0], "seconds": again["queries"][0]["seconds"]}]
    # the folder's photos are the split's: the same ranking as --gallery test
    split_answer = retrieve_json(trained, *args)
    assert [r["photo"] + ".png" for r in split_answer["queries"][0]["results"]] == [
        r["photo"] for r in first["queries"][0]["results"]]
    assert [r["distance"] for r in split_answer["queries"][0]["results"]] == pytest.approx(
        [r["distance"] for r in first["queries"][0]["results"]], abs=1e-6)
    # a touched photo file (same bytes) is the same gallery; a changed one is a new gallery
    touched = folder / f"{split.photo_ids[0]}.png"
    os.utime(touched, (touched.stat().st_atime, touched.stat().st_mtime + 10))
    assert retrieve_json(trained, "-g", str(folder), *args)["gallery"]["cached"] is True
    Image.fromarray(255 - split.photos[0]).save(touched)
    assert retrieve_json(trained, "-g", str(folder), *args)["gallery"]["cached"] is False
    # the table names the canvas and the FLOPs
    code, out, err = retrieve(trained, "-g", str(folder), *args)
    assert code == 0, err
    assert "canvas 64x64 (the cell's canvas)" in out and "GFLOPs" in out and "embeddings from the cache" in out


def test_raster_and_svg_queries(trained, tmp_path):
    results, cache = trained
    model = load_trained(results, cache_dir=cache)  # the dynamic main cell
    vector = model.data.items("test")[0].vector
    png = tmp_path / "q.png"
    rgba = np.zeros((200, 200, 4), dtype=np.uint8)  # dark strokes on a transparent background
    rgba[..., 3] = 255 - render_sketch(vector, 200)
    Image.fromarray(rgba, "RGBA").save(png)
    raster = read_query(png).raster
    assert raster.shape == (200, 200) and raster.max() == 255 and raster.min() < 64
    pts = vector.to_xyp(300.0)
    d = " ".join(f"M {s[0, 0]:.3f} {s[0, 1]:.3f} " + " ".join(f"L {x:.3f} {y:.3f}" for x, y in s[1:])
                 for s in np.split(pts[:, :2], np.nonzero(pts[:, 2])[0][:-1] + 1))
    svg = tmp_path / "q.svg"
    svg.write_text(f'<svg xmlns="http://www.w3.org/2000/svg"><g transform="translate(5 7)"><path d="{d}"/></g></svg>')
    assert read_svg_sketch(svg).num_strokes == vector.num_strokes
    out = retrieve_json(trained, "--top", "3", str(png), str(svg))
    assert [q["query"] for q in out["queries"]] == ["q.png", "q.svg"]
    for q in out["queries"]:
        assert q["canvas"] in (32, 64) and q["canvas_chosen"] and len(q["results"]) == 3
        assert q["gflops"] == pytest.approx(q["encoder_gflops"] + q["selector_gflops"])


def _one_line_error(result, needle: str) -> None:
    code, out, err = result
    assert code == 2, (code, out, err)
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1 and err.startswith("error: "), err
    assert needle in err, err


def test_bad_input_is_one_line(trained, tmp_path):
    results, cache = trained
    query = tmp_path / "q.json"
    query.write_text(json.dumps({"strokes": [[[10, 10], [50, 80]]]}))
    bad_png = tmp_path / "bad.png"
    bad_png.write_bytes(b"\x89PNG not really")
    empty = tmp_path / "empty"
    empty.mkdir()
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "a.jpg").write_bytes(b"garbage")
    entity = tmp_path / "e.svg"
    entity.write_text('<?xml version="1.0"?><!DOCTYPE s [<!ENTITY a "aaaa">]><svg><path d="M 0 0 L &a; 1"/></svg>')
    blank = tmp_path / "blank.png"
    Image.new("L", (64, 64), 255).save(blank)
    _one_line_error(run_cli("retrieve", "-r", str(tmp_path / "nope.json"), str(query)), "does not exist")
    _one_line_error(retrieve(trained, "-m", "no-such-method", str(query)), "no finished cell matches")
    _one_line_error(retrieve(trained, "-c", "48", str(query)), "no finished cell matches")
    _one_line_error(retrieve(trained, str(bad_png)), "does not decode as an image")
    _one_line_error(retrieve(trained, str(blank)), "holds no strokes")
    _one_line_error(retrieve(trained, str(entity)), "unsafe XML")
    _one_line_error(retrieve(trained, str(tmp_path / "missing.svg")), "does not exist")
    _one_line_error(retrieve(trained, str(tmp_path)), "is a folder")
    (tmp_path / "bad.json").write_text("[[1, 2]]")
    _one_line_error(retrieve(trained, str(tmp_path / "bad.json")), "not a usable sketch")
    _one_line_error(retrieve(trained, "-g", str(empty), str(query)), "holds no photos")
    _one_line_error(retrieve(trained, "-g", str(tmp_path / "nowhere"), str(query)), "does not exist")
    _one_line_error(retrieve(trained, "-g", str(broken), str(query)), "does not decode as an image")
    # a model that is not in the cache is never trained
    _one_line_error(run_cli("retrieve", "-r", str(results), "--cache-dir", str(tmp_path / "empty-cache"), str(query)),
                    "is not trained yet")
    not_results = tmp_path / "x.json"
    not_results.write_text("{}")
    _one_line_error(run_cli("retrieve", "-r", str(not_results), str(query)), "not a sketchbench results file")
    assert load_results(results)["cells"]  # the results file is untouched
