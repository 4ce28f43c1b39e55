"""Hand-computed checks of the KD losses and pruning criteria in ``sketchbench_students.losses``."""

import math

import pytest
import torch
import torch_pruning as tp
from sketchbench_students.losses import (
    at_is_constant,
    at_loss,
    at_loss_sum,
    attention_map,
    fitnets_loss,
    huber,
    layer_l2_normalise,
    pkt_loss,
    pkt_probabilities,
    rkd_triplet_loss,
    select_at_maps,
    taylor_criterion,
    thinet_greedy_selection,
    thinet_least_squares,
    triplet_distances,
)
from sketchbench_students.pruning import MolchanovTaylorImportance, conv_contributions
from torch import nn


def t(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32)


# -- RKD on the triplet ---------------------------------------------------------------------------
def test_triplet_distances_are_euclidean():
    s, p, n = t(0.0, 0.0).view(1, 2), t(3.0, 4.0).view(1, 2), t(0.0, 1.0).view(1, 2)
    d_sp, d_sn, d_pn = triplet_distances(s, p, n)
    assert d_sp.item() == pytest.approx(5.0)
    assert d_sn.item() == pytest.approx(1.0)
    assert d_pn.item() == pytest.approx(math.sqrt(9 + 9))


def test_rkd_is_zero_when_student_distances_equal_the_teachers():
    d = (t(0.3, 1.2), t(0.9, 2.0), t(1.1, 0.4))
    assert rkd_triplet_loss(d, d).item() == pytest.approx(0.0, abs=1e-7)
    # with the batch-mean normalisation only relative distances matter: a scaled copy is also zero
    scaled = tuple(2.5 * x for x in d)
    assert rkd_triplet_loss(scaled, d).item() == pytest.approx(0.0, abs=1e-6)
    assert rkd_triplet_loss(scaled, d, normalise=False).item() > 0


def test_rkd_hand_computed_huber_without_normalisation():
    # |Δ| = 0.5 < β → ½·0.25 = 0.125; |Δ| = 2 ≥ β → β(2 − ½β) = 1.5; Δ = 0 → 0
    student = (t(1.0), t(3.0), t(0.5))
    teacher = (t(1.5), t(1.0), t(0.5))
    assert rkd_triplet_loss(student, teacher, beta=1.0, normalise=False).item() == pytest.approx(1.625)
    assert huber(t(3.0), t(1.0), beta=0.5).item() == pytest.approx(0.5 * (2.0 - 0.25))


def test_rkd_hand_computed_with_mean_normalisation():
    # student mean 1 → (1, 1, 1); teacher (2, 4, 6), mean 4 → (0.5, 1, 1.5): 0.125 + 0 + 0.125
    student = (t(1.0), t(1.0), t(1.0))
    teacher = (t(2.0), t(4.0), t(6.0))
    assert rkd_triplet_loss(student, teacher).item() == pytest.approx(0.25)


def test_rkd_gradient_reaches_the_student_only():
    s = t(1.0, 2.0).requires_grad_()
    teach = t(3.0, 1.0).requires_grad_()
    rkd_triplet_loss((s, s * 2, s + 1), (teach, teach, teach)).backward()
    assert s.grad is not None and s.grad.abs().sum() > 0
    assert teach.grad is None


# -- PKT ------------------------------------------------------------------------------------------
def test_pkt_probabilities_rows_sum_to_one():
    x = torch.randn(6, 5, generator=torch.Generator().manual_seed(0))
    p = pkt_probabilities(x)
    assert p.shape == (6, 6)
    assert torch.allclose(p.sum(1), torch.ones(6), atol=1e-6)
    assert (p >= 0).all()


def test_pkt_kl_is_zero_for_identical_features_and_positive_otherwise():
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(8, 4, generator=g), torch.randn(8, 4, generator=g)
    assert pkt_loss(x, x).item() == pytest.approx(0.0, abs=1e-9)
    # a cosine kernel: rescaling the rows changes nothing; a different 12-d teacher space is fine
    assert pkt_loss(3.0 * x, x).item() == pytest.approx(0.0, abs=1e-8)
    assert pkt_loss(x, y).item() > 1e-4
    assert pkt_loss(x, torch.randn(8, 12, generator=g)).item() > 0


def test_pkt_hand_computed_two_points():
    # orthogonal student rows: K = [[1, .5], [.5, 1]] → P_S rows (2/3, 1/3); parallel teacher rows:
    # K = all ones → P_T rows (1/2, 1/2). KL per row = ½ln(¾) + ½ln(3/2); mean over the 4 entries
    s = t(1.0, 0.0, 0.0, 1.0).view(2, 2)
    te = t(1.0, 0.0, 2.0, 0.0).view(2, 2)
    expected = 2 * (0.5 * math.log(0.5 / (2 / 3)) + 0.5 * math.log(0.5 / (1 / 3))) / 4
    assert pkt_loss(s, te).item() == pytest.approx(expected, rel=1e-5)


# -- attention transfer -----------------------------------------------------------------------------
def test_attention_maps_are_l2_normalised():
    a = torch.randn(3, 7, 5, 4, generator=torch.Generator().manual_seed(2))
    at = attention_map(a)
    assert at.shape == (3, 20)
    assert torch.allclose(at.norm(dim=1), torch.ones(3), atol=1e-6)
    # the definition: normalize(vec(mean_c A_c²))
    e = a.pow(2).mean(1).flatten(1)
    assert torch.allclose(at, e / e.norm(dim=1, keepdim=True), atol=1e-6)


def test_at_loss_zero_for_identical_maps_and_positive_otherwise():
    g = torch.Generator().manual_seed(3)
    a = torch.randn(2, 6, 4, 4, generator=g)
    assert at_loss(a, a).item() == pytest.approx(0.0, abs=1e-10)
    # channel order and count do not matter to at(): a 12-channel map with the same energy is zero
    assert at_loss(torch.cat([a, a], 1), a).item() == pytest.approx(0.0, abs=1e-10)
    assert at_loss(a, torch.randn(2, 6, 4, 4, generator=g)).item() > 1e-4


def test_at_loss_pools_the_larger_energy_map():
    student = torch.ones(2, 3, 2, 2)
    teacher = torch.ones(2, 5, 8, 8)  # uniform energy: pooled to 2×2 it matches exactly
    assert at_loss(student, teacher).item() == pytest.approx(0.0, abs=1e-10)
    teacher[:, :, :4, :4] = 3.0
    assert at_loss(student, teacher).item() > 0


def test_at_loss_is_exactly_zero_on_a_1x1_map():
    """Why B-AKD's default gets no signal at canvas 32: a 1×1 attention map normalises to 1."""
    g = torch.Generator().manual_seed(4)
    student = torch.randn(3, 1280, 1, 1, generator=g)
    teacher = torch.randn(3, 256, 3, 3, generator=g)
    assert at_loss(student, teacher).item() == 0.0
    assert at_is_constant((1, 1), (3, 3)) and at_is_constant((2, 2), (1, 1))
    assert not at_is_constant((2, 2), (3, 3)) and not at_is_constant((1, 2), (3, 3))
    assert at_loss(torch.randn(3, 96, 2, 2, generator=g), teacher).item() > 0


def test_select_at_maps_by_hand():
    s8, s16, last = torch.zeros(1, 32, 4, 4), torch.zeros(1, 96, 2, 2), torch.zeros(1, 1280, 1, 1)
    maps = [s8, s16, last]  # MobileNetV2 at canvas 32: strides 8, 16, the final map
    assert select_at_maps(maps, "last") == [last]
    assert select_at_maps(maps, "spatial") == [s16]  # the deepest map ≥ 2×2
    assert select_at_maps(maps, "stages") == [s8, s16]
    big = torch.zeros(1, 1280, 2, 2)  # at 64 the final map is 2×2: spatial = last
    assert select_at_maps([s8, s16, big], "spatial") == [big]
    tiny = [torch.zeros(1, 4, 1, 1)] * 2
    assert select_at_maps(tiny, "spatial") == [tiny[-1]] and select_at_maps(tiny, "stages") == [tiny[-1]]
    with pytest.raises(ValueError, match="at_maps"):
        select_at_maps(maps, "first")


def test_at_loss_sum_adds_the_terms_of_each_map():
    g = torch.Generator().manual_seed(5)
    a, b = torch.randn(2, 8, 4, 4, generator=g), torch.randn(2, 8, 2, 2, generator=g)
    teacher = torch.rand(2, 3, 3, generator=g)  # an energy, as cached
    assert at_loss_sum([a, b], teacher).item() == pytest.approx((at_loss(a, teacher) + at_loss(b, teacher)).item())
    assert at_loss_sum([a], teacher).item() == pytest.approx(at_loss(a, teacher).item())


# -- FitNets ----------------------------------------------------------------------------------------
def test_fitnets_loss_zero_for_a_perfect_adaptor():
    g = torch.Generator().manual_seed(4)
    student = torch.randn(2, 4, 3, 3, generator=g)
    adaptor = nn.Conv2d(4, 6, 1)
    teacher = adaptor(student).detach()  # the hint is exactly what the adaptor produces
    assert fitnets_loss(adaptor(student), teacher).item() == pytest.approx(0.0, abs=1e-12)
    wrong = nn.Conv2d(4, 6, 1)
    loss = fitnets_loss(wrong(student), teacher)
    assert loss.item() > 0
    loss.backward()
    assert wrong.weight.grad is not None and wrong.weight.grad.abs().sum() > 0


# -- Molchanov Taylor -------------------------------------------------------------------------------
def test_taylor_criterion_hand_computed():
    # one example, two channels, 2 positions: |mean(z·g)| per channel
    z = t(1.0, -2.0, 3.0, 0.5).view(1, 2, 2, 1)
    g = t(0.5, 0.5, -1.0, 2.0).view(1, 2, 2, 1)
    assert torch.allclose(taylor_criterion(z, g), t(abs((0.5 - 1.0) / 2), abs((-3.0 + 1.0) / 2)))
    assert torch.allclose(layer_l2_normalise(t(3.0, 4.0)), t(0.6, 0.8))


def test_taylor_importance_ranks_a_zeroed_channel_lowest():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 4, 3, padding=1),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten())
    with torch.no_grad():
        net[0].weight[5].zero_()
        net[0].bias[5] = 0.0  # channel 5's feature map is identically zero
    imp = MolchanovTaylorImportance().attach(net)
    for _ in range(2):
        net(torch.randn(4, 3, 8, 8)).pow(2).sum().backward()
    imp.detach()
    dg = tp.DependencyGraph().build_dependency(net, example_inputs=torch.randn(1, 3, 8, 8), verbose=False)
    group = dg.get_pruning_group(net[0], tp.prune_conv_out_channels, list(range(8)))
    scores = imp(group)
    assert scores is not None and scores.shape == (8,)
    assert int(scores.argmin()) == 5
    assert scores[5] < 1e-5 < scores.max()


# -- ThiNet -----------------------------------------------------------------------------------------
def test_thinet_selection_picks_the_zero_contribution_channel_first():
    # columns: c0 = (1, 1), c1 = 0, c2 = (−1, −1), c3 = (2, 2)
    x = t(1.0, 0.0, -1.0, 2.0, 1.0, 0.0, -1.0, 2.0).view(2, 4)
    order = thinet_greedy_selection(x, 3)
    assert order[0] == 1
    # then c0 (ties with c2, the first is kept) and c2, which cancels c0 exactly
    assert order == [1, 0, 2]
    assert thinet_greedy_selection(x, 0) == []
    with pytest.raises(ValueError):
        thinet_greedy_selection(x, 5)


def test_thinet_least_squares_recovers_scales():
    g = torch.Generator().manual_seed(5)
    kept = torch.randn(50, 2, generator=g)
    y = 2.0 * kept[:, 0] + 3.0 * kept[:, 1]
    assert torch.allclose(thinet_least_squares(kept, y), t(2.0, 3.0), atol=1e-5)


def test_conv_contributions_sum_to_the_convolution_output():
    g = torch.Generator().manual_seed(6)
    conv = nn.Conv2d(5, 3, 3, stride=2, padding=1, dilation=1, bias=True)
    x = torch.randn(2, 5, 9, 9, generator=g)
    y = conv(x).detach() - conv.bias.detach().view(1, -1, 1, 1)
    b, k = torch.tensor([0, 1, 1, 0]), torch.tensor([2, 0, 1, 1])
    oy, ox = torch.tensor([0, 4, 2, 3]), torch.tensor([4, 0, 1, 3])
    contrib = conv_contributions(x, conv.weight.detach(), conv.stride, conv.padding, conv.dilation, b, oy, ox, k)
    assert contrib.shape == (4, 5)
    assert torch.allclose(contrib.sum(1), y[b, k, oy, ox], atol=1e-5)
