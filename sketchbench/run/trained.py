"""Trained models for the commands that use them (export, retrieve, demo): a results file's cell
→ the trained method, restored from the artifact cache exactly as the run that made the cell left
it, without training anything.

Every results cell carries a ``run`` record (the run's resolved configuration); the
:class:`~sketchbench.run.models.Models` rebuilt from it compute the same cache key, so the checkpoint
found is the one the cell was evaluated on.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sketchbench.base.canvas import canvas_order
from sketchbench.base.errors import SketchbenchError
from sketchbench.data.rundata import RunData
from sketchbench.method.interface import Method
from sketchbench.run.models import Models


@dataclass
class TrainedModel:
    """A trained method with the data it was trained and evaluated on and the cell that says so."""

    method: Method
    data: RunData
    cell: dict[str, Any]
    #: the models of the run that made the cell (its teacher and upstream too, its data, its cache)
    models: Models

    @property
    def canvas(self) -> int | str:
        return self.cell["canvas"]


def select_cell(results: dict[str, Any], path: str, method: str | None = None, canvas: str | None = None,
                seed: int | None = None, dataset: str | None = None) -> dict[str, Any]:
    """The one finished cell matching the filters (the run's own methods first), or one clear line."""
    cells = [c for c in results["cells"] if c.get("status") == "ok"]
    if method is not None:
        cells = [c for c in cells if c["method"] == method]
    if canvas is not None:
        cells = [c for c in cells if str(c["canvas"]) == str(canvas)]
    if seed is not None:
        cells = [c for c in cells if int(c.get("seed", 0)) == int(seed)]
    if dataset is not None:
        cells = [c for c in cells if c["dataset"] == dataset]
    main = [c for c in cells if c.get("role", "main") == "main"]
    cells = main or cells
    if not cells:
        raise SketchbenchError(f"{path}: no finished cell matches (method={method}, canvas={canvas}, seed={seed})")
    distinct = {(c["method"], str(c["canvas"]), c.get("seed"), c["dataset"]) for c in cells}
    if len(distinct) > 1 and (method is None or canvas is None):
        # one trained model may serve several canvases (multi-canvas students): pick the largest
        methods = {c["method"] for c in cells}
        if len(methods) > 1:
            raise SketchbenchError(f"{path} holds several methods ({', '.join(sorted(methods))}): choose one with {{method}}",
                                   settings=("method",))
    cells.sort(key=lambda c: canvas_order(c["canvas"]))
    return cells[-1]


def load_trained(results_path: Path, *, method: str | None = None, canvas: str | None = None, seed: int | None = None,
                 dataset: str | None = None, data_root: Path | None = None, cache_dir: Path | None = None,
                 device: str = "cpu") -> TrainedModel:
    """The trained method of a results file's cell (filters as :func:`select_cell`), from the cache."""
    from sketchbench.results.schema import load_results

    results = load_results(results_path)
    cell = select_cell(results, str(results_path), method, canvas, seed, dataset)
    return restore_cell(cell, str(results_path), data_root=data_root, cache_dir=cache_dir, device=device)


def models_of(cell: dict[str, Any], where: str, *, data_root: Path | None = None, cache_dir: Path | None = None,
              device: str = "cpu") -> Models:
    """The :class:`Models` of the run that made ``cell`` (from its ``run`` record), never training."""
    from sketchbench.base.artifacts import default_cache_dir
    from sketchbench.run.config import RunConfig

    record = cell.get("run")
    if not isinstance(record, dict):
        raise SketchbenchError(f"{where}: its cells carry no run record (made by sketchbench < 0.2): "
                               "rerun the cell to use its model")
    config = RunConfig.from_record(record, data_root=data_root, cache_dir=cache_dir or default_cache_dir(), device=device,
                                   allow_training=False, out=None, seeds=[int(cell.get("seed", 0))])
    return Models.for_config(config)


def restore_cell(cell: dict[str, Any], where: str, *, models: Models | None = None, **how: Any) -> TrainedModel:
    """``cell``'s trained model, restored by ``models`` (default: those its ``run`` record describes;
    ``how``: ``data_root``, ``cache_dir``, ``device``)."""
    models = models or models_of(cell, where, **how)
    seed = int(cell.get("seed", 0))
    trained, _, _ = models.obtain(cell["method"], cell.get("teacher"), cell["dataset"], cell["canvas"], seed)
    return TrainedModel(trained, models.data(cell["dataset"], seed), cell, models)
