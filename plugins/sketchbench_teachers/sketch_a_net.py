"""The Sketch-a-Net trunk shared by ``triplet-sn`` and ``holef-sn`` (Yu et al. CVPR'16, Song et al. ICCV'17).

The published network (Caffe ``DeepSBIR`` / TF ``Deep_SBIR_tf``) takes a 1-channel 225×225 image and uses
VALID padding::

    conv1 64@15×15/3 → ReLU → max 3/2 → conv2 128@5×5 → ReLU → max 3/2
    → conv3/4/5 256@3×3 pad 1 → ReLU → max 3/2  (256×7×7 at 225 px)
    → fc6 12,544→512 ReLU → fc7 512→256 → L2 normalise

Interpretation for sketchbench (documented in ``docs/methods/triplet-sn.md``):

- **"same" padding.** The benchmark feeds canvases of 32…256 px. With VALID padding a 32 px canvas collapses to
  nothing after conv2, so conv1 uses TF-"SAME" padding 7 (output ⌈c/3⌉), conv2 padding 2, and every max-pool
  padding 1 (output ⌈n/2⌉, never zero). Feature maps, and so FLOPs, then scale with the canvas area.
- **Fixed fc6 input.** An ``AdaptiveMaxPool2d(grid)`` (default 7×7) after pool5 fixes fc6's input at
  256·grid² = 12,544, the published size, at every canvas (it pools 11×11 down at 256 px and repeats cells
  up at 32 px, where pool5 is 2×2). The parameter count is therefore the published one: 8,249,088.
- **Input scaling.** The original subtracts the mean pixel 250.42 from 0…255 images (white paper ≈ 0, ink ≈ −250).
  :func:`sketch_a_net_input` does the same on the 0…1 scale (paper = 0, ink = −1), so zero padding reads as
  blank paper.
- **Photos.** The paper feeds photo *edge maps* (Structured Edge Detection) through the same network. The methods
  feed a Sobel edge map drawn as dark lines on white (``photo_input=edges``, their default) or the greyscale photo.
- **Initialisation.** The paper starts from a Sketch-a-Net pretrained on ImageNet edge maps and TU-Berlin; no such
  weights exist here, so layers get He (Kaiming) initialisation, which trains from scratch without BatchNorm.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sketchbench.training import to_input

#: output channels of conv5, the trunk's feature width
TRUNK_CHANNELS = 256


def sketch_a_net_input(images: torch.Tensor, device: torch.device | str | None = None,
                       photo_input: str = "grey") -> torch.Tensor:
    """uint8 ``(B, c, c)`` sketches or ``(B, 3, S, S)`` photos → ``(B, 1, H, W)`` float, paper 0, ink −1.

    ``photo_input="edges"`` turns 3-channel photos into Sobel edge maps (dark edges on white, like the
    paper's photo edge maps); 1-channel sketches are never edge-filtered.
    """
    photo = images.dim() == 4 and images.shape[1] == 3
    # to_input: grey (mean of RGB), (x − 0.5)/0.5 ∈ [−1, 1], channels_last on CUDA
    x = to_input(images, channels=1, device=device)
    if photo and photo_input == "edges":
        return -sobel_edges(x * 0.5 + 0.5)
    return (x - 1.0) * 0.5


def sobel_edges(grey: torch.Tensor) -> torch.Tensor:
    """Sobel gradient magnitude of ``(B, 1, H, W)`` grey images in [0, 1], scaled to [0, 1] per image."""
    kx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], device=grey.device, dtype=grey.dtype)
    kernels = torch.stack([kx, kx.t()]).unsqueeze(1)
    g = F.conv2d(F.pad(grey, (1, 1, 1, 1), mode="replicate"), kernels)
    mag = g.pow(2).sum(1, keepdim=True).sqrt()
    return mag / mag.amax(dim=(2, 3), keepdim=True).clamp_min(1e-6)


class SketchANetTrunk(nn.Module):
    """conv1 … pool5 (:attr:`features`, a map whose size follows the canvas), then an adaptive max pool
    to ``grid × grid`` (:attr:`pool`): ``(B, 1, H, W)`` → ``(B, 256, grid, grid)``."""

    def __init__(self, in_chans: int = 1, grid: int = 7, conv1_stride: int = 3) -> None:
        super().__init__()
        self.grid = grid
        self.features = nn.Sequential(
            # conv1: 15×15, stride 3; padding 7 = TF "SAME" at stride 3 (output ⌈c/3⌉)
            nn.Conv2d(in_chans, 64, 15, stride=conv1_stride, padding=7), nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2, padding=1),
            nn.Conv2d(64, 128, 5, padding=2), nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2, padding=1),
            nn.Conv2d(128, 256, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(256, TRUNK_CHANNELS, 3, padding=1), nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2, padding=1),
        )
        # fixes fc6's input at 256·grid² whatever the canvas
        self.pool = nn.AdaptiveMaxPool2d(grid)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.features(x))


class SketchANetHead(nn.Module):
    """fc6 (256·grid² → 512, ReLU) and fc7 (512 → ``dim``, linear): the coarse embedding, before normalising."""

    def __init__(self, grid: int = 7, hidden: int = 512, dim: int = 256) -> None:
        super().__init__()
        self.fc6 = nn.Linear(TRUNK_CHANNELS * grid * grid, hidden)
        self.relu = nn.ReLU(inplace=True)
        self.fc7 = nn.Linear(hidden, dim)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return self.fc7(self.relu(self.fc6(f.flatten(1))))


class SketchANet(nn.Module):
    """The Triplet-SN branch: trunk → fc6 → fc7 → L2 normalise, ``(B, 1, H, W)`` → ``(B, dim)``.

    One instance serves sketches, positive and negative photos alike (shared weights, Siamese).
    """

    def __init__(self, in_chans: int = 1, grid: int = 7, hidden: int = 512, dim: int = 256,
                 conv1_stride: int = 3) -> None:
        super().__init__()
        self.trunk = SketchANetTrunk(in_chans, grid, conv1_stride)
        self.head = SketchANetHead(grid, hidden, dim)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.head(self.trunk(x)).float(), dim=-1)


def init_weights(module: nn.Module) -> None:
    """He-normal weights and zero biases for every conv and linear layer (no BatchNorm in Sketch-a-Net,
    so the init alone keeps activations at scale through the 7 layers)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
