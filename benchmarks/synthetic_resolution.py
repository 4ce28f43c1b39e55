"""Does canvas resolution matter on the ``synthetic`` dataset? A cheap, non-learned check.

Every test sketch is rendered at each canvas size with ``sketchbench.render_sketch`` and matched
against a gallery of *reference sketches*: the clean, fully detailed drawing of every test
instance (no jitter, nothing omitted), rendered at the same canvas. The match score is the
symmetric chamfer distance between the two renders (mean distance from the ink of one to the
nearest ink of the other, ink-weighted, in units of the canvas side), so it tolerates the
sketches' jitter but needs the details to be resolved to tell apart the members of a family.

Prints acc@1 / acc@5 per canvas, the same per sketch detail level, "family@1" (the top match
has the right silhouette family) and "distinct" (the fraction of reference drawings that no other
reference matches as well as itself: how much of the instances' identity survives at that canvas
even without any human noise), and optionally writes them as JSON. ``--figure PATH`` also draws
the docs figure (photos and sketches of a few instances).

    OMP_NUM_THREADS=1 python benchmarks/synthetic_resolution.py --instances 400 --spi 4 \
        --figure docs/images/synthetic_pairs.png
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from scipy.ndimage import distance_transform_edt
from sketchbench_datasets.synthetic import (
    FAMILY_SIZE,
    SyntheticDataset,
    build_shoe,
    draw_sketch,
    make_specs,
    reference_sketch,
    sketch_detail,
)

from sketchbench import DatasetOptions, render_sketch


def _ink_and_distance(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per image: ink weights (0..1, flattened) and the distance (in canvas sides) to the nearest ink."""
    c = images.shape[-1]
    ink = (255.0 - images.astype(np.float32)) / 255.0
    dist = np.stack([distance_transform_edt(im >= 128) for im in images]).astype(np.float32) / c
    return ink.reshape(len(images), -1), dist.reshape(len(images), -1)


def chamfer(query: np.ndarray, gallery: np.ndarray) -> np.ndarray:
    """(Q, G) symmetric ink-weighted chamfer distances between two stacks of black-on-white renders."""
    qi, qd = _ink_and_distance(query)
    gi, gd = _ink_and_distance(gallery)
    q_to_g = (qi @ gd.T) / np.maximum(qi.sum(1, keepdims=True), 1e-6)
    g_to_q = (qd @ gi.T) / np.maximum(gi.sum(1, keepdims=True).T, 1e-6)
    return q_to_g + g_to_q


def figure(path: Path, seed: int = 0) -> None:
    """A grid: per instance its photo, three sketches (careful/detail 3, sloppy/detail 2,
    minimal/detail 0) at 256, and the detailed one at 32 (scaled up) to show what is lost.
    The first two rows are members of one family: same silhouette, different details."""
    from PIL import Image, ImageDraw, ImageFont

    specs = make_specs(32, seed)
    ds = SyntheticDataset().load(DatasetOptions(photo_size=256, seed=seed,
                                                size={"instances": 32, "sketches_per_instance": 1}))
    photos = {pid: ph for split in (ds.train, ds.test) for pid, ph in zip(split.photo_ids, split.photos)}
    rows = [specs[0], specs[1], specs[8], specs[13], specs[21], specs[26]]
    cols = [("careful", 3), ("sloppy", 2), ("minimal", 0)]
    titles = ["photo (256)", "careful, detail 3", "sloppy, detail 2", "minimal, detail 0", "detail 3 at 32x32"]
    tile, gap, head = 256, 6, 30
    grid = Image.new("RGB", (len(titles) * (tile + gap) - gap, head + len(rows) * (tile + gap) - gap), "white")
    draw = ImageDraw.Draw(grid)
    font = ImageFont.load_default(size=18)
    for j, t in enumerate(titles):
        draw.text((j * (tile + gap) + 8, 5), t, fill="black", font=font)
    for i, spec in enumerate(rows):
        y = head + i * (tile + gap)
        shoe = build_shoe(spec)
        grid.paste(Image.fromarray(photos[f"shoe{spec.index:04d}"]), (0, y))
        draw.text((6, y + 4), f"shoe{spec.index:04d} (family {spec.family})", fill="white", font=font,
                  stroke_width=2, stroke_fill="black")
        sketches = [draw_sketch(shoe, spec, st, lv, np.random.default_rng([seed, spec.index, k, 7]))
                    for k, (st, lv) in enumerate(cols)]
        for j, sk in enumerate(sketches):
            grid.paste(Image.fromarray(render_sketch(sk, tile)), ((j + 1) * (tile + gap), y))
        small = Image.fromarray(render_sketch(sketches[0], 32)).resize((tile, tile), Image.NEAREST)
        grid.paste(small, (4 * (tile + gap), y))
        for j in range(1, 5):
            draw.rectangle([j * (tile + gap), y, j * (tile + gap) + tile - 1, y + tile - 1], outline=(200, 200, 200))
    path.parent.mkdir(parents=True, exist_ok=True)
    grid.save(path, optimize=True)
    print(f"figure: {path}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--instances", type=int, default=400)
    ap.add_argument("--spi", type=int, default=4, help="sketches per instance")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--canvases", default="32,64,128,256")
    ap.add_argument("--json", type=Path, default=None, help="write the numbers here")
    ap.add_argument("--figure", type=Path, default=None, help="also draw the docs figure here")
    args = ap.parse_args()
    if args.figure:
        figure(args.figure, args.seed)

    t0 = time.perf_counter()
    ds = SyntheticDataset().load(DatasetOptions(seed=args.seed, need_photos=False,
                                                size={"instances": args.instances, "sketches_per_instance": args.spi}))
    specs = make_specs(args.instances, args.seed)
    test = ds.test
    refs = [reference_sketch(specs[int(pid[4:])]) for pid in test.photo_ids]
    families = np.array([specs[int(pid[4:])].family for pid in test.photo_ids])
    pairs = test.pairs
    levels = np.array([sketch_detail(s.id) for s in test.sketches])
    print(f"synthetic: {len(test.sketches)} test sketches, gallery of {len(refs)} instances "
          f"(families of {FAMILY_SIZE}); generated in {time.perf_counter() - t0:.1f} s")
    out: dict = {"instances": args.instances, "sketches_per_instance": args.spi, "seed": args.seed,
                 "test_sketches": len(test.sketches), "gallery": len(refs), "canvases": {}}
    header = f"{'canvas':>6} {'acc@1':>6} {'acc@5':>6} {'family@1':>8} {'distinct':>8} | acc@1 by detail level " + \
        " ".join(f"d{lv}(n={int((levels == lv).sum())})" for lv in range(4))
    print(header)
    for c in (int(v) for v in args.canvases.split(",")):
        q = np.stack([render_sketch(s.vector, c) for s in test.sketches])
        g = np.stack([render_sketch(r, c) for r in refs])
        d = chamfer(q, g)
        rank = (d <= d[np.arange(len(d)), pairs][:, None]).sum(1)
        top1 = d.argmin(1)
        dr = chamfer(g, g)
        distinct = float(np.mean((dr <= np.diag(dr)[:, None] + 1e-9).sum(1) == 1))
        row = {
            "acc@1": float(np.mean(rank <= 1)), "acc@5": float(np.mean(rank <= 5)),
            "family@1": float(np.mean(families[top1] == families[pairs])), "distinct": distinct,
            "acc@1_by_level": {str(lv): float(np.mean(rank[levels == lv] <= 1)) for lv in range(4) if (levels == lv).any()},
        }
        out["canvases"][str(c)] = row
        print(f"{c:>6} {row['acc@1']:6.3f} {row['acc@5']:6.3f} {row['family@1']:8.3f} {distinct:8.3f} | "
              + " ".join(f"{row['acc@1_by_level'].get(str(lv), float('nan')):>9.3f}" for lv in range(4)))
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
