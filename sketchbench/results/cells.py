"""The typed records of a results file: :class:`Cell` (one method × dataset × canvas × seed, as
written), its :class:`CellKey` (what a table row is, whatever the seed), and :class:`Row` (the
cells of one key averaged over seeds, what report, compare, plot and the resolution analyses read).

Cells are validated on load (types and ranges per key, :meth:`Cell.from_json`) so a number a report
prints is one a run could have measured: ``acc1 = 1e308``, ``gflops = -1`` or a cell without
``config_hash`` is refused with one line naming the file and the cell. JSON conversion lives
here and in :mod:`sketchbench.results.schema` only.
"""

from __future__ import annotations

import math
import statistics
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from sketchbench.base.canvas import DYNAMIC, Canvas, canvas_label, canvas_order, is_dynamic
from sketchbench.base.errors import SketchbenchError

Percent = Annotated[float, Field(ge=0.0, le=100.0)]
NonNegative = Annotated[float, Field(ge=0.0)]
#: the metrics averaged over seeds (mean ± std) in rows
METRICS = ("acc1", "acc10", "mean_rank", "gflops", "params_m", "latency_ms", "train_seconds")


@dataclass(frozen=True)
class CellKey:
    """What a row of a table is: method, teacher, dataset, canvas and variant (the run's changes)."""

    method: str
    teacher: str | None
    dataset: str
    canvas: Canvas
    variant: str = ""

    def method_label(self) -> str:
        """``"sketchynet-v1 ← triplet-sn [lam=0.3]"``."""
        label = f"{self.method} ← {self.teacher}" if self.teacher else self.method
        return f"{label} [{self.variant}]" if self.variant else label

    def label(self) -> str:
        """``"sketchynet-v1 ← triplet-sn / chairv2 @ 64"``: a cell in one line (gate messages, plots)."""
        return f"{self.method_label()} / {self.dataset} @ {self.canvas}"

    def series(self) -> tuple[str, str | None, str, str]:
        """The key without the canvas: one line of an accuracy-versus-canvas plot."""
        return (self.method, self.teacher, self.variant, self.dataset)


class Cell(BaseModel):
    """One cell of a results file. Keys a plugin adds (``extra_metrics``, analyses) are kept."""

    model_config = ConfigDict(extra="allow", allow_inf_nan=False, validate_assignment=True)

    method: str = Field(min_length=1)
    teacher: str | None = None
    dataset: str = Field(min_length=1)
    canvas: Annotated[int, Field(ge=1, le=4096)] | Literal["dynamic"]
    preset: str | None = None
    seed: int = 0
    role: Literal["main", "teacher", "upstream"] = "main"
    status: Literal["ok", "error"]
    error: str | None = None
    acc1: Percent | None = None
    acc10: Percent | None = None
    mean_rank: Annotated[float, Field(ge=1.0)] | None = None
    gflops: NonNegative | None = None
    params_m: NonNegative | None = None
    latency_ms: NonNegative | None = None
    train_seconds: NonNegative | None = None
    flops_convention: str | None = None
    #: sha256 (16 hex) of the cell's configuration, seed aside: how cells are matched
    config_hash: str = Field(min_length=1)
    params: dict[str, Any] = Field(default_factory=dict)
    variant: str = ""
    kind: str | None = None
    device: str | None = None
    #: what the network started from (pretrained source and sha256 per backbone, --weights digest)
    init: dict[str, Any] | None = None
    trained: bool = True
    #: the run's configuration, to rebuild it (export, retrieve)
    run: dict[str, Any] | None = None
    query_ranks: list[Annotated[int, Field(ge=1)]] | None = None
    canvas_histogram: dict[str, Annotated[int, Field(ge=0)]] | None = None
    num_queries: Annotated[int, Field(ge=1)] | None = None
    gallery_size: Annotated[int, Field(ge=1)] | None = None
    extra: dict[str, float] | None = None
    #: what is true of the cell but a reader must know (e.g. a gallery too small for acc@10)
    warnings: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _finished_cells_have_numbers(self) -> Cell:
        if self.status == "ok":
            missing = [k for k in ("acc1", "acc10", "gflops", "params_m") if getattr(self, k) is None]
            if missing:
                raise ValueError(f"a finished cell needs {', '.join(missing)}")
            if self.acc10 is not None and self.acc1 is not None and self.acc10 + 1e-6 < self.acc1:
                raise ValueError(f"acc10 ({self.acc10}) is below acc1 ({self.acc1})")
        if self.query_ranks:
            self._agrees_with_ranks(self.query_ranks)
        return self

    def _agrees_with_ranks(self, ranks: list[int]) -> None:
        """acc@1, acc@10, the mean rank and the counts a cell states must be what its own per-query
        ranks give: a file whose acc1 says 100 while its ranks give 12.5 is refused, not printed."""
        n = len(ranks)
        implied = {"acc1": 100.0 * sum(r <= 1 for r in ranks) / n, "acc10": 100.0 * sum(r <= 10 for r in ranks) / n,
                   "mean_rank": sum(ranks) / n}
        for key, value in implied.items():
            stated = getattr(self, key)
            # the run computes these in float32: a few 1e-6 of a point apart at most
            if stated is not None and abs(stated - value) > 1e-3 * max(1.0, abs(value)):
                raise ValueError(f"{key} is {stated:g} but the cell's query_ranks give {value:g}")
        if self.num_queries is not None and self.num_queries != n:
            raise ValueError(f"num_queries is {self.num_queries} but the cell has {n} query_ranks")
        if self.gallery_size is not None and max(ranks) > self.gallery_size:
            raise ValueError(f"a query rank is {max(ranks)}, beyond the gallery of {self.gallery_size}")

    # -- identity -----------------------------------------------------------------------------------
    @property
    def key(self) -> CellKey:
        return CellKey(self.method, self.teacher, self.dataset, self.canvas, self.variant)

    @property
    def id(self) -> tuple[str, int]:
        """``(config_hash, seed)``: the same cell in any file."""
        return self.config_hash, self.seed

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def dynamic(self) -> bool:
        return is_dynamic(self.canvas)

    # -- JSON ---------------------------------------------------------------------------------------
    @classmethod
    def from_json(cls, data: Any, where: str) -> Cell:
        """A cell from its JSON dict; one line naming ``where`` (file and cell) when it is invalid."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            err = exc.errors()[0]
            loc = ".".join(str(x) for x in err["loc"] if not isinstance(x, int) or len(err["loc"]) == 1) or "cell"
            got = err.get("input")
            got_text = repr(got)
            if len(got_text) > 40:
                got_text = got_text[:37] + "..."
            shown = f" (got {got_text})" if loc != "cell" and not isinstance(got, dict) else ""
            msg = str(err["msg"]).removeprefix("Value error, ")  # pydantic's prefix for a validator's own message
            raise SketchbenchError(f"{where}: {loc}: {msg}{shown}") from None

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=False)


#: what must agree when one finished cell (its config hash and seed) appears twice
MEASURED = ("acc1", "acc10", "mean_rank", "gflops", "params_m", "query_ranks")


def measurement_difference(a: dict[str, Any], b: dict[str, Any]) -> str | None:
    """The first measured key on which two records of one cell disagree (``None`` when they agree)."""
    for key in MEASURED:
        x, y = a.get(key), b.get(key)
        if isinstance(x, float) and isinstance(y, float):
            if not math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-12):
                return key
        elif x != y:
            return key
    return None


def describe(data: Any, index: int) -> str:
    """``"cell 3 (sketchynet-v1 @ 64, seed 0)"`` from a raw JSON cell, for error messages."""
    if isinstance(data, dict) and "method" in data:
        return f"cell {index} ({data.get('method')} @ {data.get('canvas')}, seed {data.get('seed', 0)})"
    return f"cell {index}"


# -- rows -------------------------------------------------------------------------------------------------
@dataclass
class Row:
    """The finished cells of one key and configuration, averaged over seeds."""

    key: CellKey
    config_hash: str
    cells: list[Cell]
    mean: dict[str, float | None] = field(default_factory=dict)
    std: dict[str, float] = field(default_factory=dict)
    histogram: dict[str, int] | None = None

    @property
    def n(self) -> int:
        return len(self.cells)

    @property
    def seeds(self) -> list[int]:
        return sorted({c.seed for c in self.cells})

    @property
    def role(self) -> str:
        return self.cells[0].role

    @property
    def kind(self) -> str | None:
        return self.cells[0].kind

    @property
    def canvas(self) -> Canvas:
        return self.key.canvas

    def to_dict(self) -> dict[str, Any]:
        """The row as ``report --format json`` prints it."""
        out: dict[str, Any] = {
            "method": self.key.method, "teacher": self.key.teacher, "canvas": self.key.canvas, "dataset": self.key.dataset,
            "variant": self.key.variant, "config_hash": self.config_hash, "seeds": self.seeds, "n": self.n,
            "role": self.role, "kind": self.kind,
        }
        for metric in METRICS:
            out[metric] = self.mean.get(metric)
            out[metric + "_std"] = self.std.get(metric, 0.0)
        if self.histogram:
            out["canvas_histogram"] = self.histogram
        return out


def aggregate(cells: Iterable[Cell]) -> list[Row]:
    """Group finished cells by key and configuration and average over seeds (first-seen order)."""
    groups: OrderedDict[tuple[CellKey, str], list[Cell]] = OrderedDict()
    for c in cells:
        if c.ok:
            groups.setdefault((c.key, c.config_hash), []).append(c)
    rows = []
    for (key, h), members in groups.items():
        row = Row(key, h, members)
        for metric in METRICS:
            vals = [float(getattr(m, metric)) for m in members if getattr(m, metric) is not None]
            row.mean[metric] = statistics.fmean(vals) if vals else None
            row.std[metric] = statistics.stdev(vals) if len(vals) > 1 else 0.0
        hists = [m.canvas_histogram for m in members if m.canvas_histogram]
        if hists:
            row.histogram = {k: sum(h.get(k, 0) for h in hists) for k in sorted({k for h in hists for k in h},
                                                                                  key=lambda k: canvas_order(_canvas(k)))}
        rows.append(row)
    return rows


def _canvas(text: str) -> Canvas:
    return DYNAMIC if text == DYNAMIC else int(text)


__all__ = ["MEASURED", "METRICS", "Canvas", "Cell", "CellKey", "Row", "aggregate", "canvas_label", "canvas_order", "describe", "measurement_difference"]
