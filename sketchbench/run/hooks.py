"""Side jobs of a run, kept out of its loop (detectron2's ``HookBase``): a hook is told when a
model is ready (trained now or restored) and when a cell is finished. Writing the results file
(:class:`~sketchbench.run.record.ResultsFile`) and ``--save-weights`` (:class:`SaveWeights`) are hooks."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from tqdm.auto import tqdm

from sketchbench.method.distributed import is_main
from sketchbench.method.interface import Method

if TYPE_CHECKING:
    from sketchbench.run.plan import GridCell

log = logging.getLogger("sketchbench")


@dataclass(frozen=True)
class ReadyModel:
    """A model a run has in hand: trained now (``trained_now``) or restored from its checkpoint."""

    name: str
    method: Method
    dataset: str
    canvases: tuple[int, ...]
    seed: int
    key: str
    trained_now: bool


class RunHook:
    """A side job of a run: subclass and override what you need (both do nothing by default)."""

    def model_ready(self, model: ReadyModel) -> None:
        """A model was trained or restored (once per model and run)."""

    def cell_done(self, cell: GridCell, record: dict[str, Any]) -> None:
        """A cell was evaluated (``record["status"]`` is ``"ok"`` or ``"error"``)."""


class SaveWeights(RunHook):
    """``--save-weights DIR``: each model's state dict as ``<dir>/<method>-<dataset>-c<canvases>-s<seed>.pt``,
    the format ``--weights FILE`` loads (e.g. pre-train on one dataset, fine-tune on another)."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    def model_ready(self, model: ReadyModel) -> None:
        if is_main():  # under torchrun, rank 0 alone writes
            self.save(model.method, model.name, model.dataset, model.canvases, model.seed)

    def save(self, method: Method, name: str, dataset: str, canvases: Sequence[int], seed: int) -> Path | None:
        path = self.folder / f"{name}-{dataset}-c{'_'.join(str(c) for c in canvases)}-s{seed}.pt"
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            torch.save({"state_dict": method.modules().state_dict()}, path)
        except OSError as exc:
            # the model is trained and cached and its cell will be evaluated: losing the export only warns
            tqdm.write(f"warning: cannot save the weights to {str(path)!r}: {exc.strerror}")
            return None
        log.info("saved %s weights to %s", name, path)
        return path
