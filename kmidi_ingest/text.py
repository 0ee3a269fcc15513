"""Text from file names made safe for databases, terminals and JSON.

File names on POSIX are bytes; Python decodes the non-UTF-8 ones to lone surrogates
(``surrogateescape``), which no database driver, terminal or JSON reader accepts. The stages keep
such names as they are (so the files can still be opened); the database edge
(:func:`safe_parameters`, on every engine :func:`kmidi_ingest.db.make_engine` makes) and the
reports write them with ``\\xNN`` escapes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import chain
from typing import Any


def safe_text(text: str) -> str:
    """``text`` as valid Unicode: undecodable file-name bytes become ``\\xNN`` escapes."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return text


def _unsafe(value: Any) -> bool:
    return type(value) is str and not value.isascii() and safe_text(value) is not value


def _safe_row(row: Any) -> Any:
    if isinstance(row, Mapping):
        if any(_unsafe(v) for v in row.values()):
            return {k: safe_text(v) if _unsafe(v) else v for k, v in row.items()}
        return row
    if isinstance(row, Sequence) and not isinstance(row, str):
        if any(_unsafe(v) for v in row):
            return type(row)(safe_text(v) if _unsafe(v) else v for v in row)  # type: ignore[call-arg]
        return row
    return row


_PLAIN = frozenset({int, float, bool, bytes, type(None)})


def _only_plain_values(parameters: Any) -> bool:
    """Whether every row of an ``executemany`` is a tuple or list holding no text at all (the
    bulk MIDI event rows): checked with ``map``/``set`` at C speed, not a Python call per value.
    """
    if not isinstance(parameters, list | tuple) or not all(
        type(row) in (tuple, list) for row in parameters
    ):
        return False
    return set(map(type, chain.from_iterable(parameters))) <= _PLAIN


def safe_parameters(
    _conn: Any,
    _cursor: Any,
    statement: str,
    parameters: Any,
    _context: Any,
    executemany: bool,
) -> tuple[str, Any]:
    """SQLAlchemy ``before_cursor_execute`` hook: every bound text made valid Unicode."""
    if not executemany:
        return statement, _safe_row(parameters)
    if _only_plain_values(parameters):
        return statement, parameters
    rows = [_safe_row(row) for row in parameters]
    if all(new is old for new, old in zip(rows, parameters, strict=True)):
        return statement, parameters  # as given: the drivers expect their own container types
    return statement, type(parameters)(rows)
