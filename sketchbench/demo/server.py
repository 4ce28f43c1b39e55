"""The demo's web server: one static page and a small JSON API, on Python's standard
:class:`~http.server.HTTPServer` (no web framework to install; see ``docs/demo.md``), hardened for
a page anyone can reach: a fixed pool of worker threads and a listen backlog sized for bursts, a
timeout on every request (a stalled upload is dropped), bounded bodies, JSON depth and fields, a
``Host`` check against DNS rebinding, and dropped clients logged in one line, never a traceback.

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
import ipaddress
import json
import logging
import re
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, HTTPServer
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
from PIL import Image

from sketchbench.base.artifacts import stable_hash
from sketchbench.base.bounded import loads_json
from sketchbench.base.canvas import is_dynamic
from sketchbench.base.errors import SketchbenchError
from sketchbench.data.dataset import SketchItem
from sketchbench.data.queries import sketch_from_polylines
from sketchbench.run.models import Models
from sketchbench.run.retrieval import Gallery, Retriever, result_dict
from sketchbench.run.trained import TrainedModel, models_of, restore_cell

log = logging.getLogger("sketchbench")

#: requests larger than this are refused (a drawing is a few kB; MAX_POINTS points are ~1 MB of JSON)
MAX_BODY = 2 * 2**20
#: at most this many points per sketch, and strokes
MAX_POINTS = 50_000
MAX_STROKES = 5_000
#: nesting of a request's JSON at most (``{"strokes": [[[x, y]]]}`` is 4 deep)
MAX_JSON_DEPTH = 8
#: threads answering requests (queries run one at a time on the shared models: more would only wait)
WORKERS = 8
#: connections waiting for a worker at most; the listen backlog is as large (more are answered 503)
QUEUE = 256
#: seconds a client may take to send one request's headers, and its whole body
REQUEST_TIMEOUT = 10.0
#: names a page may use to reach a server bound to a loopback address (a DNS-rebound name is refused)
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
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
    canvas = "dynamic canvas" if is_dynamic(cell["canvas"]) else f"{cell['canvas']}×{cell['canvas']}"
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
        raise SketchbenchError(f"{results_path} holds several datasets ({', '.join(datasets)}): choose one with {{dataset}}",
                               settings=("dataset",))
    seeds = sorted({int(c.get("seed", 0)) for c in cells})
    cells = [c for c in cells if int(c.get("seed", 0)) == seeds[0]]
    cells.sort(key=lambda c: (c.get("role", "main") != "main", not is_dynamic(c["canvas"]), c["method"],
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
        """The model with index ``value``: an integer in ``0 … n-1`` (not a bool, a float, -1 or 1e400)."""
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < len(self.models):
            raise SketchbenchError(f"unknown model {str(value)[:20]!r} (an integer 0 … {len(self.models) - 1})")
        return self.models[value]

    def retrieve(self, payload: Any) -> dict[str, Any]:
        if not isinstance(payload, dict):
            raise SketchbenchError("the request must be a JSON object")
        m = self.model(payload.get("model", 0))
        strokes = payload.get("strokes")
        if (not isinstance(strokes, list) or len(strokes) > MAX_STROKES
                or sum(len(s) for s in strokes if isinstance(s, list)) > MAX_POINTS):
            raise SketchbenchError(f"'strokes' must be a list of polylines (at most {MAX_STROKES}, with at most "
                                   f"{MAX_POINTS} points in all)")
        top = payload.get("top", 10)
        if isinstance(top, bool) or not isinstance(top, int):
            raise SketchbenchError(f"'top' must be an integer (got {str(top)[:20]!r})")
        top = max(1, min(top, len(m.retriever.gallery)))
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
            photo_size = m.model.method.ctx.preset.photo_size
            size = photo_size if g.array is not None else max(SHOW_SIZE, photo_size)
            self._photos[key] = png_bytes(g.photo(index, size))
        return self._photos[key]


def page() -> bytes:
    return resources.files("sketchbench.demo").joinpath("static/index.html").read_bytes()


def _hostname(value: str) -> str:
    """The host part of a ``Host`` header or an origin's netloc: ``[::1]:8000`` -> ``::1``."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1:].split("]", 1)[0]
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


def allowed_hosts(host: str, extra: tuple[str, ...] = ()) -> frozenset[str] | None:
    """The ``Host`` names a request may carry for a server bound to ``host``: the loopback names and
    the bound address (plus ``extra``), so a page on another origin that rebinds its DNS name to
    127.0.0.1 is refused; ``None`` (any name) for a wildcard address, which is exposed anyway."""
    if host in ("", "0.0.0.0", "::"):
        return None
    return frozenset({*LOOPBACK_NAMES, _hostname(host), *(_hostname(h) for h in extra)})


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return host.lower() == "localhost"


class DemoHandler(BaseHTTPRequestHandler):
    """One request to the demo. :func:`make_handler` makes a subclass bound to an app, its allowed
    ``Host`` names (``None``: any) and its request timeout."""

    server_version = "sketchbench-demo"
    app: DemoApp
    hosts: frozenset[str] | None = LOOPBACK_NAMES
    request_timeout: float = REQUEST_TIMEOUT
    index: bytes = b""

    def setup(self) -> None:
        self.timeout = self.request_timeout  # a stalled client's socket times out (StreamRequestHandler applies it)
        super().setup()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        log.info("demo: " + format, *args)

    def _send(self, status: int, body: bytes, content_type: str, cache: bool = False) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "max-age=3600" if cache else "no-store")
            self.send_header("X-Content-Type-Options", "nosniff")
            self.end_headers()
            self.wfile.write(body)
        except OSError as exc:  # the client went away: nothing to answer, nothing to print
            log.info("demo: %s left before the answer (%s)", self.client_address[0], type(exc).__name__)
            self.close_connection = True

    def _json(self, status: int, obj: Any) -> None:
        self._send(status, json.dumps(obj).encode(), "application/json")

    def _refused_origin(self) -> bool:
        """A request whose ``Host`` (or, for a POST, ``Origin``) is not this server's: answered 403."""
        if self.hosts is None:
            return False
        host = _hostname(self.headers.get("Host", ""))
        origin = self.headers.get("Origin")
        origin_host = _hostname(urlsplit(origin).netloc) if origin and origin != "null" else None
        if host in self.hosts and (origin is None or origin_host in self.hosts):
            return False
        self._json(HTTPStatus.FORBIDDEN, {"error": "this server answers only requests addressed to "
                                                   f"{', '.join(sorted(self.hosts))} (see --allow-host)"})
        return True

    def do_GET(self) -> None:  # noqa: N802 - the base class's name
        if self._refused_origin():
            return
        path = self.path.split("?", 1)[0]
        try:
            if path in ("/", "/index.html"):
                self._send(HTTPStatus.OK, self.index, "text/html; charset=utf-8")
            elif path == "/api/models":
                self._json(HTTPStatus.OK, self.app.info())
            elif (match := _PHOTO.match(path)) is not None and len(path) < 64:
                self._send(HTTPStatus.OK, self.app.photo(int(match[1]), int(match[2])), "image/png", cache=True)
            else:
                self._json(HTTPStatus.NOT_FOUND, {"error": f"no such page: {path[:80]}"})
        except SketchbenchError as exc:
            self._json(HTTPStatus.NOT_FOUND, {"error": str(exc)})

    def _body(self, length: int) -> bytes:
        """The request body, read within ``timeout`` in all (a client dribbling a byte at a time
        cannot hold a worker longer)."""
        deadline = time.monotonic() + self.request_timeout
        chunks, got = [], 0
        while got < length:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("the request body took too long")
            self.connection.settimeout(left)
            chunk = self.rfile.read1(min(65536, length - got))
            if not chunk:
                raise ConnectionError("the client closed the connection")
            chunks.append(chunk)
            got += len(chunk)
        return b"".join(chunks)

    def do_POST(self) -> None:  # noqa: N802
        if self._refused_origin():
            return
        if self.path.split("?", 1)[0] != "/api/retrieve":
            self._json(HTTPStatus.NOT_FOUND, {"error": f"no such endpoint: {self.path[:80]}"})
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 < length <= MAX_BODY:
            self._json(HTTPStatus.BAD_REQUEST, {"error": f"a request body of 1 byte … {MAX_BODY} bytes is expected"})
            return
        try:
            body = self._body(length)
        except (OSError, TimeoutError) as exc:  # stalled or dropped: one quiet line in the log
            log.info("demo: %s: request body not received (%s)", self.client_address[0], exc)
            self.close_connection = True
            return
        self.connection.settimeout(self.request_timeout)
        try:
            payload = loads_json(body, "the request body", max_depth=MAX_JSON_DEPTH)
            self._json(HTTPStatus.OK, self.app.retrieve(payload))
        except SketchbenchError as exc:
            self._json(HTTPStatus.BAD_REQUEST, {"error": str(exc)})
        except Exception as exc:  # one line for the page, the server goes on
            log.warning("demo: query failed: %s: %s", type(exc).__name__, exc)
            self._json(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": f"{type(exc).__name__}: {exc}"})



def make_handler(app: DemoApp, hosts: frozenset[str] | None = LOOPBACK_NAMES,
                 timeout: float = REQUEST_TIMEOUT) -> type[DemoHandler]:
    """A :class:`DemoHandler` bound to ``app``, the ``Host`` names it answers and its timeout."""
    return type("Handler", (DemoHandler,), {"app": app, "hosts": hosts, "request_timeout": timeout, "index": page()})


class DemoServer(HTTPServer):
    """An HTTP server with a fixed pool of worker threads and a bounded queue: a burst of queries
    waits in the listen backlog and the queue (never a connection reset below :data:`QUEUE`), more
    than that are answered 503, and no request holds a thread longer than its timeout."""

    request_queue_size = QUEUE  # the listen backlog

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], workers: int = WORKERS) -> None:
        super().__init__(address, handler)
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sketchbench-demo")
        self.slots = threading.BoundedSemaphore(workers + QUEUE)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self.slots.acquire(blocking=False):
            try:
                request.sendall(b"HTTP/1.0 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n")
            except OSError:
                pass
            self.shutdown_request(request)
            return
        self.pool.submit(self._work, request, client_address)

    def _work(self, request: Any, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            self.shutdown_request(request)
            self.slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A dropped or broken client costs one line in the log (``-v``), never a traceback."""
        exc = sys.exc_info()[1]
        log.info("demo: %s: %s: %s", client_address[0] if client_address else "?", type(exc).__name__, exc)

    def server_close(self) -> None:
        super().server_close()
        self.pool.shutdown(wait=False, cancel_futures=True)


def make_server(app: DemoApp, host: str = "127.0.0.1", port: int = 8000, *, allow_hosts: tuple[str, ...] = (),
                timeout: float = REQUEST_TIMEOUT, workers: int = WORKERS) -> DemoServer:
    """The server (not yet serving: call ``serve_forever``); ``port=0`` picks a free port. Requests
    whose ``Host`` is not the bound address, a loopback name or one of ``allow_hosts`` are refused
    (403), unless the address is a wildcard (``0.0.0.0``)."""
    handler = make_handler(app, allowed_hosts(host, allow_hosts), timeout)
    try:
        server = DemoServer((host, port), handler, workers)
    except OSError as exc:
        raise SketchbenchError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return server
