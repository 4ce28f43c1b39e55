"""B-VGG16-SN's cached-trunk path (plugins/sketchbench_teachers/frozen_trunk.py): the frozen conv1–N
outputs in the artifact cache give the same embeddings as the whole network, are computed once, are
keyed by the trunk's weights, and training through them moves only the rest of the network."""

from __future__ import annotations

import copy

import pytest
import torch
from sketchbench_teachers.frozen_trunk import CACHE_KIND, cached_trunk, trunk_identity

from sketchbench import ArtifactCache, RunData
from sketchbench.run.presets import load_preset
from sketchbench.testing import build_method, tiny_data
from sketchbench.training import split_backbone

CANVAS = 32
BATCH = load_preset("smoke").eval_batch_size  # what the runner passes: the preset's eval_batch_size


@pytest.fixture(scope="module")
def base_data() -> RunData:
    return tiny_data("tiny", "smoke", max_train_sketches=12, photo_size=32)


@pytest.fixture(scope="module")
def pristine():
    """One random-init B-VGG16-SN for the module (building timm's VGG16 costs seconds: its fc6 is
    initialised before create_backbone drops it); tests take copies."""
    torch.manual_seed(0)
    return build_method("vgg16-sn", preset="smoke", freeze_stages=4, epochs=1)


def fresh(base: RunData, root) -> RunData:
    """The same data over an artifact store at ``root`` (a new store: empty memory tier)."""
    return RunData(base.dataset, load_preset("smoke", {"max_train_sketches": "12", "photo_size": "32"}), ArtifactCache(root), seed=0)


def vgg(pristine, stages: int = 4):
    m = copy.deepcopy(pristine)
    m.p["freeze_stages"] = stages
    return m


@pytest.mark.parametrize("stages", [3, 4])
def test_cached_trunk_gives_the_whole_networks_embeddings(pristine, base_data, tmp_path, stages):
    m = vgg(pristine, stages)
    data = fresh(base_data, tmp_path)
    early, rest = split_backbone(m.net, stages)
    trunk = cached_trunk(early, data, [CANVAS], flips=True, batch_size=BATCH)
    sketches, photos = data.sketches("train", CANVAS), data.photos("train")

    def from_trunk(x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return torch.nn.functional.normalize(rest(x), dim=-1)

    with torch.inference_mode():
        for view, flip in zip(trunk.views, (False, True), strict=True):
            s = sketches.flip(-1) if flip else sketches
            p = photos.flip(-1) if flip else photos
            i = trunk.views.index(view)
            torch.testing.assert_close(from_trunk(trunk.sketches[CANVAS][i]), m.encode_sketch(s), atol=1e-5, rtol=1e-4)
            torch.testing.assert_close(from_trunk(trunk.photos[i]), m.encode_photo(p), atol=1e-5, rtol=1e-4)
    # and the flipped view is really another input, not a copy
    assert not torch.allclose(trunk.sketches[CANVAS][0], trunk.sketches[CANVAS][1])


def test_trunk_outputs_are_computed_once_and_reloaded_checked(pristine, base_data, tmp_path, monkeypatch):
    from sketchbench_teachers import frozen_trunk

    m = vgg(pristine)
    early, _ = split_backbone(m.net, 4)
    first = cached_trunk(early, fresh(base_data, tmp_path), [CANVAS], flips=True, batch_size=BATCH)
    entries = sorted((tmp_path / CACHE_KIND).glob("*.pt"))
    assert len(entries) == 4  # photos and sketches @ 32, plain and flipped
    assert all((e.parent / (e.name + ".sha256")).is_file() for e in entries)

    calls = []
    monkeypatch.setattr(frozen_trunk, "trunk_outputs", lambda *a, **k: calls.append(1) or torch.zeros(1))
    again = cached_trunk(early, fresh(base_data, tmp_path), [CANVAS], flips=True, batch_size=BATCH)  # a new process: disk only
    assert calls == []
    torch.testing.assert_close(again.sketches[CANVAS][1], first.sketches[CANVAS][1], atol=0, rtol=0)

    # a corrupted entry is refused by its sha256 and computed again
    entries[0].write_bytes(entries[0].read_bytes()[:-8] + b"garbage!")
    monkeypatch.undo()
    third = cached_trunk(early, fresh(base_data, tmp_path), [CANVAS], flips=True, batch_size=BATCH)
    torch.testing.assert_close(third.photos[0], first.photos[0], atol=0, rtol=0)


def test_the_key_follows_the_trunks_weights_and_cut(pristine):
    a, b = vgg(pristine), vgg(pristine)
    ea, eb = split_backbone(a.net, 4)[0], split_backbone(b.net, 4)[0]
    assert trunk_identity(ea) == trunk_identity(eb)  # same weights, same cut: shared entries
    assert trunk_identity(ea) != trunk_identity(split_backbone(a.net, 3)[0])  # another cut
    for which in (0, -1):  # the first and the last tensor of the trunk both count
        b = vgg(pristine)
        eb = split_backbone(b.net, 4)[0]
        with torch.no_grad():
            list(eb.parameters())[which].view(-1)[0] += 1e-3  # other weights: another init or source
        assert trunk_identity(ea) != trunk_identity(eb)


def test_training_on_the_cached_trunk_moves_only_the_rest(pristine, base_data, tmp_path):
    m = vgg(pristine)
    data = fresh(base_data, tmp_path)
    early, rest = split_backbone(m.net, 4)
    before_early = {k: v.clone() for k, v in early.state_dict().items()}
    before_rest = {k: v.clone() for k, v in rest.state_dict().items()}
    m.train(data, [CANVAS])
    assert all(torch.equal(v, early.state_dict()[k]) for k, v in before_early.items())
    assert any(not torch.equal(v, rest.state_dict()[k]) for k, v in before_rest.items())
    assert all(p.requires_grad for p in m.net.parameters())  # handed back trainable
    assert not m.net.training
    # another run from the same start (another seed of a pretrained teacher) reuses the cached
    # trunk outputs: nothing new is stored
    n_entries = len(list((tmp_path / CACHE_KIND).glob("*.pt")))
    vgg(pristine).train(fresh(base_data, tmp_path), [CANVAS])
    assert len(list((tmp_path / CACHE_KIND).glob("*.pt"))) == n_entries
