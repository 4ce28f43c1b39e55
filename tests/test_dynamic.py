"""Dynamic-canvas methods: SketchyNetV2's selector and rewards, and the B-BFR/B-DRS/B-Crop
baselines, on tiny data with stand-in upstreams (a triplet-timm network trained multi-canvas,
or a fake critic whose retrieval quality depends on the canvas)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sketchbench_dynamic.baselines import (
    BCrop,
    bfr_scores,
    crop_canvas,
    crop_vector,
    drs_labels,
    ink_coverage,
)
from sketchbench_dynamic.critic import CriticTables, critic_tables, rank_of_pair
from sketchbench_dynamic.selectors import ENCODERS, GRUSelector, LSTMSelector
from sketchbench_dynamic.sketchynet_v2 import (
    SketchyNetV2,
    accuracy_reward,
    flops_penalty,
    reward_table,
    total_reward,
)
from torch import nn

from sketchbench import Method, MethodContext, Sketch, SketchbenchError, hookimpl
from sketchbench.measure.evaluate import evaluate
from sketchbench.measure.flops import count_flops, count_params
from sketchbench.run.presets import load_preset
from sketchbench.testing import build_method, registered_plugin, tiny_data

SMOKE = load_preset("smoke")  # the preset tiny_data() loads

SMALL, LARGE = 32, 64  # the smoke preset's canvases


class CanvasQualityCritic(Method):
    """A fake frozen upstream: each photo is a random unit vector and a sketch's embedding is its
    photo's plus Gaussian noise of the canvas's size (``noise[c]``), fixed per rendered image. With
    no noise at the large canvas, accuracy genuinely rewards it. Its branch is one conv, so FLOPs
    grow as c²."""

    def __init__(self, data, noise: dict[int, float], dim: int = 16, seed: int = 0) -> None:
        super().__init__(MethodContext(name="critic", params={}, preset=SMOKE, device=torch.device("cpu"), seed=seed))
        g = torch.Generator().manual_seed(seed)
        self.branch = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.sketch_table: dict[tuple[int, bytes], torch.Tensor] = {}
        self.photo_table: dict[bytes, torch.Tensor] = {}
        for split in ("train", "test"):
            photos = data.photos(split)
            vecs = F.normalize(torch.randn(len(photos), dim, generator=g), dim=1)
            for j in range(len(photos)):
                self.photo_table[photos[j].numpy().tobytes()] = vecs[j]
            pairs = data.pairs(split)
            for c in SMOKE.canvases:
                imgs = data.sketches(split, c)
                for i in range(len(imgs)):
                    self.sketch_table[(c, imgs[i].numpy().tobytes())] = vecs[pairs[i]] + noise[c] * torch.randn(dim, generator=g)

    def train(self, data, canvases, teacher=None) -> None:
        pass

    def encode_sketch(self, images: torch.Tensor) -> torch.Tensor:
        return torch.stack([self.sketch_table[(images.shape[-1], im.numpy().tobytes())] for im in images])

    def encode_photo(self, images: torch.Tensor) -> torch.Tensor:
        return torch.stack([self.photo_table[im.numpy().tobytes()] for im in images])

    def sketch_branch(self) -> nn.Module:
        return self.branch

    def modules(self) -> nn.Module:
        return self.branch


@pytest.fixture(scope="module")
def data():
    return tiny_data()


@pytest.fixture(scope="module")
def critic(data):
    return CanvasQualityCritic(data, {SMALL: 2.0, LARGE: 0.0})


@pytest.fixture(scope="module")
def timm_upstream(data):
    """The brief's stand-in for SketchyNetV1: a tiny timm triplet network trained multi-canvas."""
    up = build_method("triplet-timm", backbone="test_efficientnet")
    up.train(data, SMOKE.canvases)
    return up.eval()


# -- the rewards by hand -----------------------------------------------------------------------
def test_flops_penalty_by_hand():
    q = torch.tensor([1.0, 4.0, 16.0], dtype=torch.float64)  # q_max − q_min = 15
    eta = torch.tensor([[0.5, 0.25, 0.25], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]], dtype=torch.float64)
    expected = torch.tensor([(0.5 * 1 + 0.25 * 4 + 0.25 * 16) / 15, 16 / 15, 1 / 15], dtype=torch.float64)
    assert torch.allclose(flops_penalty(eta, q), expected)
    # one canvas: nothing to trade, no penalty (and no division by zero)
    assert flops_penalty(torch.ones(2, 1), torch.tensor([7.0])).tolist() == [0.0, 0.0]
    # R_acc and R_Tot exactly as on the poster
    r_acc = accuracy_reward(torch.tensor([2]), torch.tensor([0.1]), lambda_r=1.0, lambda_tri=0.5)
    assert r_acc.item() == pytest.approx(1 / 2 - 0.5 * 0.1)
    assert total_reward(torch.tensor([-1.0]), r_acc, 0.3).item() == pytest.approx(0.3 * -1 + 0.7 * 0.45)


def test_reward_table_per_canvas_with_one_negative_or_the_pool():
    tables = CriticTables(
        canvases=[32, 64],
        ranks=torch.tensor([[3, 1], [1, 1]]),
        d_pos=torch.tensor([[0.9, 0.1], [0.2, 0.2]]),
        negatives=torch.tensor([[1, 1], [0, 0]]),
        d_neg=torch.tensor([[[0.5, 0.8], [1.0, 1.0]], [[0.3, 0.3], [0.3, 0.3]]]),
        flops=torch.tensor([10.0, 40.0], dtype=torch.float64),
    )
    p = dict(margin=0.2, lambda_r=1.0, lambda_tri=1.0, lambda_f=0.5, reward_rank=True, reward_tri=True,
             reward_flops=True, flops_term="sampled")
    r = reward_table(tables, p, torch.tensor([0, 1]), torch.tensor([1, 0]))
    # sketch 0, negative 1 (d_neg 1.0 at both canvases): at 32 rank 3, L_Tri = max(0, 0.2 + 0.9 − 1.0) = 0.1,
    # L_F = 10/30; at 64 rank 1, L_Tri = 0, L_F = 40/30
    # sketch 1, negative 0 (d_neg 0.3): rank 1 at both, L_Tri = 0.1 at both
    assert r[0].tolist() == pytest.approx([0.5 * (-10 / 30) + 0.5 * (1 / 3 - 0.1), 0.5 * (-40 / 30) + 0.5 * 1.0])
    assert r[1].tolist() == pytest.approx([0.5 * (-10 / 30) + 0.5 * 0.9, 0.5 * (-40 / 30) + 0.5 * 0.9])
    # without a drawn negative: L_Tri averaged over the pool (sketch 0 at 32: negatives 0.5 and 1.0 → (0.6 + 0.1)/2)
    pooled = reward_table(tables, p, torch.tensor([0]))
    assert pooled[0, 0].item() == pytest.approx(0.5 * (-10 / 30) + 0.5 * (1 / 3 - 0.35))
    no_rank = reward_table(tables, {**p, "reward_rank": False}, torch.tensor([0]), torch.tensor([1]))
    assert no_rank[0, 0].item() == pytest.approx(0.5 * (-10 / 30) + 0.5 * -0.1)
    no_flops = reward_table(tables, {**p, "reward_flops": False}, torch.tensor([0]), torch.tensor([1]))
    assert no_flops[0].tolist() == pytest.approx([0.5 * (1 / 3 - 0.1), 0.5 * 1.0])


def test_rank_convention_ties_count_against():
    d = torch.tensor([[0.5, 0.5, 0.9], [0.1, 0.4, 0.2]])
    assert rank_of_pair(d, torch.tensor([0, 0])).tolist() == [2, 1]


# -- the knob ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "params, expected",
    [
        (dict(lambda_f=0.0), LARGE),  # accuracy only: the canvas where retrieval works
        (dict(lambda_f=1.0), SMALL),  # FLOPs only: the cheapest canvas
        (dict(lambda_f=1.0, flops_term="expected"), SMALL),
        (dict(lambda_f=0.5, reward_flops=False), LARGE),  # the poster's "w/o L_F": no reason to save
        (dict(lambda_f=0.5, reward_rank=False, reward_tri=False), SMALL),  # no accuracy reward left
    ],
)
def test_lambda_f_knob_moves_the_selector(data, critic, params, expected):
    # the knob alone: every training sketch fitted and the last epoch kept (no held-out split)
    m = build_method("sketchynet-v2", rl_epochs=10, val_fraction=0.0, **params)
    m.bind_upstream(critic)
    m.train(data, SMOKE.canvases)
    m.eval()
    chosen = m.choose_canvases(data, "test")
    assert sum(c == expected for c in chosen) >= 0.8 * len(chosen), chosen


def test_intermediate_lambda_f_trades_accuracy_for_flops(data, critic):
    """λ_F = 0.3 with a noisy small canvas keeps the large one; when the small canvas retrieves
    as well as the large one, the same λ_F moves to the small one."""
    clean = CanvasQualityCritic(data, {SMALL: 0.0, LARGE: 0.0}, seed=1)
    for up, expected in ((critic, LARGE), (clean, SMALL)):
        m = build_method("sketchynet-v2", rl_epochs=10, lambda_f=0.3)
        m.bind_upstream(up)
        m.train(data, SMOKE.canvases)
        chosen = m.eval().choose_canvases(data, "test")
        assert sum(c == expected for c in chosen) >= 0.8 * len(chosen), (expected, chosen)


# -- selectors: encoders, FLOPs per query -----------------------------------------------------------
@pytest.mark.parametrize("encoder", ENCODERS)
def test_each_encoder_trains_and_adds_its_flops_per_query(data, timm_upstream, encoder):
    m = build_method("sketchynet-v2", encoder=encoder, rl_epochs=2)
    m.bind_upstream(timm_upstream)
    m.train(data, SMOKE.canvases)
    m.eval()
    res = evaluate(m, data, "dynamic")
    items = data.items("test")
    assert sum(res["canvas_histogram"].values()) == len(items) == res["num_queries"]
    chosen = m.choose_canvases(data, "test")
    per_canvas = {c: count_flops(timm_upstream.sketch_branch(), timm_upstream.sketch_input(c))[0] for c in set(chosen)}
    enc = [per_canvas[c] for c in chosen]
    per_shape: dict[tuple, float] = {}
    sel = []
    for mod, ex in m.selector_flops_inputs(data, "test"):
        shape = tuple(ex[0].shape)
        if shape not in per_shape:
            per_shape[shape] = count_flops(mod, ex)[0]
        sel.append(per_shape[shape])
    assert len(sel) == len(items) and min(sel) > 0
    assert res["gflops"] * 1e9 == pytest.approx(np.mean(enc) + np.mean(sel), rel=1e-6)
    assert res["selector_gflops"] * 1e9 == pytest.approx(np.mean(sel), rel=1e-6)
    assert res["params_m"] * 1e6 == count_params(timm_upstream.sketch_branch()) + count_params(m.selector.flops_view())
    # what the selector analysis reads: every query's rank at every canvas, the choice, the statistics
    assert sorted(res["canvas_ranks"]) == sorted(str(c) for c in SMOKE.canvases)
    assert res["query_canvases"] == chosen and len(res["query_stats"]) == len(items)
    assert all(len(r) == len(items) for r in res["canvas_ranks"].values())


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_recurrent_selector_flops_are_counted_per_step(cell):
    """The FLOPs view runs the same weights (same logits) and counts T steps, not T × 5."""
    cls = GRUSelector if cell == "gru" else LSTMSelector
    sel = cls([32, 64, 128, 256], 128, {"max_points": 100, "coords": "absolute"}).eval()
    if cell == "gru":  # the paper's +0.05 M: 2.27 M − 2.22 M
        assert count_params(sel) == 3 * (5 * 128 + 128 * 128 + 2 * 128) + 128 * 4 + 4 == 52356
    x = torch.randn(1, 20, 5)
    view = sel.flops_view()
    with torch.no_grad():
        assert torch.allclose(view(x), sel(x), atol=1e-5)
        # the packed batch path gives the same logits as one unpadded sketch
        padded = torch.cat([x, torch.zeros(1, 7, 5)], dim=1)
        assert torch.allclose(sel(padded, torch.tensor([20])), sel(x), atol=1e-5)
    step = count_flops(view.cell, (torch.zeros(1, 5),))[0]
    f10 = count_flops(view, (x[:, :10],))[0]
    f20 = count_flops(view, (x,))[0]
    assert f20 - f10 == pytest.approx(10 * step)
    assert count_params(view) == count_params(sel)


def test_sequence_input_is_rdp_simplified_stroke5():
    t = np.linspace(0, 1, 400)
    sketch = Sketch.from_strokes([np.stack([t, np.sin(6 * t)], 1), np.stack([t, 1 - t], 1)])
    sel = GRUSelector([32, 64], 8, {"max_points": 40, "coords": "absolute"})
    absolute = sel.make_input(sketch)[0]
    assert len(absolute) <= 41 and absolute[-1, 4] == 1 and absolute[:, 2:].sum(1).tolist() == [1.0] * len(absolute)
    pts = sketch.simplify(40).points
    assert np.allclose((absolute[:-1, :2] + 1) / 2, pts[:, :2], atol=1e-5)


def test_v2_state_round_trip_and_needs_upstream(data, critic):
    m = build_method("sketchynet-v2", rl_epochs=3)
    with pytest.raises(SketchbenchError):
        m.train(data, SMOKE.canvases)  # no upstream given
    m.bind_upstream(critic)
    m.train(data, SMOKE.canvases)
    fresh = build_method("sketchynet-v2", rl_epochs=3)
    fresh.load_state(m.state())
    with pytest.raises(SketchbenchError):
        fresh.encode_photo(data.photos("test")[:1])  # restored, but not yet given its upstream
    fresh.bind_upstream(critic)
    assert fresh.eval().choose_canvases(data, "test") == m.eval().choose_canvases(data, "test")
    assert torch.equal(fresh.encode_photo(data.photos("test")), critic.encode_photo(data.photos("test")))


# -- baselines -----------------------------------------------------------------------------------
def test_drs_labels_by_hand():
    ranks = torch.tensor([
        [1, 1, 1],  # first already at the smallest canvas
        [4, 1, 1],  # needs the middle one
        [5, 2, 1],  # only the largest
        [3, 2, 2],  # never first: the largest
        [2, 1, 3],  # first at the middle canvas, even if worse later
    ])
    assert drs_labels(ranks).tolist() == [0, 1, 2, 2, 1]


def test_drs_trains_on_its_labels(data, critic):
    m = build_method("b-drs", epochs=10)
    m.bind_upstream(critic)
    m.train(data, SMOKE.canvases)
    # the fake critic ranks every photo first at the large canvas and rarely at the small one
    tables = critic_tables(critic, data, [SMALL, LARGE], negatives=1)
    share_large = float((drs_labels(tables.ranks) == 1).float().mean())
    assert m.label_share[f"drs_label_share_{LARGE}"] == pytest.approx(share_large)
    res = evaluate(m.eval(), data, "dynamic")
    assert res["canvas_histogram"][str(LARGE)] >= 0.8 * res["num_queries"]
    assert res["selector_gflops"] > 0


def test_bfr_picks_the_best_fixed_canvas(data, critic):
    acc = torch.tensor([0.30, 0.32, 0.33])
    q = torch.tensor([1.0, 4.0, 16.0])
    assert int(torch.argmax(bfr_scores(acc, q, 0.0))) == 2
    assert int(torch.argmax(bfr_scores(acc, q, 0.05))) == 1  # normalised FLOPs 0, 0.2, 1: 0.32 − 0.01 wins
    assert int(torch.argmax(bfr_scores(acc, q, 0.1))) == 0  # 0.30 = 0.32 − 0.02: a tie goes to the smaller
    m = build_method("b-bfr")
    m.bind_upstream(critic)
    m.train(data, SMOKE.canvases)
    res = evaluate(m.eval(), data, "dynamic")
    assert res["canvas_histogram"] == {str(SMALL): 0, str(LARGE): res["num_queries"]}
    assert res["selector_gflops"] == 0 and res["extra"]["bfr_canvas"] == LARGE
    assert res["acc1"] == 100.0
    clean = CanvasQualityCritic(data, {SMALL: 0.0, LARGE: 0.0})
    m.bind_upstream(clean)
    m.train(data, SMOKE.canvases)  # equal accuracy: ties go to the smaller canvas
    assert m.choose_canvases(data, "test") == [SMALL] * len(data.items("test"))


def test_crop_fills_the_box_and_the_ink_rule(data):
    sketch = Sketch.from_strokes([np.array([[0.0, 0.4], [1.0, 0.6]]), np.array([[0.5, 0.45], [0.5, 0.55]])])
    x0, y0, x1, y1 = crop_vector(sketch).bbox()
    assert (x0, y0, x1, y1) == pytest.approx((0, 0, 1, 1))
    assert sketch.bbox()[3] - sketch.bbox()[1] < 0.5  # the uncropped sketch is flat
    item = data.items("test")[0]
    assert crop_canvas(item, [SMALL, LARGE], max_ink=1.0)[0] == SMALL
    assert crop_canvas(item, [SMALL, LARGE], max_ink=0.0)[0] == LARGE
    c, img = crop_canvas(item, [SMALL, LARGE], max_ink=0.5)
    assert img.shape == (c, c) and ink_coverage(img) <= 0.5


def test_crop_renders_replace_the_cached_ones(data, timm_upstream):
    m = build_method("b-crop", max_ink=1.0)  # every crop fits the smallest canvas
    assert isinstance(m, BCrop)
    m.bind_upstream(timm_upstream)
    m.train(data, SMOKE.canvases)
    items = data.items("test")
    assert m.choose_canvases(data, "test") == [SMALL] * len(items)
    crops = m.sketches_at(data, "test", SMALL, range(len(items)))
    assert crops.shape == data.sketches("test", SMALL).shape and crops.dtype == torch.uint8
    assert not torch.equal(crops, data.sketches("test", SMALL))
    res = evaluate(m.eval(), data, "dynamic")
    assert res["canvas_histogram"][str(SMALL)] == len(items) and res["selector_gflops"] == 0


# -- through the runner: chain rows, checkpoint reload with the upstream ---------------------------
class _V2OnTimm(SketchyNetV2):
    upstream = "triplet-timm"


class _Plugin:
    @hookimpl
    def register_methods(self, register):
        register("test-v2-on-timm", _V2OnTimm, kind="student", dynamic=True)


def test_runner_trains_upstream_and_reloads_v2_from_cache(tmp_path):
    from sketchbench.run.config import RunConfig
    from sketchbench.run.loop import Runner
    from sketchbench.run.presets import load_preset

    with registered_plugin(_Plugin(), "test-dynamic"):
        def run(out):
            cfg = RunConfig(methods=["test-v2-on-timm"], datasets=["tiny"], preset=load_preset("smoke"),
                            params={"triplet-timm.backbone": "test_efficientnet", "rl_epochs": "2"},
                            cache_dir=tmp_path / "cache", out=tmp_path / out, device="cpu")
            return Runner(cfg).run()[0]["cells"]

        first = run("a.json")
        second = run("b.json")  # everything from the checkpoint cache: V2 must still get its upstream
    for cells in (first, second):
        assert all(c["status"] == "ok" for c in cells), [c.get("error") for c in cells]
        dyn = [c for c in cells if c["canvas"] == "dynamic"]
        assert len(dyn) == 1 and sum(dyn[0]["canvas_histogram"].values()) == dyn[0]["num_queries"]
        assert {c["canvas"] for c in cells if c["role"] == "upstream"} == {SMALL, LARGE}
    assert first[-1]["acc1"] == second[-1]["acc1"] and first[-1]["gflops"] == second[-1]["gflops"]
    # the second run trained nothing: its train time is the one stored with the checkpoint
    assert first[-1]["train_seconds"] == second[-1]["train_seconds"] > 0
