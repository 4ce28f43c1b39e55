"""``fg-ibir``: fine-grained *image*-based retrieval, the photo-query side of the paper's pilot study.

The pilot study asks whether sparsity is what lets sketches survive a small canvas: the same
network, trained and tested the same way, once with sketch queries (FG-SBIR) and once with photo
queries (FG-IBIR), as the query's input resolution falls. :class:`PhotoQueries` turns a triplet
method into its photo-query twin: ``fg-ibir`` is ``triplet-timm``'s, ``fg-ibir-sn`` is ``triplet-sn``'s
(Sketch-a-Net; it learns on a few hundred pairs from scratch, where a timm network stays at chance). "Photos
are pixel-dense; retrieval accuracy drops rapidly with input resolution" (poster).

Interpretation (the poster gives no protocol): the FG-SBIR datasets hold one photo per instance,
so a photo query is *another view* of the paired photo, drawn from that photo at full resolution —
a random resized crop (``crop_min`` … 1 of its area, aspect 3/4 … 4/3), a horizontal flip and a
brightness/contrast jitter (``jitter``) — then resized (antialiased) to the c×c canvas. The gallery
stays the full-size photos, as for sketch queries. Test views are drawn once from the method's seed,
independently of the canvas, so every canvas sees the same view of each query and only its
resolution changes. Training draws fresh views of the positive photo every step. Network, loss,
schedule and the gallery side's augmentation are the base method's.

On QMUL-V1 the "photos" are the release's photo edge maps, so there a photo query is an edge-map
query: denser than a sketch, but not a natural image (``docs/benchmarks.md`` says so next to the numbers).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torchvision.transforms.v2.functional as TF

from sketchbench import Param, RunData
from sketchbench.training import TripletBatch

from .triplet_sn import TripletSN
from .triplet_timm import TimmTriplet


def photo_views(photos: torch.Tensor, canvas: int, generator: torch.Generator,
                crop_min: float = 0.7, jitter: float = 0.2) -> torch.Tensor:
    """uint8 ``(N, 3, S, S)`` photos → uint8 ``(N, 3, canvas, canvas)``: one random view of each (resized
    crop, flip, brightness/contrast jitter), the crop drawn in the photo's own pixels."""
    n, _, h, w = photos.shape
    out = torch.empty(n, 3, canvas, canvas, dtype=torch.uint8)
    u = torch.rand(n, 7, generator=generator)
    for i in range(n):
        area = (crop_min + (1 - crop_min) * u[i, 0].item()) * h * w
        aspect = math.exp(math.log(3 / 4) + (math.log(4 / 3) - math.log(3 / 4)) * u[i, 1].item())
        ch = min(h, round(math.sqrt(area / aspect)))
        cw = min(w, round(math.sqrt(area * aspect)))
        top, left = int(u[i, 2].item() * (h - ch + 1)), int(u[i, 3].item() * (w - cw + 1))
        view = TF.resized_crop(photos[i], top, left, ch, cw, [canvas, canvas], antialias=True)
        if u[i, 4].item() < 0.5:
            view = view.flip(-1)
        view = TF.adjust_brightness(view, 1 + jitter * (2 * u[i, 5].item() - 1))
        out[i] = TF.adjust_contrast(view, 1 + jitter * (2 * u[i, 6].item() - 1))
    return out


PHOTO_QUERY_PARAMS = {
    "crop_min": Param(0.7, "smallest share of the photo's area a query view keeps (random resized crop)", min=0.05, max=1.0),
    "jitter": Param(0.2, "brightness and contrast jitter of a query view (± this fraction)", min=0.0, max=1.0),
}


class PhotoQueries:
    """Turns a triplet method into its photo-query (FG-IBIR) twin: queries are views of the paired
    photo, at evaluation (:meth:`sketches_at`) and in training (:meth:`anchor_views`); the network,
    loss and schedule stay the base method's. Put it first in the bases."""

    ctx: Any
    p: dict[str, Any]

    def __init__(self, ctx: Any) -> None:
        super().__init__(ctx)  # type: ignore[call-arg]  # the base method's __init__ (next in the MRO)
        # training views: a stream of its own, so the base method's triplet sampling is unchanged
        self._train_gen = torch.Generator().manual_seed(ctx.seed + 1)

    def sketches_at(self, data: RunData, split: str, canvas: int, indices: Sequence[int]) -> torch.Tensor:
        """The same view of each paired photo at every canvas (seeded by the run's seed)."""
        photos = data.photos(split)[data.pairs(split)]
        return self._views(photos, canvas, torch.Generator().manual_seed(self.ctx.seed))[list(indices)]

    def anchor_views(self, data: RunData, batch: TripletBatch) -> dict[int, torch.Tensor]:
        """Fresh views of the step's positive photos, one set per training canvas."""
        photos = data.photos("train")[batch.positives]
        return {c: self._views(photos, c, self._train_gen) for c in batch.sketches}

    def _views(self, photos: torch.Tensor, canvas: int, gen: torch.Generator) -> torch.Tensor:
        return photo_views(photos, canvas, gen, self.p["crop_min"], self.p["jitter"])


class PhotoQueryTriplet(PhotoQueries, TimmTriplet):
    """``fg-ibir``: ``triplet-timm`` with photo queries."""

    kind = "baseline"
    description = "FG-IBIR (pilot study): triplet-timm with photo queries, another view of the photo at c x c"
    params = {**TimmTriplet.params, **PHOTO_QUERY_PARAMS}


class PhotoQuerySN(PhotoQueries, TripletSN):
    """``fg-ibir-sn``: ``triplet-sn`` (Sketch-a-Net) with photo queries."""

    kind = "baseline"
    description = "FG-IBIR (pilot study): triplet-sn (Sketch-a-Net) with photo queries, another view of the photo at c x c"
    params = {**TripletSN.params, **PHOTO_QUERY_PARAMS}
