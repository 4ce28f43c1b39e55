"""Triplet-RL, StyleVAE and Partial-OT teachers: the properties that make each one the published
method (partial transport constraints, retrieval on the semantic code, the RL stage's effect)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sketchbench_teachers.partial_ot import PartialOT, erase_blocks, partial_ot
from sketchbench_teachers.stylevae import StyleVAE
from sketchbench_teachers.triplet_rl import MinSize, progressive_prefixes

from sketchbench import MethodContext, Sketch, SketchbenchError
from sketchbench.measure.flops import count_flops
from sketchbench.method.inputs import to_input
from sketchbench.method.params import resolve_params
from sketchbench.run.presets import load_preset
from sketchbench.testing import build_method, tiny_data

SMALL = "test_efficientnet"  # a tiny timm backbone, so the tests run in seconds


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """These tests run many tiny ops: on a shared, loaded machine two intra-op threads make them
    tens of times slower (thread hand-off), so use one here."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def data():
    return tiny_data()


# -- Partial-OT ---------------------------------------------------------------------------------
def _regions(seed: int, b: int = 4, m: int = 9, c: int = 16) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, m, c, generator=g) * torch.rand(b, m, 1, generator=g) * 3  # uneven node norms


def test_partial_plan_respects_mass_and_capacities():
    u, v = _regions(0), _regions(1)
    r = partial_ot(u, v, mass_fraction=0.8, eps=0.05, iters=200)
    assert torch.allclose(r.mass, 0.8 * torch.minimum(r.s.sum(-1), r.d.sum(-1)))
    assert torch.allclose(r.mass, torch.full((4,), 0.8 * 9))  # capacities normalised to 9 regions each
    assert torch.allclose(r.plan.sum((-2, -1)), r.mass, rtol=1e-5)
    assert (r.plan >= 0).all()
    assert (r.plan.sum(-1) <= r.s + 1e-3).all()  # rows ≤ s
    assert (r.plan.sum(-2) <= r.d + 1e-3).all()  # columns ≤ d
    # partial: some row capacity is left unused
    assert ((r.s - r.plan.sum(-1)) > 0.05).any()


def test_partial_distance_differs_from_full_transport():
    u, v = _regions(2), _regions(3)
    partial = partial_ot(u, v, mass_fraction=0.8, iters=200).distance
    full = partial_ot(u, v, mass_fraction=1.0, iters=200).distance
    assert (full - partial > 1e-2).all()  # less mass moved, on the cheapest pairs
    full_plan = partial_ot(u, v, mass_fraction=1.0, iters=300)
    # complete transport saturates both capacities
    assert torch.allclose(full_plan.plan.sum(-1), full_plan.s, atol=1e-2)


def test_cross_distances_match_pairwise_and_are_differentiable():
    u, v = _regions(4, b=3), _regions(5, b=3)
    cross = partial_ot(u, v, cross=True).distance
    paired = partial_ot(u, v).distance
    assert cross.shape == (3, 3)
    assert torch.allclose(cross.diagonal(), paired, atol=1e-5)
    u.requires_grad_(True)
    partial_ot(u, v).distance.sum().backward()
    assert u.grad is not None and torch.isfinite(u.grad).all() and u.grad.abs().sum() > 0


def test_partial_ot_bad_mass_fraction_is_a_clear_error():
    with pytest.raises(SketchbenchError, match="mass_fraction"):
        partial_ot(_regions(0), _regions(1), mass_fraction=1.5)


def test_erase_blocks_whitens_a_square():
    images = torch.zeros(16, 32, 32, dtype=torch.uint8)
    out = erase_blocks(images, 0.25, torch.Generator().manual_seed(0), prob=1.0)
    assert ((out == 255).flatten(1).sum(1) == 16 * 16).all()
    assert (images == 0).all()  # the input is not modified


def test_partial_ot_method_trains_and_ranks_by_ot(data):
    torch.manual_seed(0)
    m = build_method("partial-ot", backbone=SMALL, ot_iters=10)
    before = [p.detach().clone() for p in m.modules().parameters()]
    m.train(data, [32])
    assert any(not torch.equal(a, b) for a, b in zip(before, m.modules().parameters()))
    s, p = m.encode_sketch(data.sketches("test", 32)), m.encode_photo(data.photos("test"))
    assert s.shape[1:] == (9, 256) and p.shape[1:] == (9, 256)
    dist = m.distance(s, p)
    assert dist.shape == (len(s), len(p)) and torch.isfinite(dist).all()
    assert torch.allclose(dist[1], m.ot(s[1:2].expand(len(p), -1, -1), p).distance, atol=1e-4)
    flops, params = count_flops(m.sketch_branch(), m.sketch_input(64))
    assert flops > 0 and params == sum(q.numel() for q in m.sketch_branch().parameters())


def test_partial_ot_offline_pretrained_fails_clearly(monkeypatch):
    # only timm's hub serves the tests' tiny backbone; pretend it is unreachable (it is, here)
    monkeypatch.setattr("sketchbench_weights.hub.hub_reachable", lambda timeout=2.0: False)
    params = resolve_params("partial-ot", PartialOT.params, "smoke", {"backbone": SMALL})
    ctx = MethodContext(name="partial-ot", params=params, preset=load_preset("smoke"), device=torch.device("cpu"),
                        seed=0, pretrained="auto")
    with pytest.raises(SketchbenchError, match="no pretrained weights for backbone .* are installed"):
        PartialOT(ctx)


# -- StyleVAE -----------------------------------------------------------------------------------
def test_stylevae_retrieval_uses_the_semantic_code_only(data):
    torch.manual_seed(0)
    m = build_method("stylevae").eval()
    x = data.sketches("test", 32)[:4]
    emb = m.encode_sketch(x)
    with torch.no_grad():
        expected = F.normalize(m.vae.invar(m.vae.trunk(to_input(x, 3))), dim=-1)
        branch = m.sketch_branch()(m.prepare_sketch(x))
    assert emb.shape == (4, 128)
    assert torch.allclose(emb, expected, atol=1e-6)
    assert torch.allclose(emb, branch, atol=1e-6)
    assert torch.allclose(emb.norm(dim=-1), torch.ones(4), atol=1e-5)
    photos_before = m.encode_photo(data.photos("test")[:3])
    with torch.no_grad():  # the style heads play no part in retrieval
        for head in (m.vae.fc_mu, m.vae.fc_logvar):
            head.weight.add_(torch.randn_like(head.weight))
            head.bias.add_(1.0)
    assert torch.equal(m.encode_sketch(x), emb)
    assert torch.equal(m.encode_photo(data.photos("test")[:3]), photos_before)
    # ... and they are not counted: the branch holds the trunk and the semantic head only
    branch_params = {id(p) for p in m.sketch_branch().parameters()}
    assert id(m.vae.fc_mu.weight) not in branch_params and id(m.vae.decoder.linear.weight) not in branch_params
    assert id(m.vae.invar.weight) in branch_params


def test_stylevae_losses_on_a_task(data):
    torch.manual_seed(0)
    m = build_method("stylevae")
    m.modules().train()
    sk, ph = data.sketches("train", 32), data.photos("train")
    losses = m.vae_losses(sk[0], sk[1], ph[0], ph[1])
    assert set(losses) == {"kl", "self_rec", "cross_style", "cross_domain", "triplet", "total"}
    assert all(torch.isfinite(v) for v in losses.values())
    assert losses["kl"] > 0 and losses["cross_style"] > 0 and losses["cross_domain"] > 0
    # released weighting: self-reconstruction is reported but not in the total (self_rec_weight = 0)
    expected = losses["kl"] + losses["cross_style"] + losses["cross_domain"] + losses["triplet"]
    assert torch.allclose(losses["total"], expected)
    rec = m.vae.decoder(torch.zeros(1, 128))
    assert rec.shape == (1, 3, m.p["recon_size"], m.p["recon_size"])


def test_stylevae_pick_styles_holds_one_style_out():
    rng = np.random.default_rng(0)
    for _ in range(20):
        a, b, h = StyleVAE.pick_styles([3, 4, 5, 6], rng)
        assert len({a, b, h}) == 3 and {a, b, h} <= {3, 4, 5, 6}
        a, b, h = StyleVAE.pick_styles([7, 8], rng)
        assert a == b and h != b and {b, h} == {7, 8}
    assert StyleVAE.pick_styles([9], rng) == (9, 9, 9)


def test_stylevae_meta_training_learns_the_regulariser():
    small = tiny_data(instances=4)  # 4 photos with 2 sketches each: 4 tasks, one meta-batch
    torch.manual_seed(0)
    m = build_method("stylevae", meta_batch=4)
    reg0, inv0 = m.reg.detach().clone(), m.vae.invar.weight.detach().clone()
    m.train(small, [32])
    assert not torch.equal(m.reg, reg0)  # the regulariser gets the meta-gradient
    assert (m.reg >= 0).all()
    assert not torch.equal(m.vae.invar.weight, inv0)
    assert all(torch.isfinite(p).all() for p in m.modules().parameters())
    flops, params = count_flops(m.sketch_branch(), m.sketch_input(32))
    assert flops > 0 and params == sum(p.numel() for p in m.sketch_branch().parameters())


def test_stylevae_rejects_a_bad_reconstruction_size():
    with pytest.raises(SketchbenchError, match="recon_size"):
        build_method("stylevae", recon_size=48)


# -- Triplet-RL ---------------------------------------------------------------------------------
def _sketch(strokes: int, points: int = 5) -> Sketch:
    rng = np.random.default_rng(strokes)
    return Sketch.from_strokes([rng.random((points, 2)) for _ in range(strokes)])


def test_prefixes_cut_by_strokes_or_points():
    many = _sketch(10)
    pre = progressive_prefixes(many, 4)
    assert [p.num_strokes for p in pre] == [3, 5, 8, 10]
    assert pre[-1] == many
    few = _sketch(2, points=12)  # fewer strokes than prefixes: cut by points
    pre = progressive_prefixes(few, 4)
    assert [len(p) for p in pre] == [6, 12, 18, 24]
    assert pre[-1] == few


def test_inception_inputs_below_75px_are_upsampled_inside_the_branch():
    resize = MinSize(75)
    assert resize(torch.zeros(1, 3, 32, 32)).shape[-1] == 75
    assert resize(torch.zeros(1, 3, 96, 96)).shape[-1] == 96
    m = build_method("triplet-rl")  # the real InceptionV3 branch
    f32, p32 = count_flops(m.sketch_branch(), m.sketch_input(32))
    f64, _ = count_flops(m.sketch_branch(), m.sketch_input(64))
    f96, _ = count_flops(m.sketch_branch(), m.sketch_input(96))
    assert f32 == f64 < f96  # both run at 75 px; the upsampling is in the count
    assert p32 == 21_785_568 + 2048 * 64 + 64  # InceptionV3 trunk + the 64-d head, no log-std


def test_rl_stage_changes_the_policy_and_raises_the_reward(data):
    torch.manual_seed(0)
    m = build_method("triplet-rl", backbone=SMALL, rl_epochs=0, rl_batch=4, epochs=3)
    m.train(data, [32])
    feats, targets, photos = m.rl_inputs(data, 32)
    assert feats.shape == (len(targets), m.p["num_prefixes"], 256)
    actor0 = m.policy.actor.weight.detach().clone()
    head0 = m.photo_head.weight.detach().clone()
    backbone0 = [p.detach().clone() for p in m.backbone.parameters()]
    assert torch.equal(actor0, head0)  # the policy's mean starts as the trained head
    before = m.mean_reward(feats, targets, photos, samples=32, generator=torch.Generator().manual_seed(1))
    history = m.reinforce(feats, targets, photos, epochs=100)
    after = m.mean_reward(feats, targets, photos, samples=32, generator=torch.Generator().manual_seed(1))
    assert len(history) == 100
    assert after > before + 0.02, (before, after)
    assert not torch.equal(m.policy.actor.weight, actor0)
    # the photo branch and the backbone are frozen during the RL stage
    assert torch.equal(m.photo_head.weight, head0)
    assert all(torch.equal(a, b) for a, b in zip(backbone0, m.backbone.parameters()))


def test_on_the_fly_metrics(data):
    torch.manual_seed(0)
    m = build_method("triplet-rl", backbone=SMALL, rl_epochs=1)
    m.train(data, [32])
    extra = m.extra_metrics(data, 32)
    assert set(extra) == {"m@A", "m@B", "num_prefixes"}
    assert 0 <= extra["m@A"] <= 100 and 0 < extra["m@B"] <= 100
    assert build_method("triplet-rl", backbone=SMALL, on_the_fly_metric=False).extra_metrics(data, 32) == {}
    emb = m.encode_sketch(data.sketches("test", 32))
    assert emb.shape[1] == 64 and torch.allclose(emb.norm(dim=-1), torch.ones(len(emb)), atol=1e-5)
