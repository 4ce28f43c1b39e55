"""Hostile files other than pickles (issue 27, class 2): SVG ``<use>`` bombs over any shape, images
whose header claims gigapixels, oversized and deeply nested JSON (queries, annotations, results),
special files (``/dev/zero``, FIFOs) and ``.mat`` decompression bombs. Each is built here and must be
refused in one line naming it, before it is expanded: the checks run in a subprocess under a memory
cap and a timeout (``capped`` in conftest.py), so one that gets through fails instead of swapping."""

from __future__ import annotations

import json
import os
import struct
import zlib
from pathlib import Path

import pytest

from sketchbench import DataError
from sketchbench.data.queries import load_photo, read_query
from sketchbench.results.schema import load_results
from sketchbench.testing import run_cli

HOSTILE_SECONDS = 60

SVG_NS = 'xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink"'


def use_bomb(shape: str, levels: int = 6, fan: int = 10) -> str:
    """``fan ** levels`` copies of one shape in ~1.7 kB: each level is ``fan`` ``<use>`` of the one below."""
    defs = f'<g id="l0">{shape}</g>' + "".join(
        f'<g id="l{i}">' + f'<use href="#l{i - 1}"/>' * fan + "</g>" for i in range(1, levels + 1))
    return f"<svg {SVG_NS}><defs>{defs}</defs><use href='#l{levels}'/></svg>"


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width x height`` pixels (its data is empty: a decoder allocates first)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))


def mat_bomb(dims: tuple[int, ...], data_bytes: int | None = None) -> bytes:
    """A MATLAB v5 file with one compressed uint8 variable ``data`` of ``dims`` whose content is zeros,
    compressed as it is produced (~1 kB per MB). ``data_bytes``: what the data element claims (a
    header that lies about its size), default the true size."""
    n = 1
    for d in dims:
        n *= d
    data_bytes = n if data_bytes is None else data_bytes

    def element(kind: int, payload: bytes) -> bytes:
        return struct.pack("<II", kind, len(payload)) + payload + b"\0" * (-len(payload) % 8)

    dims_el = element(5, struct.pack(f"<{len(dims)}i", *dims))
    head = element(6, struct.pack("<II", 9, 0)) + dims_el + struct.pack("<HH", 1, 4) + b"data"
    body_len = len(head) + 8 + data_bytes + (-data_bytes % 8)
    comp = zlib.compressobj(1)
    out = [comp.compress(struct.pack("<II", 14, body_len) + head + struct.pack("<II", 2, data_bytes))]
    zeros = bytes(2**20)
    left = data_bytes + (-data_bytes % 8)
    while left > 0:
        out.append(comp.compress(zeros[:min(left, len(zeros))]))
        left -= len(zeros)
    stream = b"".join(out) + comp.flush()
    header = b"MATLAB 5.0 MAT-file, hostile test".ljust(116, b" ") + b"\0" * 8 + b"\x00\x01IM"
    return header + struct.pack("<II", 15, len(stream)) + stream


def hostile_queries(folder: Path) -> dict[str, str]:
    """Query files, each hostile in its own way -> what its one-line refusal says."""
    files = {
        "circles.svg": (use_bomb('<circle cx="5" cy="5" r="3"/>'), "over the limit"),
        "lines.svg": (use_bomb('<line x1="0" y1="0" x2="9" y2="9"/>'), "over the limit"),
        "huge.png": (png_claiming(12_000, 12_000), "12000 x 12000 pixels"),
        "deep.json": ("[" * 100_000 + "]" * 100_000, "nests deeper than"),
        "deep-strokes.json": ('{"strokes": ' + "[" * 100_000 + "]" * 100_000 + "}", "nests deeper than"),
    }
    out = {}
    for name, (content, says) in files.items():
        path = folder / name
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        out[str(path)] = says
    packed = folder / "packed.json"  # just under the byte limit, the most objects per byte JSON allows
    packed.write_bytes(b"[" + b"[]," * (8 * 2**20 // 3 - 1) + b"[]]")
    out[str(packed)] = "over the limit of 200,000 per sketch"
    big = folder / "big.json"  # sparse: 137 MB that cost nothing to make
    with open(big, "wb") as fh:
        fh.truncate(137_000_000)
    out[str(big)] = "over the limit of 8,388,608"
    for suffix in (".json", ".npy", ".png", ".svg"):
        link = folder / f"zero{suffix}"
        link.symlink_to("/dev/zero")
        out[str(link)] = "a device, not a regular file"
    fifo = folder / "fifo.json"
    os.mkfifo(fifo)
    out[str(fifo)] = "a FIFO (named pipe), not a regular file"
    return out


@pytest.fixture
def queries(tmp_path) -> dict[str, str]:
    return hostile_queries(tmp_path)


def test_each_hostile_query_is_refused_in_one_line_naming_it(queries):
    for path, says in queries.items():
        with pytest.raises(DataError) as err:
            read_query(path)
        msg = str(err.value)
        assert Path(path).name in msg and says in msg and "\n" not in msg, (path, msg)


def test_a_photo_claiming_gigapixels_is_refused_from_its_header(tmp_path):
    (tmp_path / "p.png").write_bytes(png_claiming(60_000, 60_000))
    with pytest.raises(DataError, match=r"photo .*p\.png.* over the limit of 50,000,000 pixels .*SKETCHBENCH_MAX_PHOTO_PIXELS"):
        load_photo(tmp_path / "p.png", 32)


@pytest.fixture(scope="module")
def mat_bombs(tmp_path_factory) -> tuple[Path, Path]:
    """(a bomb: 288 MB of pixels in ~1.2 MB, a liar: its header says 128 bytes, its stream holds 300 MB)."""
    folder = tmp_path_factory.mktemp("mat")
    (folder / "bomb.mat").write_bytes(mat_bomb((1100, 512, 512)))
    (folder / "liar.mat").write_bytes(mat_bomb((2, 8, 8), data_bytes=300 * 2**20))
    return folder / "bomb.mat", folder / "liar.mat"


def test_a_mat_decompression_bomb_is_refused_from_its_header(tmp_path, mat_bombs):
    from sketchbench_datasets._mat import read_mat_variable

    bomb, liar = mat_bombs
    assert bomb.stat().st_size < 2 * 2**20  # 1.2 MB at zlib level 1
    with pytest.raises(DataError, match=r"bomb\.mat.*1100 x 512 x 512 array \(288,358,400 bytes\), over the limit"):
        read_mat_variable(bomb, "data", "sketches")
    with pytest.raises(DataError, match=r"liar\.mat.*claims [\d,]+ bytes for a 128-byte array"):
        read_mat_variable(liar, "data", "sketches")
    small = tmp_path / "ok.mat"
    small.write_bytes(mat_bomb((2, 8, 8)))
    arr = read_mat_variable(small, "data", "sketches")
    assert arr.shape == (2, 8, 8) and arr.dtype.name == "uint8" and not arr.any()


def test_a_deep_annotation_file_is_refused(tmp_path):
    from sketchbench_datasets.qmul_v1 import read_annotation

    path = tmp_path / "shoes_annotation.json"
    path.write_text('{"train": ' + "[" * 100_000 + "]" * 100_000 + "}")
    with pytest.raises(DataError, match=r"shoes_annotation\.json.*nests deeper than 64"):
        read_annotation(path)


def test_results_files_that_are_not_regular_files_or_nest_deeply_are_refused(tmp_path):
    deep = tmp_path / "deep.json"
    deep.write_text('{"schema": "sketchbench.results", "cells": ' + "[" * 100_000 + "]" * 100_000 + "}")
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    for path, says in [(deep, "nests deeper than"), (Path("/dev/zero"), "a device, not a regular file"),
                       (fifo, "a FIFO"), (tmp_path / "absent.json", "does not exist")]:
        with pytest.raises(DataError, match=says):
            load_results(path)
        code, out, err = run_cli("report", str(path))
        assert code == 2 and len(err.strip().splitlines()) == 1 and str(path) in err and says.split()[0] in err, err


_DRIVER = """
import json, sys, time, warnings
warnings.simplefilter("ignore")
from sketchbench import DataError
from sketchbench.data.queries import load_photo, read_query
from sketchbench.results.schema import load_results
from sketchbench_datasets._mat import read_mat_variable
from pathlib import Path
out, seconds = {}, {}
for path in sys.argv[1:]:
    start = time.monotonic()
    try:
        if path.endswith(".mat"):
            read_mat_variable(Path(path), "data", "sketches")
        elif path.endswith(".results.json"):
            load_results(path)
        elif "photo" in path:
            load_photo(Path(path), 64)
        else:
            read_query(path)
        out[path] = "loaded"
    except DataError as exc:
        out[path] = str(exc)
    seconds[path] = time.monotonic() - start
print(json.dumps({"out": out, "seconds": seconds}))
"""


def test_no_hostile_input_expands_past_the_memory_cap(tmp_path, capped, mat_bombs):
    """Every hostile file above, read in one capped process: refused before it costs 1 GB or 60 s."""
    paths = [*hostile_queries(tmp_path), *map(str, mat_bombs)]
    (tmp_path / "photo.png").write_bytes(png_claiming(60_000, 60_000))
    (tmp_path / "deep.results.json").write_text('{"schema": "sketchbench.results", "cells": ' + "[" * 100_000
                                                 + "]" * 100_000 + "}")
    paths += [str(tmp_path / n) for n in ("photo.png", "deep.results.json")]
    proc = capped(["-c", _DRIVER, *paths], seconds=HOSTILE_SECONDS * len(paths))  # each input: 60 s, below
    assert proc.returncode == 0, proc.stderr[-2000:]
    answer = json.loads(proc.stdout.strip().splitlines()[-1])
    out, seconds = answer["out"], answer["seconds"]
    assert len(out) == len(paths) and all(v != "loaded" and "\n" not in v for v in out.values()), out
    assert max(seconds.values()) < HOSTILE_SECONDS, seconds


def test_the_cli_refuses_a_hostile_query_in_one_line(tmp_path, capped):
    bomb = tmp_path / "bomb.svg"
    bomb.write_text(use_bomb('<circle cx="5" cy="5" r="3"/>'))
    proc = capped(["-m", "sketchbench", "retrieve", "-r", str(tmp_path / "absent.json"), str(bomb)])
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and "bomb.svg" in lines[0], proc.stderr
