"""The demo's web server: one static page and a small JSON API, on Python's standard
:class:`~http.server.ThreadingHTTPServer` (no web framework to install; see ``docs/demo.md``).

Endpoints (all local; the server listens on 127.0.0.1 unless told otherwise):

* ``GET /`` — the page (``static/index.html``), where a person draws with mouse, pen or finger.
* ``GET /api/models`` — the models to switch between (one per finished results cell) and the gallery.
* ``POST /api/retrieve`` — ``{"model": ID, "strokes": [[[x, y], ...], ...], "top": 10}``: the strokes
  become a :class:`~sketchbench.Sketch` (:func:`~sketchbench.data.queries.sketch_from_polylines`, the
  rule ``sketchbench retrieve`` applies to a stroke file) and take the same query path as
  ``retrieve`` (:class:`~sketchbench.run.retrieval.Retriever`). The answer: the ranked photos with
  distances, the canvas (chosen, for dynamic methods) with the sketch as rendered there (a PNG data
  URL), and the FLOPs spent.
* ``GET /photo/<model>/<index>.png`` — a gallery photo.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import re
import threading
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from sketchbench.base.artifacts import stable_hash
from sketchbench.base.errors import SketchbenchError
from sketchbench.data.dataset import SketchItem
from sketchbench.data.queries import sketch_from_polylines
from sketchbench.run.models import Models
from sketchbench.run.retrieval import Gallery, Retriever, result_dict
from sketchbench.run.trained import TrainedModel, models_of, restore_cell

log = logging.getLogger("sketchbench")

#: requests larger than this are refused (a drawing is a few kB)
MAX_BODY = 4 * 2**20
#: at most this many points per sketch
MAX_POINTS = 50_000
#: photos are shown at least this large (decoded from their files for folder galleries)
SHOW_SIZE = 160
_PHOTO = re.compile(r"^/photo/(\d+)/(\d+)\.png$")


def png_bytes(image: np.ndarray) -> bytes:
    """uint8 ``(H, W)``, ``(H, W, 3)`` or ``(3, H, W)`` → PNG bytes."""
    arr = np.asarray(image, dtype=np.uint8)
    if arr.ndim == 3 and arr.shape[0] in (1, 3) and arr.shape[-1] not in (1, 3):
        arr = np.moveaxis(arr, 0, -1)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def model_label(cell: dict[str, Any]) -> str:
    teacher = f" ← {cell['teacher']}" if cell.get("teacher") else ""
    canvas = "dynamic canvas" if cell["canvas"] == "dynamic" else f"{cell['canvas']}×{cell['canvas']}"
    acc = f", acc@1 {cell['acc1']:.1f}%" if isinstance(cell.get("acc1"), int | float) else ""
    return f"{cell['method']}{teacher} ({canvas}{acc})"


@dataclass
class DemoModel:
    id: int
    label: str
    model: TrainedModel
    retriever: Retriever

    def info(self) -> dict[str, Any]:
        cell = self.model.cell
        return {"id": self.id, "label": self.label, "method": cell["method"], "teacher": cell.get("teacher"),
                "dataset": cell["dataset"], "canvas": cell["canvas"], "seed": int(cell.get("seed", 0)),
                "dynamic": self.retriever.dynamic, "acc1": cell.get("acc1"), "gflops": cell.get("gflops"),
                "role": cell.get("role", "main"), "gallery_size": len(self.retriever.gallery)}


def load_models(results_path: Path, *, methods: tuple[str, ...] = (), dataset: str | None = None, seed: int | None = None,
                data_root: Path | None = None, cache_dir: Path | None = None, device: str = "cpu",
                models: dict[str, Models] | None = None) -> list[TrainedModel]:
    """Every finished cell of a results file (filtered by method, dataset, seed) as a trained model,
    restored from the cache (never trained); dynamic main cells first. Cells made by one run share
    one :class:`Models` (its data and trained chain); ``models`` may hold some already built, keyed by
    ``stable_hash`` of their run's ``rebuild_record()``."""
    from sketchbench.base.canvas import canvas_order
    from sketchbench.results.schema import load_results

    results = load_results(results_path)
    cells = [c for c in results["cells"] if c.get("status") == "ok"]
    if methods:
        cells = [c for c in cells if c["method"] in methods]
    if dataset is not None:
        cells = [c for c in cells if c["dataset"] == dataset]
    if seed is not None:
        cells = [c for c in cells if int(c.get("seed", 0)) == seed]
    if not cells:
        raise SketchbenchError(f"{results_path}: no finished cell to serve"
                               + (f" (method {', '.join(methods)})" if methods else ""))
    datasets = sorted({c["dataset"] for c in cells})
    if len(datasets) > 1:
        raise SketchbenchError(f"{results_path} holds several datasets ({', '.join(datasets)}): choose one with --dataset")
    seeds = sorted({int(c.get("seed", 0)) for c in cells})
    cells = [c for c in cells if int(c.get("seed", 0)) == seeds[0]]
    cells.sort(key=lambda c: (c.get("role", "main") != "main", c["canvas"] != "dynamic", c["method"],
                              canvas_order(c["canvas"])))
    shared = {} if models is None else models
    out = []
    for cell in cells:
        key = stable_hash(cell.get("run"))
        if key not in shared:
            shared[key] = models_of(cell, str(results_path), data_root=data_root, cache_dir=cache_dir, device=device)
        out.append(restore_cell(cell, str(results_path), models=shared[key]))
    return out


class DemoApp:
    """The models and the gallery behind the page; queries run one at a time (the models are shared)."""

    def __init__(self, models: list[TrainedModel], gallery: str = "test", title: str = "sketchbench demo") -> None:
        if not models:
            raise SketchbenchError("the demo has no model to serve")
        self.title = title
        self.models: list[DemoModel] = []
        galleries: dict[int, Gallery] = {}
        for i, m in enumerate(models):
            key = id(m.data)
            if key not in galleries:
                galleries[key] = (Gallery.from_split(m.data, gallery) if gallery in ("test", "train")
                                  else Gallery.from_folder(Path(gallery)))
            self.models.append(DemoModel(i, model_label(m.cell), m, Retriever(m, galleries[key])))
        self.lock = threading.Lock()
        self._photos: dict[tuple[int, int], bytes] = {}

    def warm_up(self) -> None:
        """Embed every model's gallery now (or take it from the cache), so the first query is fast."""
        for m in self.models:
            m.retriever.embeddings()

    def info(self) -> dict[str, Any]:
        g = self.models[0].retriever.gallery
        return {"title": self.title, "models": [m.info() for m in self.models],
                "gallery": {"source": g.source, "size": len(g)}, "dataset": self.models[0].model.cell["dataset"]}

    def model(self, value: Any) -> DemoModel:
        try:
            return self.models[int(value)]
        except (TypeError, ValueError, IndexError):
            raise SketchbenchError(f"unknown model {value!r} (0 … {len(self.models) - 1})") from None

    def retrieve(self, payload: Any) -> dict[str, Any]:
        if not isinstance(payload, dict):
            raise SketchbenchError("the request must be a JSON object")
        m = self.model(payload.get("model", 0))
        strokes = payload.get("strokes")
        if not isinstance(strokes, list) or sum(len(s) for s in strokes if isinstance(s, list)) > MAX_POINTS:
            raise SketchbenchError(f"'strokes' must be a list of polylines with at most {MAX_POINTS} points")
        try:
            top = max(1, min(int(payload.get("top", 10)), len(m.retriever.gallery)))
        except (TypeError, ValueError):
            raise SketchbenchError("'top' must be an integer") from None
        sketch = sketch_from_polylines(strokes)
        with self.lock:
            (answer,) = m.retriever.search([SketchItem(id="drawing", photo=0, vector=sketch)])
        out = result_dict(answer, m.retriever.gallery, top)
        for r in out["results"]:
            r["url"] = f"/photo/{m.id}/{r['index']}.png"
        out["model"] = m.info()
        out["render"] = "data:image/png;base64," + base64.b64encode(png_bytes(answer.render)).decode()
        out["num_strokes"] = sketch.num_strokes
        out["num_points"] = len(sketch)
        return out

    def photo(self, model: int, index: int) -> bytes:
        m = self.model(model)
        g = m.retriever.gallery
        if not 0 <= index < len(g):
            raise SketchbenchError(f"no photo {index} in the gallery")
        key = (id(g), index)
        if key not in self._photos:
            size = m.model.data.preset.photo_size if g.array is not None else max(SHOW_SIZE, m.model.data.preset.photo_size)
            self._photos[key] = png_bytes(g.photo(index, size))
        return self._photos[key]


def page() -> bytes:
    return resources.files("sketchbench.demo").joinpath("static/index.html").read_bytes()


def make_handler(app: DemoApp) -> type[BaseHTTPRequestHandler]:
    index = page()

    class Handler(BaseHTTPRequestHandler):
        server_version = "sketchbench-demo"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
            log.info("demo: " + format, *args)

        def _send(self, status: int, body: bytes, content_type: str, cache: bool = False) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "max-age=3600" if cache else "no-store")
            self.send_header("X-Content-Type-Options", "nosniff")
            self.end_headers()
            self.wfile.write(body)

        def _json(self, status: int, obj: Any) -> None:
            self._send(status, json.dumps(obj).encode(), "application/json")

        def do_GET(self) -> None:  # noqa: N802 - the base class's name
            path = self.path.split("?", 1)[0]
            try:
                if path in ("/", "/index.html"):
                    self._send(HTTPStatus.OK, index, "text/html; charset=utf-8")
                elif path == "/api/models":
                    self._json(HTTPStatus.OK, app.info())
                elif (match := _PHOTO.match(path)) is not None:
                    self._send(HTTPStatus.OK, app.photo(int(match[1]), int(match[2])), "image/png", cache=True)
                else:
                    self._json(HTTPStatus.NOT_FOUND, {"error": f"no such page: {path}"})
            except SketchbenchError as exc:
                self._json(HTTPStatus.NOT_FOUND, {"error": str(exc)})

        def do_POST(self) -> None:  # noqa: N802
            if self.path.split("?", 1)[0] != "/api/retrieve":
                self._json(HTTPStatus.NOT_FOUND, {"error": f"no such endpoint: {self.path}"})
                return
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                length = -1
            if not 0 < length <= MAX_BODY:
                self._json(HTTPStatus.BAD_REQUEST, {"error": f"a request body of 1 byte … {MAX_BODY} bytes is expected"})
                return
            try:
                payload = json.loads(self.rfile.read(length))
                self._json(HTTPStatus.OK, app.retrieve(payload))
            except (json.JSONDecodeError, UnicodeDecodeError):
                self._json(HTTPStatus.BAD_REQUEST, {"error": "the request body is not JSON"})
            except SketchbenchError as exc:
                self._json(HTTPStatus.BAD_REQUEST, {"error": str(exc)})
            except Exception as exc:  # one line for the page, the server goes on
                log.warning("demo: query failed: %s: %s", type(exc).__name__, exc)
                self._json(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": f"{type(exc).__name__}: {exc}"})

    return Handler


def make_server(app: DemoApp, host: str = "127.0.0.1", port: int = 8000) -> ThreadingHTTPServer:
    """The server (not yet serving: call ``serve_forever``); ``port=0`` picks a free port."""
    try:
        server = ThreadingHTTPServer((host, port), make_handler(app))
    except OSError as exc:
        raise SketchbenchError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    server.daemon_threads = True
    return server
