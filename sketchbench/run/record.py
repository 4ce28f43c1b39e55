"""A run's results: the record of one cell (what it is, how it was made, its numbers or its error)
and the results file every finished cell goes into at once (a :class:`~sketchbench.run.hooks.RunHook`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sketchbench.base.errors import SketchbenchError
from sketchbench.measure.flops import FLOPS_CONVENTION
from sketchbench.results.schema import cell_id, load_results, locked, new_results, record_cell, write_results
from sketchbench.run.hooks import RunHook
from sketchbench.run.identity import Identity
from sketchbench.run.plan import GridCell


def cell_record(identity: Identity, cell: GridCell, config_hash: str, device: str) -> dict[str, Any]:
    """A cell's record before it is evaluated: its identity and configuration, status ``"error"``
    and no numbers (filled in by the loop)."""
    plan = identity.plan
    return {
        "method": cell.method,
        "teacher": cell.teacher,
        "dataset": cell.dataset,
        "canvas": cell.canvas,
        "preset": plan.preset.name,
        "seed": cell.seed,
        "role": cell.role,
        "status": "error",
        "error": None,
        "acc1": None, "acc10": None, "mean_rank": None,
        "gflops": None, "params_m": None, "latency_ms": None, "train_seconds": None,
        "flops_convention": FLOPS_CONVENTION,
        "config_hash": config_hash,
        "params": plan.params_for(cell.method),
        "variant": identity.variant(cell.method),
        "kind": plan.method_class(cell.method).kind,
        "device": device,
        # what the network started from: pretrained weights per backbone (source, sha256), --weights digest
        "init": plan.init_identity(cell.method),
        "trained": plan.config.train,
        # enough to rebuild this run (export, retrieve): RunConfig.from_record
        "run": plan.config.rebuild_record(),
    }


def gallery_warnings(gallery: int) -> list[str]:
    """What a reader must know of a small gallery: with at most 10 photos acc@10 is 100 % by construction."""
    if gallery <= 10:
        return [f"the gallery holds {gallery} photos: acc@10 is 100% by construction and means nothing"]
    return []


class ResultsFile(RunHook):
    """The results file of a run: created with its header (failing early when it cannot be
    written), resumed when it exists, and every finished cell written into it at once, under its
    lock and re-read first, so a concurrent run writing the same file loses nothing. ``writer``
    is ``False`` on the processes of a torchrun other than rank 0: they keep their cells in memory."""

    def __init__(self, path: Path, header: dict[str, Any], writer: bool = True) -> None:
        self.path = Path(path)
        self.header = header
        self.writer = writer
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SketchbenchError(f"cannot create the output folder {str(self.path.parent)!r}: {exc.strerror}") from None
        if self.path.exists():
            self.results = load_results(self.path)
        else:
            self.results = header
            if writer:
                with locked(self.path):  # fail early when the path is not writable
                    if not self.path.exists():
                        write_results(self.path, header)
                self.results = load_results(self.path)
        #: ``(config_hash, seed)`` of the cells finished before this run started
        self.done = {cell_id(c) for c in self.results["cells"] if c.get("status") == "ok"}

    def cell_done(self, cell: GridCell, record: dict[str, Any]) -> None:
        if self.writer:
            self.results = record_cell(self.path, record, self.header)
        else:
            key = cell_id(record)
            self.results["cells"] = [c for c in self.results["cells"] if cell_id(c) != key] + [record]


def results_header(identity: Identity, config_hash: str, device: str) -> dict[str, Any]:
    config = identity.plan.config
    header = new_results(config.resolved(), config_hash, device)
    if config.shard != (1, 1):
        header["config"]["shard"] = list(config.shard)
    return header
