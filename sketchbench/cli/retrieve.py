"""``sketchbench retrieve``: query a trained model with sketch files, against a dataset split or a
folder of photos."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from sketchbench.base.canvas import is_dynamic

EPILOG = """\b
Examples:
  sketchbench run -m sketchynet-v2 -d synthetic -p smoke -o results/smoke.json
  sketchbench retrieve -r results/smoke.json my_sketch.png
  sketchbench retrieve -r results/smoke.json -m sketchynet-v1 -c 64 a.svg b.json --top 5 --format json
  sketchbench retrieve -r results/chairv2.json --data-root ../shared/data/chairv2 \\
      --gallery ../shared/data/chairv2/photo sketch.npy
"""


def model_options(fn):
    """Which results cell's model: the options ``retrieve`` and ``demo`` share."""
    for decorator in reversed([
        click.option("--method", "-m", default=None, help="The cell's method (needed when the file holds several)."),
        click.option("--canvas", "-c", default=None, help="The cell's canvas (a size or 'dynamic'; default: the largest)."),
        click.option("--seed", type=int, default=None, help="The cell's seed (default: the file's only one)."),
        click.option("--dataset", "-d", default=None, help="The cell's dataset (default: the file's only one)."),
        click.option("--data-root", type=click.Path(path_type=Path), default=None,
                     help="Dataset root (or SKETCHBENCH_DATA), for datasets with files."),
        click.option("--cache-dir", type=click.Path(path_type=Path), default=None,
                     help="Artifact cache the model was trained into (or SKETCHBENCH_CACHE_DIR)."),
        click.option("--device", default="cpu", show_default=True, type=click.Choice(["auto", "cpu", "cuda"])),
    ]):
        fn = decorator(fn)
    return fn


def describe_model(model: Any, results: Path) -> str:
    cell = model.cell
    canvas = cell["canvas"]
    where = "dynamic canvas" if is_dynamic(canvas) else f"canvas {canvas}x{canvas}"
    teacher = f" ← {cell['teacher']}" if cell.get("teacher") else ""
    return f"{cell['method']}{teacher} on {cell['dataset']}, {where}, seed {cell.get('seed', 0)} ({results})"


@click.command(epilog=EPILOG)
@click.argument("queries", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--results", "-r", "results_path", required=True, type=click.Path(path_type=Path),
              help="The results file whose cell's trained model is used (it is restored from the cache, never trained).")
@model_options
@click.option("--gallery", "-g", default="test", show_default=True,
              help="'test' (the cell's dataset test split), 'train', or a folder of photos (.jpg/.png, recursive).")
@click.option("--top", "-k", type=click.IntRange(min=1), default=10, show_default=True, help="How many photos to list per query.")
@click.option("--format", "fmt", default="table", type=click.Choice(["table", "json"]), show_default=True)
def retrieve(queries, results_path, method, canvas, seed, dataset, data_root, cache_dir, device, gallery, top, fmt) -> None:
    """Rank a gallery of photos for each QUERY sketch with a trained model.

    \b
    QUERY files: .png/.jpg raster sketches (dark strokes on light), .svg vector sketches, or stroke
    files: .npy/.json (N, 3) x, y, pen rows, or JSON {"strokes": [[[x, y], ...], ...]} (what
    `sketchbench demo` saves). Fixed-canvas models render the query at their cell's canvas; dynamic
    ones choose each query's canvas and report it. FLOPs: the sketch branch at that canvas (+ the
    selector's), in the paper's convention. The gallery's embeddings are cached, so the next query
    only encodes the sketch.
    """
    from sketchbench.data.queries import read_query
    from sketchbench.run.api import load_model
    from sketchbench.run.retrieval import result_dict

    items = [read_query(q) for q in queries]  # bad input fails before any model is loaded
    model = load_model(results_path, method=method, canvas=canvas, seed=seed, dataset=dataset,
                       data_root=data_root, cache_dir=cache_dir, device=device)
    retriever = model.retriever(gallery)
    answers = retriever.search(items)
    top = min(top, len(retriever.gallery))
    if fmt == "json":
        cell = model.cell
        click.echo(json.dumps({
            "model": {"results": str(results_path), "method": cell["method"], "teacher": cell.get("teacher"),
                      "dataset": cell["dataset"], "canvas": cell["canvas"], "seed": int(cell.get("seed", 0)),
                      "config_hash": cell.get("config_hash")},
            "gallery": {"source": retriever.gallery.source, "size": len(retriever.gallery), "cached": retriever.cache_hit},
            "queries": [result_dict(a, retriever.gallery, top) for a in answers],
        }, indent=2))
        return
    from tabulate import tabulate

    click.echo(f"model: {describe_model(model, results_path)}")
    src = retriever.gallery.source
    kind = f"{model.cell['dataset']} {src} split" if src in ("test", "train") else src
    click.echo(f"gallery: {kind}, {len(retriever.gallery)} photos"
               f" ({'embeddings from the cache' if retriever.cache_hit else 'embedded now, cached for the next query'})")
    for a in answers:
        how = f"chosen by {model.cell['method']}" if a.chosen else "the cell's canvas"
        cost = f"{a.gflops:.4f} GFLOPs"
        if a.chosen:
            cost += f" ({a.encoder_gflops:.4f} encoder + {a.selector_gflops:.4f} selector)"
        click.echo(f"\nquery {a.query}: canvas {a.canvas}x{a.canvas} ({how}), {cost}")
        rows = [(r + 1, retriever.gallery.ids[i], f"{d:.4f}") for r, (i, d) in enumerate(a.top(top))]
        click.echo(tabulate(rows, headers=["rank", "photo", "distance"], tablefmt="simple"))


#: the commands this module adds to ``sketchbench`` (:mod:`sketchbench.cli.main`)
COMMANDS = (retrieve,)
