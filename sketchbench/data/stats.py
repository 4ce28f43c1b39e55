"""What ``sketchbench data info`` reports about a loaded dataset: counts per split, sketches per
photo, points and strokes per vector sketch."""

from __future__ import annotations

import statistics
from typing import Any

from sketchbench.data.dataset import FGSBIRDataset


def summary_stats(values: list[int]) -> dict[str, float]:
    """``{"min", "mean", "max"}`` of ``values`` (empty for no values)."""
    if not values:
        return {}
    return {"min": min(values), "mean": round(statistics.fmean(values), 2), "max": max(values)}


def format_stats(s: dict[str, float]) -> str:
    return f"min {s['min']} / mean {s['mean']} / max {s['max']}" if s else "-"


def dataset_summary(ds: FGSBIRDataset) -> dict[str, Any]:
    """The dataset's name, whether photos are there, its loader metadata, and per split: sketch and
    photo counts, sketches per photo, vector/raster counts, points and strokes per vector sketch."""
    info: dict[str, Any] = {"dataset": ds.name, "photos_available": ds.has_photos, **ds.meta}
    for split_name in ("train", "test"):
        split = ds.split(split_name)
        per_photo: dict[int, int] = {}
        for s in split.sketches:
            per_photo[s.photo] = per_photo.get(s.photo, 0) + 1
        vectors = [s.vector for s in split.sketches if s.vector is not None]
        entry: dict[str, Any] = {
            "sketches": len(split.sketches),
            "photos": len(split.photo_ids),
            "sketches_per_photo": summary_stats(list(per_photo.values())),
            "vector_sketches": len(vectors),
            "raster_sketches": sum(1 for s in split.sketches if s.vector is None and s.raster is not None),
        }
        if vectors:
            entry["points_per_sketch"] = summary_stats([len(v) for v in vectors])
            entry["strokes_per_sketch"] = summary_stats([v.num_strokes for v in vectors])
        info[split_name] = entry
    return info
