"""Reading an untrusted file within a budget: a regular file only, at most so many bytes, JSON at
most so deep.

A size check that trusts ``stat`` is not enough: ``/dev/zero`` (or a symlink to it) reports 0 bytes
and never ends, a FIFO blocks the first read forever, and a file can grow between the check and the
read. So a file is opened without blocking, checked to be a regular file *on the open descriptor*
(``fstat``, after symlinks are followed), and read up to its byte limit plus one: more than that is
refused, whatever ``stat`` said. Parsed JSON is refused past a nesting depth (the standard library's
parser recurses: a 100 000-deep ``[[[...`` is a ``RecursionError`` inside it), and every refusal is
one :class:`~sketchbench.base.errors.DataError` line naming the file and the limit.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import IO, Any

from sketchbench.base.errors import DataError

#: how deep a JSON document of ours nests at most (a results file: 5; a stroke file: 3)
MAX_JSON_DEPTH = 64


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def open_regular(path: str | Path, what: str) -> tuple[IO[bytes], int]:
    """``(binary file, size)`` of a regular file; :class:`DataError` naming ``what`` for a missing
    file, a folder, a device, a FIFO or a socket (checked on the opened descriptor, symlinks followed)."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise DataError(f"{what} does not exist") from None
    except IsADirectoryError:
        raise DataError(f"{what} is a folder, not a file") from None
    except OSError as exc:
        raise DataError(f"{what} cannot be read: {exc.strerror or exc}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise DataError(f"{what} is {_kind(st.st_mode)}, not a regular file: refused")
        return os.fdopen(fd, "rb"), int(st.st_size)
    except BaseException:
        os.close(fd)
        raise


def check_regular(path: str | Path, what: str, limit: int | None = None, env: str | None = None) -> int:
    """The size of a regular file within ``limit`` bytes, for readers that open the file themselves
    (PIL, scipy, NumPy); :class:`DataError` otherwise (see :func:`open_regular`)."""
    fh, size = open_regular(path, what)
    fh.close()
    if limit is not None and size > limit:
        raise DataError(_over(what, size, limit, env))
    return size


def _over(what: str, size: int | str, limit: int, env: str | None) -> str:
    size_text = f"{size:,}" if isinstance(size, int) else size
    hint = f" (raise it with {env})" if env else ""
    return f"{what} is {size_text} bytes, over the limit of {limit:,}{hint}"


def read_bounded(path: str | Path, limit: int, what: str, env: str | None = None) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes; :class:`DataError` otherwise."""
    fh, size = open_regular(path, what)
    with fh:
        if size > limit:
            raise DataError(_over(what, size, limit, env))
        try:
            data = fh.read(limit + 1)
        except OSError as exc:
            raise DataError(f"{what} cannot be read: {exc.strerror or exc}") from None
    if len(data) > limit:  # it grew since fstat
        raise DataError(_over(what, f"more than {limit:,}", limit, env))
    return data


def json_depth(data: bytes, limit: int) -> int:
    """How deep the JSON text ``data`` (UTF-8) nests, scanned before it is parsed, in NumPy passes of
    1 MiB (a 32 MiB file takes ~0.1 s; a walk of the parsed objects took minutes for 5 M empty lists).
    Brackets inside strings are skipped (a quote after an odd run of backslashes is escaped); in UTF-8,
    no byte of a multi-byte character is a bracket, a quote or a backslash. Exact for valid JSON; stops
    counting past ``limit``."""
    import numpy as np

    arr = np.frombuffer(data, dtype=np.uint8)
    depth, deepest, in_string, carried = 0, 0, 0, 0  # carried: backslashes ending the previous chunk
    chunk = 1 << 20
    for start in range(0, len(arr), chunk):
        c = arr[start:start + chunk]
        idx = np.arange(len(c), dtype=np.int64)
        backslash = c == 92
        last_other = np.maximum.accumulate(np.where(backslash, -1 - carried, idx))  # last non-backslash <= i
        before = np.empty(len(c), dtype=np.int64)
        before[0], before[1:] = -1 - carried, last_other[:-1]
        escaped = ((idx - 1 - before) % 2) == 1  # an odd run of backslashes right before i
        quote = (c == 34) & ~escaped
        quotes = np.cumsum(quote, dtype=np.int64)
        inside = ((quotes - quote + in_string) % 2) == 1
        step = (((c == 91) | (c == 123)) & ~inside).astype(np.int32) - (((c == 93) | (c == 125)) & ~inside)
        levels = np.cumsum(step, dtype=np.int64) + depth
        deepest = max(deepest, int(levels.max()))
        if deepest > limit:
            return deepest
        depth, in_string = int(levels[-1]), int((quotes[-1] + in_string) % 2)
        carried = int(len(c) - 1 - last_other[-1]) if backslash[-1] else 0
    return deepest


def loads_json(data: bytes | str, what: str, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Parse JSON, refusing it (one :class:`DataError` line naming ``what``) when it is not UTF-8 JSON
    or nests deeper than ``max_depth`` (checked on the text, before the parser recurses). NaN and
    infinities are accepted as Python's parser does; callers that need finite numbers check them."""
    raw = data.encode("utf-8", errors="surrogatepass") if isinstance(data, str) else data
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise DataError(f"{what} is not valid JSON (not UTF-8 text)") from None
    if json_depth(raw, max_depth) > max_depth:
        raise DataError(f"{what} nests deeper than {max_depth} levels: refused")
    try:
        return json.loads(text)
    except RecursionError:  # invalid JSON that the scan read differently: still refused, in one line
        raise DataError(f"{what} nests deeper than {max_depth} levels: refused") from None
    except json.JSONDecodeError as exc:
        raise DataError(f"{what} is not valid JSON (truncated?): {exc.msg} at line {exc.lineno}") from None


def read_json(path: str | Path, limit: int, what: str, env: str | None = None, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """:func:`read_bounded` then :func:`loads_json`."""
    return loads_json(read_bounded(path, limit, what, env), what, max_depth)
