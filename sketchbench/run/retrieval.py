"""Retrieval with a trained model (``sketchbench retrieve`` and ``sketchbench demo``): arbitrary query
sketches against a gallery of photos, on the same path as evaluation.

* **Queries** become a query split of their own (a :class:`~sketchbench.data.rundata.RunData` next to
  the model's data, whose test split holds the queries): a fixed-canvas method's query is rendered at
  its cell's canvas through :meth:`Method.sketches_at`, and a dynamic method picks each query's canvas
  with its own :meth:`Method.choose_canvases`, exactly as :func:`~sketchbench.measure.evaluate.evaluate`
  does on a test split. A query's FLOPs are the sketch branch's at its canvas plus, for dynamic
  methods, the selector's (:meth:`Method.selector_flops_inputs`), in the paper's convention.
* **The gallery** (a dataset split, or a folder of photos) is encoded once; its embeddings go into the
  artifact store (kind ``gallery``), keyed by the model (its cell's ``config_hash``, seed and trained
  key) and the gallery (the split's data fingerprint, or the photo files' names, sizes and
  contents), so the next query, in this process or the next, only encodes the sketch.

The core names no method: everything goes through the public :class:`~sketchbench.Method` interface.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sketchbench.base.artifacts import ArtifactCache, stable_hash
from sketchbench.base.canvas import is_dynamic
from sketchbench.base.errors import DataError
from sketchbench.base.preset import Preset
from sketchbench.data.dataset import FGSBIRDataset, SketchItem, Split, fingerprint_files
from sketchbench.data.queries import display_name, list_photos, load_photo, load_photos
from sketchbench.data.rundata import RunData
from sketchbench.measure.evaluate import FlopsTable
from sketchbench.measure.flops import count_flops
from sketchbench.method.training import embed_in_batches
from sketchbench.run.trained import TrainedModel

#: bump when what a gallery entry holds (or how photos are decoded) changes
GALLERY_VERSION = "1"


@dataclass
class Gallery:
    """The photos searched: ids, and where each photo's pixels come from."""

    ids: list[str]
    #: ``"test"``/``"train"`` (the model's dataset split) or the folder
    source: str
    #: what the photos' content depends on (a data fingerprint, or the files' names/sizes/contents)
    fingerprint: str
    #: the photos' files (folder galleries)
    paths: list[Path] | None = None
    #: uint8 ``(P, S, S, 3)`` (split galleries; folder galleries decode on demand)
    array: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.ids)

    @classmethod
    def from_split(cls, data: RunData, split: str) -> Gallery:
        s = data.split(split)
        data.photos(split)  # one line when the dataset has no photos
        return cls(ids=list(s.photo_ids), source=split, fingerprint=stable_hash([data.fingerprint, split]), array=s.photos)

    @classmethod
    def from_folder(cls, folder: Path | str) -> Gallery:
        folder = Path(folder)
        paths = list_photos(folder)
        ids = [display_name(p.relative_to(folder).as_posix()) for p in paths]  # printable, whatever the bytes
        # relative paths too: two photos of one name in different sub-folders must not collide
        return cls(ids=ids, source=str(folder), paths=paths,
                   fingerprint=stable_hash([fingerprint_files(paths), ids]))

    def photos(self, size: int) -> torch.Tensor:
        """All photos as uint8 ``(P, 3, size, size)``, decoded as the dataset loaders decode them."""
        if self.array is not None:
            arr = self.array
            if arr.shape[1] != size:
                raise DataError(f"the gallery's photos are {arr.shape[1]} px, the model's are {size} px")
        else:
            arr = load_photos(self.paths or [], size)
        return torch.from_numpy(np.ascontiguousarray(arr)).permute(0, 3, 1, 2)

    def photo(self, index: int, size: int) -> np.ndarray:
        """One photo as uint8 ``(S, S, 3)`` (for showing it)."""
        if self.array is not None:
            return self.array[index]
        return load_photo(self.paths[index], size)  # type: ignore[index]


@dataclass
class QueryResult:
    """One query's answer: the ranked gallery, its canvas and its cost."""

    query: str
    canvas: int
    #: whether the method chose the canvas (a dynamic method) or it is the cell's fixed canvas
    chosen: bool
    encoder_gflops: float
    selector_gflops: float
    #: gallery indices, nearest first (ties keep gallery order)
    order: list[int]
    #: the distance to every gallery photo, in gallery order
    distances: list[float]
    #: the sketch as the encoder saw it: uint8 ``(c, c)`` (or ``(3, c, c)`` for image queries)
    render: np.ndarray = field(repr=False)
    seconds: float = 0.0

    @property
    def gflops(self) -> float:
        return self.encoder_gflops + self.selector_gflops

    def rank_of(self, index: int) -> int:
        """The rank of gallery photo ``index`` as evaluation counts it: photos at a distance ≤ its own."""
        d = self.distances[index]
        return sum(1 for x in self.distances if x <= d)

    def top(self, k: int) -> list[tuple[int, float]]:
        return [(i, self.distances[i]) for i in self.order[: max(0, k)]]


def query_data(items: Sequence[SketchItem], model_data: RunData, preset: Preset) -> RunData:
    """A :class:`RunData` whose test split is ``items`` (and whose train split is the model's, at the
    model's ``preset``): what a method's evaluation hooks expect. Its renders stay in its own memory."""
    split = Split(sketches=list(items), photo_ids=[], photos=None)
    # a fresh identity: its renders live in its own memory-only store, never shared with another
    key = stable_hash([model_data.fingerprint, "queries", time.time_ns(), id(split)])
    ds = FGSBIRDataset(name=model_data.name, train=model_data.train, test=split,
                       meta={"photos": "a query split has no photos"}, fingerprint=key)
    qdata = RunData(ds, preset, ArtifactCache(None, memory=False), seed=0)
    qdata.train, qdata.test = model_data.train, split  # no preset limit on the queries
    return qdata


class Retriever:
    """A trained model and a gallery: embeds the gallery once (cached), then answers queries."""

    def __init__(self, model: TrainedModel, gallery: Gallery) -> None:
        self.model = model
        self.method = model.method.eval()
        self.gallery = gallery
        self.preset = self.method.ctx.preset
        self.flops = FlopsTable(self.method)
        self._selector_flops: dict[Any, float] = {}
        self.cache_hit = False
        self._embeddings: torch.Tensor | None = None

    @property
    def dynamic(self) -> bool:
        return is_dynamic(self.model.canvas)

    def cache_key(self) -> str:
        cell = self.model.cell
        return stable_hash({
            "config_hash": cell.get("config_hash"), "seed": int(cell.get("seed", 0)),
            "trained": getattr(self.method, "trained_key", None), "gallery": self.gallery.fingerprint,
            "ids": self.gallery.ids, "photo_size": self.preset.photo_size, "version": GALLERY_VERSION,
        })

    def embeddings(self) -> torch.Tensor:
        """The gallery's photo embeddings, from the artifact store or computed (and stored) now."""
        if self._embeddings is None:
            if len(self.gallery) == 0:
                raise DataError(f"the gallery {self.gallery.source!r} is empty")
            cache = self.model.models.cache
            key = self.cache_key()
            entry = cache.load("gallery", key)
            if isinstance(entry, dict) and isinstance(entry.get("embeddings"), torch.Tensor) \
                    and len(entry["embeddings"]) == len(self.gallery):
                self.cache_hit = True
                self._embeddings = entry["embeddings"]
            else:
                photos = self.gallery.photos(self.preset.photo_size)
                emb = embed_in_batches(self.method.encode_photo, photos, self.preset.eval_batch_size)
                if not torch.isfinite(emb).all():
                    raise DataError("the model's photo embeddings of the gallery are not finite")
                cache.save("gallery", key, {"embeddings": emb, "ids": list(self.gallery.ids)})
                self._embeddings = emb
        return self._embeddings

    def _selector_gflops(self, items: Sequence[SketchItem], qdata: RunData) -> list[float]:
        """Per query, the selector's GFLOPs (counted once per module and input shape, as evaluate does)."""
        entries = self.method.selector_flops_inputs(qdata, "test")
        out = []
        for module, example in entries:
            shape_key = (id(module), tuple(getattr(t, "shape", ()) for t in example))
            if shape_key not in self._selector_flops:
                self._selector_flops[shape_key] = count_flops(module, example)[0]
            out.append(self._selector_flops[shape_key] / 1e9)
        if len(out) != len(items):  # not one entry per query: spread the mean
            mean = sum(out) / len(out) if out else 0.0
            out = [mean] * len(items)
        return out

    def search(self, items: Sequence[SketchItem]) -> list[QueryResult]:
        """Rank the gallery for each query (one batch, as evaluation encodes a split)."""
        if not items:
            return []
        gallery = self.embeddings()
        t0 = time.perf_counter()
        method = self.method
        qdata = query_data(items, self.model.data, self.preset)
        n = len(items)
        if self.dynamic:
            # a copy of the list: the method sees arbitrary sketches, not a split it may have memoised
            chosen = [int(c) for c in method.choose_canvases(qdata, "test")]
            if len(chosen) != n:
                raise RuntimeError(f"choose_canvases returned {len(chosen)} canvases for {n} sketches")
            selector = self._selector_gflops(qdata.items("test"), qdata)
        else:
            chosen = [int(self.model.canvas)] * n
            selector = [0.0] * n
        embs: list[torch.Tensor | None] = [None] * n
        renders: list[np.ndarray | None] = [None] * n
        bs = self.preset.eval_batch_size
        for c in sorted(set(chosen)):
            idx = [i for i, x in enumerate(chosen) if x == c]
            images = method.sketches_at(qdata, "test", c, idx)
            emb = embed_in_batches(method.encode_sketch, images, bs)
            for j, i in enumerate(idx):
                embs[i] = emb[j]
                renders[i] = images[j].cpu().numpy()
        sketch = torch.stack(embs)  # type: ignore[arg-type]
        with torch.inference_mode():
            dist = method.distance(sketch.to(method.device), gallery.to(method.device)).float().cpu()
        if not torch.isfinite(dist).all():
            raise DataError("the model's distances are not finite for this query")
        seconds = (time.perf_counter() - t0) / n
        out = []
        for i, item in enumerate(items):
            d = dist[i]
            order = sorted(range(len(d)), key=lambda j, d=d: (float(d[j]), j))
            out.append(QueryResult(
                query=item.id, canvas=chosen[i], chosen=self.dynamic, encoder_gflops=self.flops.at(chosen[i])[0] / 1e9,
                selector_gflops=selector[i], order=order, distances=[float(x) for x in d.tolist()],
                render=renders[i], seconds=seconds,  # type: ignore[arg-type]
            ))
        return out


def result_dict(result: QueryResult, gallery: Gallery, top: int) -> dict[str, Any]:
    """A query's answer as JSON-ready data (``sketchbench retrieve --format json``, the demo's POST)."""
    return {
        "query": result.query,
        "canvas": result.canvas,
        "canvas_chosen": result.chosen,
        "gflops": result.gflops,
        "encoder_gflops": result.encoder_gflops,
        "selector_gflops": result.selector_gflops,
        "seconds": result.seconds,
        "results": [{"rank": r + 1, "index": i, "photo": gallery.ids[i], "distance": d}
                    for r, (i, d) in enumerate(result.top(top))],
    }
