"""A content-addressed cache of artifacts (checkpoints, teacher outputs, rendered canvases),
kept outside the repository: ``--cache-dir``, else ``SKETCHBENCH_CACHE_DIR``, else the user's
cache directory."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from sketchbench.base.errors import SketchbenchError


def default_cache_dir() -> Path:
    env = os.environ.get("SKETCHBENCH_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "sketchbench"


def stable_hash(obj: Any, length: int = 16) -> str:
    """sha256 of the canonical JSON of ``obj``."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class ArtifactCache:
    """``<root>/<kind>/<key>.pt`` files written atomically; ``None`` root disables caching."""

    def __init__(self, root: Path | None) -> None:
        self.root = Path(root) if root is not None else None
        if self.root is not None:
            try:
                self.root.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise SketchbenchError(f"cache directory {str(self.root)!r} cannot be created: {exc.strerror}") from None

    def path(self, kind: str, key: str) -> Path | None:
        return None if self.root is None else self.root / kind / f"{key}.pt"

    def load(self, kind: str, key: str) -> Any | None:
        path = self.path(kind, key)
        if path is None or not path.exists():
            return None
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception:
            # a truncated or stale entry is a cache miss, not an error
            path.unlink(missing_ok=True)
            return None

    def save(self, kind: str, key: str, obj: Any) -> None:
        path = self.path(kind, key)
        if path is None:
            return
        import io

        buf = io.BytesIO()
        torch.save(obj, buf)
        atomic_write_bytes(path, buf.getvalue())
