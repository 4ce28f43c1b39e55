"""Built-in dynamic-canvas methods: SketchyNetV2 and the dynamic-resolution baselines.

Each runs on a trained, frozen ``sketchynet-v1`` (its ``upstream``) and picks a canvas per query.
B-BFR, B-DRS and B-Crop are named but not defined by the paper: ours are interpretations
(docs/methods/dynamic-baselines.md).
"""

from sketchbench import hookimpl

_D = "sketchbench_dynamic"
_DYN = dict(kind="baseline", needs_teacher=False, dynamic=True, upstream="sketchynet-v1", default_teacher="triplet-sn")


@hookimpl
def register_methods(register):
    register("sketchynet-v2", f"{_D}.sketchynet_v2:SketchyNetV2", kind="student", dynamic=True,
             upstream="sketchynet-v1", default_teacher="triplet-sn",
             description="SketchyNetV2: RL canvas selector (GRU over stroke-5) on a frozen SketchyNetV1")
    register("b-bfr", f"{_D}.baselines:BBFR",
             description="B-BFR (our interpretation): the best fixed canvas on held-out training sketches", **_DYN)
    register("b-drs", f"{_D}.baselines:BDRS",
             description="B-DRS (our interpretation): a classifier picks the smallest canvas that ranks the photo first",
             **_DYN)
    register("b-crop", f"{_D}.baselines:BCrop",
             description="B-Crop (our interpretation): crop to the sketch's box, render at the smallest uncluttered canvas",
             **_DYN)
