"""Canvas selectors ψ_C: a sketch encoder followed by a linear layer γ, giving the logits of
``p(c | s_v) = softmax(W_γ f + b_γ)`` over the canvas set (SketchyNetV2, and B-DRS's classifier).

Encoders (the poster's ablation "different sketch encoders for canvas-size selection"):

- ``gru`` (default, the paper's): a 1-layer GRU over the RDP-simplified stroke-5 sequence; its
  last hidden state is ``f``. Hidden 128 gives ≈ 52 k parameters, the paper's 2.27 M − 2.22 M;
- ``lstm``: the same with an LSTM (the poster: "GRU or LSTM as an adaptive canvas-size selector");
- ``transformer``: a 1-layer pre-norm Transformer encoder over the same sequence (sinusoidal
  positions, masked mean pooling). Our stand-in for the poster's "Decoder-Tf" row;
- ``image``: a tiny 3-layer CNN on the sketch rendered at a 32×32 thumbnail. The poster's
  "Image-based ψ_C" is a much larger network (7.62 M params, 5.73 GFLOPs); ours is deliberately
  small so that choosing the canvas does not cost more than it saves (our simplification).

Sequence rows are ``(x, y, p1, p2, p3)``: the poster writes ``v_t = (x_t, y_t, q_t^1, q_t^2,
q_t^3)`` with absolute coordinates, and lists "Offset s_v" as an ablation, so ``coords="absolute"``
is the default (x, y in the unit box, centred to [-1, 1]) and ``coords="offset"`` feeds the
stroke-5 offsets divided by their standard deviation on the training split (sketch-RNN's
normalisation).

FLOPs: torch-pruning's counter mis-counts ``nn.GRU``/``nn.LSTM`` with ``batch_first`` inputs (its
hook reads the batch and time sizes from ``input[0][0]``: a (1, T, 5) input is counted as T×5
steps). :meth:`CanvasSelector.flops_view` therefore returns, for the recurrent encoders, a module
that runs the *same weights* as a ``GRUCell``/``LSTMCell`` step by step, whose per-call hook is
correct, so a query's selector FLOPs are T × one step + the linear layer.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from sketchbench import Sketch
from sketchbench_query import sequence_rows, stroke5_rows

SEQUENCE_ENCODERS = ("gru", "lstm", "transformer")
ENCODERS = (*SEQUENCE_ENCODERS, "image")
COORDS = ("absolute", "offset")
#: side of the thumbnail the image encoder sees
THUMBNAIL = 32


# -- inputs ------------------------------------------------------------------------------------
def stroke5(sketch: Sketch, max_points: int) -> np.ndarray:
    """The RDP-simplified sketch as stroke-5 rows ``(dx, dy, p1, p2, p3)`` (``≤ max_points + 1``
    rows: the points and the end-of-sketch row): the ``stroke5`` recipe of :mod:`sketchbench_query`."""
    return stroke5_rows(sketch.points, max_points)


def sequence_features(seq5: np.ndarray, coords: str, offset_scale: float = 1.0) -> np.ndarray:
    """Stroke-5 rows → the selector's ``(T, 5)`` float32 input rows (:func:`sketchbench_query.sequence_rows`).

    ``absolute``: the offsets are summed back to absolute positions (the first row's offset is
    from the origin) and mapped from [0, 1] to [-1, 1]; ``offset``: offsets / ``offset_scale``.
    """
    return sequence_rows(seq5, coords, offset_scale)  # a ValueError for unknown coords


def offset_std(seqs: Sequence[np.ndarray]) -> float:
    """Standard deviation of the stroke-5 offsets (first rows excluded), sketch-RNN's scale."""
    parts = [s[1:-1, :2].reshape(-1) for s in seqs if len(s) > 2]
    if not parts:
        return 1.0
    std = float(np.concatenate(parts).std())
    return std if std > 1e-6 else 1.0


def pad_sequences(seqs: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """``(B, T_max, 5)`` zero-padded batch and the ``(B,)`` lengths."""
    lengths = torch.tensor([len(s) for s in seqs], dtype=torch.long)
    out = torch.zeros(len(seqs), int(lengths.max()), seqs[0].shape[-1])
    for i, s in enumerate(seqs):
        out[i, : len(s)] = s
    return out, lengths


def thumbnails_to_input(images: torch.Tensor) -> torch.Tensor:
    """uint8 ``(B, s, s)`` black-on-white → float ``(B, 1, s, s)`` ink in [0, 1]."""
    return (255.0 - images.float()).div_(255.0).unsqueeze(1)


# -- the selector networks -----------------------------------------------------------------------
class CanvasSelector(nn.Module):
    """ψ_C followed by γ: ``forward(x, lengths)`` → logits ``(B, K)`` over the canvas set."""

    encoder: str = ""

    def __init__(self, num_canvases: int, feature_dim: int) -> None:
        super().__init__()
        self.head = nn.Linear(feature_dim, num_canvases)  # γ

    def features(self, x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(self.features(x, lengths))

    def flops_view(self) -> nn.Module:
        """The module whose FLOPs one query costs, called on one unpadded input ``(1, ...)``."""
        return self


class RNNSelector(CanvasSelector):
    """1-layer GRU (the paper's ψ_C) or LSTM; ``f`` = the last hidden state."""

    def __init__(self, num_canvases: int, hidden: int, cell: str = "gru") -> None:
        super().__init__(num_canvases, hidden)
        self.encoder = cell
        rnn = nn.GRU if cell == "gru" else nn.LSTM
        self.rnn = rnn(5, hidden, num_layers=1, batch_first=True)

    def features(self, x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        if lengths is None:
            lengths = torch.full((x.shape[0],), x.shape[1], dtype=torch.long)
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        _, h = self.rnn(packed)
        if isinstance(h, tuple):  # LSTM: (h_n, c_n)
            h = h[0]
        return h[-1]

    def flops_view(self) -> nn.Module:
        return _UnrolledRNN(self)


class _UnrolledRNN(nn.Module):
    """The selector's recurrent encoder run step by step through a cell that *shares* its
    weights: same outputs, and torch-pruning's cell hook counts each step correctly."""

    def __init__(self, selector: RNNSelector) -> None:
        super().__init__()
        rnn = selector.rnn
        cell_cls = nn.GRUCell if isinstance(rnn, nn.GRU) else nn.LSTMCell
        cell = cell_cls(rnn.input_size, rnn.hidden_size)
        cell.weight_ih, cell.weight_hh = rnn.weight_ih_l0, rnn.weight_hh_l0
        cell.bias_ih, cell.bias_hh = rnn.bias_ih_l0, rnn.bias_hh_l0
        self.cell = cell
        self.head = selector.head
        self.hidden = rnn.hidden_size

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


class TransformerSelector(CanvasSelector):
    """Linear 5 → d, sinusoidal positions, one pre-norm encoder layer (4 heads, FFN 2d, GELU),
    masked mean pooling. Written from ``nn.MultiheadAttention`` rather than
    ``nn.TransformerEncoderLayer``, whose fused inference path would bypass the FLOPs hooks."""

    encoder = "transformer"

    def __init__(self, num_canvases: int, hidden: int, heads: int = 4) -> None:
        super().__init__(num_canvases, hidden)
        heads = heads if hidden % heads == 0 else 1
        self.embed = nn.Linear(5, hidden)
        self.norm1 = nn.LayerNorm(hidden)
        self.attn = nn.MultiheadAttention(hidden, heads, batch_first=True)
        self.norm2 = nn.LayerNorm(hidden)
        self.ffn = nn.Sequential(nn.Linear(hidden, 2 * hidden), nn.GELU(), nn.Linear(2 * hidden, hidden))
        self.norm_out = nn.LayerNorm(hidden)
        self.hidden = hidden

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


class ImageSelector(CanvasSelector):
    """A tiny CNN on the 32×32 thumbnail: three stride-2 3×3 convs (16, 32, hidden channels) with
    BatchNorm + ReLU, global average pooling."""

    encoder = "image"

    def __init__(self, num_canvases: int, hidden: int) -> None:
        super().__init__(num_canvases, hidden)
        layers: list[nn.Module] = []
        chans = [1, 16, 32, hidden]
        for cin, cout in zip(chans[:-1], chans[1:]):
            layers += [nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
        self.cnn = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1))

    def features(self, x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        return self.cnn(x).flatten(1)


def build_selector(encoder: str, num_canvases: int, hidden: int) -> CanvasSelector:
    if encoder in ("gru", "lstm"):
        return RNNSelector(num_canvases, hidden, encoder)
    if encoder == "transformer":
        return TransformerSelector(num_canvases, hidden)
    if encoder == "image":
        return ImageSelector(num_canvases, hidden)
    raise ValueError(f"unknown selector encoder {encoder!r} (one of {', '.join(ENCODERS)})")


# -- export -------------------------------------------------------------------------------------------
class ExportedSelector(nn.Module):
    """The selector as a deployment graph: one sketch per call, unpadded, so no packing.

    Sequence encoders take the ``(1, T, 5)`` rows of :func:`sequence_features` (the recurrent ones
    run their ``nn.GRU``/``nn.LSTM`` on the whole sequence: the same last hidden state as the packed
    training path for an unpadded sequence); the image encoder takes the uint8 ``(B, 32, 32)``
    thumbnail, its normalisation inside the graph. Output: logits over the canvas set."""

    def __init__(self, net: CanvasSelector) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        net = self.net
        if isinstance(net, ImageSelector):
            return net(thumbnails_to_input(x))
        if isinstance(net, RNNSelector):
            _, h = net.rnn(x)
            if isinstance(h, tuple):
                h = h[0]
            return net.head(h[-1])
        return net(x, None)


# -- a selector with its inputs ------------------------------------------------------------------
class SelectorBundle(nn.Module):
    """The selector network, the canvas set it chooses from, and how sketches become its input.

    Everything needed at inference is a buffer (the canvas set, the offset scale), so a checkpoint
    of this module restores the selector completely.
    """

    def __init__(self, encoder: str, canvases: Sequence[int], hidden: int, max_points: int, coords: str) -> None:
        super().__init__()
        if encoder not in ENCODERS:
            raise ValueError(f"unknown selector encoder {encoder!r}")
        self.encoder, self.max_points, self.coords = encoder, int(max_points), coords
        self.net = build_selector(encoder, len(canvases), hidden)
        self.register_buffer("canvas_set", torch.tensor(sorted(int(c) for c in canvases), dtype=torch.long))
        self.register_buffer("offset_scale", torch.tensor(1.0))
        self._memo: dict[tuple[int, str], list[torch.Tensor] | torch.Tensor] = {}

    @property
    def canvases(self) -> list[int]:
        return [int(c) for c in self.canvas_set.tolist()]

    # inputs
    def clear_memo(self) -> None:
        self._memo.clear()

    def fit_inputs(self, vectors: Sequence[Sketch]) -> None:
        """Set the offset normalisation from the training sketches (``coords="offset"``)."""
        if self.coords == "offset":
            self.offset_scale.fill_(offset_std([stroke5(v, self.max_points) for v in vectors]))
        self._memo.clear()

    def inputs(self, vectors: Sequence[Sketch] | None, thumbnails: torch.Tensor | None, key: tuple[int, str] | None = None
               ) -> list[torch.Tensor] | torch.Tensor:
        """Per-sketch inputs: a list of ``(T_i, 5)`` tensors, or ``(N, 1, 32, 32)`` thumbnails."""
        if key is not None and key in self._memo:
            return self._memo[key]
        if self.encoder == "image":
            assert thumbnails is not None
            out: list[torch.Tensor] | torch.Tensor = thumbnails_to_input(thumbnails)
        else:
            assert vectors is not None
            scale = float(self.offset_scale)
            out = [torch.from_numpy(sequence_features(stroke5(v, self.max_points), self.coords, scale)) for v in vectors]
        if key is not None:
            self._memo[key] = out
        return out

    def batch(self, inputs: list[torch.Tensor] | torch.Tensor, idx: Sequence[int], device: torch.device
              ) -> tuple[torch.Tensor, torch.Tensor | None]:
        if isinstance(inputs, torch.Tensor):
            return inputs[list(idx)].to(device), None
        x, lengths = pad_sequences([inputs[i] for i in idx])
        return x.to(device), lengths

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(x, lengths)

    @torch.no_grad()
    def predict(self, inputs: list[torch.Tensor] | torch.Tensor, device: torch.device, batch_size: int = 256) -> list[int]:
        """argmax canvas of each input (the paper's deterministic inference)."""
        self.eval()
        n = len(inputs)
        out: list[int] = []
        for start in range(0, n, batch_size):
            x, lengths = self.batch(inputs, range(start, min(n, start + batch_size)), device)
            out += self.net(x, lengths).argmax(dim=1).cpu().tolist()
        cs = self.canvases
        return [cs[k] for k in out]

    def export_graph(self) -> dict:
        """The selector's entry for :meth:`sketchbench.Method.export_modules`: the graph, an example
        input, and the recipe that makes its input from a sketch (``sketchbench.measure.onnx.selector_input``)."""
        if self.encoder == "image":
            example = torch.full((1, THUMBNAIL, THUMBNAIL), 255, dtype=torch.uint8)
            name, axes = "thumbnail", {0: "batch"}
            recipe = {"kind": "thumbnail", "size": THUMBNAIL,
                      "what": f"uint8 (B, {THUMBNAIL}, {THUMBNAIL}): the sketch rendered at {THUMBNAIL}x{THUMBNAIL}"}
        else:
            example = torch.zeros(1, 6, 5)
            example[0, :, 0] = torch.linspace(-1, 1, 6)
            example[0, :-1, 2], example[0, -1, 4] = 1.0, 1.0
            name, axes = "sequence", {1: "points"}
            recipe = {"kind": "stroke5", "max_points": self.max_points, "coords": self.coords,
                      "offset_scale": float(self.offset_scale),
                      "what": "float32 (1, T, 5), one sketch per call: the sketch simplified by Ramer-Douglas-Peucker "
                              f"to at most {self.max_points} points, stroke-5 rows (dx, dy, p1, p2, p3) plus an end row; "
                              + ("x, y summed back to absolute positions and mapped from [0, 1] to [-1, 1]"
                                 if self.coords == "absolute" else
                                 "offsets divided by offset_scale, the first row's start position mapped to [-1, 1]")}
        return {
            "module": ExportedSelector(self.net), "inputs": (example,), "role": "selector",
            "input_names": [name], "output_names": ["logits"], "dynamic_axes": {name: axes, "logits": {0: "batch"}},
            "about": {"encoder": self.encoder, "canvas_set": self.canvases, "input": recipe,
                      "output": f"float32 (1, {len(self.canvases)}) logits over canvas_set",
                      "choice": "canvas_set[argmax(logits)]: the sketch is then rendered at that canvas and encoded"},
        }

    def flops_inputs(self, inputs: list[torch.Tensor] | torch.Tensor, device: torch.device) -> list[tuple[nn.Module, tuple]]:
        """(module, example input) per query: the sequence encoders see that sketch's own sequence
        length, the image encoder one thumbnail."""
        view = self.net.flops_view().eval()
        if isinstance(inputs, torch.Tensor):
            return [(view, (inputs[i : i + 1].to(device),)) for i in range(len(inputs))]
        return [(view, (seq.unsqueeze(0).to(device),)) for seq in inputs]
