"""What a network sees: uint8 images (black-on-white sketches, RGB photos) converted to normalised
float input, photo edge maps, and the random flips and shifts training augments with."""

from __future__ import annotations

import torch
import torch.nn.functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def to_input(images: torch.Tensor, channels: int = 3, device: torch.device | str | None = None) -> torch.Tensor:
    """uint8 images ``(B, H, W)`` or ``(B, C, H, W)`` → float, ImageNet-normalised, ``channels``
    channels (grey is repeated), channels_last on CUDA."""
    x = images
    if x.dim() == 3:
        x = x.unsqueeze(1)
    if device is not None:
        x = x.to(device, non_blocking=True)
    x = x.float().div_(255.0)
    if x.shape[1] == 1 and channels == 3:
        x = x.expand(-1, 3, -1, -1)
    elif x.shape[1] == 3 and channels == 1:
        x = x.mean(dim=1, keepdim=True)
    if channels == 3:
        mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
        x = (x - mean) / std
    else:
        x = (x - 0.5) / 0.5
    if x.is_cuda:
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def edge_map(photos: torch.Tensor) -> torch.Tensor:
    """uint8 photos ``(B, 3, H, W)`` → uint8 ``(B, H, W)`` Sobel edge maps, dark edges on white,
    scaled per image: the photo modality of the original Triplet-SN (which used edge maps), and a
    bridge between photos and sketches for networks trained from scratch."""
    grey = photos.float().mean(dim=1, keepdim=True) / 255.0
    kx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], device=grey.device)
    g = F.conv2d(F.pad(grey, (1, 1, 1, 1), mode="replicate"), torch.stack([kx, kx.t()]).unsqueeze(1))
    mag = g.pow(2).sum(1).sqrt()
    mag = mag / mag.amax(dim=(1, 2), keepdim=True).clamp_min(1e-6)
    return (255.0 * (1.0 - mag)).round().clamp(0, 255).to(torch.uint8)


def random_flip(images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Flip each image horizontally with probability 1/2 (last axis is width)."""
    flip = torch.rand(images.shape[0], generator=generator) < 0.5
    out = images.clone()
    out[flip] = out[flip].flip(-1)
    return out


def random_shift(images: torch.Tensor, max_frac: float = 0.06, generator: torch.Generator | None = None) -> torch.Tensor:
    """Translate uint8 black-on-white images by up to ``max_frac`` of their size (white fill)."""
    n, size = images.shape[0], images.shape[-1]
    m = max(1, int(size * max_frac))
    pad = [m, m, m, m]
    x = images if images.dim() == 4 else images.unsqueeze(1)
    padded = F.pad(x, pad, value=255)
    offs = torch.randint(0, 2 * m + 1, (n, 2), generator=generator)
    out = torch.stack([padded[i, :, oy : oy + size, ox : ox + size] for i, (oy, ox) in enumerate(offs.tolist())])
    return out if images.dim() == 4 else out.squeeze(1)
