"""Built-in datasets, registered exactly as a third-party plugin would register them.

Targets are lazy ``"module:Class"`` strings, so ``sketchbench list datasets`` imports nothing.
"""

from sketchbench import hookimpl


@hookimpl
def register_datasets(register):
    register("tiny", "sketchbench_datasets.tiny:TinyDataset", modality="vector",
             description="a few generated pairs for tests (no files)")
    register("synthetic", "sketchbench_datasets.synthetic:SyntheticDataset", modality="vector",
             description="embedded procedural fine-grained shoes: dense photos, abstract vector sketches (no files)")
    for cat in ("shoes", "chairs", "handbags"):
        register(f"qmul-v1-{cat}", f"sketchbench_datasets.qmul_v1:QMULV1{cat.capitalize()}", modality="raster",
                 description=f"QMUL {cat.capitalize()}-V1 .mat release (edge maps as photos)")
    for cat in ("shoes", "chairs"):  # the RGB-photo layout is published for these two only
        register(f"qmul-v1-{cat}-rgb", f"sketchbench_datasets.qmul_v1:QMULV1{cat.capitalize()}RGB", modality="raster",
                 description=f"QMUL {cat[:-1].capitalize()}-V1 with RGB photos (images/*.jpg + sketches/*.png)")
    register("shoev2", "sketchbench_datasets.qmul_v2:ShoeV2", modality="vector",
             description="QMUL-ShoeV2: ShoeV2_Coordinate pickle + photo/")
    register("chairv2", "sketchbench_datasets.qmul_v2:ChairV2", modality="vector",
             description="QMUL-ChairV2: ChairV2_Coordinate pickle + photo/")
    register("sketchy", "sketchbench_datasets.sketchy:Sketchy", modality="vector",
             description="Sketchy Extended: SVG sketches + photos, fine-grained split")
    register("fscoco", "sketchbench_datasets.fscoco:FSCOCO", modality="vector",
             description="FS-COCO: vector .npy scene sketches + COCO photos, val lists")
