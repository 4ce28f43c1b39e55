"""Built-in students: SketchyNetV1, the KD baselines, the pruning baselines and MobileNetV2-SN."""

from sketchbench import hookimpl

_S = "sketchbench_students"
_KD = dict(kind="baseline", needs_teacher=True, default_teacher="triplet-sn")


@hookimpl
def register_methods(register):
    register("sketchynet-v1", f"{_S}.sketchynet_v1:SketchyNetV1", kind="student", needs_teacher=True,
             default_teacher="triplet-sn",
             description="SketchyNetV1: MobileNetV2 student, triplet + triplet-RKD (Huber), multi-canvas")
    register("mobilenetv2-sn", f"{_S}.mobilenetv2_sn:MobileNetV2SN", kind="baseline",
             description="MobileNetV2 trained with the triplet loss alone, multi-canvas (photo-efficient net on sketches)")
    register("b-regress", f"{_S}.kd_baselines:BRegress",
             description="B-Regress: FitNets hint regression (last feature maps, 1x1 conv regressor) + triplet", **_KD)
    register("b-akd", f"{_S}.kd_baselines:BAKD",
             description="B-AKD: attention transfer on the last feature maps + triplet", **_KD)
    register("b-pkt", f"{_S}.kd_baselines:BPKT",
             description="B-PKT: probabilistic knowledge transfer on the triplet embeddings + triplet", **_KD)
    register("b-thinet", f"{_S}.pruning:BThiNet",
             description="B-ThiNet: teacher pruned by ThiNet (greedy next-layer reconstruction), fine-tuned", **_KD)
    register("b-prune", f"{_S}.pruning:BPrune",
             description="B-Prune: teacher pruned by Molchanov'16 Taylor criterion, fine-tuned", **_KD)
