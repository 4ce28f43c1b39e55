"""The paper's KD baselines: the SketchyNetV1 student and teacher, with the triplet-RKD term
replaced by a classic distillation loss. Each trains ``L = L_Tri + β·L_KD`` per canvas, averaged
over the preset's canvases (multi-canvas, like SketchyNetV1, so only the KD term differs), with
the teacher frozen and its outputs cached once (see ``teacher_cache``).

- **B-Regress** — FitNets hint regression (Romero et al. ICLR'15), one-stage as in RepDistiller:
  the guided layer is the student's last spatial feature map (MobileNetV2: 1280 channels), the
  hint the teacher's last spatial feature map at the full canvas, grabbed generically with forward
  hooks on ``teacher.sketch_branch()`` (the last 4-D activation with more than one channel that no
  adaptive pool produced: VGG's pool5, Sketch-a-Net's pool5). The regressor r is a 1×1
  convolution to the teacher's channels, followed by a ReLU when the teacher's hint map is
  non-negative (FitNets gives r the hint layer's non-linearity). Different resolutions (the
  student sees smaller canvases) are matched by adaptive-average-pooling the larger map. β = 100
  (RepDistiller). Hints are taken at the final stage of both networks because teachers are
  arbitrary: no other stage correspondence is generic.
- **B-AKD** — attention transfer (Zagoruyko & Komodakis ICLR'17) on the same pair of maps:
  ``at(A) = normalize(vec(mean_c A_c²))``, loss ``mean((at(S) − at(T))²)``, β = 1000 (official
  code and RepDistiller). The teacher side is cached as the energy ``mean_c A_c²`` (N, H, W); at
  different resolutions the larger *energy* map is adaptive-average-pooled to the smaller one
  (pooling energies rather than features keeps the teacher cache tiny). At canvas 32 MobileNetV2's
  final map is 1×1, whose attention map is the constant 1: the AT term is exactly 0 there (a
  warning says so). ``at_maps=spatial`` uses the deepest student map that is ≥ 2×2 instead
  (MobileNetV2's stride-16 ``blocks.4`` at 32, the final map elsewhere), ``at_maps=stages`` sums
  the terms of the stride-8, stride-16 and final maps that are ≥ 2×2 (the AT paper's several
  stages), each against the teacher's last map; the default ``last`` keeps the final map only.
  B-Regress's regressor optionally has RepDistiller's BatchNorm (``regressor_bn``).
- **B-PKT** — probabilistic knowledge transfer (Passalis & Tefas ECCV'18) on final embeddings:
  cosine kernel → conditional probabilities → KL(P_T ‖ P_S), ε = 1e-7, β = 30000 (RepDistiller).
  The batch is the triplets' 3B embeddings ``[sketches; positives; negatives]`` so both the
  within- and the cross-modal similarity structure is transferred (teacher region sets, e.g.
  Partial-OT's 9×512, are flattened).

Map-based baselines (B-Regress, B-AKD) flip the cached teacher map with the sketch and do not
shift sketches (a shifted sketch would no longer match the cached map); B-PKT augments like
SketchyNetV1. Teacher maps are kept in memory (``teacher_cache.MAP_CACHE_LIMIT_MB``), else
recomputed per batch; energies and embeddings are also stored in the artifact cache.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
from torch import nn

from sketchbench import Method, Param, RunData, SketchbenchError
from sketchbench.training import to_input, triplet_loss

from .losses import AT_MAPS, at_is_constant, at_loss, at_loss_sum, fitnets_loss, pkt_loss, select_at_maps
from .mobilenetv2_sn import STUDENT_PARAMS, StepBatch
from .sketchynet_v1 import DistilledStudent
from .teacher_cache import TeacherMaps, teacher_attention_energy, teacher_feature_maps

log = logging.getLogger("sketchbench")


def _flip_where(maps: torch.Tensor, flipped: torch.Tensor) -> torch.Tensor:
    if flipped.any():
        maps = maps.clone()
        maps[flipped] = maps[flipped].flip(-1)
    return maps


class _KDBaseline(DistilledStudent):
    kind = "baseline"

    def kd_loss(self, batch: StepBatch, sketch_emb: torch.Tensor, sketch_map: torch.Tensor | None) -> torch.Tensor:
        raise NotImplementedError

    def canvas_loss(self, batch: StepBatch, sketch_emb: torch.Tensor, sketch_map: torch.Tensor | None) -> torch.Tensor:
        tri = triplet_loss(sketch_emb, batch.photo_pos, batch.photo_neg, self.p["margin"])
        return tri + self.p["beta"] * self.kd_loss(batch, sketch_emb, sketch_map)


class BRegress(_KDBaseline):
    description = "B-Regress: FitNets hint regression (last feature maps, 1x1 conv regressor) + triplet"
    params = {
        **STUDENT_PARAMS,
        "beta": Param(100.0, "weight β of the hint loss (RepDistiller's FitNets weight)", min=0.0, max=1e6),
        "regressor_bn": Param(False, "BatchNorm after the regressor's 1x1 conv, as RepDistiller's ConvReg "
                              "(conv → BN → ReLU); off = FitNets' plain conv regressor", since="0.2"),
    }
    uses_feature_maps = True
    shift_sketches = False

    teacher_maps: TeacherMaps
    regressor: nn.Module

    def setup_training(self, data: RunData, canvases: Sequence[int], teacher: Method | None) -> list[nn.Parameter]:
        assert teacher is not None
        self.teacher_maps = teacher_feature_maps(teacher, data)
        net = self._net()
        with torch.no_grad():
            was = net.training
            probe = net.eval().forward_features(to_input(torch.full((1, 32, 32), 255, dtype=torch.uint8), 3, self.device))
            net.train(was)
        nonneg = self.teacher_maps.cached is None or bool((self.teacher_maps.cached >= 0).all())
        layers: list[nn.Module] = [nn.Conv2d(probe.shape[1], self.teacher_maps.channels, kernel_size=1)]
        if self.p["regressor_bn"]:
            layers.append(nn.BatchNorm2d(self.teacher_maps.channels))
        if nonneg:
            layers.append(nn.ReLU())
        self.regressor = nn.Sequential(*layers).to(self.device)
        return list(self.regressor.parameters())

    def step_targets(self, batch: StepBatch) -> torch.Tensor:
        return _flip_where(self.teacher_maps.get(batch.anchors), batch.flipped).to(self.device)

    def kd_loss(self, batch: StepBatch, sketch_emb: torch.Tensor, sketch_map: torch.Tensor | None) -> torch.Tensor:
        assert sketch_map is not None
        return fitnets_loss(self.regressor(sketch_map).float(), batch.targets)


def at_stage_modules(net: nn.Module) -> list[str]:
    """The student's intermediate stages attention transfer may use besides its final map: timm's
    ``feature_info`` stages of stride ≥ 8 except the deepest (whose stride the final map has), i.e.
    MobileNetV2's ``blocks.2`` (stride 8) and ``blocks.4`` (stride 16), ResNet's ``layer2``/``layer3``:
    with the final map, the AT paper's three groups."""
    info = getattr(net, "feature_info", None)
    stages = [f for f in info if isinstance(f, dict) and "module" in f] if isinstance(info, list) else []
    if not stages:
        raise SketchbenchError(f"b-akd: the student {type(net).__name__} has no timm feature_info: "
                               "at_maps=spatial/stages need its stages (use at_maps=last)")
    return [f["module"] for f in stages if f.get("reduction", 0) >= 8][:-1]


class BAKD(_KDBaseline):
    description = "B-AKD: attention transfer on the last feature maps + triplet"
    params = {
        **STUDENT_PARAMS,
        "beta": Param(1000.0, "weight β of the attention-transfer loss (official code: 1e3)", min=0.0, max=1e6),
        "at_maps": Param("last", "student maps matched to the teacher's attention: last = the final map (1x1 at "
                         "canvas 32 for MobileNetV2: no signal there); spatial = the deepest map ≥ 2x2; stages = "
                         "every stride-8/16/32 map ≥ 2x2, terms summed", choices=AT_MAPS, since="0.2"),
    }
    uses_feature_maps = True
    shift_sketches = False

    teacher_energy: torch.Tensor

    def setup_training(self, data: RunData, canvases: Sequence[int], teacher: Method | None) -> list[nn.Parameter]:
        assert teacher is not None
        self.teacher_energy = teacher_attention_energy(teacher, data)
        self.warn_constant(canvases)
        return []

    def student_maps(self, images: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(embedding, the maps attention transfer uses) of uint8 images, by ``at_maps``."""
        if self.p["at_maps"] == "last":
            emb, fmap = self.forward(images, with_map=True)
            assert fmap is not None
            return emb, [fmap]
        net = self._net()
        grabbed: dict[str, torch.Tensor] = {}
        names = at_stage_modules(net)
        handles = [net.get_submodule(n).register_forward_hook(lambda m, i, o, n=n: grabbed.__setitem__(n, o))
                   for n in names]
        try:
            emb, fmap = super().forward(images, with_map=True)
        finally:
            for h in handles:
                h.remove()
        assert fmap is not None
        return emb, select_at_maps([grabbed[n] for n in names] + [fmap], self.p["at_maps"])

    def forward(self, images: torch.Tensor, with_map: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        if not with_map or self.p["at_maps"] == "last":
            return super().forward(images, with_map)
        emb, maps = self.student_maps(images)
        return emb, maps  # type: ignore[return-value]  # several maps: kd_loss sums their terms

    def warn_constant(self, canvases: Sequence[int]) -> list[int]:
        """The canvases at which every AT term is identically 0 (a 1×1 map on either side), logged
        once as a warning; returns them."""
        net = self._net()
        was = net.training
        net.eval()
        teacher_hw = tuple(self.teacher_energy.shape[-2:])
        zero = []
        with torch.no_grad():
            for c in canvases:
                _, maps = self.student_maps(torch.full((1, int(c), int(c)), 255, dtype=torch.uint8))
                if all(at_is_constant(tuple(m.shape[-2:]), teacher_hw) for m in maps):
                    zero.append(int(c))
        net.train(was)
        if zero:
            hint = "; --param at_maps=spatial gives it a signal" if self.p["at_maps"] == "last" and min(teacher_hw) > 1 else ""
            log.warning("%s: the attention-transfer term is identically 0 at canvas %s (at_maps=%s; the student's map "
                        "or the teacher's %dx%d map is 1x1): only the triplet loss trains it there%s", self.ctx.name,
                        ", ".join(map(str, zero)), self.p["at_maps"], teacher_hw[0], teacher_hw[1], hint)
        return zero

    def step_targets(self, batch: StepBatch) -> torch.Tensor:
        return _flip_where(self.teacher_energy[batch.anchors], batch.flipped).to(self.device)

    def kd_loss(self, batch: StepBatch, sketch_emb: torch.Tensor, sketch_map: torch.Tensor | None) -> torch.Tensor:
        assert sketch_map is not None
        if isinstance(sketch_map, list):
            return at_loss_sum(sketch_map, batch.targets)
        return at_loss(sketch_map, batch.targets)


class BPKT(_KDBaseline):
    description = "B-PKT: probabilistic knowledge transfer on the triplet embeddings + triplet"
    params = {**STUDENT_PARAMS, "beta": Param(30000.0, "weight β of the PKT loss (RepDistiller's weight)", min=0.0, max=1e6)}

    def setup_training(self, data: RunData, canvases: Sequence[int], teacher: Method | None) -> list[nn.Parameter]:
        params = super().setup_training(data, canvases, teacher)
        s, p = self.teacher_emb.sketch, self.teacher_emb.photo
        if s[0].numel() != p[0].numel():
            raise SketchbenchError(
                f"b-pkt: the teacher's sketch and photo embeddings differ in size ({s[0].numel()} vs {p[0].numel()}); "
                "PKT needs one embedding space"
            )
        return params

    def step_targets(self, batch: StepBatch) -> torch.Tensor:
        s, p = self.teacher_emb.sketch, self.teacher_emb.photo
        return torch.cat([s[batch.anchors].flatten(1), p[batch.positives].flatten(1),
                          p[batch.negatives].flatten(1)]).to(self.device)

    def kd_loss(self, batch: StepBatch, sketch_emb: torch.Tensor, sketch_map: torch.Tensor | None) -> torch.Tensor:
        return pkt_loss(torch.cat([sketch_emb, batch.photo_pos, batch.photo_neg]), batch.targets)
