"""The poster's dynamic-resolution baselines B-BFR, B-DRS and B-Crop — OUR INTERPRETATIONS.

The poster lists these three rows (ShoeV2: B-BFR 224×224, B-DRS and B-Crop "Dynamic") without
defining them, and no other source does. Each is built here on the same frozen upstream as
SketchyNetV2 (SketchyNetV1), so that only the way the canvas is chosen differs:

- **B-BFR** ("best fixed resolution"): evaluate the upstream on a held-out part of the training
  split at every canvas and always use the canvas with the best ``acc@1 − λ·normalised FLOPs``
  (λ = ``lambda_flops``, 0 by default: simply the best acc@1, ties to the smaller canvas). The
  "held-out" sketches were seen by the upstream in its own training (the runner trains it on the
  whole training split); they are held out from nothing else, so their accuracy is optimistic,
  but it is only used to compare canvases with each other.
- **B-DRS** ("dynamic resolution selection"): the same kind of selector network as SketchyNetV2
  (GRU over the stroke-5 sequence by default), trained with cross-entropy instead of rewards.
  Label of a training sketch = the smallest canvas at which the upstream ranks its own photo
  first among all training photos; the largest canvas when there is none.
- **B-Crop**: crop the sketch to its bounding box and render the crop at a smaller canvas. Our
  crop: the vector sketch is re-normalised to fill its bounding box on *both* axes (what cropping
  a raster to the ink's box and resizing the crop to a square does; the library's vector sketches
  are already scaled so that their longer side fills the box, so an aspect-keeping crop would
  change nothing), then rendered with ``render_sketch`` at the chosen canvas — these renders
  replace the cached ones at evaluation (``sketches_at``). Raster-only sketches are cropped in
  pixels to the ink's box and downscaled by the library's raster path. Canvas rule: the
  **smallest canvas at which the crop's ink coverage** (share of pixels darker than mid-grey) **is
  at most** ``max_ink`` (default 0.15), else the largest: a dense, detailed sketch needs more
  pixels before its strokes stop merging. (Matching the full sketch's ink density at the largest
  canvas, a rule one might try first, is degenerate with this renderer: above 64 px the stroke
  width grows with the canvas, so coverage plateaus, and a stretched crop is always denser than
  the uncropped sketch — every sketch would get the largest canvas.)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from sketchbench import (
    Method,
    MethodContext,
    OnUpstream,
    Param,
    RunData,
    SelectorOnUpstream,
    Sketch,
    SketchItem,
    canvas_set,
    downscale_raster,
    render_sketch,
)
from sketchbench.training import Trainer

from .critic import critic_tables
from .selectors import COORDS


# -- B-BFR ---------------------------------------------------------------------------------------
def bfr_scores(acc1: torch.Tensor, flops: torch.Tensor, lambda_flops: float) -> torch.Tensor:
    """``acc@1 (fraction) − λ·(q − q_min)/(q_max − q_min)`` per canvas."""
    q = flops.double()
    span = float(q.max() - q.min())
    norm = (q - q.min()) / span if span > 0 else torch.zeros_like(q)
    return acc1.double() - lambda_flops * norm


class _Choice(nn.Module):
    """B-BFR's state: the canvas set, the chosen canvas and the validation scores."""

    def __init__(self, canvases: Sequence[int]) -> None:
        super().__init__()
        self.register_buffer("canvas_set", torch.tensor(sorted(int(c) for c in canvases), dtype=torch.long))
        self.register_buffer("chosen", torch.tensor(int(max(canvases))))
        self.register_buffer("val_acc1", torch.zeros(len(canvases), dtype=torch.float64))


class BBFR(OnUpstream):
    upstream = "sketchynet-v1"
    default_teacher = "triplet-sn"
    kind = "baseline"
    description = "B-BFR (our interpretation): the upstream at its best fixed canvas on held-out training sketches"
    version = "1"
    params = {
        "val_fraction": Param(0.25, "share of the training sketches used to compare the canvases (seeded)", min=0.01, max=1.0),
        "lambda_flops": Param(0.0, "canvas score = acc@1 − λ·normalised FLOPs (0 = the best acc@1)", min=0.0, max=1000.0),
    }

    def __init__(self, ctx: MethodContext) -> None:
        super().__init__(ctx)
        self.choice = _Choice(ctx.preset.canvases)

    def modules(self) -> nn.Module:
        return self.choice

    def load_state(self, state: dict[str, Any]) -> None:
        self.choice = _Choice(state["state_dict"]["canvas_set"].tolist())
        self.choice.load_state_dict(state["state_dict"])

    def validation_indices(self, n: int) -> list[int]:
        k = min(n, max(1, math.ceil(self.p["val_fraction"] * n)))
        return sorted(np.random.default_rng(self.ctx.seed).permutation(n)[:k].tolist())

    def train(self, data: RunData, canvases: Sequence[int], teacher: Method | None = None) -> None:
        up = self.freeze_upstream()
        cs = canvas_set(self.ctx.preset, canvases)
        val = self.validation_indices(len(data.items("train")))
        tables = critic_tables(up, data, cs, indices=val, negatives=1, seed=self.ctx.seed)
        acc1 = (tables.ranks == 1).double().mean(dim=0)
        scores = bfr_scores(acc1, tables.flops, self.p["lambda_flops"])
        self.choice = _Choice(cs)
        self.choice.chosen.fill_(cs[int(torch.argmax(scores))])  # first maximum: ties go to the smaller canvas
        self.choice.val_acc1.copy_(acc1)

    def choose_canvases(self, data: RunData, split: str) -> list[int]:
        return [int(self.choice.chosen)] * len(data.items(split))

    def choose_canvas(self, item: SketchItem) -> int:
        return int(self.choice.chosen)

    def extra_metrics(self, data: RunData, canvas: int | None) -> dict[str, float]:
        out = {"bfr_canvas": float(self.choice.chosen)}
        for c, a in zip(self.choice.canvas_set.tolist(), self.choice.val_acc1.tolist()):
            out[f"bfr_val_acc1_{c}"] = 100.0 * a
        return out


# -- B-DRS ---------------------------------------------------------------------------------------
def drs_labels(ranks: torch.Tensor) -> torch.Tensor:
    """``(N, K)`` ranks of each sketch's photo at canvases in ascending order → ``(N,)`` label:
    the index of the smallest canvas with rank 1, else the largest (``K − 1``)."""
    first = ranks == 1
    k = ranks.shape[1]
    idx = torch.where(first, torch.arange(k).expand_as(ranks), torch.full_like(ranks, k))
    return idx.min(dim=1).values.clamp_max(k - 1)


class BDRS(SelectorOnUpstream):
    upstream = "sketchynet-v1"
    default_teacher = "triplet-sn"
    kind = "baseline"
    description = "B-DRS (our interpretation): selector classifier trained on the smallest canvas that ranks the photo first"
    version = "2"  # 2: the selector is a registered CanvasSelector (checkpoints of version 1 do not fit)
    params = {
        "encoder": Param("gru", "the canvas selector: a registered selector (sketchbench list selectors)"),
        "hidden": Param(128, "hidden size of the selector", min=1, max=4096),
        "coords": Param("absolute", "sequence rows: absolute (x, y) or offsets", choices=COORDS),
        "max_points": Param(100, "RDP budget: at most this many points per sketch", min=2, max=100000),
        "epochs": Param(30, "classifier epochs", presets={"smoke": 10, "paper": 50}, min=1, max=10000),
        "lr": Param(1e-3, "Adam learning rate of the classifier", min=1e-12, max=10.0),
    }

    def __init__(self, ctx: MethodContext) -> None:
        super().__init__(ctx)
        self.label_share: dict[str, float] = {}

    def state(self) -> dict[str, Any]:
        return {**super().state(), "label_share": dict(self.label_share)}

    def load_state(self, state: dict[str, Any]) -> None:
        super().load_state(state)
        self.label_share = dict(state.get("label_share", {}))

    def train(self, data: RunData, canvases: Sequence[int], teacher: Method | None = None) -> None:
        up = self.freeze_upstream()
        cs, inputs = self.prepare_training(data, canvases)
        tables = critic_tables(up, data, cs, negatives=1, seed=self.ctx.seed)
        labels = drs_labels(tables.ranks)
        counts = torch.bincount(labels, minlength=len(cs)).double() / len(labels)
        self.label_share = {f"drs_label_share_{c}": float(v) for c, v in zip(cs, counts.tolist())}
        n, bsz = len(labels), max(2, self.ctx.preset.batch_size)
        gen = torch.Generator().manual_seed(self.ctx.seed)
        trainer = Trainer(self.selector.parameters(), lr=self.p["lr"], device=self.device, desc=f"{self.ctx.name} CE")
        self.selector.train()
        for _ in trainer.epochs(self.p["epochs"], max(1, math.ceil(n / bsz))):
            order = torch.randperm(n, generator=gen)
            for start in range(0, n, bsz):
                idx = order[start : start + bsz]
                if len(idx) < 2:
                    continue
                x, lengths = self.selector.collate([inputs[i] for i in idx.tolist()])
                trainer.step(F.cross_entropy(self.selector(x.to(self.device), lengths).float(), labels[idx].to(self.device)))
        self.selector.eval()

    def extra_metrics(self, data: RunData, canvas: int | None) -> dict[str, float]:
        return dict(self.label_share)


# -- B-Crop --------------------------------------------------------------------------------------
def crop_vector(sketch: Sketch) -> Sketch:
    """The sketch stretched to fill its bounding box on both axes (an axis with no extent stays
    centred)."""
    pts = sketch.points.astype(np.float64).copy()
    lo, hi = pts[:, :2].min(axis=0), pts[:, :2].max(axis=0)
    ext = hi - lo
    for a in range(2):
        pts[:, a] = (pts[:, a] - lo[a]) / ext[a] if ext[a] > 0 else 0.5
    return Sketch(pts.astype(np.float32))


def crop_raster(raster: np.ndarray, threshold: int = 128) -> np.ndarray:
    """A black-on-white raster cropped to its ink's bounding box and resized back to a square of
    its original size (the raster counterpart of :func:`crop_vector`)."""
    img = np.asarray(raster, dtype=np.uint8)
    ys, xs = np.nonzero(img < threshold)
    if len(xs) == 0:
        return img.copy()
    crop = img[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    side = max(img.shape)
    return np.asarray(Image.fromarray(crop).resize((side, side), Image.BILINEAR), dtype=np.uint8)


def ink_coverage(image: np.ndarray, threshold: int = 128) -> float:
    """Share of pixels darker than ``threshold`` in a black-on-white image."""
    return float((np.asarray(image) < threshold).mean())


def render_crop(item: SketchItem, canvas: int) -> np.ndarray:
    if item.vector is not None:
        return render_sketch(crop_vector(item.vector), canvas)
    return downscale_raster(crop_raster(item.raster), canvas)


def crop_canvas(item: SketchItem, canvases: Sequence[int], max_ink: float) -> tuple[int, np.ndarray]:
    """The smallest canvas whose crop render has ink coverage ≤ ``max_ink`` (else the largest),
    with that render."""
    cs = sorted(int(c) for c in canvases)
    for c in cs:
        img = render_crop(item, c)
        if ink_coverage(img) <= max_ink or c == cs[-1]:
            return c, img
    raise AssertionError("unreachable")


class BCrop(OnUpstream):
    upstream = "sketchynet-v1"
    default_teacher = "triplet-sn"
    kind = "baseline"
    description = "B-Crop (our interpretation): the sketch cropped to its box, rendered at the smallest uncluttered canvas"
    version = "1"
    params = {
        "max_ink": Param(0.15, "pick the smallest canvas at which the crop's ink coverage is at most this", min=0.001, max=1.0),
    }

    def __init__(self, ctx: MethodContext) -> None:
        super().__init__(ctx)
        self.canvases = sorted({int(c) for c in ctx.preset.canvases})
        self._renders: dict[tuple[int, str, int, int], np.ndarray] = {}

    def modules(self) -> nn.Module:
        return nn.Module()  # nothing is learned: a rule on a frozen upstream

    def load_state(self, state: dict[str, Any]) -> None:
        self.canvases = [int(c) for c in state.get("canvases", self.canvases)]

    def state(self) -> dict[str, Any]:
        return {"state_dict": {}, "canvases": list(self.canvases)}

    def train(self, data: RunData, canvases: Sequence[int], teacher: Method | None = None) -> None:
        self.freeze_upstream()
        self.canvases = canvas_set(self.ctx.preset, canvases)

    def choose_canvases(self, data: RunData, split: str) -> list[int]:
        out = []
        for i, item in enumerate(data.items(split)):
            c, img = crop_canvas(item, self.canvases, self.p["max_ink"])
            self._renders[(id(data), split, c, i)] = img
            out.append(c)
        return out

    def choose_canvas(self, item: SketchItem) -> int:
        return crop_canvas(item, self.canvases, self.p["max_ink"])[0]

    def sketches_at(self, data: RunData, split: str, canvas: int, indices: Sequence[int]) -> torch.Tensor:
        items = data.items(split)
        imgs = []
        for i in indices:
            img = self._renders.get((id(data), split, int(canvas), int(i)))
            imgs.append(img if img is not None else render_crop(items[int(i)], int(canvas)))
        return torch.from_numpy(np.stack(imgs)) if imgs else torch.empty(0, canvas, canvas, dtype=torch.uint8)
