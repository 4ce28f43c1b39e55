"""What the compiled simplification changes for a trained SketchyNetV2: its chosen canvases and its
test ranks from the numpy RDP sketchbench had (tests/test_simplify.py's oracle) and from
``sketchbench_query.simplify``, on every sketch of the cell's dataset (train and test) and,
optionally, on the real Sketchy SVGs.

    python benchmarks/simplify_change.py RESULTS.json --data-root ../shared/data/chairv2 [--seed 0] \\
        [--sketchy ../shared/data/sketchy-sample]

Prints the number of sketches whose simplified points, chosen canvas and (test split) rank differ.
Nothing is trained: the model comes from the artifact cache (``--cache-dir`` or SKETCHBENCH_CACHE_DIR).
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("results", type=Path)
    ap.add_argument("--method", default="sketchynet-v2")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--data-root", type=Path, default=None)
    ap.add_argument("--cache-dir", type=Path, default=None)
    ap.add_argument("--sketchy", type=Path, default=None, help="a folder of Sketchy SVGs (sketch/<category>/*.svg)")
    args = ap.parse_args()

    from sketchbench import load_svg_sketch
    from sketchbench.measure.metrics import ranks
    from sketchbench.method.training import embed_in_batches
    from sketchbench.run.trained import load_trained
    from sketchbench_query import simplify, stroke5
    from sketchbench_query.recipes import sequence_rows

    spec = importlib.util.spec_from_file_location("simplify_oracle", ROOT / "tests" / "test_simplify.py")
    oracle_mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(oracle_mod)
    model = load_trained(args.results, method=args.method, canvas="dynamic", seed=args.seed, data_root=args.data_root,
                         cache_dir=args.cache_dir)
    method, data = model.method.eval(), model.data
    selector = method.selector
    recipe = selector.input_recipe()
    max_points = recipe["max_points"]
    splits = {name: [it.vector for it in data.items(name)] for name in ("train", "test")}
    if args.sketchy is not None:
        splits["sketchy"] = [load_svg_sketch(f) for f in sorted(args.sketchy.glob("sketch/*/*.svg"))]
    print(f"{args.results}: {model.cell['method']} on {model.cell['dataset']}, seed {model.cell.get('seed')}, "
          f"max_points {max_points}, canvases {selector.canvases}")
    chosen = {}
    for name, sketches in splits.items():
        old = [oracle_mod.oracle(s.points, max_points) for s in sketches]
        new = [simplify(s.points, max_points) for s in sketches]
        points_differ = sum(not (a.shape == b.shape and np.array_equal(a, b)) for a, b in zip(old, new))

        def choose(pts: list[np.ndarray]) -> list[int]:
            return selector.predict([sequence_rows(stroke5(p), recipe["coords"], recipe["offset_scale"])[None] for p in pts])

        chosen[name] = (choose(old), choose(new))
        differ = sum(a != b for a, b in zip(*chosen[name]))
        hist = {c: chosen[name][1].count(c) for c in selector.canvases}
        print(f"{name}: {len(sketches)} sketches, simplified points differ on {points_differ}, chosen canvas differs "
              f"on {differ}; new histogram {hist}")
    photos = embed_in_batches(method.encode_photo, data.photos("test"), 64)
    at = {c: embed_in_batches(method.encode_sketch, data.sketches("test", c), 64) for c in selector.canvases}
    rank = {}
    for k, picks in zip(("old", "new"), chosen["test"]):
        emb = torch.stack([at[c][i] for i, c in enumerate(picks)])
        rank[k] = ranks(method.distance(emb, photos), data.pairs("test")).tolist()
    print(f"test ranks differ on {sum(a != b for a, b in zip(rank['old'], rank['new']))} of {len(rank['new'])}; "
          f"recorded ranks of the cell equal the new: {rank['new'] == model.cell.get('query_ranks')}")


if __name__ == "__main__":
    main()
