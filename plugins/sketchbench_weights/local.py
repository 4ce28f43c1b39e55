"""Your own weights, dropped into a folder: ``<weights dir>/local/<backbone>.pth`` (a PyTorch state dict
in the timm model's key names; a ``state_dict``/``model`` wrapper and a common prefix such as
``module.`` are accepted). ``<weights dir>`` is ``SKETCHBENCH_WEIGHTS_DIR`` or ``~/.cache/sketchbench/weights``.

E.g. a lab's own ImageNet-trained ``resnet18``: copy it to ``.../local/resnet18.pth`` and run with
``--pretrained local``. The file is loaded with ``weights_only=True`` (a checkpoint is untrusted input)
and must fill every tensor of the backbone.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from sketchbench import DataError
from sketchbench.training import WeightSource, match_keys, weights_dir


class LocalFolder(WeightSource):
    description = "your own files: <weights dir>/local/<backbone>.pth in the timm model's key names"
    backbones = ("*",)
    origin = "yours"
    licence = "yours"

    def folder(self) -> Path:
        return weights_dir() / "local"

    def locate(self, backbone: str) -> Path | None:
        # a backbone name is one file name inside the folder: a name with a separator or '..' would
        # read a file elsewhere (and record its digest) before the name is refused
        if not backbone or "/" in backbone or "\\" in backbone or ".." in backbone or "\0" in backbone:
            raise DataError(f"backbone {backbone!r:.80}: not a file name inside {str(self.folder())!r}")
        path = self.folder() / f"{backbone}.pth"
        return path if path.is_file() else None

    def install_hint(self) -> str:
        return f"put a state dict at {str(self.folder())}/<backbone>.pth"

    def state_dict(self, backbone: str, model: nn.Module) -> dict[str, torch.Tensor]:
        path = self.locate(backbone)
        assert path is not None
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise DataError(f"{str(path)!r} is not a readable PyTorch checkpoint ({type(exc).__name__})") from None
        return match_keys(state, model, what=str(path))
