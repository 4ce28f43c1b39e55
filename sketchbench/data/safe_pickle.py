"""Loading dataset pickles without running code from them.

Some public FG-SBIR releases (the QMUL ShoeV2/ChairV2 ``*_Coordinate`` files) are Python pickles.
A plain :func:`pickle.load` can call any importable function (``os.system`` ...), so every
dataset pickle goes through :func:`load_pickle`: an :class:`pickle.Unpickler` whose
``find_class`` admits only what plain containers and NumPy arrays need. Anything else raises a
:class:`~sketchbench.base.errors.DataError` naming the file and the refused global, before it is called.
"""

from __future__ import annotations

import importlib
import pickle
from pathlib import Path
from typing import Any

from sketchbench.base.errors import DataError

#: builtins that only build plain data (containers, numbers, text)
_SAFE_BUILTINS = frozenset({
    "dict", "list", "tuple", "set", "frozenset", "str", "bytes", "bytearray", "int", "float", "complex", "bool",
})

#: the NumPy globals an ndarray / scalar pickle refers to. ``numpy.core`` is NumPy 1's name and
#: ``numpy._core`` NumPy 2's; both spellings occur in files on disk, so both are admitted and
#: resolved to whichever module this NumPy has.
_NUMPY_GLOBALS = frozenset({
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    # protocol-5 pickles (Python 3.14's default) rebuild contiguous arrays from their bytes
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
})

#: Python 2 pickles of NumPy arrays carry their raw bytes as ``_codecs.encode(text, 'latin1')``;
#: ``encode`` only turns text into bytes.
_OTHER_GLOBALS = frozenset({("_codecs", "encode")})


def _numpy_attr(module: str, name: str) -> Any:
    """Resolve an admitted NumPy global without importing the deprecated ``numpy.core`` alias."""
    import numpy as np

    if module == "numpy":
        return getattr(np, name)
    leaf = module.rsplit(".", 1)[1]  # multiarray or numeric
    for candidate in (f"numpy._core.{leaf}", f"numpy.core.{leaf}"):
        try:
            return getattr(importlib.import_module(candidate), name)
        except (ImportError, AttributeError):
            continue
    raise AttributeError(f"{module}.{name}")


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file: Any, path: Path) -> None:
        # latin1 decodes Python 2 ``str`` payloads (NumPy's raw buffers) byte for byte
        super().__init__(file, encoding="latin1")
        self._path = path

    def find_class(self, module: str, name: str) -> Any:
        if module in ("builtins", "__builtin__") and name in _SAFE_BUILTINS:
            import builtins

            return getattr(builtins, name)
        if (module, name) in _NUMPY_GLOBALS:
            return _numpy_attr(module, name)
        if (module, name) in _OTHER_GLOBALS:
            return getattr(importlib.import_module(module), name)
        raise DataError(
            f"{str(self._path)!r}: refused to load the pickle: it references {module}.{name}, which is not "
            "plain data or a NumPy array (a dataset pickle must not run code)"
        )

    def persistent_load(self, pid: Any) -> Any:
        raise DataError(f"{str(self._path)!r}: refused to load the pickle: it uses persistent ids")


def load_pickle(path: str | Path) -> object:
    """Load a dataset pickle that may hold only dicts/lists/tuples/str/numbers and NumPy arrays.

    Raises :class:`DataError` (one line) when the file is missing, truncated, malformed, or
    references anything else.
    """
    p = Path(path)
    try:
        fh = p.open("rb")
    except FileNotFoundError:
        raise DataError(f"{str(p)!r}: no such file") from None
    except OSError as exc:
        raise DataError(f"{str(p)!r}: cannot read: {exc.strerror or exc}") from None
    with fh:
        try:
            return _RestrictedUnpickler(fh, p).load()
        except DataError:
            raise
        except EOFError:
            raise DataError(f"{str(p)!r}: the pickle is truncated (ended early)") from None
        except Exception as exc:  # UnpicklingError, ValueError, TypeError, ... from a malformed stream
            msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise DataError(f"{str(p)!r}: not a readable pickle ({type(exc).__name__}: {msg})") from None
