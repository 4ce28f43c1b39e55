"""Triplet-SN and HOLEF-SN (DSSA): the Sketch-a-Net trunk, losses, the HOLEF energy, training and checkpoints."""

from __future__ import annotations

import pytest
import torch
from sketchbench_teachers.holef_sn import HolefEnergy, SpatialAttention
from sketchbench_teachers.sketch_a_net import sketch_a_net_input

from sketchbench import MethodContext, SketchbenchError
from sketchbench.measure.flops import count_flops
from sketchbench.method.params import resolve_params
from sketchbench.method.registries import get_host
from sketchbench.run.presets import load_preset
from sketchbench.testing import build_method, run_cli, tiny_data


def _sketches(n: int, canvas: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.full((n, canvas, canvas), 255, dtype=torch.uint8)
    ink = torch.rand(n, canvas, canvas, generator=g) < 0.1
    x[ink] = 0
    return x


def _photos(n: int, size: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, size, size), generator=g, dtype=torch.uint8)


def _context(name: str, **kw) -> MethodContext:
    cls = get_host().methods.get(name)
    return MethodContext(name=name, params=resolve_params(name, cls.params, "smoke", {}), preset=load_preset("smoke"),
                         device=torch.device("cpu"), seed=0, **kw)


@pytest.fixture(autouse=True)
def _one_thread():
    """Backward passes of the 15×15 conv1 run several times slower on 2 threads of a shared, busy 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def triplet():
    return build_method("triplet-sn").eval()


@pytest.fixture(scope="module")
def holef():
    return build_method("holef-sn").eval()


# -- shapes, normalisation, input ------------------------------------------------------------------
@pytest.mark.parametrize("canvas", [32, 64, 128])
def test_triplet_sn_embeddings_are_unit_256d_at_every_canvas(triplet, canvas):
    with torch.no_grad():
        s = triplet.encode_sketch(_sketches(2, canvas))
    assert s.shape == (2, 256)
    torch.testing.assert_close(s.norm(dim=1), torch.ones(2))


def test_triplet_sn_photo_embedding_and_one_channel_branch(triplet):
    with torch.no_grad():
        p = triplet.encode_photo(_photos(3, 64))
        out = triplet.sketch_branch()(triplet.sketch_input(48))
    assert p.shape == (3, 256)
    torch.testing.assert_close(p.norm(dim=1), torch.ones(3))
    assert triplet.sketch_input(48).shape == (1, 1, 48, 48)
    assert out.shape == (1, 256)


def test_input_scaling_paper_is_zero_ink_is_minus_one_and_edges_option():
    x = sketch_a_net_input(torch.tensor([[[255, 0]]], dtype=torch.uint8))
    assert x.shape == (1, 1, 1, 2)
    torch.testing.assert_close(x.flatten(), torch.tensor([0.0, -1.0]))
    photo = torch.full((1, 3, 8, 8), 255, dtype=torch.uint8)
    photo[..., 4:] = 0  # a vertical edge in the middle
    edges = sketch_a_net_input(photo, photo_input="edges")[0, 0]
    assert edges[:, 0].abs().max() == 0  # flat white → blank paper
    assert edges[:, 3:5].min() == -1.0  # the edge is the darkest ink


@pytest.mark.parametrize("canvas", [32, 64, 128])
def test_holef_sn_descriptor_is_two_unit_halves(holef, canvas):
    with torch.no_grad():
        s = holef.encode_sketch(_sketches(2, canvas))
        p = holef.encode_photo(_photos(2, 64))
    for e in (s, p):
        assert e.shape == (2, 512)
        torch.testing.assert_close(e[:, :256].norm(dim=1), torch.ones(2))
        torch.testing.assert_close(e[:, 256:].norm(dim=1), torch.ones(2))


# -- size and cost ----------------------------------------------------------------------------------
def test_triplet_sn_params_and_flops_scale_with_canvas(triplet):
    f32, p32 = count_flops(triplet.sketch_branch(), triplet.sketch_input(32))
    f64, p64 = count_flops(triplet.sketch_branch(), triplet.sketch_input(64))
    assert p32 == p64 == 8_249_088  # the published Sketch-a-Net triplet branch (fc6 input fixed at 256·7·7)
    assert 0.04e9 < f32 < 0.1e9
    assert 2.5 < f64 / f32 < 4.5  # "same" padding: the conv cost follows the canvas area


def test_holef_sn_counts_attention_and_w(holef, triplet):
    _, p = count_flops(holef.sketch_branch(), holef.sketch_input(32))
    attention = 256 * 256 + 256 + 256 + 1
    assert p == 8_249_088 + attention + 512 * 512


# -- Triplet-SN loss --------------------------------------------------------------------------------
def test_triplet_sn_loss_is_squared_distance_with_margin_0_3(triplet):
    a = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    p = torch.tensor([[0.6, 0.8], [0.6, 0.8]])
    n = torch.tensor([[0.8, 0.6], [0.0, 1.0]])
    # row 1: 0.3 + 0.8 − 0.4 = 0.7; row 2: 0.3 + 0.8 − 2.0 < 0 → 0. Plain Euclidean would give 0.562 in row 1.
    assert triplet.p["margin"] == 0.3
    assert float(triplet.loss(a, p, n)) == pytest.approx(0.35)


# -- HOLEF ------------------------------------------------------------------------------------------
def test_holef_at_identity_is_squared_euclidean(holef):
    g = torch.Generator().manual_seed(0)
    s, p = torch.randn(5, 512, generator=g), torch.randn(7, 512, generator=g)
    assert torch.equal(holef.energy.weight.detach(), torch.eye(512))
    torch.testing.assert_close(holef.distance(s, p), torch.cdist(s, p).pow(2), rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(holef.energy.pairwise(s[:5], p[:5]), (s[:5] - p[:5]).pow(2).sum(1), rtol=1e-4, atol=1e-3)


def test_holef_energy_matches_the_double_sum():
    torch.manual_seed(0)
    e = HolefEnergy(6)
    with torch.no_grad():
        e.weight.copy_(torch.randn(6, 6))
    s, p = torch.randn(3, 6), torch.randn(4, 6)
    brute = (e.weight[None, None] * (s[:, None, :, None] - p[None, :, None, :]).pow(2)).sum((2, 3))
    torch.testing.assert_close(e.matrix(s, p), brute.detach(), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(e.pairwise(s, p[:3]), brute.diagonal().detach(), rtol=1e-4, atol=1e-4)


def test_holef_regulariser_zero_at_identity_positive_otherwise():
    e = HolefEnergy(4).requires_grad_(False)
    assert float(e.regulariser(0.5, 0.25)) == 0.0
    with torch.no_grad():
        e.weight[1, 2] = 0.2
        e.weight[0, 0] = 1.0 - 0.1
    # α‖W − I‖₁ + β‖W − I‖_F = 0.5·0.3 + 0.25·√(0.04 + 0.01)
    assert float(e.regulariser(0.5, 0.25)) == pytest.approx(0.15 + 0.25 * 0.05**0.5)


def test_changing_w_changes_distances_and_ranking():
    m = build_method("holef-sn")
    g = torch.Generator().manual_seed(1)
    s, p = torch.randn(6, 512, generator=g), torch.randn(9, 512, generator=g)
    before = m.distance(s, p)
    with torch.no_grad():  # keep only the first coordinate in the energy
        m.energy.weight.zero_()
        m.energy.weight[0, 0] = 1.0
    after = m.distance(s, p)
    torch.testing.assert_close(after, (s[:, :1] - p[:, :1].t()).pow(2))
    assert not torch.equal(before.argsort(1), after.argsort(1))


def test_attention_mask_sums_to_one_over_positions(holef):
    att = SpatialAttention(256, 256, "softmax")
    a = att.mask(torch.randn(3, 256, 4, 5))
    assert a.shape == (3, 1, 4, 5)
    torch.testing.assert_close(a.sum(dim=(1, 2, 3)), torch.ones(3))
    with torch.no_grad():
        f = holef.model.net.trunk.features(sketch_a_net_input(_sketches(2, 96)))
        mask = holef.model.net.attention.mask(f)
    assert f.shape[-1] == 4  # the native pool5 map at 96 px
    torch.testing.assert_close(mask.sum(dim=(1, 2, 3)), torch.ones(2))


# -- training ---------------------------------------------------------------------------------------
def test_holef_w_is_learned_and_saved():
    data = tiny_data(photo_size=32, max_train_sketches=8)  # one training step of 8 triplets
    m = build_method("holef-sn")
    m.train(data, [32])
    w = m.energy.weight.detach()
    assert not torch.equal(w, torch.eye(512))
    assert float(m.energy.regulariser(1.0, 1.0).detach()) > 0
    # W travels with the checkpoint
    state = m.state()
    assert "energy.weight" in state["state_dict"]
    fresh = build_method("holef-sn")
    fresh.load_state(state)
    assert torch.equal(fresh.energy.weight, w)


@pytest.mark.parametrize("name", ["triplet-sn", "holef-sn"])
def test_a_few_steps_reduce_the_loss_on_a_fixed_batch(name):
    torch.manual_seed(0)
    data = tiny_data()
    m = build_method(name, lr=1e-4, augment=False)
    pairs = data.pairs("train")[:4]
    sk = data.sketches("train", 32)[:4]
    photos = data.photos("train")[..., ::2, ::2]  # 32 px photos keep the test fast
    pos = photos[pairs]
    neg = photos[(pairs + 1) % photos.shape[0]]
    trainer = m.make_trainer(1e-4)
    m.model.train()

    def loss() -> torch.Tensor:
        return m.loss(m.embed(sk), m.embed(pos), m.embed(neg))

    with torch.no_grad():
        start = float(loss())
    for _ in range(6):
        trainer.step(loss())
    with torch.no_grad():
        end = float(loss())
    assert start > 0
    assert end < 0.5 * start


# -- weights ----------------------------------------------------------------------------------------
def test_pretrained_is_refused_clearly():
    """Sketch-a-Net has no backbone a weight source fills: asking for its weights is one line."""
    code, _, err = run_cli("run", "-m", "triplet-sn", "-d", "tiny", "-p", "smoke", "--pretrained", "triplet-sn=auto")
    assert code == 2 and "'triplet-sn' has no backbone a weight source can fill" in err
    code, _, err = run_cli("run", "-m", "triplet-sn", "-d", "tiny", "-p", "smoke", "--pretrained")
    assert code == 2 and "no method of this run has a backbone a weight source can fill" in err


def test_weights_file_is_loaded(tmp_path):
    src = build_method("triplet-sn", seed=1)
    path = tmp_path / "sn.pt"
    torch.save(src.modules().state_dict(), path)
    cls = get_host().methods.get("triplet-sn")
    m = cls(_context("triplet-sn", weights=path))
    for a, b in zip(src.modules().parameters(), m.modules().parameters(), strict=True):
        assert torch.equal(a, b)


def test_holef_sn_starts_from_a_triplet_sn_checkpoint(tmp_path):
    src = build_method("triplet-sn", seed=1)
    path = tmp_path / "sn.pt"
    torch.save({"state_dict": src.modules().state_dict()}, path)
    cls = get_host().methods.get("holef-sn")
    # HOLEF-SN has more than Sketch-a-Net (attention, the energy W): a partial load, asked for explicitly
    with pytest.raises(SketchbenchError, match="refusing a partial load"):
        cls(_context("holef-sn", weights=path))
    m = cls(_context("holef-sn", weights=path, partial_weights=True))
    assert torch.equal(m.model.net.trunk.features[0].weight, src.model.trunk.features[0].weight)
    assert torch.equal(m.model.net.head.fc7.weight, src.model.head.fc7.weight)
    assert torch.equal(m.energy.weight.detach(), torch.eye(512))
