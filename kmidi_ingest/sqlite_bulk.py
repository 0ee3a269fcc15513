"""Bulk inserts of numeric columns into a SQLite file, bound in compiled code.

``sqlite3``'s ``executemany`` needs a Python tuple per row and binds each value from a Python
object: about 2–3 µs a row for the 13 columns of a note, with the ``tolist`` and ``zip`` that
build the tuples. Here a numba loop calls SQLite's C API (``sqlite3_bind_int64``,
``sqlite3_bind_double``, ``sqlite3_step``, ``sqlite3_reset``) straight from int64 and float64
column arrays, about 0.8 µs a row, so no Python object is made per row.

The SQLite library is the one the ``sqlite3`` module itself loaded (read from the process's
memory map), else the system's ``libsqlite3``; it opens a connection of its own to a file
that no other connection writes at the time (a worker's staging file). SQLite stores a bound
NaN as NULL, as ``sqlite3`` does for a Python ``nan``. Where no such library can be loaded
(a Python with SQLite linked in statically), :func:`load` returns ``None`` and callers keep
``executemany``.

The compiled loop calls the C functions through addresses it is given (:func:`_c_call`), not
through ctypes objects, so numba can cache it on disk like the MIDI scan.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import sqlite3
from collections.abc import Sequence
from typing import Any

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

SQLITE_OK = 0
SQLITE_DONE = 101
_OPEN_READWRITE = 0x02

_P = ctypes.c_void_p


def _c_call(last: str) -> Any:
    """An intrinsic calling ``int f(void *stmt[, int index, <last> value])`` at the address it
    is given (``last``: ``""`` for no index and value, ``"int64"`` or ``"double"``); a numba
    cached function may call it, as it holds no ctypes object."""
    pointer = ir.IntType(8).as_pointer()
    value = {"int64": (ir.IntType(64), types.int64), "double": (ir.DoubleType(), types.float64)}
    arg_types = [pointer] + ([ir.IntType(32), value[last][0]] if last else [])
    fnty = ir.FunctionType(ir.IntType(32), arg_types)

    def codegen(context, builder, signature, args):  # pragma: no cover - compiled
        address, handle, *index_value = args
        call_args = [builder.inttoptr(handle, pointer)]
        if last:
            call_args += [builder.trunc(index_value[0], ir.IntType(32)), index_value[1]]
        return builder.call(builder.inttoptr(address, fnty.as_pointer()), call_args)

    if not last:

        def typing_stmt(typingctx, fn, stmt):  # pragma: no cover - compiled
            return types.int32(types.int64, types.int64), codegen

        return intrinsic(typing_stmt)

    def typing_bind(typingctx, fn, stmt, index, v):  # pragma: no cover - compiled
        return types.int32(types.int64, types.int64, types.int64, value[last][1]), codegen

    return intrinsic(typing_bind)


_call_p = _c_call("")  # step, reset
_call_pii = _c_call("int64")  # bind_int64
_call_pid = _c_call("double")  # bind_double


@njit(cache=True, nogil=True)
def _insert_rows(api, stmt, ints, floats):  # pragma: no cover - compiled
    """Step ``stmt`` once per row: parameters 1..k the row's ``ints[:, row]``, then its
    ``floats[:, row]``. ``api`` holds the addresses of bind_int64, bind_double, step and reset.
    Returns ``(SQLite result code, row)``: ``(0, n)`` when every row went in."""
    n_int = ints.shape[0]
    n_float = floats.shape[0]
    n = ints.shape[1] if n_int else floats.shape[1]
    for row in range(n):
        for k in range(n_int):
            rc = _call_pii(api[0], stmt, k + 1, ints[k, row])
            if rc != SQLITE_OK:
                return rc, row
        for k in range(n_float):
            rc = _call_pid(api[1], stmt, n_int + k + 1, floats[k, row])
            if rc != SQLITE_OK:
                return rc, row
        rc = _call_p(api[2], stmt)
        if rc != SQLITE_DONE:
            _call_p(api[3], stmt)
            return rc, row
        rc = _call_p(api[3], stmt)
        if rc != SQLITE_OK:
            return rc, row
    return SQLITE_OK, n


def _library_path() -> str | None:
    """The file of the SQLite library this process's ``sqlite3`` module runs on, if it is a
    shared library of its own."""
    import _sqlite3  # noqa: F401  # make sure it is loaded before the map is read

    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as f:
            for line in f:
                path = line.rstrip("\n").split(maxsplit=5)[-1]
                if "/libsqlite3" in path and ".so" in path:
                    return path
    except OSError:
        pass
    return ctypes.util.find_library("sqlite3")


class BulkError(sqlite3.DatabaseError):
    """A bulk insert or statement SQLite refused; the message is SQLite's own."""


class Library:
    """The SQLite C library loaded with ctypes: its functions typed, and ``api`` the addresses
    of the four the compiled loop calls."""

    def __init__(self, lib: ctypes.CDLL) -> None:
        self.lib = lib
        sig = {
            "sqlite3_open_v2": (
                ctypes.c_int,
                [ctypes.c_char_p, ctypes.POINTER(_P), ctypes.c_int, _P],
            ),
            "sqlite3_close_v2": (ctypes.c_int, [_P]),
            "sqlite3_exec": (ctypes.c_int, [_P, ctypes.c_char_p, _P, _P, _P]),
            "sqlite3_prepare_v2": (
                ctypes.c_int,
                [_P, ctypes.c_char_p, ctypes.c_int, ctypes.POINTER(_P), _P],
            ),
            "sqlite3_finalize": (ctypes.c_int, [_P]),
            "sqlite3_errmsg": (ctypes.c_char_p, [_P]),
            "sqlite3_errstr": (ctypes.c_char_p, [ctypes.c_int]),
        }
        for name, (restype, argtypes) in sig.items():
            fn = getattr(lib, name)
            fn.restype, fn.argtypes = restype, argtypes
        self.api = np.array(
            [
                ctypes.cast(getattr(lib, name), _P).value
                for name in (
                    "sqlite3_bind_int64",
                    "sqlite3_bind_double",
                    "sqlite3_step",
                    "sqlite3_reset",
                )
            ],
            dtype=np.int64,
        )


@functools.cache
def load() -> Library | None:
    """The SQLite C library, or ``None`` where it cannot be loaded as a shared library."""
    path = _library_path()
    if path is None:
        return None
    try:
        return Library(ctypes.CDLL(path))
    except (OSError, AttributeError):
        return None


class BulkFile:
    """A connection of its own to the SQLite file ``path`` (which must exist), for
    :meth:`insert`; use it as a context manager, or :meth:`close` it."""

    def __init__(self, library: Library, path: str) -> None:
        self._lib = library.lib
        self._api = library.api
        self._db = _P()
        rc = self._lib.sqlite3_open_v2(path.encode(), ctypes.byref(self._db), _OPEN_READWRITE, None)
        if rc != SQLITE_OK:
            message = self._message(rc)
            self._lib.sqlite3_close_v2(self._db)
            raise BulkError(f"{path}: {message}")
        self._path = path

    def _message(self, rc: int) -> str:
        if self._db.value:
            return (self._lib.sqlite3_errmsg(self._db) or b"").decode(errors="replace")
        return (self._lib.sqlite3_errstr(rc) or b"").decode(errors="replace")

    def execute(self, sql: str) -> None:
        """Run ``sql`` (one or more statements without parameters)."""
        rc = self._lib.sqlite3_exec(self._db, sql.encode(), None, None, None)
        if rc != SQLITE_OK:
            raise BulkError(f"{self._path}: {self._message(rc)} ({sql[:60]})")

    def insert(self, sql: str, ints: Sequence[np.ndarray], floats: Sequence[np.ndarray]) -> None:
        """Run ``sql``, with its ``?`` parameters the ``ints`` columns then the ``floats``
        columns, once per row (every column of one length)."""
        n = len(ints[0]) if ints else len(floats[0]) if floats else 0
        if not n:
            return
        int_block = np.empty((len(ints), n), dtype=np.int64)
        for k, column in enumerate(ints):
            int_block[k] = column
        float_block = np.empty((len(floats), n), dtype=np.float64)
        for k, column in enumerate(floats):
            float_block[k] = column
        stmt = _P()
        rc = self._lib.sqlite3_prepare_v2(self._db, sql.encode(), -1, ctypes.byref(stmt), None)
        if rc != SQLITE_OK:
            raise BulkError(f"{self._path}: {self._message(rc)} ({sql[:60]})")
        try:
            rc, row = _insert_rows(self._api, stmt.value, int_block, float_block)
            if rc != SQLITE_OK:
                raise BulkError(f"{self._path}: {self._message(rc)} (row {row} of {sql[:60]})")
        finally:
            self._lib.sqlite3_finalize(stmt)

    def close(self) -> None:
        if self._db.value:
            self._lib.sqlite3_close_v2(self._db)
            self._db = _P()

    def __enter__(self) -> BulkFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
