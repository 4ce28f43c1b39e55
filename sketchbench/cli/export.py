"""``sketchbench export``: a results cell's trained model as ONNX graphs and a manifest, self-checked."""

from __future__ import annotations

import math
import os
from pathlib import Path

import click

from sketchbench.base.canvas import is_dynamic
from sketchbench.base.errors import ExitCode, SketchbenchError

EPILOG = """\b
Examples:
  sketchbench run -m sketchynet-v2 -d synthetic -p smoke -o results/smoke.json
  sketchbench export results/smoke.json -m sketchynet-v2 -o exports/v2
  sketchbench export results/smoke.json -m sketchynet-v1 --canvas 32 -o exports/v1-32
  sketchbench export results/chairv2.json --data-root ../shared/data/chairv2 --tolerance 1e-5
"""


@click.command(epilog=EPILOG)
@click.argument("results", type=click.Path(path_type=Path))
@click.option("--method", "-m", default=None, help="The cell's method (needed when the file holds several).")
@click.option("--canvas", "-c", default=None,
              help="The cell's canvas (a size or 'dynamic'); a multi-canvas model is then exported at that size only.")
@click.option("--seed", type=int, default=None, help="The cell's seed (default: the file's only one).")
@click.option("--dataset", "-d", default=None, help="The cell's dataset (default: the file's only one).")
@click.option("--data-root", type=click.Path(path_type=Path), default=None,
              help="Dataset root (or SKETCHBENCH_DATA), for datasets with files: the self-check runs the test split.")
@click.option("--cache-dir", type=click.Path(path_type=Path), default=None,
              help="Artifact cache the model was trained into (or SKETCHBENCH_CACHE_DIR).")
@click.option("--out", "-o", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Output folder (default exports/<method>-<dataset>-<canvas>-s<seed>/); files in it are replaced.")
@click.option("--tolerance", type=float, default=1e-4, show_default=True,  # sketchbench.run.export.TOLERANCE
              help="Largest absolute difference allowed between onnxruntime's and PyTorch's outputs.")
def export(results, method, canvas, seed, dataset, data_root, cache_dir, out, tolerance) -> None:
    """Export a results cell's trained model for deployment: ONNX graphs + manifest.json.

    The graphs take uint8 images (normalisation inside): the sketch encoder (one graph with a
    dynamic canvas size, or one per canvas), the photo encoder and, for dynamic methods, the canvas
    selector. The manifest gives the renderer's settings, the selector's input recipe, the distance
    (Euclidean) and the self-check: every test query and photo through onnxruntime and PyTorch, equal
    within the tolerance, with identical ranks; gallery.npy holds the test photos' embeddings. Nothing
    is trained: the model comes from the cache. The folder alone answers queries with numpy, Pillow and
    onnxruntime: sketchbench_query.query(folder, strokes) (docs/deploy.md).
    """
    from sketchbench.results.schema import load_results
    from sketchbench.run.export import default_out_dir, export_trained
    from sketchbench.run.presets import check_canvas
    from sketchbench.run.trained import load_trained

    tol = float(tolerance)
    if not (math.isfinite(tol) and tol >= 0):  # inf would pass any graph, and cannot be written as JSON
        raise SketchbenchError(f"--tolerance {tolerance}: must be a finite number, 0 or more")
    if canvas is not None and not is_dynamic(canvas):
        canvas = str(check_canvas(canvas))
    data = load_results(results)
    if method is not None:
        held = sorted({c["method"] for c in data["cells"] if c.get("status") == "ok"})
        if method not in held:
            raise SketchbenchError(f"--method {method!r}: {results} holds no finished cell of it "
                                   f"(it holds: {', '.join(held) or 'none'})")
    model = load_trained(results, method=method, canvas=canvas, seed=seed, dataset=dataset, data_root=data_root,
                         cache_dir=cache_dir)
    canvases = [int(canvas)] if canvas is not None and not is_dynamic(canvas) else None
    folder = out or default_out_dir(model.cell)
    manifest = _staged(folder, lambda staging: export_trained(model, staging, tolerance=tol, canvases=canvases,
                                                              results_path=results))
    check = manifest["check"]
    files = sorted({f for g in manifest["graphs"].values() for f in ([g["file"]] if "file" in g else g["files"].values())})
    files += [manifest["gallery"]["file"]] if manifest.get("gallery") else []
    click.echo(f"exported {model.cell['method']} ({model.cell['dataset']}, canvas {model.cell['canvas']}, "
               f"seed {model.cell.get('seed', 0)}) to {folder}: {', '.join(files)}, manifest.json")
    click.echo(f"self-check passed: {check['queries']} queries, {check['photos']} photos, max abs diff "
               f"{check['worst_max_abs_diff']:.2g} <= {check['tolerance_max_abs']:g}, ranks identical"
               + (", selector choices identical" if "selector_choices_identical" in check else ""))


def _staged(folder: Path, write):
    """Run ``write(staging)`` in a new sibling folder and move its files into ``folder`` only when it
    finishes (or when its self-check fails: that export is complete, its manifest says why). Any
    other failure (a full disk, a graph that does not export) removes the staging folder: nothing
    half-written is left behind."""
    import shutil
    import tempfile

    try:
        folder.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".partial", dir=folder.parent))
    except OSError as exc:
        raise SketchbenchError(f"--out {str(folder)!r}: cannot create the folder: {exc.strerror or exc}") from None
    try:
        try:
            result = write(staging)
        except SketchbenchError as exc:
            if exc.exit_code != ExitCode.FAILED or not (staging / "manifest.json").is_file():
                raise
            _publish(staging, folder)
            raise SketchbenchError(str(exc).replace(str(staging), str(folder)), exit_code=ExitCode.FAILED) from None
        _publish(staging, folder)
        return result
    except OSError as exc:
        raise SketchbenchError(f"cannot write the export into {str(folder)!r}: {exc.strerror or exc} "
                               "(nothing was written)") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _publish(staging: Path, folder: Path) -> None:
    for path in sorted(staging.iterdir()):
        os.replace(path, folder / path.name)


#: the commands this module adds to ``sketchbench`` (:mod:`sketchbench.cli.main`)
COMMANDS = (export,)
