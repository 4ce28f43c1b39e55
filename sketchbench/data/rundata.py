"""The data a method trains and is evaluated on: a dataset, limited by the preset, with its
sketches rendered once per canvas (memory and disk cache) and its photos as tensors.

Rendering never happens in a training loop: methods ask for ``sketches(split, canvas)`` and
get the whole split as one uint8 tensor.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from tqdm.auto import tqdm

from sketchbench.base.artifacts import ArtifactCache, stable_hash
from sketchbench.base.errors import DataError
from sketchbench.base.preset import Preset
from sketchbench.base.progress import hidden
from sketchbench.data.dataset import FGSBIRDataset, SketchItem, Split
from sketchbench.data.render import render_item
from sketchbench.data.sketch import BadSketch, Sketch
from sketchbench.data.vectorise import vectorise

#: bump when the renderer's output changes, to invalidate cached canvases
RENDER_VERSION = "2"


def _limit(split: Split, limit: int, seed: int) -> Split:
    """Keep at most ``limit`` sketches (a seeded choice) and the photos they pair with."""
    if limit <= 0 or len(split.sketches) <= limit:
        return split
    rng = np.random.default_rng(seed)
    keep = sorted(rng.choice(len(split.sketches), size=limit, replace=False).tolist())
    photo_ids = sorted({split.sketches[i].photo for i in keep})
    remap = {old: new for new, old in enumerate(photo_ids)}
    sketches = [dataclasses.replace(split.sketches[i], photo=remap[split.sketches[i].photo]) for i in keep]
    negatives = None
    if split.hard_negatives is not None:
        negatives = [[remap[n] for n in split.hard_negatives[i] if n in remap] for i in keep]
    return Split(
        sketches=sketches,
        photo_ids=[split.photo_ids[i] for i in photo_ids],
        photos=None if split.photos is None else split.photos[photo_ids],
        hard_negatives=negatives,
    )


class RunData:
    """A dataset limited by ``preset`` (its ``max_train_sketches``/``max_test_sketches``, a seeded
    choice) with its renders and photos. It keeps no configuration: a method reads its preset from
    its context (``self.ctx.preset``)."""

    def __init__(self, dataset: FGSBIRDataset, preset: Preset, cache: ArtifactCache | None = None, seed: int = 0) -> None:
        self.dataset = dataset
        self.cache = cache or ArtifactCache(None)
        self.train = _limit(dataset.train, preset.max_train_sketches, seed)
        self.test = _limit(dataset.test, preset.max_test_sketches, seed + 1)
        self._canvases: dict[tuple[str, int], torch.Tensor] = {}
        self._vectors: dict[str, list[Sketch]] = {}
        self.fingerprint = stable_hash(
            [dataset.fingerprint, preset.max_train_sketches, preset.max_test_sketches, seed, preset.photo_size]
        )

    @property
    def name(self) -> str:
        return self.dataset.name

    def split(self, name: str) -> Split:
        if name == "train":
            return self.train
        if name == "test":
            return self.test
        raise ValueError(f"unknown split {name!r}")

    def items(self, split: str) -> list[SketchItem]:
        return self.split(split).sketches

    def pairs(self, split: str) -> torch.Tensor:
        """The photo index of each sketch."""
        return torch.from_numpy(self.split(split).pairs)

    def sketches(self, split: str, canvas: int) -> torch.Tensor:
        """All sketches of ``split`` rendered at ``canvas``: uint8 ``(N, c, c)``."""
        key = (split, canvas)
        if key not in self._canvases:
            ckey = stable_hash([self.fingerprint, split, canvas, RENDER_VERSION])
            cached = self.cache.load("canvases", ckey)
            if cached is None:
                items = self.items(split)
                images = np.empty((len(items), canvas, canvas), dtype=np.uint8)
                for i, item in enumerate(
                    tqdm(items, desc=f"render {self.name}/{split} @{canvas}", leave=False, disable=hidden(len(items) < 200))
                ):
                    images[i] = render_item(item.vector, item.raster, canvas)
                cached = torch.from_numpy(images)
                self.cache.save("canvases", ckey, cached)
            self._canvases[key] = cached
        return self._canvases[key]

    def photos(self, split: str) -> torch.Tensor:
        """The split's photos: uint8 ``(P, 3, S, S)``."""
        photos = self.split(split).photos
        if photos is None:
            note = self.dataset.meta.get("photos")  # the loader's account of what is missing, if any
            raise DataError(
                f"dataset {self.name!r}: photos are missing, so it cannot be used for retrieval"
                + (f" ({note})" if isinstance(note, str) else " (see docs/datasets.md for the expected layout)")
            )
        return torch.from_numpy(np.ascontiguousarray(photos)).permute(0, 3, 1, 2)

    def vectors(self, split: str) -> list[Sketch]:
        """Vector form of every sketch; raster-only sketches are vectorised (skeleton tracing)."""
        if split not in self._vectors:
            out = []
            for item in self.items(split):
                if item.vector is not None:
                    out.append(item.vector)
                else:
                    try:
                        out.append(vectorise(item.raster))
                    except BadSketch:
                        out.append(Sketch(np.array([[0.5, 0.5, 1.0]], dtype=np.float32)))
            self._vectors[split] = out
        return self._vectors[split]
