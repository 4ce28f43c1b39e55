"""One variable of a MATLAB v5 ``.mat`` file, read within a memory budget.

A ``.mat`` variable is usually zlib-compressed (``miCOMPRESSED``): 2 MB of QMUL-V1 sketches hold
20 MB of pixels, and 2 MB of zeros can hold 2 GB. ``scipy.io.loadmat`` (and even ``whosmat``)
decompresses a variable whole before anything can be checked, so this reader walks the file's
elements itself: for each variable it inflates only the first bytes (its class, dimensions and name),
and for the one asked for it checks ``dims × item size`` against ``DataLimits.decoded_bytes`` *before*
inflating it, with the output capped at that size (a header that lies about its size is refused,
not believed). scipy then reads the one variable, uncompressed, from memory.
"""

from __future__ import annotations

import io
import math
import struct
import zlib
from pathlib import Path

import numpy as np

from sketchbench import DataError, data_limits

#: bytes per element of each numeric MATLAB class (mxDOUBLE_CLASS = 6 ... mxUINT64_CLASS = 15)
_ITEMSIZE = {6: 8, 7: 4, 8: 1, 9: 1, 10: 2, 11: 2, 12: 4, 13: 4, 14: 8, 15: 8}
_MI_MATRIX, _MI_COMPRESSED = 14, 15


def _tag(buf: bytes, off: int, endian: str) -> tuple[int, int, int, int]:
    """``(type, bytes, data offset, next offset)`` of the data element at ``off`` (small format included)."""
    if off + 8 > len(buf):
        raise ValueError("a data element runs past the end of the file")
    kind, n = struct.unpack(endian + "II", buf[off:off + 8])
    if kind >> 16:  # small data element: type and size in one word, the data in the next 4 bytes
        return kind & 0xFFFF, kind >> 16, off + 4, off + 8
    return kind, n, off + 8, off + 8 + n + (-n) % 8


def _matrix_header(body: bytes, endian: str) -> tuple[str, int, tuple[int, ...], int]:
    """``(name, class, dims, bytes)`` of a miMATRIX element's content (after its tag)."""
    _, _, d, off = _tag(body, 0, endian)  # array flags: the class is the low byte of the first word
    cls = struct.unpack(endian + "I", body[d:d + 4])[0] & 0xFF
    _, n, d, off = _tag(body, off, endian)
    if n % 4 or n > 4 * 32:
        raise ValueError("its dimensions are malformed")
    dims = struct.unpack(endian + f"{n // 4}i", body[d:d + n])
    _, n, d, _ = _tag(body, off, endian)
    name = body[d:d + n].decode("latin1")
    nbytes = math.prod(max(x, 0) for x in dims) * _ITEMSIZE.get(cls, 0)
    return name, cls, dims, nbytes


def read_mat_variable(path: Path, name: str, what: str) -> np.ndarray:
    """The numeric array ``name`` of a MATLAB v5 file; :class:`DataError` naming the file for a file
    over its byte limit, not MATLAB v5, without the variable, of another class, or decoding to more
    than ``decoded_bytes``."""
    from scipy.io import loadmat

    limits = data_limits()
    where = repr(str(path))
    if not path.is_file() and not path.exists():
        raise DataError(f"missing file {where} ({what})")
    size = limits.check_file(path)
    with open(path, "rb") as fh:
        data = fh.read(size)
    if data[:19] == b"MATLAB 7.3 MAT-file" or data[512:520] == b"\x89HDF\r\n\x1a\n":
        raise DataError(f"{where} is a MATLAB v7.3 (HDF5) file; re-save it in MATLAB with -v7")
    if len(data) < 136 or data[126:128] not in (b"IM", b"MI"):
        raise DataError(f"{where} is not a MATLAB v5 .mat file (truncated or corrupt)")
    endian = "<" if data[126:128] == b"IM" else ">"
    off, element = 128, None
    try:
        while off + 8 <= len(data) and element is None:
            kind, n, d, nxt = _tag(data, off, endian)
            if kind == _MI_COMPRESSED:
                nxt = d + n  # compressed elements are not padded
                head = zlib.decompressobj().decompress(data[d:d + n], 1024)
                inner, inner_n, inner_d, _ = _tag(head, 0, endian)
                if inner == _MI_MATRIX:
                    var, cls, dims, nbytes = _matrix_header(head[inner_d:], endian)
                    if var == name:
                        _check(where, var, cls, dims, nbytes, inner_n, limits.decoded_bytes)
                        inflater = zlib.decompressobj()
                        element = inflater.decompress(data[d:d + n], inner_n + 8)
                        if len(element) != inner_n + 8 or inflater.unconsumed_tail:
                            raise ValueError("its compressed data does not match its header")
            elif kind == _MI_MATRIX:
                var, cls, dims, nbytes = _matrix_header(data[d:d + n], endian)
                if var == name:
                    _check(where, var, cls, dims, nbytes, n, limits.decoded_bytes)
                    element = data[off:d + n]
            off = nxt
    except (ValueError, struct.error, zlib.error, UnicodeDecodeError) as exc:
        raise DataError(f"{where} is not a readable .mat file (truncated or corrupt: {exc})") from None
    if element is None:
        raise DataError(f"{where} has no variable {name!r} ({what} are stored under {name!r})")
    buf = data[:128] + element
    del data
    try:
        return loadmat(io.BytesIO(buf), variable_names=[name])[name]
    except Exception as exc:  # scipy's errors on a malformed element: MatReadError, ValueError, ...
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"{where} is not a readable .mat file (truncated or corrupt: {msg})") from None


def _check(where: str, var: str, cls: int, dims: tuple[int, ...], nbytes: int, element_bytes: int, limit: int) -> None:
    if cls not in _ITEMSIZE:
        raise DataError(f"{where}: {var!r} is not a numeric array (MATLAB class {cls})")
    if nbytes > limit:
        raise DataError(f"{where}: {var!r} is a {' x '.join(map(str, dims))} array ({nbytes:,} bytes), over the limit "
                        f"of {limit:,} for one decoded data file (raise it with SKETCHBENCH_MAX_DECODED_BYTES)")
    if element_bytes > nbytes + 1024 + 8 * len(dims) + len(var):  # headers are a few dozen bytes
        raise DataError(f"{where}: {var!r} claims {element_bytes:,} bytes for a {nbytes:,}-byte array (corrupt)")
