"""Export a trained model for deployment: ONNX graphs and a ``manifest.json`` that says everything
else a query needs (the renderer's settings, the distance, a dynamic method's selector input and
canvas set), checked against PyTorch before it is handed over.

What is exported is the method's :meth:`~sketchbench.Method.export_modules` (default: the uint8 →
embedding paths of the sketch and photo encoders, normalisation inside; dynamic methods add their
canvas selector). The sketch encoder is written as one graph with dynamic spatial size when its
outputs stay within the tolerance at every canvas, else as one graph per canvas.

The self-check runs every test query and photo of the cell's dataset through onnxruntime and
through PyTorch: every embedding (and selector logit) must agree within ``tolerance`` (max absolute
difference), a dynamic method's chosen canvases must be the same, and the test ranks computed from
the ONNX outputs alone (Euclidean distances) must equal the PyTorch ranks. The result is written
into the manifest; a failed check is one line and exit code 1.
"""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sketchbench.base.canvas import is_dynamic
from sketchbench.base.errors import ExitCode, SketchbenchError
from sketchbench.data.rundata import RunData
from sketchbench.measure.metrics import ranks, retrieval_metrics
from sketchbench.measure.onnx import (
    OPSET,
    SELECTOR_INPUTS,
    as_numpy,
    export_onnx,
    ort_session,
    renderer_manifest,
    require_onnx,
    require_onnxruntime,
    selector_input,
)
from sketchbench.method.interface import Method
from sketchbench.method.training import embed_in_batches
from sketchbench.run.trained import TrainedModel

FORMAT = "sketchbench.export"
FORMAT_VERSION = 1
#: the largest absolute difference allowed between an onnxruntime output and PyTorch's
TOLERANCE = 1e-4
ROLES = ("sketch_encoder", "photo_encoder", "selector")
#: the test photos' embeddings, for a query without the dataset (sketchbench_query)
GALLERY_FILE = "gallery.npy"


def default_out_dir(cell: dict[str, Any]) -> Path:
    return Path("exports") / f"{cell['method']}-{cell['dataset']}-{cell['canvas']}-s{cell.get('seed', 0)}"


def _graphs(method: Any, canvases: Sequence[int], photo_size: int, name: str) -> dict[str, dict[str, Any]]:
    graphs = method.export_modules(list(canvases), photo_size)
    if not isinstance(graphs, dict):
        raise SketchbenchError(f"{name}.export_modules returned {type(graphs).__name__}, not a dict of graphs")
    for key, g in graphs.items():
        missing = [k for k in ("module", "inputs", "input_names", "output_names", "role") if k not in g]
        if missing:
            raise SketchbenchError(f"{name}.export_modules: graph {key!r} lacks {', '.join(missing)}")
        if g["role"] not in ROLES:
            raise SketchbenchError(f"{name}.export_modules: graph {key!r} has an unknown role {g['role']!r} "
                                   f"(one of {', '.join(ROLES)})")
    for role in ("sketch_encoder", "photo_encoder"):
        if sum(g["role"] == role for g in graphs.values()) != 1:
            raise SketchbenchError(f"{name}.export_modules must give exactly one {role} graph")
    return graphs


def _role(graphs: dict[str, dict[str, Any]], role: str) -> tuple[str, dict[str, Any]] | tuple[None, None]:
    return next(((k, g) for k, g in graphs.items() if g["role"] == role), (None, None))


def _io(session: Any) -> dict[str, Any]:
    def one(x: Any) -> dict[str, Any]:
        return {"name": x.name, "type": x.type, "shape": [d if isinstance(d, int) else str(d) for d in x.shape]}

    return {"inputs": [one(x) for x in session.get_inputs()], "outputs": [one(x) for x in session.get_outputs()]}


def _run(session: Any, images: torch.Tensor, batch: int) -> torch.Tensor:
    """A one-input, one-output graph over ``images`` in batches (one at a time if its batch is fixed)."""
    first = session.get_inputs()[0]
    step = batch if not isinstance(first.shape[0], int) else 1
    outs = [session.run(None, {first.name: as_numpy(images[i : i + step])})[0] for i in range(0, len(images), step)]
    return torch.from_numpy(np.concatenate(outs)).float()


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    if a.shape != b.shape:
        return float("inf")
    return float((a.float() - b.float()).abs().max()) if a.numel() else 0.0


def _only_batch_axes(axes: dict[str, dict[int, str]] | None) -> dict[str, dict[int, str]]:
    return {k: {a: lab for a, lab in v.items() if a == 0} for k, v in (axes or {}).items()}


@dataclass
class _References:
    """What PyTorch computes for the test split: the yardstick every exported graph is checked against."""

    queries: dict[int, torch.Tensor]  # uint8 test queries at each encoder canvas
    sketches: dict[int, torch.Tensor]  # their embeddings
    photos: torch.Tensor  # uint8 test photos
    photo_emb: torch.Tensor
    own: int  # the canvas whose ranks the cell reports (a fixed-canvas cell)
    chosen: list[int] | None  # a dynamic method's canvas per query
    ranks: torch.Tensor  # with the method's own distance


def export_trained(model: TrainedModel, out_dir: Path, *, tolerance: float = TOLERANCE,
                   canvases: Sequence[int] | None = None, results_path: Path | None = None,
                   threads: int = 0) -> dict[str, Any]:
    """Write ``model``'s graphs and manifest into ``out_dir``, check them, return the manifest.

    ``canvases``: the sketch encoder's canvases (default: all of the preset's for a multi-canvas or
    dynamic model, else the cell's). Raises a one-line error when the method cannot be exported
    (a distance that is not Euclidean, a dynamic choice without a selector graph) or the check fails."""
    require_onnx("sketchbench export")
    require_onnxruntime("sketchbench export")
    method, data, cell = model.method.eval(), model.data, model.cell
    name, preset = cell["method"], method.ctx.preset
    dynamic = is_dynamic(cell["canvas"])
    if canvases is None:
        canvases = list(preset.canvases) if (dynamic or method.multi_canvas) else [int(cell["canvas"])]
    graphs = _graphs(method, canvases, preset.photo_size, name)
    sk_key, sk = _role(graphs, "sketch_encoder")
    ph_key, ph = _role(graphs, "photo_encoder")
    sel_key, sel = _role(graphs, "selector")
    if dynamic and sel is None:
        raise SketchbenchError(f"{name} chooses each query's canvas without a selector graph (its export_modules gives "
                               "none): its choice cannot be exported")
    if sel is not None and sel.get("about", {}).get("input", {}).get("kind") not in SELECTOR_INPUTS:
        raise SketchbenchError(f"{name}: the selector's input recipe is not one sketchbench can make "
                               f"(about.input.kind must be one of {', '.join(SELECTOR_INPUTS)})")
    enc_canvases = sorted({int(c) for c in sk.get("canvases", canvases)})
    threads = threads or torch.get_num_threads()
    bs = preset.eval_batch_size
    ref = _references(method, data, cell, enc_canvases, bs)
    out_dir.mkdir(parents=True, exist_ok=True)
    diffs: dict[str, float] = {}
    manifest_graphs: dict[str, Any] = {}
    s_onnx = _export_sketch_encoder(sk_key, sk, ref, out_dir, name, tolerance, threads, bs, diffs, manifest_graphs)
    p_onnx = _export_photo_encoder(ph_key, ph, ref, out_dir, name, threads, bs, diffs, manifest_graphs)
    # the gallery a deployed query ranks (sketchbench_query): the test photos as photo_encoder.onnx embeds them
    np.save(out_dir / GALLERY_FILE, np.ascontiguousarray(p_onnx.flatten(1).numpy(), dtype=np.float32), allow_pickle=False)
    gallery = {"file": GALLERY_FILE, "photo_ids": [str(i) for i in data.split("test").photo_ids],
               "what": "float32 (P, D): the cell's test photos embedded by the photo encoder (ONNX), row i = photo_ids[i]"}
    choices_onnx = None
    if sel is not None:
        choices_onnx = _export_selector(sel_key, sel, data.items("test"), out_dir, name, threads, diffs, manifest_graphs)
    rank_checks, own_ranks = _rank_checks(method, ref, s_onnx, p_onnx, choices_onnx, data.pairs("test"))
    worst = max(diffs.values()) if diffs else 0.0
    checks = {
        "embeddings_within_tolerance": all(v <= tolerance for v in diffs.values()),
        "ranks_identical": all(rank_checks.values()),
        **({"selector_choices_identical": choices_onnx == ref.chosen} if dynamic else {}),
    }
    cell_ranks = cell.get("query_ranks")
    check = {
        "tolerance_max_abs": tolerance,
        "passed": all(checks.values()),
        **checks,
        "max_abs_diff": diffs,
        "worst_max_abs_diff": worst,
        "ranks_identical_per_canvas": rank_checks,
        "queries": len(ref.ranks),
        "photos": int(ref.photos.shape[0]),
        "onnx_metrics": {k: v for k, v in retrieval_metrics(own_ranks).items() if k in ("acc1", "acc10", "mean_rank")},
        # informational: PyTorch now against the run that made the cell (another device or version may differ)
        "matches_results_cell": (cell_ranks == [int(x) for x in own_ranks.tolist()]) if cell_ranks else None,
        "threads": threads,
    }
    plain = all(torch.equal(ref.queries[c], data.sketches("test", c)) for c in enc_canvases)
    manifest = _manifest(method, cell, results_path, manifest_graphs, (sk_key, ph_key, sel_key), enc_canvases,
                         preset.photo_size, plain, check, gallery)
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=1, allow_nan=False, default=str) + "\n")
    if not check["passed"]:
        failed = [k for k, v in checks.items() if not v]
        raise SketchbenchError(
            f"export self-check failed ({', '.join(failed)}; worst max abs diff {worst:.3g}, tolerance {tolerance:g}): "
            f"see {out_dir / 'manifest.json'}", exit_code=ExitCode.FAILED)
    return manifest


def _references(method: Method, data: RunData, cell: dict[str, Any], enc_canvases: list[int], bs: int) -> _References:
    """PyTorch's embeddings and ranks of the test split (refusing a distance that is not Euclidean:
    the exported pipeline ranks by Euclidean distance alone)."""
    name, targets = cell["method"], data.pairs("test")
    n = len(targets)
    photos = data.photos("test")
    p_torch = embed_in_batches(method.encode_photo, photos, bs)
    queries = {c: method.sketches_at(data, "test", c, range(n)) for c in enc_canvases}
    s_torch = {c: embed_in_batches(method.encode_sketch, queries[c], bs) for c in enc_canvases}
    dynamic = is_dynamic(cell["canvas"])
    own = int(cell["canvas"]) if not dynamic and int(cell["canvas"]) in enc_canvases else enc_canvases[-1]
    chosen: list[int] | None = None
    if dynamic:
        chosen = [int(c) for c in method.choose_canvases(data, "test")]
        bad = sorted(set(chosen) - set(enc_canvases))
        if bad:
            raise SketchbenchError(f"{name} chose canvases {bad} outside its exported canvas set {enc_canvases}")
        s_ref = torch.stack([s_torch[c][i] for i, c in enumerate(chosen)])
    else:
        s_ref = s_torch[own]
    with torch.inference_mode():
        d_method = method.distance(s_ref.to(method.device), p_torch.to(method.device)).float().cpu()
    d_euclid = torch.cdist(s_ref.flatten(1), p_torch.flatten(1))
    gap = _max_diff(d_method, d_euclid)
    if not gap <= 1e-4 * max(1.0, float(d_euclid.abs().max())):
        raise SketchbenchError(f"{name}: its distance is not the Euclidean distance of its embeddings (they differ by up "
                               f"to {gap:.3g}): sketchbench export covers Euclidean methods only")
    return _References(queries, s_torch, photos, p_torch, own, chosen, ranks(d_method, targets))


def _export_sketch_encoder(key: str, graph: dict[str, Any], ref: _References, out_dir: Path, name: str,
                           tolerance: float, threads: int, bs: int, diffs: dict[str, float],
                           manifest_graphs: dict[str, Any]) -> dict[int, torch.Tensor]:
    """The sketch encoder: one graph with a dynamic canvas size if it holds at every canvas, else one
    per canvas. Returns its onnxruntime embeddings per canvas."""
    enc_canvases = sorted(ref.queries)
    s_onnx: dict[int, torch.Tensor] = {}
    files: dict[str, str] = {}
    dynamic_spatial = False
    io: dict[str, Any] = {}
    try:
        path = out_dir / f"{key}.onnx"
        export_onnx(graph["module"], graph["inputs"], path, input_names=graph["input_names"],
                    output_names=graph["output_names"], dynamic_axes=graph.get("dynamic_axes"), what=f"{name}'s {key}")
        session = ort_session(path, threads)
        trial = {c: _run(session, ref.queries[c], bs) for c in enc_canvases}
        if all(_max_diff(trial[c], ref.sketches[c]) <= tolerance for c in enc_canvases):
            s_onnx, dynamic_spatial = trial, True
            files = {str(c): path.name for c in enc_canvases}
            io = _io(session)
        else:
            path.unlink()
    except Exception:  # not exportable or not runnable with a dynamic size: one graph per canvas below
        (out_dir / f"{key}.onnx").unlink(missing_ok=True)
    if not dynamic_spatial:
        for c in enc_canvases:
            path = out_dir / f"{key}_{c}.onnx"
            export_onnx(graph["module"], (ref.queries[c][:1],), path, input_names=graph["input_names"],
                        output_names=graph["output_names"], dynamic_axes=_only_batch_axes(graph.get("dynamic_axes")),
                        what=f"{name}'s {key} at canvas {c}")
            session = ort_session(path, threads)
            s_onnx[c] = _run(session, ref.queries[c], bs)
            files[str(c)] = path.name
            io = _io(session)
    for c in enc_canvases:
        diffs[f"{key}@{c}"] = _max_diff(s_onnx[c], ref.sketches[c])
    manifest_graphs[key] = {"role": "sketch_encoder", "files": files, "dynamic_spatial": dynamic_spatial,
                            "canvases": enc_canvases, **io, **graph.get("about", {})}
    return s_onnx


def _export_photo_encoder(key: str, graph: dict[str, Any], ref: _References, out_dir: Path, name: str, threads: int,
                          bs: int, diffs: dict[str, float], manifest_graphs: dict[str, Any]) -> torch.Tensor:
    """The photo encoder's graph; returns its onnxruntime embeddings of the test photos."""
    path = out_dir / f"{key}.onnx"
    export_onnx(graph["module"], graph["inputs"], path, input_names=graph["input_names"],
                output_names=graph["output_names"], dynamic_axes=graph.get("dynamic_axes"), what=f"{name}'s {key}")
    session = ort_session(path, threads)
    p_onnx = _run(session, ref.photos, bs)
    diffs[key] = _max_diff(p_onnx, ref.photo_emb)
    manifest_graphs[key] = {"role": "photo_encoder", "file": path.name, **_io(session), **graph.get("about", {})}
    return p_onnx


def _export_selector(key: str, graph: dict[str, Any], items: Sequence[Any], out_dir: Path, name: str, threads: int,
                     diffs: dict[str, float], manifest_graphs: dict[str, Any]) -> list[int]:
    """The selector's graph, its input made from each test sketch by the recipe alone, as a
    deployment would; returns the canvas it chooses for each."""
    about = graph["about"]
    path = out_dir / f"{key}.onnx"
    export_onnx(graph["module"], graph["inputs"], path, input_names=graph["input_names"],
                output_names=graph["output_names"], dynamic_axes=graph.get("dynamic_axes"), what=f"{name}'s {key}")
    session = ort_session(path, threads)
    feed = session.get_inputs()[0].name
    cs = [int(c) for c in about["canvas_set"]]
    worst, choices = 0.0, []
    module = graph["module"].eval()
    for item in items:
        x = selector_input(item.vector, item.raster, about["input"])
        logits = session.run(None, {feed: x})[0]
        with torch.inference_mode():
            ref = module(torch.from_numpy(x)).float()
        worst = max(worst, _max_diff(torch.from_numpy(logits), ref))
        choices.append(cs[int(np.argmax(logits[0]))])
    diffs[f"{key} (logits)"] = worst
    manifest_graphs[key] = {"role": "selector", "file": path.name, **_io(session), **about}
    return choices


def _rank_checks(method: Method, ref: _References, s_onnx: dict[int, torch.Tensor], p_onnx: torch.Tensor,
                 choices_onnx: list[int] | None, targets: torch.Tensor) -> tuple[dict[str, bool], torch.Tensor]:
    """Ranks from the ONNX outputs alone (Euclidean) against PyTorch's, per canvas (or for the
    dynamic choice); and the ranks of the cell's own canvas."""
    if ref.chosen is not None:
        assert choices_onnx is not None
        s_dyn = torch.stack([s_onnx[c][i] for i, c in enumerate(choices_onnx)])
        r_onnx = ranks(torch.cdist(s_dyn.flatten(1), p_onnx.flatten(1)), targets)
        return {"dynamic": bool(torch.equal(r_onnx, ref.ranks))}, r_onnx
    checks: dict[str, bool] = {}
    own_ranks = None
    for c in sorted(s_onnx):
        r_c = ranks(torch.cdist(s_onnx[c].flatten(1), p_onnx.flatten(1)), targets)
        with torch.inference_mode():
            d = method.distance(ref.sketches[c].to(method.device), ref.photo_emb.to(method.device)).float().cpu()
        checks[str(c)] = bool(torch.equal(r_c, ranks(d, targets)))
        if c == ref.own:
            own_ranks = r_c
    assert own_ranks is not None
    return checks, own_ranks


def _manifest(method: Method, cell: dict[str, Any], results_path: Path | None, graphs: dict[str, Any],
              keys: tuple[str, str, str | None], enc_canvases: list[int], photo_size: int, plain: bool,
              check: dict[str, Any], gallery: dict[str, Any]) -> dict[str, Any]:
    """``manifest.json``: what was exported, from which cell, and the pipeline a deployment runs."""
    import onnxruntime

    from sketchbench.base.version import __version__

    sk_key, ph_key, sel_key = keys
    steps = []
    if sel_key is not None:
        steps += [f"make the selector input from the vector sketch as graphs.{sel_key}.input says",
                  f"run {graphs[sel_key]['file']}: canvas = canvas_set[argmax(logits)]"]
    steps += ["render the vector sketch at that canvas c as renderer says (uint8 (1, c, c), black on white)",
              f"run graphs.{sk_key}.files[c]: the query's embedding",
              f"gallery: run {graphs[ph_key]['file']} on every photo once (uint8 RGB, channels first)",
              "rank the gallery by Euclidean distance between the flattened embeddings, smallest first"]
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "sketchbench_version": __version__,
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
        "opset": OPSET,
        "source": {"results": str(results_path) if results_path else None,
                   **{k: cell.get(k) for k in ("method", "teacher", "dataset", "canvas", "seed", "preset", "config_hash",
                                                "acc1", "acc10", "gflops", "params_m", "canvas_histogram")}},
        "method": {"name": cell["method"], "kind": method.kind, "dynamic": bool(method.dynamic),
                   "multi_canvas": bool(method.multi_canvas), "trained_key": method.trained_key,
                   "params": cell.get("params", {})},
        "inputs": {"sketch": graphs[sk_key].get("input"), "photo": graphs[ph_key].get("input"),
                   "queries": "plain renders of the test sketches" if plain else
                   "the method's own query images (sketches_at), not the plain render: renderer does not describe them"},
        "canvases": enc_canvases,
        "photo_size": photo_size,
        "graphs": graphs,
        "renderer": renderer_manifest(enc_canvases),
        "gallery": gallery,
        "distance": {"kind": "euclidean", "on": "the flattened embeddings",
                     "rank": "the number of gallery photos at a distance <= the paired photo's, itself included "
                             "(1 = first; ties count against)"},
        "pipeline": steps,
        "check": check,
    }
