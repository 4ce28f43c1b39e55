"""``fg-ibir``: fine-grained *image*-based retrieval, the photo-query side of the paper's pilot study.

The pilot study asks whether sparsity is what lets sketches survive a small canvas: the same
network, trained and tested the same way, once with sketch queries (FG-SBIR, ``triplet-timm``) and
once with photo queries (FG-IBIR, this method), as the query's input resolution falls. "Photos
are pixel-dense; retrieval accuracy drops rapidly with input resolution" (poster).

Interpretation (the poster gives no protocol): the FG-SBIR datasets hold one photo per instance,
so a photo query is *another view* of the paired photo, drawn from that photo at full resolution —
a random resized crop (``crop_min`` … 1 of its area, aspect 3/4 … 4/3), a horizontal flip and a
brightness/contrast jitter (``jitter``) — then resized (antialiased) to the c×c canvas. The gallery
stays the full-size photos, as for sketch queries. Test views are drawn once from the method's seed,
independently of the canvas, so every canvas sees the same view of each query and only its
resolution changes. Training draws fresh views every step. Network, loss and schedule are
``triplet-timm``'s (timm backbone, shared weights, triplet on L2-normalised embeddings).

On QMUL-V1 the "photos" are the release's photo edge maps, so there a photo query is an edge-map
query: denser than a sketch, but not a natural image (``docs/benchmarks.md`` says so next to the numbers).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torchvision.transforms.v2.functional as TF

from sketchbench import Method, Param, RunData
from sketchbench.training import Trainer, triplet_epochs, triplet_loss

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


class PhotoQueryTriplet(TimmTriplet):
    kind = "baseline"
    description = "FG-IBIR (pilot study): photo queries, another view of the paired photo at c x c, vs full photos"
    params = {
        **TimmTriplet.params,
        "crop_min": Param(0.7, "smallest share of the photo's area a query view keeps (random resized crop)"),
        "jitter": Param(0.2, "brightness and contrast jitter of a query view (± this fraction)"),
    }

    def sketches_at(self, data: RunData, split: str, canvas: int, indices: Sequence[int]) -> torch.Tensor:
        """The queries are views of the paired photos; the same views at every canvas (seeded by the run's seed)."""
        pairs = data.pairs(split)
        views = self._views(data.photos(split)[pairs], canvas, torch.Generator().manual_seed(self.ctx.seed))
        return views[list(indices)]

    def _views(self, photos: torch.Tensor, canvas: int, gen: torch.Generator) -> torch.Tensor:
        return photo_views(photos, canvas, gen, self.p["crop_min"], self.p["jitter"])

    def train(self, data: RunData, canvases: Sequence[int], teacher: Method | None = None,
              upstream: Method | None = None) -> None:
        lr = self.p["lr"] or data.preset.lr
        trainer = Trainer(self.net.parameters(), lr=lr, device=self.device, desc=self.ctx.name)
        photos = data.photos("train")
        gen = torch.Generator().manual_seed(self.ctx.seed + 1)
        self.net.train()
        # the shared loop draws triplets and augments the gallery side; the anchors are fresh photo views
        for b in triplet_epochs(data, trainer, epochs=self.p["epochs"] or data.preset.epochs, canvases=canvases,
                                seed=self.ctx.seed, augment=self.p["augment"]):
            with trainer.autocast():
                fp, fn = self.embed(b.pos), self.embed(b.neg)
                anchors = photos[b.positives]
                loss = sum(triplet_loss(self.embed(self._views(anchors, c, gen)), fp, fn, self.p["margin"])
                           for c in b.sketches)
                loss = loss / len(b.sketches)
            trainer.step(loss)
        self.net.eval()
