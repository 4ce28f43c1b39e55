"""Commands that inspect what is installed: ``list``, ``plugins``, ``flops``, ``data info``."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import click

from sketchbench.base.errors import SketchbenchError
from sketchbench.cli.options import plugin_host


@click.command("list")
@click.argument("what", type=click.Choice(["methods", "datasets", "selectors", "presets"]))
@click.option("--format", "fmt", default="table", type=click.Choice(["table", "json"]), show_default=True)
def list_cmd(what: str, fmt: str) -> None:
    """List registered methods, datasets or canvas selectors (without importing them), or presets.

    \b
    Examples:
      sketchbench list methods
      sketchbench list datasets --format json
      sketchbench list selectors      # what --param encoder=NAME of sketchynet-v2 / b-drs accepts
    """
    from tabulate import tabulate

    if what == "presets":
        from sketchbench.run.presets import load_preset, preset_names

        rows = [load_preset(n).to_dict() for n in preset_names()]
        if fmt == "json":
            click.echo(json.dumps(rows, indent=1))
        else:
            click.echo(tabulate([[r["name"], " ".join(map(str, r["canvases"])), r["photo_size"], r["epochs"], r["description"]] for r in rows],
                                headers=["preset", "canvases", "photo", "epochs", "description"]))
        return
    host = plugin_host()
    registry = {"methods": host.methods, "datasets": host.datasets, "selectors": host.selectors}[what]
    rows = []
    for e in registry:
        if what == "methods" and not e.info.get("description"):
            # the registration declared no metadata: it is on the class, which is imported to list it
            try:
                e.load()
            except SketchbenchError as exc:
                e.info.setdefault("description", f"(cannot be imported: {exc})")
        row = {"name": e.name, "origin": e.origin, "aliases": list(e.aliases), **e.info}
        rows.append(row)
    if fmt == "json":
        click.echo(json.dumps(rows, indent=1, default=str))
        return
    if what == "methods":
        table = [[r["name"], r.get("kind", ""), r.get("default_teacher") or ("yes" if r.get("needs_teacher") else ""),
                  "yes" if r.get("dynamic") else "", r.get("description", ""), r["origin"]] for r in rows]
        headers = ["method", "kind", "teacher", "dynamic", "description", "plugin"]
    elif what == "selectors":
        table = [[r["name"], r.get("description", ""), r["origin"]] for r in rows]
        headers = ["selector", "description", "plugin"]
    else:
        table = [[r["name"], r.get("modality", ""), r.get("description", ""), r["origin"]] for r in rows]
        headers = ["dataset", "sketches", "description", "plugin"]
    click.echo(tabulate(table, headers=headers))



@click.command()
@click.option("--backbone", default=None, help="A timm model name, counted as features + global pool.")
@click.option("--method", default=None, help="A registered method: its sketch branch is counted.")
@click.option("--canvas", "-c", "canvases", multiple=True, required=True, help="Canvas size (repeat).")
@click.option("--param", "params", multiple=True, metavar="KEY=VALUE",
              help="A parameter of --method, as for `run` (repeat); UPSTREAM.KEY=VALUE sets one of the method it "
                   "builds on.")
@click.option("--format", "fmt", default="table", type=click.Choice(["table", "json"]), show_default=True)
def flops(backbone: str | None, method: str | None, canvases: tuple[str, ...], params: tuple[str, ...], fmt: str) -> None:
    """FLOPs and params of a sketch branch in the paper's convention.

    A dynamic method is counted on the sketch branch of the method it builds on (its upstream) at
    each canvas; its selector's FLOPs depend on each sketch and are added per query by `run`.

    \b
    Examples:
      sketchbench flops --backbone vgg16 --canvas 256 --format json
      sketchbench flops --backbone mobilenetv2_100 --canvas 32 --canvas 256
      sketchbench flops --method sketchynet-v1 --canvas 256
      sketchbench flops --method triplet-sn --param conv1_stride=2 --canvas 256
      sketchbench flops --method sketchynet-v1 --param backbone=resnet18 --canvas 32 --canvas 256
    """
    import torch

    from sketchbench.measure.flops import FLOPS_CONVENTION, count_flops
    from sketchbench.method.params import parse_key_values
    from sketchbench.run.presets import check_canvas

    if (backbone is None) == (method is None):
        raise SketchbenchError("give exactly one of --backbone NAME or --method NAME")
    given = parse_key_values(params, "--param")
    if backbone is not None and given:
        raise SketchbenchError("--param sets a method's parameters: use it with --method NAME")
    sizes = [check_canvas(c) for c in canvases]
    if backbone is not None:
        from sketchbench.method.backbones import create_backbone

        module = create_backbone(backbone).eval()
        def example(c: int) -> torch.Tensor:
            return torch.zeros(1, 3, c, c)
        label = backbone
    else:
        module, example, label = _method_branch(method, given)
    rows = []
    for c in sizes:
        f, p = count_flops(module, example(c))
        rows.append({"name": label, "canvas": c, "gflops": round(f / 1e9, 4), "params_m": round(p / 1e6, 4),
                     "flops": int(f), "params": p})
    if fmt == "json":
        click.echo(json.dumps({"convention": FLOPS_CONVENTION, "results": rows} if len(rows) > 1 else {**rows[0], "convention": FLOPS_CONVENTION}, indent=1))
    else:
        from tabulate import tabulate

        click.echo(tabulate([[r["name"], f"{r['canvas']}x{r['canvas']}", r["gflops"], r["params_m"]] for r in rows],
                            headers=["sketch branch", "canvas", "GFLOPs", "params (M)"]))


def _method_branch(method: str, given: dict[str, str]) -> tuple[Any, Any, str]:
    """(sketch branch, example input at a canvas, label) of ``method`` built untrained at the paper
    preset with ``given`` (``KEY`` for it, ``NAME.KEY`` for it or a method of its upstream chain).
    A dynamic method's branch is its upstream's."""
    import torch

    from sketchbench.method.interface import MethodContext
    from sketchbench.method.params import resolve_params
    from sketchbench.run.presets import load_preset

    host = plugin_host()
    preset = load_preset("paper")
    name = host.methods.entry(method).name
    chain = [name]
    cls = host.methods.get(name)

    def own(target: str, main: bool) -> dict[str, str]:
        out = {}
        for key, value in given.items():
            t, _, k = key.rpartition(".")
            if t == target or (not t and main):
                out[k] = value
        return out

    def build(n: str, main: bool) -> Any:
        c = host.methods.get(n)
        return c(MethodContext(name=n, params=resolve_params(n, c.params, "paper", own(n, main)), preset=preset,
                               device=torch.device("cpu"), seed=0))

    m = build(name, True)
    up = cls.upstream_for(m.p) if cls.dynamic else None
    while up is not None and up not in chain:
        chain.append(up)
        m = build(up, False)
        ucls = host.methods.get(up)
        up = ucls.upstream_for(m.p) if ucls.dynamic else None
    stray = sorted({k.rpartition(".")[0] for k in given if "." in k} - set(chain))
    if stray:
        raise SketchbenchError(f"--param {stray[0]}.KEY: {stray[0]!r} is not {name!r} or a method it builds on "
                               f"({', '.join(chain)})")
    label = name if len(chain) == 1 else f"{name} (branch of {chain[-1]}; + selector per query)"
    return m.sketch_branch().eval(), m.sketch_input, label



@click.command()
@click.option("--format", "fmt", default="table", type=click.Choice(["table", "json"]), show_default=True)
def plugins(fmt: str) -> None:
    """Show loaded plugins: where each comes from, its version and hooks.

    \b
    Examples:
      sketchbench plugins
      SKETCHBENCH_LOAD_PLUGINS= sketchbench plugins   # built-ins only
    """
    host = plugin_host()
    rows = [vars(p) for p in host.plugins.values()]
    if fmt == "json":
        click.echo(json.dumps(rows, indent=1))
        return
    from tabulate import tabulate

    click.echo(tabulate([[r["name"], r["source"], r["distribution"] or "", r["version"] or "", ", ".join(r["hooks"]),
                          r["error"] or "ok"] for r in rows],
                        headers=["plugin", "source", "distribution", "version", "hooks", "status"]))



@click.group()
def data() -> None:
    """Inspect datasets.

    \b
    Examples:
      sketchbench data info synthetic
      sketchbench data info chairv2 --data-root ../shared/data/chairv2
    """


@data.command("info")
@click.argument("dataset")
@click.option("--data-root", type=click.Path(path_type=Path), default=None, help="Dataset root (or SKETCHBENCH_DATA).")
@click.option("--preset", default="cpu", show_default=True, help="Sizes for generated datasets.")
@click.option("--format", "fmt", default="table", type=click.Choice(["table", "json"]), show_default=True)
def data_info(dataset: str, data_root: Path | None, preset: str, fmt: str) -> None:
    """Counts per split, sketches per photo, points and strokes per sketch.

    \b
    Examples:
      sketchbench data info chairv2 --data-root ../shared/data/chairv2
      sketchbench data info qmul-v1-shoes --data-root ../shared/data/qmul-v1
    """
    from sketchbench.data.dataset import DatasetOptions
    from sketchbench.data.stats import dataset_summary, format_stats
    from sketchbench.run.presets import load_preset

    host = plugin_host()
    p = load_preset(preset)
    root = data_root or os.environ.get("SKETCHBENCH_DATA")
    source = host.datasets.get(dataset)()
    ds = source.load(DatasetOptions.for_preset(p, root=root, need_photos=False))
    info = dataset_summary(ds)
    if fmt == "json":
        click.echo(json.dumps(info, indent=1, default=str))
        return
    click.echo(f"{ds.name}: photos {'available' if ds.has_photos else 'NOT available (retrieval impossible)'}")
    for split_name in ("train", "test"):
        e = info[split_name]
        click.echo(f"  {split_name}: {e['sketches']} sketches, {e['photos']} photos; "
                   f"sketches/photo {format_stats(e['sketches_per_photo'])}; "
                   f"{e['vector_sketches']} vector, {e['raster_sketches']} raster")
        if "points_per_sketch" in e:
            click.echo(f"    points/sketch {format_stats(e['points_per_sketch'])}; strokes/sketch {format_stats(e['strokes_per_sketch'])}")
    for k, v in ds.meta.items():
        click.echo(f"  {k}: {v}")


#: the commands this module adds to ``sketchbench`` (:mod:`sketchbench.cli.main`)
COMMANDS = (list_cmd, flops, plugins, data)
