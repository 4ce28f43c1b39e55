"""The artifact store: everything expensive that sketchbench computes once and reuses (rendered
canvases, checkpoints, teacher outputs, pruned structures, parsed datasets, gallery embeddings).

Two tiers: process memory (a small LRU, shared by every method of a run) and disk
(``<root>/<kind>/<key>.pt``, ``--cache-dir``, else ``SKETCHBENCH_CACHE_DIR``, else the user's cache
directory). Keys are content addresses (:func:`stable_hash` of everything the artifact depends on).

Integrity. torch does not check a zip entry's CRC, so a flipped byte in a checkpoint (or random
tensors of the right shapes written over it) would load and change a result silently. Every entry
therefore has its sha256 written beside it (``<key>.pt.sha256``, after the entry itself, both
atomically) and checked on every load. An entry that fails the check, does not load, or has no
digest (written by an older sketchbench) is reported in one line, removed and recomputed. A cache
that cannot be written (read-only, full) costs one warning per kind and keeps the run going: the
artifact is only not reused next time.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import tempfile
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch

from sketchbench.base.errors import SketchbenchError

log = logging.getLogger("sketchbench")

#: the memory tier keeps at most this many entries and about this many bytes
MEMORY_ENTRIES = 16
MEMORY_BYTES = 4 * 2**30


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
    """Write ``data`` to ``path`` through a temporary file and a rename: never half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def remove_orphaned_temporaries(paths: Iterable[Path], older_than_s: float) -> int:
    """Delete the temporary files of :func:`atomic_write_bytes` that a killed writer left behind.

    A writer killed with SIGKILL never reaches its cleanup, so its ``*.tmp`` stays forever (one was a
    2 MB partial checkpoint). Only files older than ``older_than_s`` go: a live writer's temporary
    file is seconds old. Returns how many were removed; failures are ignored (another process may
    have removed the file first)."""
    now = time.time()
    removed = 0
    for tmp in paths:
        try:
            if tmp.is_file() and now - tmp.stat().st_mtime > older_than_s:
                tmp.unlink()
                removed += 1
        except OSError:
            continue
    if removed:
        log.info("removed %d temporary file(s) left by killed runs", removed)
    return removed


def _nbytes(value: Any) -> int:
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, dict):
        return sum(_nbytes(v) for v in value.values())
    if isinstance(value, list | tuple):
        return sum(_nbytes(v) for v in value)
    return 0


class ArtifactCache:
    """Memory + disk artifacts; ``None`` root keeps the memory tier only."""

    def __init__(self, root: Path | None, memory: bool = True) -> None:
        self.root = Path(root) if root is not None else None
        self._memory: OrderedDict[tuple[str, str], Any] = OrderedDict()
        self._use_memory = memory
        self._unwritable: set[str] = set()
        if self.root is not None:
            try:
                self.root.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise SketchbenchError(f"cache directory {str(self.root)!r} cannot be created: {exc.strerror}") from None
            # an hour is far longer than any one artifact takes to write
            remove_orphaned_temporaries(self.root.glob("*/*.tmp"), older_than_s=3600)

    def path(self, kind: str, key: str) -> Path | None:
        return None if self.root is None else self.root / kind / f"{key}.pt"

    # -- disk ------------------------------------------------------------------------------------
    def _drop(self, path: Path, why: str) -> None:
        log.warning("cache entry %s %s: removed, it will be recomputed", path, why)
        for p in (path, Path(str(path) + ".sha256")):
            try:
                p.unlink(missing_ok=True)
            except OSError:
                pass

    def load(self, kind: str, key: str) -> Any | None:
        """The entry, or ``None`` when it is missing or was refused (corrupt, no digest, unreadable)."""
        if (kind, key) in self._memory:
            self._memory.move_to_end((kind, key))
            return self._memory[(kind, key)]
        path = self.path(kind, key)
        if path is None or not path.exists():
            return None
        digest_path = Path(str(path) + ".sha256")
        try:
            data = path.read_bytes()
            expected = digest_path.read_text().strip() if digest_path.exists() else None
        except OSError as exc:
            log.warning("cache entry %s cannot be read (%s): recomputing it", path, exc.strerror)
            return None
        if expected is None:
            self._drop(path, "has no checksum (written by an older sketchbench, or its writer was killed)")
            return None
        actual = hashlib.sha256(data).hexdigest()
        if actual != expected:
            self._drop(path, f"is corrupt (sha256 {actual[:12]}… is not the recorded {expected[:12]}…)")
            return None
        try:
            value = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        except Exception as exc:  # a stale format: a miss, reported
            self._drop(path, f"does not load ({type(exc).__name__})")
            return None
        return self._remember(kind, key, value)

    def save(self, kind: str, key: str, obj: Any) -> bool:
        """Store ``obj`` (memory, then disk with its digest). Returns whether it reached the disk."""
        self._remember(kind, key, obj)
        path = self.path(kind, key)
        if path is None:
            return False
        buf = io.BytesIO()
        torch.save(obj, buf)
        data = buf.getvalue()
        try:
            atomic_write_bytes(path, data)
            atomic_write_bytes(Path(str(path) + ".sha256"), hashlib.sha256(data).hexdigest().encode() + b"\n")
        except OSError as exc:
            if kind not in self._unwritable:
                self._unwritable.add(kind)
                log.warning("warning: cannot write the cache entry %s (%s): results are kept, but it will not be "
                            "reused next time", path, exc.strerror or exc)
            return False
        return True

    def remove(self, kind: str, key: str, why: str) -> None:
        """Forget an entry that turned out unusable (e.g. a checkpoint that does not fit the network)."""
        self._memory.pop((kind, key), None)
        path = self.path(kind, key)
        if path is not None and path.exists():
            self._drop(path, why)

    # -- memory ------------------------------------------------------------------------------------
    def _remember(self, kind: str, key: str, value: Any) -> Any:
        if not self._use_memory:
            return value
        self._memory[(kind, key)] = value
        self._memory.move_to_end((kind, key))
        # evict the least recently used, never the entry just stored
        while len(self._memory) > 1 and (len(self._memory) > MEMORY_ENTRIES
                                         or sum(map(_nbytes, self._memory.values())) > MEMORY_BYTES):
            self._memory.popitem(last=False)
        return value

    def get_or_compute(self, kind: str, key: str, compute: Callable[[], Any], *, disk: bool = True) -> Any:
        """The entry from memory or disk, else ``compute()`` stored (on disk too unless ``disk=False``)."""
        value = self.load(kind, key) if disk else self._memory.get((kind, key))
        if value is None:
            value = compute()
            if disk:
                self.save(kind, key, value)
            else:
                self._remember(kind, key, value)
        return value

    def clear_memory(self) -> None:
        self._memory.clear()
