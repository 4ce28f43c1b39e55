"""The deployed query stage by stage, on a dataset's own sketches, one thread: what each part of a
query from an export folder costs on the torch-free path (``sketchbench_query``), what the numpy
simplification it replaced cost, and what a faster rasteriser could buy at most.

    OMP_NUM_THREADS=1 python benchmarks/query_speed.py EXPORT_DIR -d chairv2 --data-root ../shared/data/chairv2

Per test sketch, each the median of ``--repeats`` calls after one untimed call (then the median and
90th percentile over ``--limit`` sketches, evenly spread):

- ``simplify (numpy, before)``: the RDP sketchbench had (tests/test_simplify.py's oracle), at the
  selector's ``max_points``; ``simplify (compiled)``: :func:`sketchbench_query.simplify`;
- ``selector input``: the export's recipe (:func:`sketchbench_query.selector_input`); ``selector
  graph``: ``selector.onnx`` on it; ``choose``: both, with the argmax (the query's "select");
- ``render @ c``: :func:`sketchbench_query.render_points`; ``floor @ c``: Pillow drawing the same
  polylines straight at c×c, 1 px, no supersampling, no caps or joints (what any Pillow-based
  rasteriser costs at least: the most a faster one could save);
- ``encode @ c``: the sketch encoder graph; ``query``: :meth:`Retriever.query` (choose, render,
  encode, rank the gallery); ``query (batch of all)``: :meth:`Retriever.query_batch` per sketch;
- with ``--encoders gru,lstm,image``: ``choose, <encoder> selector``: each selector network of the
  dynamic plugin (seeded, untrained: time does not depend on the weights), exported and run as above.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import importlib.util  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402
from tabulate import tabulate  # noqa: E402

from sketchbench_query import Retriever, render_points, selector_input, simplify  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def per_sketch(fn: Callable[[np.ndarray], object], sketches: list[np.ndarray], repeats: int) -> list[float]:
    out = []
    for s in sketches:
        fn(s)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn(s)
            times.append(time.perf_counter() - t0)
        out.append(statistics.median(times) * 1000.0)
    return out


def floor_render(points: np.ndarray, canvas: int) -> np.ndarray:
    """Pillow's least: 1 px polylines straight on the canvas (no anti-aliasing, caps or joints)."""
    xy = points[:, :2].astype(np.float64) * (canvas * 0.88) + (canvas * 0.06 - 0.5)
    img = Image.new("L", (canvas, canvas), 255)
    draw = ImageDraw.Draw(img)
    for stroke in np.split(xy, np.flatnonzero(points[:, 2] > 0.5)[:-1] + 1):
        draw.line(stroke.ravel().tolist(), fill=0, width=1)
    return np.asarray(img)


def selector_chooser(encoder: str, canvases: list[int]) -> Callable[[np.ndarray], int]:
    """The dynamic plugin's selector network ``encoder`` (seed 0, untrained) as an onnxruntime
    chooser over ``canvases``, its input made by its own recipe."""
    import torch

    from sketchbench.measure.onnx import export_onnx
    from sketchbench.method.registries import selector_class
    from sketchbench_query.retrieve import ort_session

    torch.manual_seed(0)
    graph = selector_class(encoder)(canvases, 128, {"max_points": 100, "coords": "absolute"}).eval().export_graph()
    model = export_onnx(graph["module"], graph["inputs"], input_names=graph["input_names"],
                        output_names=graph["output_names"], dynamic_axes=graph["dynamic_axes"], what=f"the {encoder} selector")
    session, recipe = ort_session(model, 1), graph["about"]["input"]
    feed = session.get_inputs()[0].name
    return lambda s: canvases[int(np.argmax(session.run(None, {feed: selector_input(s, recipe)})[0][0]))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("export", type=Path, help="a sketchbench export folder (a dynamic method's, for the selector rows)")
    ap.add_argument("-d", "--dataset", default="chairv2")
    ap.add_argument("--data-root", type=Path, default=None)
    ap.add_argument("--limit", type=int, default=100, help="test sketches timed (evenly spread)")
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--encoders", default="", help="also time these selector networks, e.g. gru,lstm,image")
    args = ap.parse_args()

    from sketchbench import DatasetOptions
    from sketchbench.method.registries import get_host

    spec = importlib.util.spec_from_file_location("simplify_oracle", ROOT / "tests" / "test_simplify.py")
    oracle_mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(oracle_mod)
    ds = get_host().datasets.get(args.dataset)().load(DatasetOptions(root=args.data_root, photo_size=32, need_photos=False))
    items = ds.test.sketches
    pick = np.linspace(0, len(items) - 1, min(args.limit, len(items))).round().astype(int)
    sketches = [items[i].vector.points for i in pick]
    r = Retriever(args.export)
    rows: list[tuple[str, list[float]]] = []
    if r.recipe is not None:
        recipe = r.recipe
        session = r.selector
        feed = session.get_inputs()[0].name
        if recipe.get("kind") == "stroke5":
            budget = int(recipe["max_points"])
            rows.append(("simplify (numpy, before)", per_sketch(lambda s: oracle_mod.oracle(s, budget), sketches, 3)))
            rows.append(("simplify (compiled)", per_sketch(lambda s: simplify(s, budget), sketches, args.repeats)))
        rows.append(("selector input", per_sketch(lambda s: selector_input(s, recipe), sketches, args.repeats)))
        inputs = {id(s): selector_input(s, recipe) for s in sketches}
        rows.append(("selector graph", per_sketch(lambda s: session.run(None, {feed: inputs[id(s)]}), sketches, args.repeats)))
        rows.append(("choose (input + graph + argmax)", per_sketch(r.choose_canvas, sketches, args.repeats)))
    for c in sorted(r.encoders):
        rows.append((f"render @ {c}", per_sketch(lambda s, c=c: render_points(s, c), sketches, args.repeats)))
        rows.append((f"floor @ {c}", per_sketch(lambda s, c=c: floor_render(s, c), sketches, args.repeats)))
        images = {id(s): render_points(s, c)[None] for s in sketches}
        enc = r.encoders[c]
        name = enc.get_inputs()[0].name
        rows.append((f"encode @ {c}", per_sketch(lambda s, e=enc, n=name, im=images: e.run(None, {n: im[id(s)]}), sketches,
                                                   args.repeats)))
    for name in [e for e in args.encoders.split(",") if e]:
        rows.append((f"choose, {name} selector", per_sketch(selector_chooser(name, r.canvas_set or sorted(r.encoders)),
                                                            sketches, args.repeats)))
    if r.gallery is not None:
        rows.append(("query", per_sketch(r.query, sketches, args.repeats)))
        t0 = time.perf_counter()
        r.query_batch(sketches)
        rows.append(("query (batch of all, per sketch)", [(time.perf_counter() - t0) * 1000.0 / len(sketches)]))
    table = [[name, f"{statistics.median(v):.3f}", f"{np.percentile(v, 90):.3f}", len(v)] for name, v in rows]
    print(f"{args.dataset}: {len(sketches)} test sketches, {args.export} ({r.manifest['source'].get('method')}, "
          f"canvases {sorted(r.encoders)}), 1 thread\n")
    print(tabulate(table, headers=["stage", "median ms", "p90 ms", "sketches"], tablefmt="github"))


if __name__ == "__main__":
    main()
