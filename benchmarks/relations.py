"""The paper's relations, judged on measured results: holds / does not hold, with the numbers.

    python benchmarks/relations.py docs/results/chairv2-cpu-imagenet/*.json --dataset chairv2 \
        --teacher triplet-timm --student sketchynet-v1 --plain mobilenetv2-sn --dynamic sketchynet-v2 \
        --sketch-queries triplet-timm --photo-queries fg-ibir

Every number is a mean over the seeds found (± std); a relation is judged on the means, and where it
compares two methods it also asks for a margin larger than the seed spread. Uses the public results
API only (cells, rows).
"""

from __future__ import annotations

from pathlib import Path

import click

from sketchbench.base.canvas import is_dynamic
from sketchbench.results.cells import Row, aggregate
from sketchbench.results.schema import load_cells


def _pm(row: Row, metric: str = "acc1") -> str:
    m, s = row.mean[metric], row.std.get(metric, 0.0)
    return f"{m:.2f} ± {s:.2f}" if row.n > 1 else f"{m:.2f}"


def _rows(rows: list[Row], method: str, dataset: str, variant: str | None = "", teacher: str | None = None) -> list[Row]:
    out = [r for r in rows if r.key.method == method and r.key.dataset == dataset]
    if variant is not None:
        out = [r for r in out if (r.key.variant or "") == variant]
    if teacher is not None:
        out = [r for r in out if r.key.teacher == teacher]
    return out


def _verdict(ok: bool) -> str:
    return "**holds**" if ok else "**does not hold**"


@click.command()
@click.argument("results", nargs=-1, required=True, type=click.Path(path_type=Path, exists=True))
@click.option("--dataset", required=True)
@click.option("--teacher", required=True, help="The teacher method (its full-canvas row and its floors).")
@click.option("--student", default="sketchynet-v1")
@click.option("--plain", default="mobilenetv2-sn", help="The student trained without distillation.")
@click.option("--dynamic", default="sketchynet-v2")
@click.option("--sketch-queries", default=None, help="Pilot: the sketch-query method (fixed canvases).")
@click.option("--photo-queries", default=None, help="Pilot: the photo-query method (fixed canvases).")
def main(results, dataset, teacher, student, plain, dynamic, sketch_queries, photo_queries) -> None:
    rows = aggregate(load_cells(results))
    lines = [f"### Relations on {dataset}", ""]

    # 1. the teacher beats its floors
    trained = [r for r in _rows(rows, teacher, dataset) if not is_dynamic(r.canvas)]
    if trained:
        t = max(trained, key=lambda r: int(r.canvas))
        zs = [r for r in _rows(rows, teacher, dataset, variant=None) if r.key.variant == "zero-shot" and r.canvas == t.canvas]
        ri = [r for r in _rows(rows, teacher, dataset, variant=None) if r.key.variant == "random init" and r.canvas == t.canvas]
        if zs:
            ok = t.mean["acc1"] >= 2 * zs[0].mean["acc1"] and (not ri or t.mean["acc1"] > ri[0].mean["acc1"])
            floors = f"zero-shot {_pm(zs[0])}" + (f", random init {_pm(ri[0])}" if ri else "")
            lines.append(f"- A trained teacher beats its floors (≥ 2× zero-shot acc@1): {_verdict(ok)}. {teacher} @ "
                         f"{t.canvas}: {_pm(t)} acc@1 vs {floors} ({t.mean['acc1'] / max(zs[0].mean['acc1'], 1e-9):.1f}× zero-shot).")
    else:
        t = None

    # 2. SketchyNetV1 vs its teacher and vs the plain student
    v1 = [r for r in _rows(rows, student, dataset, teacher=teacher) if not is_dynamic(r.canvas)]
    if t is not None and v1:
        # a quarter of the canvas area: FLOPs of (c/2)² are 1/4 of c²'s up to the fixed per-layer ops (≈ +2 %)
        cheap = [r for r in v1 if r.mean["gflops"] <= 1.05 * t.mean["gflops"] / 4]
        if cheap:
            best = max(cheap, key=lambda r: r.mean["acc1"])
            ratio = best.mean["acc1"] / t.mean["acc1"]
            lines.append(f"- SketchyNetV1 keeps ≥ 90 % of its teacher's acc@1 at ≤ 1/4 of its FLOPs: {_verdict(ratio >= 0.9)}. "
                         f"Best V1 row within 1/4 (+5 %) of the teacher's {t.mean['gflops']:.3f} GFLOPs: @ {best.canvas} "
                         f"({best.mean['gflops']:.3f} GFLOPs) {_pm(best)} = {100 * ratio:.1f} % of the teacher's {_pm(t)}.")
        sn = {int(r.canvas): r for r in _rows(rows, plain, dataset) if not is_dynamic(r.canvas)}
        pairs = [(r, sn[int(r.canvas)]) for r in sorted(v1, key=lambda r: int(r.canvas)) if int(r.canvas) in sn]
        if pairs:
            won = [(a, b) for a, b in pairs
                   if a.mean["acc1"] - b.mean["acc1"] > max(a.std.get("acc1", 0.0), b.std.get("acc1", 0.0))]
            detail = "; ".join(f"@{a.canvas}: {_pm(a)} vs {_pm(b)}" for a, b in pairs)
            lines.append(f"- SketchyNetV1 beats {plain} (no distillation) by more than the seed spread: "
                         f"{_verdict(len(won) == len(pairs))} ({len(won)} of {len(pairs)} canvases). {detail}.")

    # 3. SketchyNetV2
    v2 = _rows(rows, dynamic, dataset)
    v2 = [r for r in v2 if is_dynamic(r.canvas)]
    if v2 and v1:
        d = v2[0]
        top = max(v1, key=lambda r: int(r.canvas))
        used = [k for k, n in (d.histogram or {}).items() if n > 0]
        ok = len(used) >= 2 and d.mean["gflops"] <= 0.5 * top.mean["gflops"] and d.mean["acc1"] >= top.mean["acc1"] - 2
        lines.append(f"- SketchyNetV2 uses ≥ 2 canvases, ≤ 0.5× the FLOPs of V1 at its largest canvas, ≤ 2 points acc@1 "
                     f"below it: {_verdict(ok)}. Canvases chosen {d.histogram}; {d.mean['gflops']:.3f} GFLOPs = "
                     f"{d.mean['gflops'] / top.mean['gflops']:.2f}× V1 @ {top.canvas} ({top.mean['gflops']:.3f}); acc@1 "
                     f"{_pm(d)} vs {_pm(top)} ({d.mean['acc1'] - top.mean['acc1']:+.2f}).")

    # 4. the pilot study
    if sketch_queries and photo_queries:
        def drop(method: str) -> tuple[Row, Row] | None:
            got = {int(r.canvas): r for r in _rows(rows, method, dataset) if not is_dynamic(r.canvas)}
            return (got[max(got)], got[min(got)]) if len(got) >= 2 else None

        s, p = drop(sketch_queries), drop(photo_queries)
        if s and p:
            ds, dp = s[0].mean["acc1"] - s[1].mean["acc1"], p[0].mean["acc1"] - p[1].mean["acc1"]
            lines.append(f"- Pilot: sketch queries lose fewer acc@1 points than photo queries from {s[0].canvas} to "
                         f"{s[1].canvas}: {_verdict(ds < dp)}. Sketch {_pm(s[0])} → {_pm(s[1])} ({ds:.2f} points); "
                         f"photo {_pm(p[0])} → {_pm(p[1])} ({dp:.2f} points).")
    click.echo("\n".join(lines))


if __name__ == "__main__":
    main()
