"""Loading dataset pickles without running code from them, and within a budget counted as they load.

Some public FG-SBIR releases (the QMUL ShoeV2/ChairV2 ``*_Coordinate`` files) are Python pickles.
A plain :func:`pickle.load` can call any importable function (``os.system`` ...), and even a pickle
that calls nothing dangerous can expand: 268 bytes can ask for ``bytearray(400_000_000)``, a NumPy
array's shape can claim 150 M rows, a list kept once in the pickle's memo can be referenced 100 times
at each of four levels (100⁴ numbers for whoever converts it). So every dataset pickle goes through
:func:`load_pickle`, a restricted unpickler that

* admits only the globals plain containers and NumPy arrays need (``find_class``); anything else is a
  :class:`~sketchbench.base.errors.DataError` naming the file and the global, before it is called;
* calls those globals only through checked wrappers: an array's size comes from its shape and dtype
  (numbers of at most 16 bytes; no object, string or structured dtypes) and is charged *before* it is
  allocated; ``bytes`` takes no size argument; ``_codecs.encode`` (Python 2's way of storing an
  array's raw bytes) only turns text into latin-1 bytes of the same length; ``bytearray`` is refused;
* keeps two running counts, refused past their limits (:class:`~sketchbench.data.limits.DataLimits`):
  the **memory** it builds (``decoded_bytes``: every object, container slot and array), and the
  **values** a reader would see if every shared reference were copied (each number, each array
  element, each container, counted again at every memo reference). A real pickle holds at least one
  byte per value, so the values may not outnumber the file's bytes, nor ``3 × total_points``;
* refuses a container that is changed after it was referenced (what a cycle needs: a list that
  contains itself never ends for a reader that walks it), and containers nested deeper than
  :data:`MAX_DEPTH`.

It is the standard library's pure-Python unpickler (its opcode table can be extended, the C one's
cannot) with every opcode that creates or references an object counted: ~0.3 s for ChairV2's 3.6 MB.
"""

from __future__ import annotations

import math
import pickle
import struct
import sys
from pathlib import Path
from typing import Any

from sketchbench.base.bounded import open_regular
from sketchbench.base.errors import DataError
from sketchbench.data.limits import DataLimits, data_limits, env_name

#: builtins that only build plain data (containers, numbers, text); ``bytearray`` is not among them
_SAFE_BUILTINS = frozenset({"dict", "list", "tuple", "set", "frozenset", "str", "bytes", "int", "float", "complex", "bool"})

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

#: Python 2 pickles of NumPy arrays carry their raw bytes as ``_codecs.encode(text, 'latin1')``
_CODECS_ENCODE = ("_codecs", "encode")
_LATIN1 = frozenset({"latin1", "latin-1", "iso-8859-1", "iso8859-1", "l1"})

#: how deep containers may nest (a dataset pickle nests 1 to 3 levels)
MAX_DEPTH = 32
#: approximate bytes one slot of each container takes (pointer, hash entry)
_SLOT = {list: 8, tuple: 8, dict: 48, set: 32, frozenset: 32}


class _Refused(Exception):
    """Raised inside the unpickler; becomes one DataError line naming the file."""


class _Reader:
    """The file, read no further than its size: a length field claiming terabytes is never allocated."""

    def __init__(self, fh: Any, size: int) -> None:
        self._fh, self.left = fh, size

    def read(self, n: int = -1) -> bytes:
        n = self.left if n is None or n < 0 else min(n, self.left)
        data = self._fh.read(n)
        self.left -= len(data)
        return data

    def readline(self) -> bytes:
        data = self._fh.readline(self.left)
        self.left -= len(data)
        return data


class _Global:
    """An admitted global as the pickle sees it: calling it runs the checked wrapper."""

    def __init__(self, name: str, call: Any) -> None:
        self.name, self._call = name, call

    def __call__(self, *args: Any) -> Any:
        return self._call(*args)


def _check_dtype(dtype: Any) -> Any:
    import numpy as np

    try:
        dt = dtype if isinstance(dtype, np.dtype) else np.dtype(dtype)
    except (TypeError, ValueError):
        raise _Refused(f"an array has an unreadable dtype {dtype!r:.40}") from None
    if dt.kind not in "biufc" or dt.subdtype is not None or dt.fields is not None or not 0 < dt.itemsize <= 16:
        raise _Refused(f"an array has dtype {dt!r:.60}: only numbers (bool, int, float, complex) are read")
    return dt


def _check_shape(shape: Any) -> tuple[int, ...]:
    if isinstance(shape, int):
        shape = (shape,)
    if not isinstance(shape, tuple) or len(shape) > 32 or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise _Refused(f"an array has an invalid shape {shape!r:.60}")
    return shape


class _BudgetedUnpickler(pickle._Unpickler):
    dispatch = dict(pickle._Unpickler.dispatch)

    def __init__(self, file: Any, path: Path, limits: DataLimits, size: int) -> None:
        # latin1 decodes Python 2 ``str`` payloads (NumPy's raw buffers) byte for byte
        super().__init__(file, encoding="latin1")
        self._path, self._file, self.size = path, file, size
        self.mem, self.mem_limit = 0, limits.decoded_bytes
        self.values, self.values_limit = 0, max(1, min(size, 3 * limits.total_points))
        self._values_by_file = size <= 3 * limits.total_points
        self._cost: dict[int, int] = {}  # id -> values, for containers and arrays
        self._keep: list[Any] = []  # keeps every costed object alive, so its id is not reused
        self._referenced: set[int] = set()  # containers pushed again from the memo
        self._depth: dict[int, int] = {}  # id -> nesting depth, for containers

    # -- budgets ------------------------------------------------------------------------------
    def charge(self, mem: int = 0, values: int = 0) -> None:
        self.mem += mem
        self.values += values
        if self.mem > self.mem_limit:
            raise DataError(f"{str(self._path)!r}: unpickling it would build more than {self.mem_limit:,} bytes: "
                            f"refused (raise it with {env_name('decoded_bytes')})")
        if self.values > self.values_limit:
            if self._values_by_file:
                raise DataError(f"{str(self._path)!r}: with every shared reference counted, its objects hold more "
                                f"values than the file has bytes ({self.values_limit:,}): objects shared between keys, "
                                "which a reader copies once per key, refused")
            raise DataError(f"{str(self._path)!r}: its objects hold more than {self.values_limit:,} values "
                            f"(3 x SKETCHBENCH_MAX_TOTAL_POINTS): refused")

    def cost(self, obj: Any) -> int:
        c = self._cost.get(id(obj))
        if c is not None:
            return c
        return 0 if isinstance(obj, str | bytes | bytearray) else 1

    def _costed(self, obj: Any, values: int) -> Any:
        self._cost[id(obj)] = values
        self._keep.append(obj)
        return obj

    def _nest(self, obj: Any, items: list[Any]) -> None:
        """Record how deep ``obj`` nests now that ``items`` are in it; refused past :data:`MAX_DEPTH`
        (a reader that walks a 100 000-deep list recurses 100 000 times)."""
        depth = max(self._depth.get(id(obj), 1), 1 + max((self._depth.get(id(i), 0) for i in items), default=0))
        if depth > MAX_DEPTH:
            raise _Refused(f"its containers nest deeper than {MAX_DEPTH} levels")
        self._depth[id(obj)] = depth

    def _container(self, obj: Any, items: list[Any]) -> Any:
        """A container built from ``items`` (already charged when they were pushed)."""
        self.charge(mem=sys.getsizeof(type(obj)()) + _SLOT.get(type(obj), 8) * len(items))
        self._nest(obj, items)
        return self._costed(obj, 1 + sum(self.cost(i) for i in items))

    def _grow(self, target: Any, items: list[Any], per_item: int) -> None:
        """``items`` go into an existing container: it must not have been referenced before (a cycle)."""
        if id(target) in self._referenced:
            raise _Refused("a container is changed after it was referenced (a cycle, or a shared object rewritten)")
        if not isinstance(target, list | dict | set):
            raise _Refused(f"items are added to a {type(target).__name__}")
        self.charge(mem=per_item * len(items))
        self._nest(target, items)
        self._cost[id(target)] = self.cost(target) + sum(self.cost(i) for i in items)

    # -- globals ------------------------------------------------------------------------------
    def find_class(self, module: str, name: str) -> Any:
        if module in ("builtins", "__builtin__") and name in _SAFE_BUILTINS:
            return _Global(f"builtins.{name}", self._builtin(name))
        if (module, name) in _NUMPY_GLOBALS:
            checked = {"_reconstruct": self._reconstruct, "scalar": self._scalar, "_frombuffer": self._frombuffer,
                       "ndarray": self._ndarray, "dtype": self._dtype}[name]
            return _Global(f"{module}.{name}", checked)
        if (module, name) == _CODECS_ENCODE:
            return _Global("_codecs.encode", self._encode)
        raise DataError(
            f"{str(self._path)!r}: refused to load the pickle: it references {module}.{name}, which is not "
            "plain data or a NumPy array (a dataset pickle must not run code)"
        )

    def _builtin(self, name: str) -> Any:
        import builtins

        fn = getattr(builtins, name)

        def call(*args: Any) -> Any:
            if name == "bytes" and args and not isinstance(args[0], str | bytes):
                raise _Refused("bytes() is called with a size or an iterable: refused")
            size = sum(len(a) if isinstance(a, str | bytes) else self.cost(a) for a in args)
            self.charge(mem=64 * size, values=size)
            out = fn(*args)
            if not isinstance(out, list | tuple | dict | set | frozenset):
                return out
            self._depth[id(out)] = self._depth.get(id(args[0]), 1) if args else 1  # the items of its argument
            return self._costed(out, max(1, size))

        return call

    def _encode(self, text: Any, encoding: Any = "utf-8", errors: Any = "strict") -> bytes:
        if not isinstance(text, str) or str(encoding).lower() not in _LATIN1:
            raise _Refused(f"_codecs.encode is called with {type(text).__name__} and {encoding!r:.20}: only "
                           "text to latin-1 bytes is read")
        self.charge(mem=len(text) + 33)
        return text.encode("latin1", errors="strict")

    def _array_cost(self, shape: tuple[int, ...], dtype: Any) -> int:
        """Charge an array before it is allocated; its shape alone may claim any size."""
        n = math.prod(shape)
        if n > self.values_limit - self.values or n * dtype.itemsize > self.mem_limit - self.mem:
            raise _Refused(f"an array of shape {shape} {dtype} ({n * dtype.itemsize:,} bytes) is more than the "
                           f"file's {self.size:,} bytes could hold, or than what is left of the budgets")
        self.charge(mem=n * dtype.itemsize + 112, values=max(1, n))
        return n

    def _reconstruct(self, subtype: Any, shape: Any, dtype: Any) -> Any:
        import numpy as np

        if getattr(subtype, "name", "") not in ("numpy.ndarray",):
            raise _Refused(f"_reconstruct builds a {subtype!r:.40}, not a NumPy array")
        shape = _check_shape(shape)
        dt = np.dtype("b") if isinstance(dtype, bytes | str) and dtype in (b"b", "b") else _check_dtype(dtype)
        n = self._array_cost(shape, dt)
        return self._costed(np.ndarray(shape, dtype=dt), max(1, n))

    def _ndarray(self, shape: Any, dtype: Any = float, *rest: Any) -> Any:
        import numpy as np

        if rest:
            raise _Refused("numpy.ndarray is called with a buffer, offset or strides: refused")
        shape, dt = _check_shape(shape), _check_dtype(dtype)
        n = self._array_cost(shape, dt)
        return self._costed(np.zeros(shape, dtype=dt), max(1, n))

    def _dtype(self, obj: Any, align: Any = False, _copy: Any = True) -> Any:
        import numpy as np

        if not isinstance(obj, str | bytes) or len(obj) > 16:
            raise _Refused(f"numpy.dtype is called with {obj!r:.40}: only a type code is read")
        try:
            return np.dtype(obj.decode("latin1") if isinstance(obj, bytes) else obj, bool(align), True)  # never the shared one
        except (TypeError, ValueError):
            raise _Refused(f"an unreadable dtype {obj!r:.20}") from None

    def _scalar(self, dtype: Any, data: Any = None) -> Any:
        import numpy as np

        dt = _check_dtype(dtype)
        if not isinstance(data, bytes) or len(data) != dt.itemsize:
            raise _Refused(f"a NumPy scalar of {dt} is not {dt.itemsize} raw bytes")
        self.charge(mem=32, values=1)
        return np.frombuffer(data, dtype=dt)[0]

    def _frombuffer(self, buf: Any, dtype: Any, shape: Any, order: Any = "C") -> Any:
        import numpy as np

        dt, shape = _check_dtype(dtype), _check_shape(shape)
        if not isinstance(buf, bytes | bytearray) or len(buf) != math.prod(shape) * dt.itemsize:
            raise _Refused(f"an array of shape {shape} {dt} does not match its {type(buf).__name__} of raw bytes")
        n = self._array_cost(shape, dt)
        arr = np.frombuffer(buf, dtype=dt).reshape(shape, order="F" if order == "F" else "C")
        return self._costed(arr, max(1, n))

    # -- opcodes ------------------------------------------------------------------------------
    def load_build(self) -> None:
        import numpy as np

        state = self.stack.pop()
        inst = self.stack[-1]
        if isinstance(inst, np.ndarray):
            self._build_array(inst, state)
        elif isinstance(inst, np.dtype):
            if not (isinstance(state, tuple) and len(state) <= 9 and all(s is None for s in state[2:5])):
                raise _Refused("a dtype's state describes a structured or sub-array dtype: refused")
            inst.__setstate__(state)
        else:
            raise _Refused(f"the pickle sets the state of a {type(inst).__name__}")

    def _build_array(self, inst: Any, state: Any) -> None:
        if id(inst) in self._referenced:
            raise _Refused("an array is rebuilt after it was referenced")
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise _Refused("an array's state is not (version, shape, dtype, fortran, data)")
        shape, dtype, _fortran, raw = state[-4:]
        shape, dt = _check_shape(shape), _check_dtype(dtype)
        if not isinstance(raw, bytes | bytearray) or len(raw) != math.prod(shape) * dt.itemsize:
            raise _Refused(f"an array of shape {shape} {dt} does not match its raw bytes")
        n = self._array_cost(shape, dt)
        inst.__setstate__(state)
        self._costed(inst, max(1, n))

    def load_frame(self) -> None:
        (n,) = struct.unpack("<Q", self.read(8))
        if n > self._file.left:
            raise EOFError
        self._unframer.load_frame(n)

    def load_bytearray8(self) -> None:
        (n,) = struct.unpack("<Q", self.read(8))
        data = self.read(n)  # never more than the file holds
        if len(data) != n:
            raise EOFError
        self.charge(mem=2 * n + 114)
        self.append(bytearray(data))

    def refuse_buffers(self) -> None:
        raise _Refused("the pickle refers to out-of-band buffers")

    def _reference(self) -> None:
        """After a memo get or DUP: the object on top is used once more; count it again."""
        obj = self.stack[-1]
        if isinstance(obj, list | dict | set) or hasattr(obj, "__array_interface__"):
            self._referenced.add(id(obj))
        self.charge(mem=8, values=self.cost(obj))

    def persistent_load(self, pid: Any) -> Any:
        raise DataError(f"{str(self._path)!r}: refused to load the pickle: it uses persistent ids")


def _in_turn(first: Any, second: Any) -> Any:
    """One opcode handler that runs ``first`` then ``second``: a charge after the stock load (what
    it pushed is measured) or before it (a check that refuses before anything is allocated)."""
    def op(self: _BudgetedUnpickler) -> None:
        first(self)
        second(self)

    return op


def _scalar_pushed(self: _BudgetedUnpickler) -> None:
    obj = self.stack[-1]
    self.charge(mem=sys.getsizeof(obj), values=0 if isinstance(obj, str | bytes) else 1)


def _container_pushed(self: _BudgetedUnpickler) -> None:
    obj = self.stack[-1]
    self._container(obj, list(obj.values()) + list(obj) if isinstance(obj, dict) else list(obj))


def _grown(per_item: int, marked: bool, pairs: bool = False) -> Any:
    def op(self: _BudgetedUnpickler) -> None:
        stack = self.stack
        if marked:  # the items lie above the last mark, the container just below it
            items = stack
            target = self.metastack[-1][-1] if self.metastack and self.metastack[-1] else None
        else:
            items, target = stack[-(2 if pairs else 1):], stack[-(3 if pairs else 2)]
        if target is None:
            raise _Refused("items are added to nothing")
        self._grow(target, items, per_item)

    return op


def _slot_charge(self: _BudgetedUnpickler) -> None:
    self.charge(mem=64)


def _wire(names: str, wrap: Any) -> None:
    """Wrap the standard unpickler's handler of each opcode in ``names``."""
    for name in names.split():
        code = getattr(pickle, name)[0]
        _BudgetedUnpickler.dispatch[code] = wrap(pickle._Unpickler.dispatch[code])


# every opcode that creates or references an object is counted; the others cannot allocate
_wire("BININT BININT1 BININT2 INT LONG LONG1 LONG4 BINFLOAT FLOAT NONE NEWTRUE NEWFALSE BINUNICODE BINUNICODE8 "
      "SHORT_BINUNICODE UNICODE BINSTRING SHORT_BINSTRING STRING BINBYTES BINBYTES8 SHORT_BINBYTES",
      lambda load: _in_turn(load, _scalar_pushed))
_wire("EMPTY_LIST EMPTY_DICT EMPTY_SET EMPTY_TUPLE LIST TUPLE TUPLE1 TUPLE2 TUPLE3 DICT FROZENSET",
      lambda load: _in_turn(load, _container_pushed))
_wire("GET BINGET LONG_BINGET DUP", lambda load: _in_turn(load, _BudgetedUnpickler._reference))
_wire("MARK PUT BINPUT LONG_BINPUT MEMOIZE", lambda load: _in_turn(_slot_charge, load))
for _name, _check in [("APPEND", _grown(8, marked=False)), ("SETITEM", _grown(48, marked=False, pairs=True)),
                      ("APPENDS", _grown(8, marked=True)), ("SETITEMS", _grown(24, marked=True)),
                      ("ADDITEMS", _grown(32, marked=True))]:
    _wire(_name, lambda load, check=_check: _in_turn(check, load))
for _name, _load in [("BUILD", _BudgetedUnpickler.load_build), ("BYTEARRAY8", _BudgetedUnpickler.load_bytearray8),
                     ("FRAME", _BudgetedUnpickler.load_frame), ("NEXT_BUFFER", _BudgetedUnpickler.refuse_buffers),
                     ("READONLY_BUFFER", _BudgetedUnpickler.refuse_buffers)]:
    _wire(_name, lambda _, load=_load: load)


def load_pickle(path: str | Path, limits: DataLimits | None = None) -> object:
    """Load a dataset pickle that may hold only dicts/lists/tuples/str/numbers and NumPy arrays,
    within ``limits`` (default :func:`~sketchbench.data.limits.data_limits`; see the module docstring).

    Raises :class:`DataError` (one line) when the file is missing, not a regular file, over its
    byte limit, truncated, malformed, over a budget, or references anything else.
    """
    p = Path(path)
    limits = limits or data_limits()
    size = limits.check_file(p)
    fh, _ = open_regular(p, repr(str(p)))
    with fh:
        try:
            return _BudgetedUnpickler(_Reader(fh, size), p, limits, size).load()
        except DataError:
            raise
        except _Refused as exc:
            raise DataError(f"{str(p)!r}: refused to load the pickle: {exc}") from None
        except EOFError:
            raise DataError(f"{str(p)!r}: the pickle is truncated (ended early)") from None
        except RecursionError:
            raise DataError(f"{str(p)!r}: refused to load the pickle: it nests too deeply") from None
        except Exception as exc:  # UnpicklingError, ValueError, TypeError, ... from a malformed stream
            msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise DataError(f"{str(p)!r}: not a readable pickle ({type(exc).__name__}: {msg})") from None
