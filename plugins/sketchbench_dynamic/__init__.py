"""Built-in dynamic-canvas methods: SketchyNetV2, the dynamic-resolution baselines and the poster's
dynamic KD rows.

Each runs on a trained, frozen upstream student (``sketchynet-v1``; for SketchyNetV2 any student
through ``--param upstream=NAME``; ``b-regress``/``b-akd``/``b-pkt`` for the ``-dyn`` rows) and
picks a canvas per query. B-BFR, B-DRS and B-Crop are named but not defined by the paper: ours are
interpretations (docs/methods/dynamic-baselines.md). Registration metadata repeats the classes'.
"""

from sketchbench import hookimpl

_D = "sketchbench_dynamic"
_DYN = dict(kind="baseline", needs_teacher=False, dynamic=True, upstream="sketchynet-v1", default_teacher="triplet-sn")


@hookimpl
def register_selectors(register):
    for name, cls, what in (
        ("gru", "GRUSelector", "GRU over the RDP-simplified stroke-5 sequence (the paper's ψ_C)"),
        ("lstm", "LSTMSelector", "LSTM over the RDP-simplified stroke-5 sequence (the poster's GRU-or-LSTM)"),
        ("transformer", "TransformerSelector", "one pre-norm Transformer layer over the stroke-5 sequence (our 'Decoder-Tf' stand-in)"),
        ("image", "ImageSelector", "tiny CNN on the sketch rendered at 32x32 (our small stand-in for the poster's image-based ψ_C)"),
        ("thumbnail", "ThumbnailSelector", "tiny CNN on a cheap 32x32 thumbnail (2x supersampled): SketchyNetV2's default"),
        ("stats", "StatsSelector", "MLP on ten whole-sketch statistics (strokes, points, ink, extent, stroke lengths, turning)"),
    ):
        register(name, f"{_D}.selectors:{cls}", description=what)


@hookimpl
def register_methods(register):
    register("sketchynet-v2", f"{_D}.sketchynet_v2:SketchyNetV2", kind="student", dynamic=True,
             upstream="sketchynet-v1", default_teacher="triplet-sn",
             description="SketchyNetV2: a canvas selector per sketch, trained on a frozen SketchyNetV1's rewards")
    register("b-bfr", f"{_D}.baselines:BBFR",
             description="B-BFR (our interpretation): the upstream at its best fixed canvas on held-out training sketches",
             **_DYN)
    register("b-drs", f"{_D}.baselines:BDRS",
             description="B-DRS (our interpretation): selector classifier trained on the smallest canvas that ranks "
                         "the photo first",
             **_DYN)
    register("b-crop", f"{_D}.baselines:BCrop",
             description="B-Crop (our interpretation): the sketch cropped to its box, rendered at the smallest "
                         "uncluttered canvas",
             **_DYN)
    # the poster's KD rows are "Dynamic": SketchyNetV2's selector on each KD student
    register("b-regress-dyn", f"{_D}.sketchynet_v2:BRegressDyn",
             description="B-Regress, dynamic: SketchyNetV2's RL canvas selector on a frozen B-Regress (FitNets) student",
             **{**_DYN, "upstream": "b-regress"})
    register("b-akd-dyn", f"{_D}.sketchynet_v2:BAKDDyn",
             description="B-AKD, dynamic: SketchyNetV2's RL canvas selector on a frozen B-AKD (attention transfer) "
                         "student",
             **{**_DYN, "upstream": "b-akd"})
    register("b-pkt-dyn", f"{_D}.sketchynet_v2:BPKTDyn",
             description="B-PKT, dynamic: SketchyNetV2's RL canvas selector on a frozen B-PKT student",
             **{**_DYN, "upstream": "b-pkt"})
