"""Retrieval from a ``sketchbench export`` folder with numpy, Pillow and onnxruntime only.

::

    from sketchbench_query import query
    ranked = query("exports/v2", [[(120, 80), (130, 95), ...], ...])   # strokes in pixels → photo ids, best first

A query is the manifest's ``pipeline``: the selector input made by its recipe
(:mod:`sketchbench_query.recipes`) and ``selector.onnx`` (dynamic methods: canvas =
``canvas_set[argmax(logits)]``), the sketch drawn at that canvas (:mod:`sketchbench_query.render`), the
sketch encoder, then the gallery ranked by Euclidean distance between the flattened embeddings. The
gallery is the export's own (``gallery.npy``: the cell's test photos, embedded by
``photo_encoder.onnx`` during the export) or photos given to :meth:`Retriever.add_photos`.

Every file of the folder is checked before it is expanded (the manifest's size, the gallery's
header against its size and the manifest); a bad folder is one :class:`ExportError` line.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sketchbench_query.points import query_points
from sketchbench_query.recipes import selector_input
from sketchbench_query.render import render_points

#: the largest manifest read (it names graphs, canvases and the gallery's photo ids)
MAX_MANIFEST_BYTES = 32 * 1024 * 1024
#: the largest gallery file read
MAX_GALLERY_BYTES = 2 * 1024**3
#: photos embedded per photo-encoder call
PHOTO_BATCH = 64


class ExportError(ValueError):
    """An export folder that cannot be used: one line naming the file."""


def ort_session(model: bytes | str | Path, threads: int = 1, providers: Sequence[str] = ("CPUExecutionProvider",)) -> Any:
    """An onnxruntime session on ``threads`` intra-op threads (one inter-op thread, sequential
    execution, every graph optimisation): how sketchbench times and checks its graphs too."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, int(threads))
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, options, providers=list(providers))


def read_manifest(folder: Path) -> dict[str, Any]:
    path = folder / "manifest.json"
    try:
        size = path.stat().st_size
    except OSError:
        raise ExportError(f"{path}: no such file (is {folder} a sketchbench export folder?)") from None
    if size > MAX_MANIFEST_BYTES:
        raise ExportError(f"{path}: {size} bytes, more than a manifest may have ({MAX_MANIFEST_BYTES})")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ExportError(f"{path}: not a readable JSON manifest ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != "sketchbench.export":
        raise ExportError(f"{path}: not a sketchbench export manifest")
    return manifest


def _graph_file(folder: Path, name: Any) -> Path:
    """A file the manifest names, inside the folder (no path separators, no '..')."""
    if not isinstance(name, str) or not name or os.sep in name or "/" in name or name in (".", ".."):
        raise ExportError(f"{folder / 'manifest.json'}: a graph file name {name!r} is not a plain file name")
    path = folder / name
    if not path.is_file():
        raise ExportError(f"{path}: missing (named by the manifest)")
    return path


def read_gallery(path: Path, count: int) -> np.ndarray:
    """``gallery.npy``: float32 ``(count, D)``, its header checked against the file's size first."""
    try:
        size = path.stat().st_size
        if size > MAX_GALLERY_BYTES:
            raise ExportError(f"{path}: {size} bytes, more than a gallery may have ({MAX_GALLERY_BYTES})")
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = read_header(f)  # the header only: nothing expanded yet
            offset = f.tell()
    except ExportError:
        raise
    except (OSError, ValueError) as exc:
        raise ExportError(f"{path}: not a readable .npy file ({exc})") from None
    if dtype != np.float32 or len(shape) != 2 or shape[0] != count or fortran:
        raise ExportError(f"{path}: expected float32 ({count}, D) embeddings, got {dtype} {shape}")
    if offset + shape[0] * shape[1] * 4 != size:
        raise ExportError(f"{path}: its header says {shape} but the file has {size} bytes")
    return np.load(path, allow_pickle=False)


class Retriever:
    """An export folder loaded once: its onnxruntime sessions, the selector recipe and the gallery.

    ``canvas`` fixes the sketch encoder's canvas of a non-dynamic export (default: the exported
    cell's canvas, else the largest exported one); ``threads`` are onnxruntime's intra-op threads.
    """

    def __init__(self, folder: str | Path, *, threads: int = 1, canvas: int | None = None) -> None:
        self.folder = Path(folder)
        self.manifest = m = read_manifest(self.folder)
        try:
            graphs = {g["role"]: g for g in m["graphs"].values()}
            files = {int(c): f for c, f in graphs["sketch_encoder"]["files"].items()}
            self.photo_size = int(m["photo_size"])
            selector = graphs.get("selector")
            self.canvas_set = [int(c) for c in selector["canvas_set"]] if selector else None
            self.recipe = dict(selector["input"]) if selector else None
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ExportError(f"{self.folder / 'manifest.json'}: incomplete manifest ({type(exc).__name__}: {exc})") from None
        open_ = functools.lru_cache(maxsize=None)(lambda f: ort_session(_graph_file(self.folder, f), threads))
        self.encoders = {c: open_(f) for c, f in files.items()}
        self.selector = open_(selector["file"]) if selector else None
        self._photo_file = graphs["photo_encoder"].get("file")
        self._open = open_
        own = m.get("source", {}).get("canvas")
        self.canvas = canvas if canvas is not None else (int(own) if str(own).isdigit() and int(own) in files else max(files))
        if self.canvas not in self.encoders:
            raise ExportError(f"{self.folder}: no sketch encoder at canvas {self.canvas} (exported: {sorted(files)})")
        self.gallery: np.ndarray | None = None
        self.photo_ids: list[str] = []
        if isinstance(m.get("gallery"), dict):
            ids = m["gallery"].get("photo_ids")
            if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
                raise ExportError(f"{self.folder / 'manifest.json'}: gallery.photo_ids must be a list of strings")
            self.gallery = read_gallery(_graph_file(self.folder, m["gallery"].get("file")), len(ids))
            self.photo_ids = ids

    @staticmethod
    def _run(session: Any, x: np.ndarray) -> np.ndarray:
        return session.run(None, {session.get_inputs()[0].name: x})[0]

    # -- the gallery -------------------------------------------------------------------------------
    def add_photos(self, photos: np.ndarray, ids: Sequence[str]) -> None:
        """Replace the gallery: uint8 RGB photos ``(P, S, S, 3)`` (``S`` = ``photo_size``, resized as
        the dataset loaders do: straight to the square, bicubic) embedded by the photo encoder."""
        photos = np.asarray(photos)
        s = self.photo_size
        if photos.dtype != np.uint8 or photos.shape[1:] != (s, s, 3) or len(photos) != len(ids):
            raise ExportError(f"photos must be uint8 (P, {s}, {s}, 3) with one id each, got {photos.dtype} {photos.shape} "
                              f"and {len(ids)} ids")
        encoder = self._open(self._photo_file)
        chw = np.ascontiguousarray(photos.transpose(0, 3, 1, 2))
        parts = [self._run(encoder, chw[i : i + PHOTO_BATCH]) for i in range(0, len(chw), PHOTO_BATCH)]
        self.gallery = np.concatenate(parts).reshape(len(photos), -1).astype(np.float32)
        self.photo_ids = [str(i) for i in ids]

    # -- one query -----------------------------------------------------------------------------------
    def choose_canvas(self, points: np.ndarray) -> int:
        """The canvas a dynamic export's selector picks for unit-box ``points`` (else the fixed one)."""
        if self.selector is None:
            return self.canvas
        assert self.canvas_set is not None and self.recipe is not None
        logits = self._run(self.selector, selector_input(points, self.recipe))
        return self.canvas_set[int(np.argmax(logits[0]))]

    def embed(self, points: np.ndarray, canvas: int | None = None) -> np.ndarray:
        """The flattened query embedding of unit-box ``points`` at ``canvas`` (default: chosen)."""
        c = self.choose_canvas(points) if canvas is None else int(canvas)
        return self._run(self.encoders[c], render_points(points, c)[None]).reshape(-1)

    def rank(self, embeddings: np.ndarray) -> np.ndarray:
        """Gallery indices per query, nearest first (Euclidean; ties keep gallery order)."""
        if self.gallery is None:
            raise ExportError(f"{self.folder}: no gallery (export with a dataset that has photos, or add_photos())")
        q = np.asarray(embeddings, dtype=np.float32).reshape(len(embeddings), -1)
        g = self.gallery
        # differences, not the |q|² + |g|² - 2 q·g expansion: exact ties and near-equal distances
        # order as the self-check's ranks do; in chunks, so memory stays (chunk, P, D)
        d = np.concatenate([np.sqrt(((q[i : i + 16, None, :] - g[None]) ** 2).sum(-1)) for i in range(0, len(q), 16)])
        return np.argsort(d, axis=1, kind="stable")

    def query(self, sketch: np.ndarray | Sequence, k: int | None = None) -> list[str]:
        """Photo ids, best first (the first ``k``): ``sketch`` is a list of ``(n_i, 2)`` polylines or
        an ``(N, 3)`` ``x, y, pen`` array, in pixels or already in the unit box."""
        order = self.rank(self.embed(query_points(sketch))[None])[0]
        return [self.photo_ids[i] for i in order[:k]]

    def query_batch(self, sketches: Sequence[np.ndarray | Sequence], k: int | None = None) -> list[list[str]]:
        """Many queries: each canvas chosen per sketch, then one encoder call per canvas for all
        the sketches that chose it, one distance matrix for all."""
        points = [query_points(s) for s in sketches]
        chosen = [self.choose_canvas(p) for p in points]
        out: list[np.ndarray | None] = [None] * len(points)
        for c in sorted(set(chosen)):
            idx = [i for i, x in enumerate(chosen) if x == c]
            images = np.stack([render_points(points[i], c) for i in idx])
            emb = self._run(self.encoders[c], images).reshape(len(idx), -1)
            for j, i in enumerate(idx):
                out[i] = emb[j]
        order = self.rank(np.stack(out))
        return [[self.photo_ids[i] for i in row[:k]] for row in order]


@functools.lru_cache(maxsize=4)
def _retriever(folder: str, mtime: float, threads: int) -> Retriever:
    return Retriever(folder, threads=threads)


def query(folder: str | Path, sketch: np.ndarray | Sequence, k: int | None = None, *, threads: int = 1) -> list[str]:
    """Photo ids of the export's gallery, best first, for one sketch (strokes as polylines or an
    ``(N, 3)`` array, pixels or unit box). The folder is loaded once and kept (until its manifest changes)."""
    path = Path(folder)
    try:
        mtime = (path / "manifest.json").stat().st_mtime
    except OSError:
        mtime = 0.0
    return _retriever(str(path.resolve()), mtime, int(threads)).query(sketch, k)
