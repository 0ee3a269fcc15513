"""Planning: which cues a run computes and which it skips, and the dry run (:func:`plan`)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, TypeAlias

from sqlalchemy.engine import URL

from .. import discover, store
from ..db import mask_url
from ..discover import CueSource
from ..options import DEFAULT_DATABASE_URL, check_sample_rate
from ..results import CueResult
from .compute import CueOptions
from .reports import (
    DryRunReport,
    Elsewhere,
    PlannedCue,
    PlannedGroup,
    Unchanged,
    in_cue,
)

Job = tuple[CueSource, str, "store.StoredCue | None"]


Computed: TypeAlias = "CueResult | Unchanged | Elsewhere | BaseException"


def up_to_date(
    known: store.StoredCue | None, stat_fp: str, sample_rate_hz: int, force: bool
) -> bool:
    """Whether the stored cue is complete, from the same files, at the same sample rate."""
    return (
        not force
        and known is not None
        and known.status == "complete"
        and known.stat_fingerprint == stat_fp
        and known.sample_rate_hz == sample_rate_hz
    )


def reusable_fingerprint(
    known: store.StoredCue | None, sample_rate_hz: int, force: bool
) -> str | None:
    if force or known is None or known.status != "complete":
        return None
    if known.sample_rate_hz != sample_rate_hz:
        return None
    return known.content_fingerprint


def plan(
    root: str | Path,
    sample_rate: int,
    *,
    database_url: str = DEFAULT_DATABASE_URL,
    force: bool = False,
    options: CueOptions | None = None,
) -> DryRunReport:
    """Say what :func:`ingest` would do, without writing anything (not even the schema).

    Cues, their MIDI files, stem groups and final mixes come from the tree; whether a cue would
    be skipped comes from the stored stat fingerprints, read only if the database already
    exists and holds the schema. Nothing is read from the environment.

    Parameters
    ----------
    root, sample_rate, database_url, force, options
        As for :func:`~kmidi_ingest.batch.ingest`.

    Raises
    ------
    ConfigError
        For a sample rate outside 8000–384000 Hz or an unsupported database URL.
    DiscoverError
        When ``root`` is not a readable folder.
    """
    from ..db import normalize_url

    check_sample_rate(sample_rate)
    url = database_url
    options = options or CueOptions()
    tree = discover.scan(root, options.rules)
    stored = {} if force else _peek_stored(normalize_url(url))
    cues: list[PlannedCue] = []
    problems = [in_cue(p, None) for p in tree.problems]
    for cue in tree.cues:
        known = stored.get(discover.safe_text(cue.rel_path))
        action: Literal["ingest", "update", "skip"]
        if known is None or known.sample_rate_hz != sample_rate:
            action = "ingest"
        elif known.status == "complete" and known.stat_fingerprint == discover.stat_fingerprint(
            cue
        ):
            action = "skip"
        else:
            action = "update"
        groups = cue.groups
        planned = [
            PlannedGroup(
                name=discover.safe_text(g.name),
                layout=",".join(f.label or "mono" for f in g.files),
                files=tuple(discover.safe_text(f.rel_path) for f in g.files),
            )
            for g in groups
        ]
        cues.append(
            PlannedCue(
                rel_path=discover.safe_text(cue.rel_path),
                action=action,
                kind=cue.kind,
                midi_files=tuple(
                    discover.safe_text(p.relative_to(cue.path).as_posix()) for p in cue.midi_files
                ),
                stems=tuple(p for p, g in zip(planned, groups, strict=True) if not g.is_final_mix),
                final_mixes=tuple(
                    p for p, g in zip(planned, groups, strict=True) if g.is_final_mix
                ),
            )
        )
        problems.extend(in_cue(p, cue.rel_path) for p in cue.problems)
    return DryRunReport(
        root=discover.safe_text(str(root)),
        database=mask_url(url),
        sample_rate_hz=sample_rate,
        cues=tuple(cues),
        problems=tuple(problems),
    )


def _peek_stored(url: URL) -> dict[str, store.StoredCue]:
    from ..db import make_engine

    if url.get_backend_name() == "sqlite":
        database = url.database
        if not database or database == ":memory:" or not Path(database).is_file():
            return {}  # never create the file
    engine = make_engine(url)
    try:
        return store.stored_cues_if_any(engine)
    finally:
        engine.dispose()
