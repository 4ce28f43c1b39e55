"""``example-dots``: a generated fine-grained dataset that needs no files.

Every instance is a pattern of 1 to 6 dots of one radius. Its photo draws the dots as coloured
discs with a dark rim on a random background; each of its sketches circles every dot with a
jittered hand-drawn loop (one stroke per dot). Instances differ only in the number, size and
place of their dots, so retrieval must learn to match outlines to discs: a fine-grained task in
miniature. Everything follows from ``options.seed``.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from sketchbench import DatasetOptions, DatasetSource, FGSBIRDataset, Sketch, SketchItem, Split


def _pattern(rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """Dot centres in the unit box and the pattern's dot radius."""
    return rng.uniform(0.18, 0.82, size=(int(rng.integers(1, 7)), 2)), float(rng.uniform(0.04, 0.13))


def _photo(dots: np.ndarray, radius: float, size: int, rng: np.random.Generator) -> np.ndarray:
    img = Image.new("RGB", (size, size), tuple(int(v) for v in rng.integers(170, 256, 3)))
    draw = ImageDraw.Draw(img)
    r = radius * size
    for x, y in dots * size:  # a coloured disc with a dark rim: the "edge" a sketcher traces
        draw.ellipse([x - r, y - r, x + r, y + r], fill=tuple(int(v) for v in rng.integers(60, 200, 3)),
                     outline=(20, 20, 20), width=max(1, size // 48))
    return np.asarray(img, dtype=np.uint8)


def _sketch(dots: np.ndarray, radius: float, rng: np.random.Generator) -> Sketch:
    t = np.linspace(0, 2 * np.pi, 16)
    strokes = []
    for x, y in dots + rng.normal(0, 0.01, dots.shape):
        r = radius * rng.uniform(0.85, 1.15)
        strokes.append(np.stack([x + r * np.cos(t), y + r * np.sin(t)], axis=1) + rng.normal(0, 0.004, (len(t), 2)))
    # keep the photo's frame (no re-centring): positions are what identifies an instance
    return Sketch.from_strokes(strokes, normalise=False)


class ExampleDots(DatasetSource):
    name = "example-dots"
    description = "generated dot patterns; each sketch circles its photo's dots (no files)"
    needs_root = False  # generated: no --data-root

    def load(self, options: DatasetOptions) -> FGSBIRDataset:
        rng = np.random.default_rng(4321 + options.seed)
        # generated datasets take their size from the preset (``instances`` in presets/*.toml)
        n = int(options.size.get("instances", 12)) if options.size else 12
        per = int(options.size.get("sketches_per_instance", 2)) if options.size else 2
        n, per = max(4, n), max(1, per)
        splits = {}
        for split_name, count in (("train", n), ("test", max(4, n // 2))):
            patterns = [_pattern(rng) for _ in range(count)]
            photos = np.stack([_photo(d, r, options.photo_size, rng) for d, r in patterns])
            items = [SketchItem(f"{split_name}/{i}_{k}", i, vector=_sketch(d, r, rng))
                     for i, (d, r) in enumerate(patterns) for k in range(per)]
            splits[split_name] = Split(items, [f"{split_name}/{i}" for i in range(count)], photos)
        return FGSBIRDataset(
            self.name, splits["train"], splits["test"], meta={"generator": "example-dots v2"},
            fingerprint=f"example-dots-v2-{n}-{per}-{options.seed}-{options.photo_size}",
        )
