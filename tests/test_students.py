"""The student and compression methods: each trains a step and evaluates on tiny data, teacher
outputs are computed once, any teacher works (custom distance, 1-channel input, FC head), pruned
networks are smaller and survive ``state()`` / ``load_state()``."""

import io

import pytest
import torch
import torch.nn.functional as F
from sketchbench_students import teacher_cache
from sketchbench_students.teacher_cache import LastFeatureMap, feature_maps_of
from torch import nn

from sketchbench import Method, MethodContext, Param, SketchbenchError
from sketchbench.base.artifacts import ArtifactCache
from sketchbench.data.rundata import RunData
from sketchbench.measure.evaluate import evaluate
from sketchbench.measure.flops import count_flops
from sketchbench.method.inputs import to_input
from sketchbench.run.presets import load_preset
from sketchbench.testing import build_method, tiny_data

SMOKE = load_preset("smoke")  # the preset tiny_data() loads

SMALL = {"backbone": "test_efficientnet"}
STUDENTS = ["mobilenetv2-sn", "sketchynet-v1", "b-regress", "b-akd", "b-pkt"]
PRUNED = ["b-thinet", "b-prune"]


class MiniSAN(nn.Module):
    """A Sketch-a-Net-shaped branch: 1 channel, in-place ReLUs, adaptive pool, flatten → fc6 → fc7."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 5, stride=2, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(inplace=True), nn.AdaptiveMaxPool2d(4))
        self.fc6 = nn.Linear(32 * 16, 64)
        self.fc7 = nn.Linear(64, 24)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc7(F.relu(self.fc6(self.features(x).flatten(1))))


class MiniTeacher(Method):
    """A teacher with its own distance (a weighted squared distance: not ``Method.distance``)."""

    kind = "teacher"
    params = {"w": Param(2.0, "energy weight")}

    def __init__(self, ctx: MethodContext) -> None:
        super().__init__(ctx)
        self.net = MiniSAN().to(self.device)
        self.calls = {"sketch": 0, "photo": 0, "distance": 0}

    def modules(self) -> nn.Module:
        return self.net

    def sketch_branch(self) -> nn.Module:
        return self.net

    def sketch_input(self, canvas: int, batch: int = 1) -> torch.Tensor:
        return torch.zeros(batch, 1, canvas, canvas, device=self.device)

    def encode_sketch(self, images: torch.Tensor) -> torch.Tensor:
        self.calls["sketch"] += 1
        return F.normalize(self.net(to_input(images, 1, self.device)), dim=-1)

    def encode_photo(self, images: torch.Tensor) -> torch.Tensor:
        self.calls["photo"] += 1
        return F.normalize(self.net(to_input(images, 1, self.device)), dim=-1)

    def distance(self, sketches: torch.Tensor, photos: torch.Tensor) -> torch.Tensor:
        self.calls["distance"] += 1
        return self.p["w"] * torch.cdist(sketches, photos).pow(2)

    def train(self, data, canvases, teacher=None) -> None:
        pass


def mini_teacher(seed: int = 0) -> MiniTeacher:
    torch.manual_seed(seed)
    ctx = MethodContext(name="mini", params={"w": 2.0}, preset=load_preset("smoke"), device=torch.device("cpu"),
                        seed=seed)
    return MiniTeacher(ctx).eval()


@pytest.fixture(scope="module")
def data():
    return tiny_data()


@pytest.fixture(scope="module")
def timm_teacher(data):
    torch.manual_seed(0)
    t = build_method("triplet-timm", backbone="test_efficientnet")
    t.train(data, [SMOKE.full_canvas])
    return t.eval()


def train_cells(name: str, data, teacher, **params):
    m = build_method(name, **params)
    canvases = SMOKE.canvases if m.multi_canvas else (SMOKE.canvases[0],)
    m.train(data, canvases, teacher=teacher if m.needs_teacher else None)
    return m.eval()


# -- students ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", STUDENTS)
def test_student_trains_and_evaluates(name, data, timm_teacher):
    m = build_method(name, **SMALL)
    before = {k: v.clone() for k, v in m.modules().state_dict().items()}
    m.train(data, SMOKE.canvases, teacher=timm_teacher if m.needs_teacher else None)
    m.eval()
    changed = any(not torch.equal(before[k], v) for k, v in m.modules().state_dict().items())
    assert changed, "training did not update the student"
    assert m.multi_canvas
    r = evaluate(m, data, 32)
    assert 0.0 <= r["acc1"] <= 100.0
    assert r["params_m"] == pytest.approx(count_flops(m.modules(), torch.zeros(1, 3, 32, 32))[1] / 1e6)
    emb = m.encode_sketch(data.sketches("test", 64)[:3])
    assert emb.shape == (3, 256) and torch.allclose(emb.norm(dim=1), torch.ones(3), atol=1e-5)


def test_students_need_a_teacher(data):
    with pytest.raises(SketchbenchError, match="teacher"):
        build_method("sketchynet-v1", **SMALL).train(data, SMOKE.canvases)


def test_backbone_choices_are_enforced():
    with pytest.raises(SketchbenchError, match="backbone"):
        build_method("sketchynet-v1", backbone="vgg16")


def test_sketchynet_v1_is_mobilenetv2_at_the_papers_cost():
    m = build_method("sketchynet-v1", preset="paper")
    flops, params = count_flops(m.sketch_branch(), m.sketch_input(256))
    assert params == 2_223_872  # 84.89 % fewer than VGG16's 14,714,688
    assert flops / 1e9 == pytest.approx(0.833, abs=0.001)


def test_teacher_outputs_are_computed_once(data, tmp_path):
    teacher_cache.clear_memory()
    t = mini_teacher(1)
    cached = RunData(data.dataset, SMOKE, ArtifactCache(tmp_path / "c"), seed=0)
    m = build_method("sketchynet-v1", epochs=2, **SMALL)
    steps = {"n": 0}
    loss = m.canvas_loss
    m.canvas_loss = lambda *a: (steps.__setitem__("n", steps["n"] + 1), loss(*a))[1]
    m.train(cached, SMOKE.canvases, teacher=t)
    per_epoch = -(-len(cached.pairs("train")) // SMOKE.batch_size) * len(SMOKE.canvases)
    assert steps["n"] == 2 * per_epoch  # two epochs ran
    bs = SMOKE.eval_batch_size
    n_sketch = -(-len(cached.items("train")) // bs)
    n_photo = -(-cached.photos("train").shape[0] // bs)
    assert t.calls["sketch"] == n_sketch and t.calls["photo"] == n_photo  # one pass, not one per epoch
    # another student of the same teacher: from memory; after forgetting memory: from the disk cache
    build_method("b-pkt", **SMALL).train(cached, SMOKE.canvases, teacher=t)
    teacher_cache.clear_memory()
    cached.cache.clear_memory()
    build_method("sketchynet-v1", **SMALL).train(cached, SMOKE.canvases, teacher=t)
    assert t.calls["sketch"] == n_sketch and t.calls["photo"] == n_photo


def test_custom_teacher_distance_is_used_per_pair_and_memoised(data):
    teacher_cache.clear_memory()
    t = mini_teacher(2)
    m = build_method("sketchynet-v1", epochs=2, **SMALL)
    m.train(data, SMOKE.canvases, teacher=t)
    dist = m.teacher_dist
    assert not dist.euclidean
    assert 0 < dist.calls == t.calls["distance"] == len(dist._memo)
    a, p, n = torch.tensor([0, 3]), torch.tensor([1, 2]), torch.tensor([2, 0])
    d_sp, d_sn, d_pn = dist(a, p, n)
    emb = m.teacher_emb
    assert torch.allclose(d_sp, 2.0 * (emb.sketch[a] - emb.photo[p]).pow(2).sum(1), atol=1e-5)
    assert torch.allclose(d_pn, 2.0 * (emb.photo[p] - emb.photo[n]).pow(2).sum(1), atol=1e-5)


def test_last_feature_map_skips_adaptive_pools():
    t = mini_teacher(3)
    with LastFeatureMap(t.sketch_branch()) as grab:
        t.sketch_branch()(torch.zeros(2, 1, 64, 64))
    assert grab.value is not None and tuple(grab.value.shape) == (2, 32, 16, 16)  # not the 4×4 pooled map
    maps = feature_maps_of(t, torch.full((3, 64, 64), 255, dtype=torch.uint8))
    assert maps.shape == (3, 32, 16, 16)


@pytest.mark.parametrize("name", ["b-regress", "b-akd", "b-pkt", "sketchynet-v1"])
def test_kd_students_take_any_teacher(name, data):
    m = train_cells(name, data, mini_teacher(4), **SMALL)
    r = evaluate(m, data, 64)
    assert r["gflops"] > 0
    if name == "b-regress":
        assert m.regressor[0].out_channels == 32  # the teacher's last map, not its fc head


# -- B-AKD's stages, FitNets' BatchNorm, the offline EfficientNet ---------------------------------------
def akd_loss_at(at_maps: str, canvas: int, data) -> float:
    """B-AKD's KD term for MobileNetV2 (random init) at ``canvas`` against a 3×3 teacher energy
    (Triplet-SN's pool5 at the smoke preset's full canvas)."""
    from types import SimpleNamespace

    torch.manual_seed(0)  # the same random MobileNetV2 for every setting
    m = build_method("b-akd", at_maps=at_maps).eval()
    x = data.sketches("train", canvas)[:4]
    with torch.no_grad():
        emb, maps = m.forward(x, with_map=True)
        energy = torch.rand(4, 3, 3, generator=torch.Generator().manual_seed(0))
        return float(m.kd_loss(SimpleNamespace(targets=energy), emb, maps))


def test_b_akd_has_a_signal_at_canvas_32_with_earlier_stages(data):
    assert akd_loss_at("last", 32, data) == 0.0  # MobileNetV2's final map is 1×1 at 32: today's default
    assert akd_loss_at("spatial", 32, data) > 0  # its stride-16 blocks.4 map is 2×2 there
    assert akd_loss_at("stages", 32, data) > akd_loss_at("spatial", 32, data)  # + stride 8, summed
    # at 64 the final map is 2×2 already: spatial is the default's term
    assert akd_loss_at("spatial", 64, data) == pytest.approx(akd_loss_at("last", 64, data))


@pytest.mark.parametrize("at_maps", ["spatial", "stages"])
def test_b_akd_stages_train_and_keep_the_embedding(at_maps, data, timm_teacher):
    m = train_cells("b-akd", data, timm_teacher, at_maps=at_maps, **SMALL)
    assert m.warn_constant(SMOKE.canvases) == []
    r = evaluate(m, data, 32)
    # the stages only feed the loss: the counted branch and the embedding are the plain student's
    assert r["params_m"] == pytest.approx(count_flops(m.modules(), torch.zeros(1, 3, 32, 32))[1] / 1e6)
    plain, _ = type(m).__mro__[1].forward(m, data.sketches("test", 32)[:2])
    assert torch.equal(m.encode_sketch(data.sketches("test", 32)[:2]), plain)


def test_b_akd_default_warns_where_its_term_is_identically_zero(data, timm_teacher, caplog):
    m = build_method("b-akd", **SMALL)
    with caplog.at_level("WARNING", logger="sketchbench"):
        m.setup_training(data, SMOKE.canvases, timm_teacher)
    assert m.warn_constant(SMOKE.canvases) == [32]  # the final map is 1x1 at 32 only
    assert "identically 0 at canvas 32" in caplog.text and "at_maps=spatial" in caplog.text


def test_b_regress_regressor_batchnorm_is_an_option(data, timm_teacher):
    plain = build_method("b-regress", **SMALL)
    plain.setup_training(data, SMOKE.canvases, timm_teacher)
    assert not any(isinstance(x, nn.BatchNorm2d) for x in plain.regressor)  # the default, as before
    m = train_cells("b-regress", data, timm_teacher, regressor_bn=True, **SMALL)
    assert [type(x) for x in m.regressor][:2] == [nn.Conv2d, nn.BatchNorm2d]  # RepDistiller's ConvReg
    assert evaluate(m, data, 32)["gflops"] > 0


def test_efficientnet_lite0_is_a_student_backbone_with_offline_weights():
    m = build_method("sketchynet-v1", backbone="efficientnet_lite0")
    assert type(m).pretrained_backbones(m.p) == ("efficientnet_lite0",)
    flops, params = count_flops(m.sketch_branch(), m.sketch_input(256))
    assert params == 3_371_008


# -- pruning ----------------------------------------------------------------------------------------
def weights_only_roundtrip(state: dict) -> dict:
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)  # what the artifact cache does


@pytest.mark.parametrize("name", PRUNED)
@pytest.mark.parametrize("which", ["timm", "mini"])
def test_pruned_teacher_is_smaller_and_round_trips(name, which, data, timm_teacher):
    teacher = timm_teacher if which == "timm" else mini_teacher(5)
    full = SMOKE.full_canvas
    t_flops, t_params = count_flops(teacher.sketch_branch(), teacher.sketch_input(full))
    m = train_cells(name, data, teacher)
    flops, params = count_flops(m.sketch_branch(), m.sketch_input(full))
    assert flops <= m.p["flops_ratio"] * t_flops + 1
    assert params < t_params
    # the embedding keeps the teacher's size
    x = data.sketches("test", 32)[:4]
    assert m.encode_sketch(x).shape[1] == teacher.encode_sketch(x).shape[1]
    r = evaluate(m, data, 32)
    assert r["extra"]["flops_ratio"] == pytest.approx(flops / t_flops, rel=1e-6)
    # reload from a checkpoint alone (no teacher): same structure, identical embeddings
    m2 = build_method(name)
    m2.load_state(weights_only_roundtrip(m.state()))
    m2.eval()
    assert count_flops(m2.sketch_branch(), m2.sketch_input(full)) == (flops, params)
    assert torch.equal(m.encode_sketch(x), m2.encode_sketch(x))
    assert torch.equal(m.encode_photo(data.photos("test")[:2]), m2.encode_photo(data.photos("test")[:2]))


def test_pruned_structure_is_reused_across_canvases(data, timm_teacher):
    data.cache.clear_memory()
    a = build_method("b-thinet")
    a.train(data, (32,), teacher=timm_teacher)
    (entry,) = [v for (kind, _), v in data.cache._memory.items() if kind == "pruned"]
    pruned = {k: v.clone() for k, v in entry["state_dict"].items()}
    assert any(not torch.equal(pruned[k], v.cpu()) for k, v in a.modules().state_dict().items())  # fine-tuned after
    b = build_method("b-thinet")
    b.train(data, (64,), teacher=timm_teacher)
    assert a.history == b.history and len(a.history) > 0
    # the cached pruned weights are the pre-fine-tuning ones, untouched by either fine-tuning
    assert all(torch.equal(pruned[k], v) for k, v in entry["state_dict"].items())


def test_graph_guard_turns_memory_errors_into_one_line_and_restores_limits():
    resource = pytest.importorskip("resource")
    from sketchbench_students.pruning import graph_guard

    before = resource.getrlimit(resource.RLIMIT_AS)
    with pytest.raises(SketchbenchError, match="not supported by the pruners"), graph_guard("b-prune"):
        raise MemoryError
    assert resource.getrlimit(resource.RLIMIT_AS) == before


def test_pruned_method_has_no_network_before_training():
    with pytest.raises(SketchbenchError, match="teacher"):
        build_method("b-prune").sketch_branch()
