"""timm's pretrained weights from the Hugging Face hub: every timm backbone with a pretrained tag,
when the hub is reachable (or the weights are already in the local Hugging Face cache).

On a machine without the internet this source is simply unavailable: ``--pretrained`` falls back to
the offline sources, and ``--pretrained timm-hub`` fails at once with one line (no minute of retries:
the host name is resolved first, and huggingface_hub is put in offline mode when it does not resolve).
"""

from __future__ import annotations

import contextlib
import socket
from pathlib import Path

import torch
from torch import nn

from sketchbench import SketchbenchError
from sketchbench.training import WeightsIdentity, WeightSource

HUB_HOST = "huggingface.co"


def hub_reachable(timeout: float = 2.0) -> bool:
    """Whether the hub's host name resolves (a machine without a network fails this at once)."""
    previous = socket.getdefaulttimeout()
    try:
        socket.setdefaulttimeout(timeout)
        socket.getaddrinfo(HUB_HOST, 443)
        return True
    except OSError:
        return False
    finally:
        socket.setdefaulttimeout(previous)


def _cfg(backbone: str):
    import timm

    if not timm.is_model(backbone):
        return None
    return timm.models.get_pretrained_cfg(backbone) if timm.is_model_pretrained(backbone) else None


def cached_file(backbone: str) -> Path | None:
    """The weights of ``backbone`` in the local Hugging Face cache, if they are there."""
    cfg = _cfg(backbone)
    hf_id = getattr(cfg, "hf_hub_id", None) if cfg is not None else None
    if not hf_id:
        return None
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - timm depends on it
        return None
    for filename in ("model.safetensors", "pytorch_model.bin"):
        found = try_to_load_from_cache(hf_id, filename)
        if isinstance(found, str):
            return Path(found)
    return None


@contextlib.contextmanager
def _offline_unless(reachable: bool):
    from huggingface_hub import constants

    previous = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = previous or not reachable
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = previous


class TimmHub(WeightSource):
    description = "timm's pretrained weights from the Hugging Face hub (needs the internet)"
    backbones = ("*",)
    origin = "huggingface.co/timm (per model card)"
    licence = "per model (see its Hugging Face card)"
    online = True

    def serves(self, backbone: str) -> bool:
        return _cfg(backbone) is not None

    def locate(self, backbone: str) -> Path | None:
        return cached_file(backbone)

    def available(self, backbone: str) -> bool:
        return self.serves(backbone) and (cached_file(backbone) is not None or hub_reachable())

    def install_hint(self) -> str:
        if hub_reachable():
            return "downloads on first use (huggingface.co is reachable)"
        return "needs the internet (huggingface.co does not resolve from here)"

    def identity(self, backbone: str) -> WeightsIdentity:
        cfg = _cfg(backbone)
        tag = f"{cfg.architecture}.{cfg.tag}" if cfg is not None and cfg.tag else backbone
        path = cached_file(backbone)
        return WeightsIdentity(self.name, backbone, self.verified(path) if path is not None else None, tag=tag)

    def state_dict(self, backbone: str, model: nn.Module) -> dict[str, torch.Tensor]:
        import timm

        from sketchbench.training import PooledFeatures

        try:
            with _offline_unless(cached_file(backbone) is not None or hub_reachable()):
                pretrained = timm.create_model(backbone, pretrained=True, num_classes=0)
        except Exception as exc:  # network, hub and file errors alike: one line
            raise SketchbenchError(f"timm-hub: the weights of {backbone!r} could not be loaded ({type(exc).__name__}); "
                                   "this machine may be offline: use an offline source (sketchbench weights list)") from None
        if hasattr(pretrained, "features") and hasattr(pretrained, "pre_logits"):
            pretrained = PooledFeatures(pretrained.features)  # VGG: the trunk, as create_backbone builds it
        return pretrained.state_dict()
