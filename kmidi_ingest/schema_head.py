"""Whether a database is at the newest schema, told without loading Alembic.

Loading Alembic and its migration environment costs about half a second of CPU; a run on a
database already at the head only needs one plain query. Anything this cannot tell for sure
(scripts that do not form one linear chain, a database without the version table) answers
"not at head", and :func:`kmidi_ingest.migrate.upgrade` decides as before.
"""

from __future__ import annotations

import re
from pathlib import Path

from sqlalchemy import Engine, text

VERSIONS = Path(__file__).parent / "migrations" / "versions"
_REVISION = re.compile(r"^revision\b[^=\n]*=\s*[\"']([^\"']+)[\"']\s*$", re.M)
_DOWN = re.compile(r"^down_revision\b[^=\n]*=\s*(?:None|[\"']([^\"']+)[\"'])\s*$", re.M)


def shipped_head(versions: Path = VERSIONS) -> str | None:
    """The head revision of the migration scripts in ``versions``, read from their
    ``revision = "…"`` and ``down_revision = "…"`` lines; ``None`` when the scripts are not one
    linear chain with one head (a merge, a branch, a line this does not parse)."""
    revisions: dict[str, str | None] = {}
    for script in sorted(versions.glob("*.py")):
        if script.name == "__init__.py":
            continue
        source = script.read_text(encoding="utf-8")
        revision, down = _REVISION.findall(source), _DOWN.findall(source)
        if len(revision) != 1 or len(down) != 1 or revision[0] in revisions:
            return None
        revisions[revision[0]] = down[0] or None
    parents = [d for d in revisions.values() if d is not None]
    if len(set(parents)) != len(parents) or not set(parents) <= set(revisions):
        return None
    heads = set(revisions) - set(parents)
    return heads.pop() if len(heads) == 1 else None


def at_head(engine: Engine, versions: Path = VERSIONS) -> bool:
    """Whether the database of ``engine`` records exactly the head revision of ``versions``
    (one ``SELECT`` of ``alembic_version``; False when the table is missing or unreadable)."""
    head = shipped_head(versions)
    if head is None:
        return False
    try:
        with engine.connect() as connection:
            rows = connection.execute(text("SELECT version_num FROM alembic_version")).all()
    except Exception:  # no table yet (a new database), or no access: the full upgrade decides
        return False
    return [tuple(r) for r in rows] == [(head,)]
