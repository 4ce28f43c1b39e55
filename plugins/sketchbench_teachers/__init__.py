"""Built-in FG-SBIR teachers (the paper's competitors) and the VGG16 baseline.

Registered lazily: listing them imports no model code.
"""

from sketchbench import hookimpl


@hookimpl
def register_methods(register):
    register("triplet-timm", "sketchbench_teachers.triplet_timm:TimmTriplet", kind="baseline",
             description="triplet-trained timm backbone (--param backbone=NAME)")
    register("vgg16-sn", "sketchbench_teachers.triplet_timm:VGG16SN", kind="teacher", aliases=("b-vgg16-sn",),
             description="B-VGG16-SN: VGG16 features + global pool, triplet loss")
