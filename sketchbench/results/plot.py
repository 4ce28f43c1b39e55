"""Plots from results: accuracy versus FLOPs (log axis) per dataset with the Pareto front
marked, and latency versus FLOPs. matplotlib is the optional ``plot`` extra."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sketchbench.base.artifacts import atomic_write_bytes
from sketchbench.base.errors import SketchbenchError
from sketchbench.results.cells import Cell, aggregate


def _matplotlib():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise SketchbenchError("plotting needs matplotlib: pip install 'sketchbench[plot]'") from None
    return plt


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of points not dominated by any other (lower FLOPs and higher accuracy is better)."""
    front = []
    for i, (f, a) in enumerate(points):
        dominated = any(
            (f2 <= f and a2 >= a) and (f2 < f or a2 > a) for j, (f2, a2) in enumerate(points) if j != i
        )
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: points[i][0])


def plot_results(cells: list[Cell], out_prefix: Path, metric: str = "acc1") -> list[Path]:
    plt = _matplotlib()
    rows = [r for r in aggregate(cells) if r.mean.get("gflops") and r.mean.get(metric) is not None]
    if not rows:
        raise SketchbenchError("no finished cells to plot")
    datasets = list(dict.fromkeys(r.key.dataset for r in rows))
    fig, axes = plt.subplots(2, len(datasets), figsize=(6 * len(datasets), 9), squeeze=False)
    methods = list(dict.fromkeys(r.key.method for r in rows))
    cmap = plt.get_cmap("tab20")
    colour = {m: cmap(i % 20) for i, m in enumerate(methods)}
    for col, ds in enumerate(datasets):
        sub = [r for r in rows if r.key.dataset == ds]
        ax = axes[0][col]
        for r in sub:
            label = f"{r.key.method_label()} @ {r.canvas}"
            ax.errorbar(r.mean["gflops"], r.mean[metric], yerr=r.std.get(metric) or 0, fmt="o", color=colour[r.key.method],
                        label=r.key.method, capsize=2)
            ax.annotate(label, (r.mean["gflops"], r.mean[metric]), fontsize=6, xytext=(3, 3), textcoords="offset points")
        pts = [(r.mean["gflops"], r.mean[metric]) for r in sub]
        front = pareto_front(pts)
        ax.plot([pts[i][0] for i in front], [pts[i][1] for i in front], "k--", lw=1, label="Pareto front")
        ax.set_xscale("log")
        ax.set_xlabel("GFLOPs per query (sketch branch, log)")
        ax.set_ylabel({"acc1": "acc@1 (%)", "acc10": "acc@10 (%)"}.get(metric, metric))
        ax.set_title(f"{ds}: accuracy vs FLOPs")
        handles, labels = ax.get_legend_handles_labels()
        uniq = dict(zip(labels, handles))
        ax.legend(uniq.values(), uniq.keys(), fontsize=7)
        ax2 = axes[1][col]
        for r in sub:
            if r.mean.get("latency_ms"):
                ax2.scatter(r.mean["gflops"], r.mean["latency_ms"], color=colour[r.key.method])
                ax2.annotate(f"{r.key.method_label()} @ {r.canvas}", (r.mean["gflops"], r.mean["latency_ms"]), fontsize=6,
                             xytext=(3, 3), textcoords="offset points")
        ax2.set_xscale("log")
        ax2.set_yscale("log")
        ax2.set_xlabel("GFLOPs per query (log)")
        ax2.set_ylabel("measured latency (ms/query, log)")
        ax2.set_title(f"{ds}: latency vs FLOPs ({rows[0].cells[0].device or '?'})")
    return save_figure(fig, out_prefix)


def save_figure(fig: Any, out_prefix: Path) -> list[Path]:
    """Write ``fig`` as ``out_prefix``.png and .svg, then close it. Both or neither: each is rendered
    in memory and written atomically, and a failed write (a full disk) removes what this call wrote,
    with one line naming the file."""
    import io

    plt = _matplotlib()
    fig.tight_layout()
    paths: list[Path] = []
    p = out_prefix
    try:
        out_prefix.parent.mkdir(parents=True, exist_ok=True)
        for ext in ("png", "svg"):
            # appended, not with_suffix: "res/main.v2" is a prefix, it must not become "res/main.png"
            p = out_prefix.with_name(f"{out_prefix.name}.{ext}")
            buf = io.BytesIO()
            fig.savefig(buf, format=ext, dpi=120)
            atomic_write_bytes(p, buf.getvalue())
            paths.append(p)
    except OSError as exc:
        for written in paths:
            written.unlink(missing_ok=True)
        raise SketchbenchError(f"cannot write the plot {str(p)!r}: {exc.strerror or exc} (nothing written)") from None
    finally:
        plt.close(fig)
    return paths
