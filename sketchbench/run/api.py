"""The Python API: one call per job, for a notebook or a script (lm-eval's ``simple_evaluate``,
timm's ``create_model``); the command line is a thin layer over the same calls.

- :func:`run_grid` trains and evaluates methods × datasets × canvases × seeds (``sketchbench run``)
  and returns the typed cells;
- :func:`load_model` restores a results cell's trained model (``sketchbench retrieve``/``export``),
  with its encoders and :meth:`Model.retrieve` for a drawn sketch.

Both are exported as ``sketchbench.run_grid`` and ``sketchbench.load_model``. (Not ``run``:
``sketchbench.run`` is the package this module lives in, and a function of that name in the
package's ``__init__`` would be replaced by the subpackage as soon as it is imported.)
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sketchbench.base.artifacts import default_cache_dir
from sketchbench.base.errors import ExitCode, SketchbenchError
from sketchbench.base.preset import Preset
from sketchbench.data.dataset import SketchItem
from sketchbench.data.queries import read_query, sketch_from_polylines
from sketchbench.data.rundata import RunData
from sketchbench.data.sketch import Sketch
from sketchbench.method.interface import Method
from sketchbench.method.registries import Host, get_host
from sketchbench.method.weights import WeightsMissing
from sketchbench.results.cells import Cell
from sketchbench.results.report import render
from sketchbench.results.schema import cells_of
from sketchbench.run.config import RunConfig
from sketchbench.run.loop import Runner
from sketchbench.run.presets import FALLBACK_PRESET, check_canvas, default_preset, fit_machine, load_preset
from sketchbench.run.retrieval import Gallery, QueryResult, Retriever
from sketchbench.run.trained import TrainedModel, load_trained


@dataclass
class Results:
    """What :func:`run_grid` returns: the typed cells of its results file (chain rows included)."""

    path: Path
    cells: list[Cell]
    exit_code: ExitCode
    #: the results file as loaded (header, environment, configuration)
    raw: dict[str, Any] = field(repr=False)
    #: ``False`` in a torchrun process other than rank 0 (it wrote nothing)
    main_process: bool = True

    @property
    def failed(self) -> list[Cell]:
        return [c for c in self.cells if not c.ok]

    def table(self, fmt: str = "table") -> str:
        """The paper-style table ``sketchbench run`` prints (``table``, ``markdown``, ``csv``, ``json``)."""
        return render(self.cells, fmt)

    def __str__(self) -> str:
        return self.table()


def expand_names(value: str | Iterable[str], registry: Any, setting: str | None = None) -> list[str]:
    """Registered names: one name, several, comma-separated, or ``all``; aliases resolved. Names that
    were given but name nothing (``""``, ``","``) are refused: a run that would do nothing fails
    (``setting``: how the message names the value, e.g. ``methods``)."""
    given = [value] if isinstance(value, str) else list(value)
    out: list[str] = []
    for item in given:
        for part in str(item).split(","):
            part = part.strip()
            if part == "all":
                out += registry.names()
            elif part:
                out.append(registry.entry(part).name)
    if given and not out:
        shown = " ".join(repr(str(n)) for n in given)
        raise SketchbenchError(f"{{{setting}}} {shown}: names no {registry.kind}; see 'sketchbench list'" if setting else
                               f"{registry.kind} {shown}: names no {registry.kind}; see 'sketchbench list'",
                               settings=(setting,) if setting else ())
    return list(dict.fromkeys(out))


def runner_for(config: RunConfig, host: Host | None = None, *, preset_named: bool = True) -> Runner:
    """A new run's :class:`Runner` (its preset fitted to this machine). When the preset was chosen by
    default and some method of the run needs pretrained weights that are not installed
    (``cpu-imagenet`` with the ``weights`` extra but no ``weights fetch``), the run falls back to
    ``cpu`` (random init) with a note on stderr instead of stopping; a named preset is never swapped."""
    fit_machine(config.preset)
    try:
        return Runner(config, host)
    except WeightsMissing as exc:
        fallback = FALLBACK_PRESET.get(config.preset.name)
        if preset_named or fallback is None:
            raise
        print(f"note: preset {config.preset.name!r} (the default here) needs pretrained weights that are not "
              f"installed ({exc}); running preset {fallback!r} (random init) instead. Fetch the weights with "
              "'sketchbench weights fetch --all', or name the preset to run.", file=sys.stderr)
        preset = load_preset(fallback, dict(config.preset.overrides))
        return Runner(dataclasses.replace(config, preset=preset), host)


def run_config(methods: str | Sequence[str], datasets: str | Sequence[str] = "synthetic", *,
               canvases: int | str | Iterable[int | str] | None = None, seeds: int | Iterable[int] = (0,),
               preset: str | Preset | None = None, overrides: Mapping[str, Any] | None = None,
               teacher: str | None = None, params: Mapping[str, Any] | None = None, device: str = "auto",
               host: Host | None = None, **settings: Any) -> RunConfig:
    """The :class:`RunConfig` of a :func:`run_grid` call (names checked, canvases and preset resolved)."""
    host = host or get_host()
    if isinstance(preset, Preset):
        if overrides:
            preset = load_preset(preset.name, {**preset.overrides, **{k: str(v) for k, v in overrides.items()}})
    else:
        preset = load_preset(preset or default_preset(device), {k: str(v) for k, v in (overrides or {}).items()})
    given = None if canvases is None else [str(c) for c in ([canvases] if isinstance(canvases, int | str) else canvases)]
    seed_list = [seeds] if isinstance(seeds, int) else [int(s) for s in seeds]
    bad = [s for s in seed_list if not 0 <= s < 2**32]
    if bad:
        raise SketchbenchError(f"{{seeds}} {bad[0]}: a seed is between 0 and 2**32-1", settings=("seeds",))
    unknown = set(settings) - {f.name for f in dataclasses.fields(RunConfig)}
    if unknown:
        raise SketchbenchError(f"run_grid() got unknown settings: {', '.join(sorted(unknown))}")
    if settings.get("cache_dir") is None:
        settings["cache_dir"] = default_cache_dir()
    return RunConfig(
        methods=expand_names(methods, host.methods, "methods"), datasets=expand_names(datasets, host.datasets, "datasets"),
        preset=preset,
        canvases=None if not given or "all" in given else [check_canvas(c) for c in given],
        teacher=host.methods.entry(teacher).name if teacher else None,
        seeds=list(dict.fromkeys(seed_list)),
        params={k: str(v) for k, v in (params or {}).items()}, device=device,
        **{k: tuple(v) if k in ("pretrained", "weights") and not isinstance(v, str) else v for k, v in settings.items()},
    )


def run_grid(methods: str | Sequence[str], datasets: str | Sequence[str] = "synthetic", *,
             canvases: int | str | Iterable[int | str] | None = None, seeds: int | Iterable[int] = (0,),
             preset: str | Preset | None = None, overrides: Mapping[str, Any] | None = None,
             teacher: str | None = None, params: Mapping[str, Any] | None = None, device: str = "auto",
             host: Host | None = None, **settings: Any) -> Results:
    """Train (or restore) and evaluate ``methods`` on ``datasets`` at ``canvases`` (default: the
    preset's) for each seed, exactly as ``sketchbench run`` does, and return the cells.

    ``preset``: a name (default: as the command line chooses: ``paper`` on CUDA, else
    ``cpu-imagenet`` with offline weights installed, else ``cpu``) or a loaded :class:`Preset`;
    ``overrides``: preset values (``--set``); ``params``: method parameters, ``KEY`` or
    ``METHOD.KEY`` (``--param``). Other settings are :class:`RunConfig`'s: ``teacher``,
    ``pretrained`` (``("auto",)``, a source, ``METHOD=SOURCE``), ``weights``, ``partial_weights``,
    ``train`` (``False``: the untrained floor), ``chain``, ``data_root``, ``cache_dir``, ``out``
    (default ``results/run-<hash>.json``, resumed when it exists), ``shard``, ``save_weights``.

    >>> results = sketchbench.run_grid("sketchynet-v2", "synthetic", preset="smoke")
    >>> print(results.table())
    """
    config = run_config(methods, datasets, canvases=canvases, seeds=seeds, preset=preset, overrides=overrides,
                        teacher=teacher, params=params, device=device, host=host, **settings)
    from sketchbench.method.distributed import is_main, shutdown

    try:
        raw, code = runner_for(config, host, preset_named=preset is not None).run()
        main = is_main()
    finally:
        shutdown()  # under torchrun: leave the process group
    return Results(Path(raw["path"]), cells_of(raw), code, raw, main)


class Model:
    """A results cell's trained model (:func:`load_model`): its encoders, and retrieval on the path
    ``sketchbench retrieve`` takes (same canvas choice, same ranks, the gallery's embeddings cached)."""

    def __init__(self, trained: TrainedModel) -> None:
        self.trained = trained
        self._retrievers: dict[str, Retriever] = {}

    @property
    def method(self) -> Method:
        return self.trained.method

    @property
    def cell(self) -> dict[str, Any]:
        return self.trained.cell

    @property
    def canvas(self) -> int | str:
        return self.trained.canvas

    @property
    def data(self) -> RunData:
        """The cell's dataset at its run's preset (its test split is the default gallery)."""
        return self.trained.data

    def __repr__(self) -> str:
        c = self.cell
        return f"<Model {c['method']} on {c['dataset']} @ {c['canvas']}, seed {c.get('seed', 0)}>"

    def encode_sketch(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 ``(B, c, c)`` sketches (black on white) → embeddings."""
        with torch.inference_mode():
            return self.method.encode_sketch(images)

    def encode_photo(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 ``(B, 3, S, S)`` photos → embeddings."""
        with torch.inference_mode():
            return self.method.encode_photo(images)

    def retriever(self, gallery: str | Path = "test") -> Retriever:
        """The retriever over ``gallery``: ``"test"``/``"train"`` (the cell's dataset split) or a
        folder of photos; built once per gallery."""
        key = str(gallery)
        if key not in self._retrievers:
            g = (Gallery.from_split(self.trained.data, key) if key in ("test", "train")
                 else Gallery.from_folder(Path(gallery)))
            self._retrievers[key] = Retriever(self.trained, g)
        return self._retrievers[key]

    def retrieve(self, query: Any, gallery: str | Path = "test") -> QueryResult:
        """Rank ``gallery`` for one query: strokes as drawn (``[[[x, y], ...], ...]``, y down), a
        :class:`~sketchbench.Sketch`, a :class:`~sketchbench.SketchItem`, a uint8 ``(H, W)`` raster
        (dark strokes on light) or a query file (``.png``/``.svg``/``.npy``/``.json``). The answer's
        ``order`` lists gallery indices nearest first, ``canvas`` the canvas it was encoded at."""
        return self.retrieve_all([query], gallery)[0]

    def retrieve_all(self, queries: Sequence[Any], gallery: str | Path = "test") -> list[QueryResult]:
        """:meth:`retrieve` for several queries, encoded as one batch (as ``sketchbench retrieve`` does)."""
        items = [as_item(q, f"query-{i}") for i, q in enumerate(queries)]
        return self.retriever(gallery).search(items)


def as_item(query: Any, item_id: str) -> SketchItem:
    """A query in any of the forms :meth:`Model.retrieve` takes, as the item the evaluation path reads."""
    if isinstance(query, SketchItem):
        return query
    if isinstance(query, Sketch):
        return SketchItem(id=item_id, photo=0, vector=query)
    if isinstance(query, str | Path):
        return read_query(query)
    if isinstance(query, np.ndarray) and query.ndim == 2 and query.dtype == np.uint8:
        return SketchItem(id=item_id, photo=0, raster=query)
    return SketchItem(id=item_id, photo=0, vector=sketch_from_polylines(query))


def load_model(results: str | Path | Results, *, method: str | None = None, canvas: int | str | None = None,
               seed: int | None = None, dataset: str | None = None, data_root: str | Path | None = None,
               cache_dir: str | Path | None = None, device: str = "cpu") -> Model:
    """The trained model of one finished cell of ``results`` (a results file or what :func:`run_grid`
    returned), restored from the artifact cache, never trained. The filters pick the cell (the run's
    own methods first, the largest canvas) as ``sketchbench retrieve`` does.

    >>> model = sketchbench.load_model(results, method="sketchynet-v2")
    >>> answer = model.retrieve([[[10, 10], [60, 80]], [[60, 10], [10, 80]]])
    >>> answer.order[:5], answer.canvas
    """
    path = results.path if isinstance(results, Results) else Path(results)
    if not path.is_file():
        raise SketchbenchError(f"results file {str(path)!r} does not exist")
    trained = load_trained(path, method=method, canvas=None if canvas is None else str(canvas), seed=seed,
                           dataset=dataset, data_root=None if data_root is None else Path(data_root),
                           cache_dir=None if cache_dir is None else Path(cache_dir), device=device)
    return Model(trained)
