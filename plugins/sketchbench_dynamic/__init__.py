"""Built-in dynamic-canvas methods: SketchyNetV2 and the dynamic-resolution baselines."""

from sketchbench import hookimpl

_D = "sketchbench_dynamic"
_DYN = dict(kind="baseline", needs_teacher=False, dynamic=True, default_teacher="triplet-sn")


@hookimpl
def register_methods(register):
    register("sketchynet-v2", f"{_D}.sketchynet_v2:SketchyNetV2", kind="student", dynamic=True,
             default_teacher="triplet-sn",
             description="SketchyNetV2: RL canvas selector (GRU over stroke-5) on a frozen SketchyNetV1")
    register("b-bfr", f"{_D}.baselines:BBFR", description="B-BFR (interpretation): best fixed canvas on validation", **_DYN)
    register("b-drs", f"{_D}.baselines:BDRS", description="B-DRS (interpretation): classifier picks the canvas", **_DYN)
    register("b-crop", f"{_D}.baselines:BCrop", description="B-Crop (interpretation): crop to the sketch, smaller canvas", **_DYN)
