"""DDL the way Aurora DSQL requires it, for engines on the DSQL profile only.

DSQL builds every index asynchronously and insists on the ``ASYNC`` keyword
(``CREATE INDEX ASYNC``), and it requires an explicit sequence ``CACHE`` of 1 or at least 65536 on
identity columns. Plain PostgreSQL keeps its usual DDL: a 65536 cache there would leave large id
gaps after every reconnect.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, Identity
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.schema import CreateIndex

IDENTITY_CACHE = 65536  # DSQL accepts CACHE 1 or >= 65536; the large cache scales with writers
_FLAG = "kmidi_dsql_ddl"


def enable(engine: Engine) -> None:
    """Make DDL compiled for ``engine`` follow DSQL's rules (its dialect is its own instance)."""
    setattr(engine.dialect, _FLAG, True)


def _on_dsql(compiler: Any) -> bool:
    return bool(getattr(compiler.dialect, _FLAG, False))


@compiles(CreateIndex, "postgresql")
def _create_index(element: CreateIndex, compiler: Any, **kw: Any) -> str:
    text: str = compiler.visit_create_index(element, **kw)
    if _on_dsql(compiler):
        for prefix in ("CREATE UNIQUE INDEX ", "CREATE INDEX "):
            if text.startswith(prefix):
                return prefix + "ASYNC " + text[len(prefix) :]
    return text


@compiles(Identity, "postgresql")
def _identity(element: Identity, compiler: Any, **kw: Any) -> str:
    text: str = compiler.visit_identity_column(element, **kw)
    if not _on_dsql(compiler) or element.cache is not None:
        return text
    if text.endswith(")"):
        return f"{text[:-1]} CACHE {IDENTITY_CACHE})"
    return f"{text} (CACHE {IDENTITY_CACHE})"
