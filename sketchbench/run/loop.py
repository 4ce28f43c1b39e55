"""The grid loop: methods × datasets × canvases × seeds, one cell at a time.

Each model is trained once per identity and reused for every cell and student through the
artifact store (:mod:`~sketchbench.run.models`). Cells finished in the results file are skipped on
a rerun; a failing cell is recorded with its error and the grid goes on; side jobs (writing the
results file, ``--save-weights``) are hooks (:mod:`~sketchbench.run.hooks`).
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from sketchbench.base.artifacts import ArtifactCache
from sketchbench.base.errors import ExitCode, SketchbenchError
from sketchbench.base.progress import hidden
from sketchbench.measure.evaluate import evaluate
from sketchbench.method.distributed import init_from_env, is_main
from sketchbench.method.registries import Host, get_host
from sketchbench.results.cells import Cell as ResultCell
from sketchbench.run.config import RunConfig, resolve_device
from sketchbench.run.hooks import RunHook, SaveWeights
from sketchbench.run.identity import Identity, config_hash
from sketchbench.run.models import Models
from sketchbench.run.plan import GridCell, Plan
from sketchbench.run.record import ResultsFile, cell_record, gallery_warnings, results_header

log = logging.getLogger("sketchbench")


class Runner:
    """One run: its :class:`Plan`, the :class:`Identity` of its cells and models, its :class:`Models`,
    and the loop that evaluates every cell not finished yet."""

    def __init__(self, config: RunConfig, host: Host | None = None, hooks: Sequence[RunHook] = ()) -> None:
        self.config = config
        self.device = resolve_device(config.device)
        init_from_env(self.device)  # under torchrun: join the process group
        self.plan = Plan(config, host or get_host())
        self.identity = Identity(self.plan)
        self.hooks = [*([SaveWeights(config.save_weights)] if config.save_weights is not None else []), *hooks]
        self.models = Models(self.plan, self.identity, ArtifactCache(config.cache_dir), self.device, hooks=self.hooks)

    def output_path(self) -> Path:
        if self.config.out is not None:
            return Path(self.config.out)
        return Path("results") / f"run-{config_hash(self.config)}.json"

    def run(self, cells: Sequence[GridCell] | None = None) -> tuple[dict[str, Any], ExitCode]:
        """Run every cell not finished yet in the results file (each cell's ``run`` record says
        which configuration made it); ``cells``: only these of the plan's (one job of a launched
        grid, :mod:`~sketchbench.run.jobs`). Returns the results and the exit code (1 if a cell failed)."""
        out = self.output_path()
        main = is_main()
        todo = self.plan.cells() if cells is None else cells  # refuses an empty shard before any file is written
        results = ResultsFile(out, results_header(self.identity, config_hash(self.config), str(self.device)), writer=main)
        failed = 0
        bar = tqdm(todo, desc="cells", unit="cell", leave=False, disable=hidden(not main))
        try:
            for cell in bar:
                h = self.identity.cell_hash(cell)
                if (h, cell.seed) in results.done:
                    continue
                bar.set_postfix_str(f"{cell.method} {cell.dataset} @{cell.canvas} s{cell.seed}")
                record = self.run_cell(cell, h)
                for hook in (results, *self.hooks):
                    hook.cell_done(cell, record)
                if record["status"] != "ok":
                    failed += 1
                    tqdm.write(f"error: {cell.method} on {cell.dataset} @ {cell.canvas}: {record['error']}")
        finally:
            bar.close()
        results.results["path"] = str(out)
        return results.results, (ExitCode.FAILED if failed else ExitCode.OK)

    def run_cell(self, cell: GridCell, h: str) -> dict[str, Any]:
        """One cell evaluated: its record with its numbers, or with its error (never raised, unless
        ``debug``: one failing cell must not stop the grid)."""
        record = cell_record(self.identity, cell, h, str(self.device))
        try:
            method, _, seconds = self.models.obtain(cell.method, cell.teacher, cell.dataset, cell.canvas, cell.seed)
            data = self.models.data(cell.dataset, cell.seed)
            scores = evaluate(method, data, cell.canvas)
            gallery = int(scores.get("gallery_size", 0))
            if gallery < 2:
                raise SketchbenchError(f"the test gallery holds {gallery} photo(s): retrieval cannot be scored "
                                       "(raise max_test_sketches, or 0 for the whole split)")
            record.update(scores)
            record["warnings"] = gallery_warnings(gallery)
            record["train_seconds"] = seconds
            record["skipped_items"] = int(data.dataset.meta.get("skipped_sketches", 0))
            record["status"] = "ok"
            record = ResultCell.from_json(record, f"{cell.method} @ {cell.canvas}").to_json()  # typed, ranges checked
        except KeyboardInterrupt:
            raise
        except SystemExit as exc:  # a plugin's sys.exit() fails its cell, not the grid (finished cells are kept)
            if self.config.debug:
                raise
            record["status"], record["error"] = "error", f"the method's code called sys.exit({exc.code!r})"
        except SketchbenchError as exc:
            record["status"], record["error"] = "error", str(exc)
        except Exception as exc:  # one failing cell must not stop the grid
            if self.config.debug:
                raise
            record["status"], record["error"] = "error", f"{type(exc).__name__}: {exc}"
            record["traceback"] = traceback.format_exc(limit=8)
        return record
