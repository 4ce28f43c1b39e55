"""Sketchy (the "Sketchy Database", SIGGRAPH 2016) as an instance-level FG-SBIR set, from its SVG sketches.

Two layouts are read, detected by their sketch folder (``sketches/`` first, then ``sketch/``):

* the official release (the archives unpacked side by side)::

    <root>/sketches/<category>/<photoid>-<n>.svg                 # sketches-06-04.7z: vector sketches
    <root>/256x256/photo/tx_000000000000/<category>/<photoid>.jpg  # rendered_256x256.7z (or <root>/photo/...)
    <root>/info/testset.txt                                      # info-06-04.7z, optional: held-out photos
    <root>/info/invalid-{ambiguous,context,error,pose}.txt       # optional: sketches to exclude

* the sample layout of K6L6/photo2sketch (original Sketchy SVGs and photos, fewer of them)::

    <root>/sketch/<category>/<photoid>-<n>.svg
    <root>/photos/<category>/<photoid>.jpg
    (<root>/info/... as above, when present)

The rest is the same for both:

* Sketches: read by :func:`sketchbench.load_svg_sketch` (size limit, defusedxml check, geometry by
  svgelements, curves sampled, thinned, scaled into the unit box: ``docs/datasets.md``). A sketch
  whose SVG does not parse, has no points or is over ``SKETCHBENCH_MAX_POINTS_PER_SKETCH`` is skipped
  with a warning and counted in ``meta["skipped_sketches"]``; an SVG over ``SKETCHBENCH_MAX_SVG_BYTES``
  or that declares entities (the "billion laughs" family) fails the load with a :class:`DataError`.
* Photo of a sketch: its file name before the last ``-`` (``n02691156_58-1.svg`` -> ``n02691156_58``),
  in the same category.
* Split: photos listed in ``info/testset.txt`` (``<category>/<photoid>.jpg``; the official 10 per
  category) are test, all others train; their sketches follow their photo. Without ``testset.txt``
  (the sample never has one), the :data:`HELD_OUT_PER_CATEGORY` photos of each category whose
  ``sha256("<category>/<photoid>")`` is smallest are test: the same photos on every machine and
  NumPy version, whatever order the files are listed in, and a photo keeps its side when others
  are added (unless a new one hashes below it).
* Invalid sketches listed in ``info/invalid-*.txt`` are excluded (count in ``meta["excluded_invalid"]``).
* Retrieval is over the whole test gallery (all categories, 1,250 photos with the official split),
  not within the category: stricter than the within-category protocol some papers report.
"""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path
from typing import Any
from xml.etree.ElementTree import ParseError

import numpy as np

from sketchbench import (
    ArtifactCache,
    BadSketch,
    DataError,
    DatasetOptions,
    DatasetSource,
    FGSBIRDataset,
    Sketch,
    SketchbenchError,
    SketchItem,
    Split,
    __version__,
    data_limits,
    default_cache_dir,
    fingerprint_files,
    load_svg_sketch,
    progress_bar,
    read_bounded,
    stable_hash,
)

from ._photos import load_photos

#: the official release: photo folders tried in order (the 256x256 archive unpacked in various ways)
PHOTO_FOLDERS = ("256x256/photo/tx_000000000000", "rendered_256x256/256x256/photo/tx_000000000000",
                 "photo/tx_000000000000")
#: ``name: (sketch folder, photo folders)``, tried in order
LAYOUTS = {
    "release": ("sketches", PHOTO_FOLDERS),
    "photo2sketch sample": ("sketch", ("photos",)),
}
#: photos held out per category when info/testset.txt is absent
HELD_OUT_PER_CATEGORY = 10


# -- lists ---------------------------------------------------------------------------------
def _id_lines(path: Path) -> list[str]:
    """Non-empty lines of a list file, as names without folder or extension."""
    raw = read_bounded(path, data_limits().file_bytes, repr(str(path)), "SKETCHBENCH_MAX_FILE_BYTES")
    text = raw.decode("utf-8", errors="replace")
    out = []
    for line in text.splitlines():
        line = line.strip().replace("\\", "/")
        if line:
            out.append(line)
    return out


def _stem(name: str) -> str:
    base = name.rsplit("/", 1)[-1]
    return base.rsplit(".", 1)[0] if "." in base else base


#: bump when the SVG parsing changes, to invalidate cached parses (2: svgelements geometry)
PARSER_VERSION = "2"


def parse_all(sketch_root: Path, files: list[Path], cache_dir: Path | None = None) -> dict[str, Sketch | str]:
    """Every SVG as a Sketch, or the reason it is unusable, keyed ``<category>/<file name>``.

    Parsing 75k SVGs takes minutes, so the result is kept in the run's artifact cache (``cache_dir``,
    else the default: ``SKETCHBENCH_CACHE_DIR`` or ``~/.cache/sketchbench``), keyed by the files' names,
    sizes and modification times, by :data:`PARSER_VERSION`, the sketchbench version (the parser is
    :func:`sketchbench.load_svg_sketch`) and the SVG limits in force.
    """
    try:
        cache = ArtifactCache(cache_dir or default_cache_dir())
    except SketchbenchError:  # an unwritable cache only costs time
        cache = ArtifactCache(None)
    names = [f"{f.parent.name}/{f.name}" for f in files]
    limits = data_limits()  # a result depends on them: a sketch over the point limit is an error string
    key = stable_hash([PARSER_VERSION, __version__, limits.svg_bytes, limits.points_per_sketch, str(sketch_root),
                       fingerprint_files(files, extra="\n".join(names))])
    cached = cache.load("sketchy-svg", key)
    if isinstance(cached, dict) and cached.get("names") == names:
        out: dict[str, Sketch | str] = {}
        points = cached["points"].numpy()
        bounds = np.concatenate([[0], np.cumsum(cached["lengths"].numpy())])
        for j, name in enumerate(names):
            err = cached["errors"][j]
            out[name] = err if err else Sketch(points[bounds[j] : bounds[j + 1]].copy())
        return out
    out = {}
    for name, f in zip(names, progress_bar(files, desc="sketchy SVGs", leave=False, hide=len(files) < 500)):
        try:
            out[name] = load_svg_sketch(f)
        except (BadSketch, ValueError, ParseError, IndexError, UnicodeDecodeError) as exc:
            out[name] = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    import torch

    sketches = [v for v in out.values() if not isinstance(v, str)]
    cache.save("sketchy-svg", key, {
        "names": names,
        "errors": [v if isinstance(v, str) else "" for v in out.values()],
        "lengths": torch.tensor([0 if isinstance(v, str) else len(v) for v in out.values()], dtype=torch.long),
        "points": torch.from_numpy(np.concatenate([v.points for v in sketches]) if sketches else np.zeros((0, 3), np.float32)),
    })
    return out


class Sketchy(DatasetSource):
    name = "sketchy"
    description = "Sketchy Extended: SVG sketches + photos, fine-grained split"
    layout = ("<root>/sketches/<category>/<photoid>-<n>.svg, <root>/256x256/photo/tx_000000000000/<category>/<photoid>.jpg, "
              "optional <root>/info/testset.txt and info/invalid-*.txt (the release); or <root>/sketch/<category>/"
              "<photoid>-<n>.svg, <root>/photos/<category>/<photoid>.jpg (the photo2sketch sample)")

    def load(self, options: DatasetOptions) -> FGSBIRDataset:
        root = self.resolve_root(options)
        found = next(((name, f) for name, f in LAYOUTS.items() if (root / f[0]).is_dir()), None)
        if found is None:
            raise DataError(f"{self.name}: no folder {str(root / 'sketches')!r} (or {str(root / 'sketch')!r}); "
                            f"expected layout: {self.layout}")
        layout, (sketch_folder, photo_folders) = found
        sketch_root = root / sketch_folder
        categories = sorted(p.name for p in sketch_root.iterdir() if p.is_dir())
        if not categories:
            raise DataError(f"{self.name}: {str(sketch_root)!r} has no category folders; expected layout: {self.layout}")
        photo_root = next((root / f for f in photo_folders if (root / f).is_dir()), None)

        # photos per category: the photo files when present, else the ids the sketches name
        svgs = {c: sorted((sketch_root / c).glob("*.svg")) for c in categories}
        photos: dict[str, list[str]] = {}
        for c in categories:
            if photo_root is not None and (photo_root / c).is_dir():
                photos[c] = sorted(p.stem for p in (photo_root / c).glob("*.jpg"))
            else:
                photos[c] = sorted({s.stem.rsplit("-", 1)[0] for s in svgs[c]})

        info = root / "info"
        test_ids = self._test_photos(info, photos)
        invalid: set[str] = set()
        for f in sorted(info.glob("invalid-*.txt")) if info.is_dir() else []:
            invalid |= {_stem(x) for x in _id_lines(f)}

        split_photos: dict[str, list[str]] = {"train": [], "test": []}
        for c in categories:
            for p in photos[c]:
                split_photos["test" if f"{c}/{p}" in test_ids else "train"].append(f"{c}/{p}")
        index = {s: {pid: i for i, pid in enumerate(ids)} for s, ids in split_photos.items()}

        all_svgs = [f for c in categories for f in svgs[c]]
        parsed = parse_all(sketch_root, all_svgs, options.cache_dir)
        items: dict[str, list[SketchItem]] = {"train": [], "test": []}
        skipped = excluded = 0
        for f in all_svgs:
            c = f.parent.name
            if f.stem in invalid:
                excluded += 1
                continue
            pid = f"{c}/{f.stem.rsplit('-', 1)[0]}"
            split = "test" if pid in index["test"] else "train"
            result = parsed[f"{c}/{f.name}"]
            problem = result if isinstance(result, str) else (None if pid in index[split] else f"no photo {pid}.jpg")
            if problem is not None:
                skipped += 1
                warnings.warn(f"{self.name}: skipping sketch {str(f)!r}: {problem}", stacklevel=2)
                continue
            items[split].append(SketchItem(f"{c}/{f.stem}", index[split][pid], vector=result))

        meta: dict[str, Any] = {
            "split": "info/testset.txt" if test_ids and (info / "testset.txt").is_file()
            else f"{HELD_OUT_PER_CATEGORY} photos per category held out (smallest sha256 of <category>/<photoid>)",
            "layout": layout,
            "gallery": "all test photos of all categories",
            "skipped_sketches": skipped,
            "excluded_invalid": excluded,
        }
        splits: dict[str, Split] = {}
        photo_files: list[Path] = []
        for s in ("train", "test"):
            if not items[s]:
                raise DataError(f"{self.name}: no usable {s} sketches under {str(sketch_root)!r}")
            arr = None
            if photo_root is not None:
                paths = [photo_root / f"{pid}.jpg" for pid in split_photos[s]]
                photo_files += paths
                arr = (load_photos(paths, options.photo_size, desc=f"sketchy/{s} photos") if options.need_photos
                       else np.zeros((len(paths), 0, 0, 3), dtype=np.uint8))  # data info: not decoded
            splits[s] = Split(items[s], split_photos[s], arr)
        if photo_root is None:
            meta["photos"] = (f"no folder {str(root / photo_folders[0])!r}"
                              + (": unpack rendered_256x256.7z in the data root" if layout == "release" else ""))
        lists = sorted(info.glob("*.txt")) if info.is_dir() else []
        fp = fingerprint_files([*all_svgs, *photo_files, *lists], extra=f"{self.name}-v2-{layout}-photos:{photo_root is not None}")
        return FGSBIRDataset(self.name, splits["train"], splits["test"], meta=meta, fingerprint=fp)

    def _test_photos(self, info: Path, photos: dict[str, list[str]]) -> set[str]:
        listed = info / "testset.txt"
        if listed.is_file():
            out = set()
            for line in _id_lines(listed):
                parts = line.split("/")
                if len(parts) < 2:
                    raise DataError(f"{str(listed)!r}: line {line!r} is not '<category>/<photoid>.jpg'")
                out.add(f"{parts[-2]}/{_stem(parts[-1])}")
            return out
        out = set()
        for c, ids in photos.items():
            if len(ids) <= HELD_OUT_PER_CATEGORY:
                raise DataError(f"{self.name}: category {c!r} has {len(ids)} photos; a held-out split needs more than "
                                f"{HELD_OUT_PER_CATEGORY} (or provide info/testset.txt)")
            ranked = sorted(ids, key=lambda pid, c=c: (hashlib.sha256(f"{c}/{pid}".encode()).hexdigest(), pid))
            out |= {f"{c}/{pid}" for pid in ranked[:HELD_OUT_PER_CATEGORY]}
        return out
