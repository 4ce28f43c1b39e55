"""Built-in FG-SBIR teachers (the paper's competitors) and the VGG16 baseline.

Registered lazily: listing them imports no model code.
"""

from sketchbench import hookimpl

_T = "sketchbench_teachers"


@hookimpl
def register_methods(register):
    register("triplet-sn", f"{_T}.triplet_sn:TripletSN", kind="teacher",
             description="Triplet-SN (Yu et al. CVPR'16): Sketch-a-Net, shared weights, squared-Euclidean triplet")
    register("holef-sn", f"{_T}.holef_sn:HolefSN", kind="teacher",
             description="HOLEF-SN / DSSA (Song et al. ICCV'17): attention, coarse-fine fusion, HOLEF distance")
    register("triplet-rl", f"{_T}.triplet_rl:TripletRL", kind="teacher",
             description="Triplet-RL (Bhunia et al. CVPR'20): InceptionV3 triplet + on-the-fly REINFORCE stage")
    register("stylevae", f"{_T}.stylevae:StyleVAE", kind="teacher",
             description="StyleVAE / StyleMeUp (Sain et al. CVPR'21): semantic/style VAE, first-order meta-learning")
    register("partial-ot", f"{_T}.partial_ot:PartialOT", kind="teacher",
             description="Partial-OT (Chowdhury et al. CVPR'22): VGG16 3x3 regions, partial optimal transport")
    register("vgg16-sn", f"{_T}.triplet_timm:VGG16SN", kind="teacher", aliases=("b-vgg16-sn",),
             description="B-VGG16-SN: VGG16 features + global pool, triplet loss (the paper's full network)")
    register("triplet-timm", f"{_T}.triplet_timm:TimmTriplet", kind="baseline",
             description="triplet-trained timm backbone (features + global pool), shared sketch/photo weights")
    register("fg-ibir", f"{_T}.fg_ibir:PhotoQueryTriplet", kind="baseline",
             description="FG-IBIR (pilot study): triplet-timm with photo queries, another view of the photo at c x c")
    register("fg-ibir-sn", f"{_T}.fg_ibir:PhotoQuerySN", kind="baseline",
             description="FG-IBIR (pilot study): triplet-sn (Sketch-a-Net) with photo queries, another view of the photo at c x c")
