"""The canvas selectors ψ_C + γ of SketchyNetV2 and B-DRS, each one :class:`sketchbench.CanvasSelector`
subclass registered under its name (``--param encoder=NAME``):

- ``gru`` (the paper's): a 1-layer GRU over the RDP-simplified stroke-5 sequence; ``f`` = its last
  hidden state. Hidden 128 gives ≈ 52 k parameters, the paper's 2.27 M − 2.22 M;
- ``lstm``: the same with an LSTM (the poster: "GRU or LSTM as an adaptive canvas-size selector");
- ``transformer``: a 1-layer pre-norm Transformer encoder over the same sequence (sinusoidal
  positions, masked mean pooling): our stand-in for the poster's "Decoder-Tf" row;
- ``image``: a tiny 3-layer CNN on the sketch rendered at a 32×32 thumbnail. The poster's
  "Image-based ψ_C" is a much larger network (7.62 M params, 5.73 GFLOPs); ours is deliberately
  small so that choosing the canvas does not cost more than it saves (our simplification);
- ``thumbnail`` (ours, **the default**): the ``image`` CNN on a cheaper thumbnail, the same 32×32
  drawn at 2× instead of 8× supersampling (0.1 ms instead of 0.2 ms a query on ChairV2): the one
  selector family that routes and whose query is faster than SketchyNetV1's at its largest canvas
  (docs/methods/sketchynet-v2.md, "The default selector");
- ``stats`` (ours): a small MLP on ten whole-sketch statistics (strokes, points, ink length, extent,
  ink density, stroke lengths, turning; the ``stats`` recipe of :mod:`sketchbench_query`),
  standardised on the training sketches. It costs almost nothing per query (a few hundred FLOPs
  after a vectorised pass over the points).

Sequence rows are ``(x, y, p1, p2, p3)``: the poster writes ``v_t = (x_t, y_t, q_t^1, q_t^2, q_t^3)``
with absolute coordinates and lists "Offset s_v" as an ablation, so ``coords="absolute"`` is the
default (x, y mapped to [-1, 1]) and ``coords="offset"`` feeds the stroke-5 offsets divided by their
standard deviation on the training split (sketch-RNN's normalisation).

FLOPs: torch-pruning's counter mis-counts ``nn.GRU``/``nn.LSTM`` with ``batch_first`` inputs (its
hook reads the batch and time sizes from ``input[0][0]``: a (1, T, 5) input is counted as T×5
steps). The recurrent selectors' :meth:`flops_view` therefore runs the *same weights* as a
``GRUCell``/``LSTMCell`` step by step, whose per-call hook is correct, so a query's selector FLOPs
are T × one step + the linear layer.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from sketchbench import CanvasSelector
from sketchbench_query import SKETCH_STATS

COORDS = ("absolute", "offset")
#: side of the thumbnail the image selectors see
THUMBNAIL = 32
#: the ``thumbnail`` selector's anti-aliasing factor (the renderer's own at 32 is 8)
THUMBNAIL_SUPERSAMPLE = 2


# -- sequences -----------------------------------------------------------------------------------
def offset_std(rows: Sequence[np.ndarray]) -> float:
    """Standard deviation of the stroke-5 offsets (first and end rows excluded), sketch-RNN's scale."""
    parts = [np.asarray(r).reshape(-1, 5)[1:-1, :2].reshape(-1) for r in rows if np.asarray(r).reshape(-1, 5).shape[0] > 2]
    if not parts:
        return 1.0
    std = float(np.concatenate(parts).std())
    return std if std > 1e-6 else 1.0


class SequenceSelector(CanvasSelector):
    """A selector over the RDP-simplified stroke-5 rows (``stroke5`` recipe), padded per batch."""

    recipe = "stroke5"
    #: the export's dynamic axis: the number of rows
    dynamic_input_axes = {1: "points"}

    def build(self, hidden: int) -> int:
        self.register_buffer("offset_scale", torch.tensor(1.0))
        return self.build_encoder(hidden)

    def build_encoder(self, hidden: int) -> int:
        raise NotImplementedError

    def recipe_options(self) -> dict:
        return {"max_points": int(self.options.get("max_points", 100)), "coords": str(self.options.get("coords", "absolute")),
                "offset_scale": float(self.offset_scale)}

    def fit(self, inputs: Sequence[np.ndarray]) -> None:
        # inputs made with the current scale: with coords="offset" and the scale still 1 they are the raw offsets
        if self.options.get("coords") == "offset":
            self.offset_scale.fill_(offset_std([np.asarray(x) * np.array([float(self.offset_scale)] * 2 + [1.0] * 3)
                                                for x in inputs]))

    def collate(self, inputs: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor | None]:
        rows = [np.asarray(x).reshape(-1, 5) for x in inputs]
        lengths = torch.tensor([len(r) for r in rows], dtype=torch.long)
        out = torch.zeros(len(rows), int(lengths.max()), 5)
        for i, r in enumerate(rows):
            out[i, : len(r)] = torch.from_numpy(r)
        return out, lengths


class GRUSelector(SequenceSelector):
    """1-layer GRU (the paper's ψ_C); ``f`` = the last hidden state."""

    name = "gru"
    description = "GRU over the RDP-simplified stroke-5 sequence (the paper's ψ_C)"
    cell = "gru"

    def build_encoder(self, hidden: int) -> int:
        self.rnn = (nn.GRU if self.cell == "gru" else nn.LSTM)(5, hidden, num_layers=1, batch_first=True)
        return hidden

    def features(self, x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        if lengths is None:  # one unpadded sketch (export, FLOPs): no packing needed
            _, h = self.rnn(x)
        else:
            _, h = self.rnn(pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False))
        if isinstance(h, tuple):  # LSTM: (h_n, c_n)
            h = h[0]
        return h[-1]

    def flops_view(self) -> nn.Module:
        return _UnrolledRNN(self)


class LSTMSelector(GRUSelector):
    name = "lstm"
    description = "LSTM over the RDP-simplified stroke-5 sequence (the poster's GRU-or-LSTM)"
    cell = "lstm"


class _UnrolledRNN(nn.Module):
    """The selector's recurrent encoder run step by step through a cell that *shares* its
    weights: same outputs, and torch-pruning's cell hook counts each step correctly."""

    def __init__(self, selector: GRUSelector) -> None:
        super().__init__()
        rnn = selector.rnn
        cell = (nn.GRUCell if isinstance(rnn, nn.GRU) else nn.LSTMCell)(rnn.input_size, rnn.hidden_size)
        cell.weight_ih, cell.weight_hh = rnn.weight_ih_l0, rnn.weight_hh_l0
        cell.bias_ih, cell.bias_hh = rnn.bias_ih_l0, rnn.bias_hh_l0
        self.cell, self.head, self.hidden = cell, selector.head, rnn.hidden_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.new_zeros(x.shape[0], self.hidden)
        c = x.new_zeros(x.shape[0], self.hidden)
        for t in range(x.shape[1]):
            if isinstance(self.cell, nn.LSTMCell):
                h, c = self.cell(x[:, t], (h, c))
            else:
                h = self.cell(x[:, t], h)
        return self.head(h)


def _sinusoid(length: int, dim: int) -> torch.Tensor:
    pos = torch.arange(length, dtype=torch.float32).unsqueeze(1)
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    pe = torch.zeros(length, dim)
    pe[:, 0::2] = torch.sin(pos * freq)
    pe[:, 1::2] = torch.cos(pos * freq[: dim // 2])
    return pe


class TransformerSelector(SequenceSelector):
    """Linear 5 → d, sinusoidal positions, one pre-norm encoder layer (4 heads, FFN 2d, GELU),
    masked mean pooling. Written from ``nn.MultiheadAttention`` rather than
    ``nn.TransformerEncoderLayer``, whose fused inference path would bypass the FLOPs hooks."""

    name = "transformer"
    description = "one pre-norm Transformer layer over the stroke-5 sequence (our 'Decoder-Tf' stand-in)"

    def build_encoder(self, hidden: int) -> int:
        heads = 4 if hidden % 4 == 0 else 1
        self.embed = nn.Linear(5, hidden)
        self.norm1 = nn.LayerNorm(hidden)
        self.attn = nn.MultiheadAttention(hidden, heads, batch_first=True)
        self.norm2 = nn.LayerNorm(hidden)
        self.ffn = nn.Sequential(nn.Linear(hidden, 2 * hidden), nn.GELU(), nn.Linear(2 * hidden, hidden))
        self.norm_out = nn.LayerNorm(hidden)
        return hidden

    def features(self, x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        b, t, _ = x.shape
        h = self.embed(x) + _sinusoid(t, self.hidden).to(x.device)
        if lengths is None:
            pad = torch.zeros(b, t, dtype=torch.bool, device=x.device)
        else:
            pad = torch.arange(t, device=x.device)[None, :] >= lengths.to(x.device)[:, None]
        y = self.norm1(h)
        h = h + self.attn(y, y, y, key_padding_mask=pad if lengths is not None else None, need_weights=False)[0]
        h = h + self.ffn(self.norm2(h))
        h = self.norm_out(h)
        keep = (~pad).float().unsqueeze(-1)
        return (h * keep).sum(1) / keep.sum(1).clamp_min(1.0)


# -- images --------------------------------------------------------------------------------------
class ImageSelector(CanvasSelector):
    """A tiny CNN on the 32×32 thumbnail (``thumbnail`` recipe, uint8 black on white): three
    stride-2 3×3 convs (16, 32, hidden channels) with BatchNorm + ReLU, global average pooling.
    The uint8 → ink conversion is inside the network, so the exported graph takes the render."""

    name = "image"
    description = "tiny CNN on the sketch rendered at 32x32 (our small stand-in for the poster's image-based ψ_C)"
    recipe = "thumbnail"

    def build(self, hidden: int) -> int:
        layers: list[nn.Module] = []
        chans = [1, 16, 32, hidden]
        for cin, cout in zip(chans[:-1], chans[1:]):
            layers += [nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
        self.cnn = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1))
        return hidden

    def recipe_options(self) -> dict:
        return {"size": THUMBNAIL}

    def features(self, x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        ink = (255.0 - x.float()).div(255.0).unsqueeze(1)
        return self.cnn(ink).flatten(1)


class ThumbnailSelector(ImageSelector):
    """The :class:`ImageSelector` network on the thumbnail drawn at :data:`THUMBNAIL_SUPERSAMPLE`×
    (its input is on every query's path: 2× halves its cost and changes the picture by ~14 grey
    levels on inked pixels, which a selector trained on it does not need)."""

    name = "thumbnail"
    description = "tiny CNN on a cheap 32x32 thumbnail (2x supersampled): SketchyNetV2's default"

    def recipe_options(self) -> dict:
        return {"size": THUMBNAIL, "supersample": THUMBNAIL_SUPERSAMPLE}


# -- statistics ----------------------------------------------------------------------------------
class StatsSelector(CanvasSelector):
    """A small MLP (one hidden layer of ``hidden`` units, ReLU) on the standardised ``stats``
    recipe; with ``hidden`` 0 a linear policy on the statistics."""

    name = "stats"
    description = "MLP on ten whole-sketch statistics (strokes, points, ink, extent, stroke lengths, turning)"
    recipe = "stats"

    def build(self, hidden: int) -> int:
        n = len(SKETCH_STATS)
        self.register_buffer("mean", torch.zeros(n))
        self.register_buffer("std", torch.ones(n))
        if hidden <= 0:
            self.mlp = nn.Identity()
            return n
        self.mlp = nn.Sequential(nn.Linear(n, hidden), nn.ReLU())
        return hidden

    def fit(self, inputs: Sequence[np.ndarray]) -> None:
        x = torch.from_numpy(np.concatenate([np.asarray(i, dtype=np.float32) for i in inputs]))
        self.mean.copy_(x.mean(0))
        self.std.copy_(x.std(0, unbiased=False).clamp_min(1e-6))

    def features(self, x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        return self.mlp((x.float() - self.mean) / self.std)


SELECTORS: tuple[type[CanvasSelector], ...] = (GRUSelector, LSTMSelector, TransformerSelector, ImageSelector,
                                               ThumbnailSelector, StatsSelector)
ENCODERS = tuple(s.name for s in SELECTORS)

