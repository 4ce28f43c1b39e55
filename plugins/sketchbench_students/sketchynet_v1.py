"""SketchyNetV1 (Sain et al., "Sketch Down the FLOPs", CVPR'25): an efficient photo network
(MobileNetV2) taught by a heavy FG-SBIR teacher through cross-modal relational KD, trained on
sketches rendered at several canvas sizes.

- **Student**: timm ``mobilenetv2_100`` features + global average pool (1280-d, 2.22 M params,
  0.833 GFLOPs at 256²), shared by sketches and photos, L2-normalised embeddings. EfficientNet-B0
  and ResNet-18 (the backbone ablation) via ``--param backbone=...``.
- **Teacher**: any trained method (default Triplet-SN), frozen. Its embeddings of every training
  sketch at the preset's full canvas and of every training photo are computed once and cached
  (memory + artifact cache, keyed by teacher identity and data fingerprint); teacher distances
  come from ``teacher.distance`` so HOLEF energies or Partial-OT's region transport work too.
- **Loss** per canvas c: ``L_trn = λ·L_Tri + (1 − λ)·L_RKD`` with
  ``L_Tri = max(0, μ + δ(f_s, f_p) − δ(f_s, f_n))`` and
  ``L_RKD = L_δ(d_sp^T, d_sp^S) + L_δ(d_sn^T, d_sn^S) + L_δ(d_pn^T, d_pn^S)``, L_δ the Huber loss
  with threshold β; the multi-canvas objective is the mean of L_trn over the preset's canvases
  (``L* = (1/|C|) Σ_c L_trn(c)``), each training sketch rendered at every c.

Interpretations (the paper leaves them open): each side's triplet distances are divided by their
mean over the batch before the Huber loss (RKD's normalisation; teacher and student dimensions
and distance scales differ); the teacher distances are those of the full-canvas sketch for every
c; λ = 0.5, μ = 0.2, β = 1 by default. Augmentation (flips, shifts) is applied to the student's
inputs only: the cached teacher targets are those of the un-augmented images.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from sketchbench import Method, Param, RunData
from sketchbench.training import triplet_loss

from .losses import rkd_triplet_loss, triplet_distances
from .mobilenetv2_sn import STUDENT_PARAMS, MobileNetV2SN, StepBatch
from .teacher_cache import TeacherDistances, TeacherEmbeddings, teacher_embeddings


class DistilledStudent(MobileNetV2SN):
    """The MobileNetV2 student with a frozen teacher whose training-split embeddings are cached."""

    kind = "student"
    needs_teacher = True
    default_teacher = "triplet-sn"

    teacher_emb: TeacherEmbeddings
    teacher_dist: TeacherDistances

    def setup_training(self, data: RunData, canvases: Sequence[int], teacher: Method | None) -> list[nn.Parameter]:
        assert teacher is not None
        self.teacher_emb = teacher_embeddings(teacher, data)
        self.teacher_dist = TeacherDistances(teacher, self.teacher_emb)
        return []


class SketchyNetV1(DistilledStudent):
    kind = "student"
    description = "SketchyNetV1: MobileNetV2 student, triplet + triplet-RKD (Huber), multi-canvas"
    params = {
        **STUDENT_PARAMS,
        "lam": Param(0.5, "λ in λ·L_Tri + (1−λ)·L_RKD", min=0.0, max=1.0),
        "huber_beta": Param(1.0, "Huber threshold β of L_δ (PyTorch / RKD default 1)", min=1e-6, max=100.0),
        "rkd_norm": Param("mean", "distance normalisation before the Huber loss: each side's triplet distances "
                          "divided by their batch mean, or none", choices=("mean", "none")),
    }

    def step_targets(self, batch: StepBatch) -> tuple[torch.Tensor, ...]:
        d = self.teacher_dist(batch.anchors, batch.positives, batch.negatives)
        return tuple(t.to(self.device) for t in d)

    def canvas_loss(self, batch: StepBatch, sketch_emb: torch.Tensor, sketch_map: torch.Tensor | None) -> torch.Tensor:
        lam = self.p["lam"]
        tri = triplet_loss(sketch_emb, batch.photo_pos, batch.photo_neg, self.p["margin"])
        student = triplet_distances(sketch_emb, batch.photo_pos, batch.photo_neg)
        rkd = rkd_triplet_loss(student, batch.targets, beta=self.p["huber_beta"], normalise=self.p["rkd_norm"] == "mean")
        return lam * tri + (1.0 - lam) * rkd
