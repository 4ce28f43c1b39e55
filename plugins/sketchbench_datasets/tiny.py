"""``tiny``: a handful of generated sketch–photo pairs, for tests of the whole pipeline.

Each instance is a random polygon; its photo is the filled polygon in a random colour and its
sketches are jittered outlines. Deterministic from the seed, no files needed.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from sketchbench import DatasetOptions, DatasetSource, FGSBIRDataset, Sketch, SketchItem, Split


def _polygon(rng: np.random.Generator) -> np.ndarray:
    k = int(rng.integers(3, 8))
    angles = np.sort(rng.uniform(0, 2 * np.pi, k))
    radii = rng.uniform(0.25, 0.45, k)
    return np.stack([0.5 + radii * np.cos(angles), 0.5 + radii * np.sin(angles)], axis=1)


def _photo(poly: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    img = Image.new("RGB", (size, size), tuple(int(v) for v in rng.integers(180, 255, 3)))
    ImageDraw.Draw(img).polygon([(x * size, y * size) for x, y in poly], fill=tuple(int(v) for v in rng.integers(0, 150, 3)))
    return np.asarray(img, dtype=np.uint8)


class TinyDataset(DatasetSource):
    name = "tiny"
    description = "a few generated pairs for tests"
    needs_root = False

    def load(self, options: DatasetOptions) -> FGSBIRDataset:
        rng = np.random.default_rng(1234 + options.seed)
        n = int(options.size.get("instances", 8)) if options.size else 8
        n = max(4, min(n, 16))
        splits = {}
        for split_name, count in (("train", n), ("test", max(4, n // 2))):
            polys = [_polygon(rng) for _ in range(count)]
            photos = np.stack([_photo(p, options.photo_size, rng) for p in polys])
            items = []
            for i, poly in enumerate(polys):
                for k in range(2):
                    pts = np.vstack([poly, poly[:1]]) + rng.normal(0, 0.01, (len(poly) + 1, 2))
                    items.append(SketchItem(f"{split_name}/{i}_{k}", i, vector=Sketch.from_strokes([pts])))
            splits[split_name] = Split(items, [f"{split_name}/{i}" for i in range(count)], photos)
        return FGSBIRDataset("tiny", splits["train"], splits["test"], meta={}, fingerprint=f"tiny-{n}-{options.seed}-{options.photo_size}")
