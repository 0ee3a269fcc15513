"""Training export: one record per cue (or per matched part and stem) as JSON Lines or Parquet.

The export is streamed: cues are visited one at a time (one batch of queries each) and their
records written before the next cue is read, so memory depends on the largest cue, not on the
database. A manifest beside the output records the counts, the parameters, the export's schema
version (the Alembic revision this code reads) and the source database's revision.

Record layout (the same fields in both formats; Parquet stores the log-mel as float32, which holds
every float16 value exactly)::

    cue record    cue_id, cue_name, cue_path, sample_rate_hz, midi_offset_s,
                  midi_files[], tracks[], stems[], final_mixes[]
    track record  cue_id, cue_name, cue_path, sample_rate_hz, midi_offset_s,
                  midi_file, track, stem (one per pair of a part and a stem: ``track.match`` is
                  this record's pair, ``track.other_matches`` the part's other pairs)
    midi_file     midi_file_id, file_name, rel_path, midi_format, timing, ticks_per_beat, length_s,
                  tempo_map[{tick, time_s, tempo_us, bpm}],
                  time_signatures[{tick, time_s, bar, numerator, denominator}]
    track         track_id, midi_file_id, track_index, part_index, name, part_name, category,
                  program, channel, is_drum,
                  note_count, notes{pitch[], velocity[], channel[], start_tick[], end_tick[],
                  start_s[], end_s[], end_sustain_s[], start_bar[], start_beat[]},
                  match{stem_id, method, score, verified, stem_rank} (null when unmatched),
                  other_matches[match] (the part's further stems: desk stems violin1 … 4)
    stem          stem_id, name, category, channel_layout, duration_s,
                  feature{feature_id, kind, sample_rate_hz, n_fft, hop_length, n_mels, fmin_hz,
                  fmax_hz, db_ref, centered, n_frames, values[n_mels][n_frames] | null,
                  path | null}

With ``features="files"`` each log-mel is written bit-exact (float16 ``.npy``) into a folder
``<OUT name>.features/`` beside the output, and ``feature.path`` is relative to the output's folder.
"""

from __future__ import annotations

import json
import os
import re
import secrets
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import Connection, Engine, String, literal, select

from . import models as m
from .errors import KmidiError
from .store import read_feature
from .urls import mask_url
from .version import __version__

FORMATS = ("jsonl", "parquet", "multitrack")  # multitrack: a folder (kmidi_ingest.multitrack)
PER = ("cue", "track")
FEATURES = ("arrays", "files")
EXPORT_FORMAT_VERSION = 3  # 2: a track is an instrument part; 3: a part may own several stems
MATCH_FIELDS = ("stem_id", "method", "score", "verified", "stem_rank")
NOTE_FIELDS = (
    "pitch",
    "velocity",
    "channel",
    "start_tick",
    "end_tick",
    "start_s",
    "end_s",
    "end_sustain_s",
    "start_bar",
    "start_beat",
)


class ExportError(KmidiError):
    """The export cannot be written (bad option, missing extra, unreadable database, ...)."""

    stage = "export"


@dataclass(frozen=True, kw_only=True)
class ExportOptions:
    """What to export and how.

    ``categories``, ``min_notes`` and ``verified_only`` filter tracks; with any of them set, a cue
    record holds only the tracks that pass and the stems they are matched to, and a cue without
    such a track is left out. ``cues`` selects cues by name or relative path. Both ignore case.
    """

    format: str = "jsonl"
    per: str = "cue"
    features: str = "arrays"
    categories: tuple[str, ...] = ()
    cues: tuple[str, ...] = ()
    min_notes: int = 0
    verified_only: bool = False
    overwrite: bool = False

    def validate(self) -> None:
        for name, value, allowed in (
            ("format", self.format, FORMATS),
            ("per", self.per, PER),
            ("features", self.features, FEATURES),
        ):
            if value not in allowed:
                raise ExportError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
        if self.min_notes < 0:
            raise ExportError(f"min_notes must be 0 or more, got {self.min_notes}")

    @property
    def filters_tracks(self) -> bool:
        return bool(self.categories) or self.min_notes > 0 or self.verified_only


@dataclass(frozen=True, kw_only=True)
class ExportSummary:
    out: Path
    manifest: Path
    feature_dir: Path | None
    records: int
    cues: int
    tracks: int
    notes: int
    stems: int
    final_mixes: int
    feature_files: int
    counts: dict[str, int] = field(default_factory=dict)


def export(engine: Engine, out: str | Path, options: ExportOptions | None = None) -> ExportSummary:
    """Write the export of the database at ``engine`` to ``out`` and its manifest beside it.

    The output is written under a temporary name and renamed when complete, so a reader never
    sees half an export.

    Raises
    ------
    ExportError
        On an invalid option, an existing output (unless ``overwrite``), a database without the
        kmidi schema, or ``format="parquet"`` without pyarrow installed.
    """
    from .migrate import current_revision, head_revision

    options = options or ExportOptions()
    options.validate()
    if options.format == "multitrack":
        return _multitrack(engine, out, options)
    out = Path(out)
    manifest_path = out.with_name(out.name + ".manifest.json")
    feature_dir = out.with_name(out.name + ".features") if options.features == "files" else None
    if not options.overwrite:
        for path in (out, manifest_path, feature_dir):
            if path is not None and path.exists():
                raise ExportError("already exists; choose another name or overwrite", path=path)
    writer_cls = _ParquetWriter if options.format == "parquet" else _JsonlWriter
    if options.format == "parquet":
        _require_pyarrow()
    db_revision = current_revision(engine)
    if db_revision is None:
        raise ExportError(
            f"{mask_url(str(engine.url))} holds no kmidi schema; ingest a tree into it first"
        )
    if not out.parent.is_dir():
        raise ExportError("output folder does not exist", path=out.parent)
    if feature_dir is not None:
        feature_dir.mkdir(exist_ok=True)
        for stale in (*feature_dir.glob("stem-*.npy"), *feature_dir.glob("mix-*.npy")):
            stale.unlink()  # files of the export being overwritten

    counts = dict.fromkeys(
        ("records", "cues", "tracks", "notes", "stems", "final_mixes", "feature_files"), 0
    )
    partial = out.with_name(f".{out.name}.partial")
    writer = writer_cls(partial, options)
    try:
        with engine.connect() as conn:
            for cue_id in _cue_ids(conn, options):
                cue = _read_cue(conn, cue_id, options, out.parent, feature_dir, counts)
                if cue is None:
                    continue
                records = list(_records(cue, options))
                writer.write(records)
                counts["records"] += len(records)
                counts["cues"] += 1
        writer.close()
        os.replace(partial, out)
    except BaseException:
        writer.abort()
        partial.unlink(missing_ok=True)
        raise

    manifest = {
        "export_format_version": EXPORT_FORMAT_VERSION,
        "schema_version": head_revision(),
        "source_database_revision": db_revision,
        "source_database": mask_url(str(engine.url)),
        "kmidi_ingest_version": __version__,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "output": out.name,
        "feature_dir": None if feature_dir is None else feature_dir.name,
        "parameters": {
            "format": options.format,
            "per": options.per,
            "features": options.features,
            "category": list(options.categories),
            "cue": list(options.cues),
            "min_notes": options.min_notes,
            "verified_only": options.verified_only,
        },
        "counts": counts,
    }
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return ExportSummary(
        out=out,
        manifest=manifest_path,
        feature_dir=feature_dir,
        records=counts["records"],
        cues=counts["cues"],
        tracks=counts["tracks"],
        notes=counts["notes"],
        stems=counts["stems"],
        final_mixes=counts["final_mixes"],
        feature_files=counts["feature_files"],
        counts=counts,
    )


def _multitrack(engine: Engine, out: str | Path, options: ExportOptions) -> ExportSummary:
    from .multitrack import MultitrackError, export_multitrack

    try:
        written = export_multitrack(
            engine,
            out,
            categories=options.categories,
            cues=options.cues,
            min_notes=options.min_notes,
            verified_only=options.verified_only,
            overwrite=options.overwrite,
        )
    except MultitrackError as exc:
        raise ExportError(exc.reason, path=exc.path) from None
    counts = {
        "records": written.cues,
        "cues": written.cues,
        "tracks": written.parts,
        "notes": written.notes,
        "stems": written.stems,
        "final_mixes": written.final_mixes,
        "feature_files": 0,
    }
    return ExportSummary(
        out=written.out,
        manifest=written.manifest,
        feature_dir=None,
        counts=counts,
        **counts,
    )


def _require_pyarrow() -> None:
    try:
        import pyarrow  # noqa: F401
        import pyarrow.parquet  # noqa: F401
    except ImportError as exc:
        raise ExportError(
            "Parquet export needs pyarrow: pip install 'kmidi-ingest[parquet]' "
            "(or export --format jsonl)"
        ) from exc


def _cue_ids(conn: Connection, options: ExportOptions) -> list[int]:
    query = select(m.Cue.id, m.Cue.name, m.Cue.rel_path).where(m.Cue.status == "complete")
    rows = conn.execute(query.order_by(m.Cue.rel_path)).all()
    if not options.cues:
        return [row.id for row in rows]
    # Matched in Python: SQLite's lower() folds ASCII only.
    wanted = {c.casefold() for c in options.cues}
    return [row.id for row in rows if {row.name.casefold(), row.rel_path.casefold()} & wanted]


def unmatched_selectors(engine: Engine, options: ExportOptions) -> dict[str, list[str]]:
    """The ``cues`` and ``categories`` of ``options`` that select nothing in the database.

    Cues match a complete cue's name or relative path, categories a track's or a stem's
    category, both ignoring case (as :func:`export` does).

    Returns
    -------
    dict
        ``{"cues": [...], "categories": [...]}``, each in the order given; empty lists when
        every selector matches.
    """
    with engine.connect() as conn:
        cues = conn.execute(
            select(m.Cue.name, m.Cue.rel_path).where(m.Cue.status == "complete")
        ).all()
        names = {text.casefold() for row in cues for text in row}
        categories = {
            (c or "").casefold()
            for model in (m.MidiTrack, m.AudioFile)
            for c in conn.execute(select(model.category).distinct()).scalars()
        }
    return {
        "cues": [c for c in options.cues if c.casefold() not in names],
        "categories": [c for c in options.categories if c.casefold() not in categories],
    }


def _rows(conn: Connection, query: Any) -> list[dict[str, Any]]:
    return [dict(row._mapping) for row in conn.execute(query)]


def _read_cue(
    conn: Connection,
    cue_id: int,
    options: ExportOptions,
    out_dir: Path,
    feature_dir: Path | None,
    counts: dict[str, int],
) -> dict[str, Any] | None:
    """Everything exported of one cue (after the track filters), or ``None`` to leave it out."""
    cue = conn.execute(
        select(
            m.Cue.id.label("cue_id"),
            m.Cue.name.label("cue_name"),
            m.Cue.rel_path.label("cue_path"),
            m.Cue.sample_rate_hz,
            m.Cue.midi_offset_s,
        ).where(m.Cue.id == cue_id)
    ).one()
    files = _rows(
        conn,
        select(
            m.MidiFile.id.label("midi_file_id"),
            m.MidiFile.file_name,
            m.MidiFile.rel_path,
            m.MidiFile.midi_format,
            m.MidiFile.timing,
            m.MidiFile.ticks_per_beat,
            m.MidiFile.length_s,
        )
        .where(m.MidiFile.cue_id == cue_id)
        .order_by(m.MidiFile.rel_path),
    )
    file_ids = [f["midi_file_id"] for f in files]
    tempos = _rows(
        conn,
        select(
            m.TempoChange.midi_file_id,
            m.TempoChange.tick,
            m.TempoChange.time_s,
            m.TempoChange.tempo_us,
            m.TempoChange.bpm,
        )
        .where(m.TempoChange.midi_file_id.in_(file_ids))
        .order_by(m.TempoChange.midi_file_id, m.TempoChange.tick),
    )
    meters = _rows(
        conn,
        select(
            m.TimeSignature.midi_file_id,
            m.TimeSignature.tick,
            m.TimeSignature.time_s,
            m.TimeSignature.bar,
            m.TimeSignature.numerator,
            m.TimeSignature.denominator,
        )
        .where(m.TimeSignature.midi_file_id.in_(file_ids))
        .order_by(m.TimeSignature.midi_file_id, m.TimeSignature.tick),
    )
    for f in files:
        fid = f["midi_file_id"]
        f["tempo_map"] = [_drop(t, "midi_file_id") for t in tempos if t["midi_file_id"] == fid]
        f["time_signatures"] = [
            _drop(t, "midi_file_id") for t in meters if t["midi_file_id"] == fid
        ]

    stems = _stems(conn, m.AudioFile, cue_id)
    stem_by_id = {s["stem_id"]: s for s in stems}
    parts = _rows(
        conn,
        select(
            m.MidiTrack.id.label("track_id"),
            m.MidiTrack.midi_file_id,
            m.MidiTrack.track_index,
            m.MidiTrack.part_index,
            m.MidiTrack.name,
            m.MidiTrack.part_name,
            m.MidiTrack.category,
            m.MidiTrack.program,
            m.MidiTrack.channel,
            m.MidiTrack.is_drum,
            m.MidiTrack.note_count,
        )
        .where(m.MidiTrack.midi_file_id.in_(file_ids), m.MidiTrack.is_conductor.is_(False))
        .order_by(m.MidiTrack.midi_file_id, m.MidiTrack.part_index),
    )
    pairs: dict[int, list[dict[str, Any]]] = {}
    for pair in _rows(
        conn,
        select(
            m.TrackMatch.track_id,
            m.TrackMatch.audio_file_id.label("stem_id"),
            *(getattr(m.TrackMatch, k) for k in MATCH_FIELDS[1:]),
        )
        .join(m.MidiTrack, m.MidiTrack.id == m.TrackMatch.track_id)
        .where(m.MidiTrack.midi_file_id.in_(file_ids), m.TrackMatch.audio_file_id.is_not(None))
        .order_by(m.TrackMatch.track_id, m.TrackMatch.stem_rank),
    ):
        pairs.setdefault(pair.pop("track_id"), []).append(pair)
    wanted = {c.casefold() for c in options.categories}
    kept = []
    for t in parts:
        if t["note_count"] < options.min_notes:
            continue
        own = [
            p
            for p in pairs.get(t["track_id"], [])
            if p["stem_id"] in stem_by_id and (not options.verified_only or p["verified"] is True)
        ]
        if wanted and (t["category"] or "").casefold() not in wanted:
            own = [
                p
                for p in own
                if (stem_by_id[p["stem_id"]].get("category") or "").casefold() in wanted
            ]
            if not own:
                continue
        if (options.verified_only or options.per == "track") and not own:
            continue
        # a part may own several stems (desk stems): ``match`` is its primary pair (the first
        # kept one), ``other_matches`` the others
        t["match"] = own[0] if own else None
        t["other_matches"] = own[1:]
        kept.append(t)
    if options.filters_tracks or options.per == "track":
        if not kept:
            return None
        used = {
            p["stem_id"]
            for t in kept
            for p in ([t["match"]] if t["match"] else []) + t["other_matches"]
        }
        stems = [s for s in stems if s["stem_id"] in used]
    mixes = _stems(conn, m.FinalMix, cue_id) if options.per == "cue" else []

    notes = _rows(
        conn,
        select(m.MidiNote.track_id, *(getattr(m.MidiNote, name) for name in NOTE_FIELDS))
        .where(m.MidiNote.track_id.in_([t["track_id"] for t in kept]))
        .order_by(m.MidiNote.track_id, m.MidiNote.id),
    )
    by_track: dict[int, list[dict[str, Any]]] = {}
    for n in notes:
        by_track.setdefault(n["track_id"], []).append(n)
    for t in kept:
        rows = by_track.get(t["track_id"], [])
        t["notes"] = {name: [r[name] for r in rows] for name in NOTE_FIELDS}
        counts["notes"] += len(rows)
    counts["tracks"] += len(kept)

    for kind, group in (("stem", stems), ("mix", mixes)):
        for s in group:
            feature = s["feature"]
            if feature is None:
                continue
            values = read_feature(conn, feature["feature_id"])
            if feature_dir is None:
                feature["values"] = values
            else:
                path = feature_dir / f"{kind}-{s['stem_id']}.npy"
                np.save(path, values, allow_pickle=False)
                feature["path"] = path.relative_to(out_dir).as_posix()
                counts["feature_files"] += 1
    counts["stems"] += len(stems)
    counts["final_mixes"] += len(mixes)
    return {
        **dict(cue._mapping),
        "midi_files": files,
        "tracks": kept,
        "stems": stems,
        "final_mixes": mixes,
    }


def _drop(row: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k != key}


FEATURE_FIELDS = (
    "kind",
    "sample_rate_hz",
    "n_fft",
    "hop_length",
    "n_mels",
    "fmin_hz",
    "fmax_hz",
    "db_ref",
    "centered",
    "n_frames",
)


def _stems(
    conn: Connection, model: type[m.AudioFile] | type[m.FinalMix], cue_id: int
) -> list[dict[str, Any]]:
    owner = m.AudioFeature.audio_file_id if model is m.AudioFile else m.AudioFeature.final_mix_id
    category = m.AudioFile.category if model is m.AudioFile else literal(None, String(32))
    rows = conn.execute(
        select(
            model.id,
            model.name,
            category.label("category"),
            model.channel_layout,
            model.duration_s,
            m.AudioFeature.id.label("feature_id"),
            *(getattr(m.AudioFeature, name) for name in FEATURE_FIELDS),
        )
        .join(m.AudioFeature, owner == model.id, isouter=True)
        .where(model.cue_id == cue_id)
        .order_by(model.name, model.id)
    )
    out: list[dict[str, Any]] = []
    for row in rows:
        r = row._mapping
        feature = None
        if r["feature_id"] is not None:
            feature = {"feature_id": r["feature_id"], **{k: r[k] for k in FEATURE_FIELDS}}
            feature.update(values=None, path=None)
        out.append(
            {
                "stem_id": r["id"],
                "name": r["name"],
                "category": r["category"],
                "channel_layout": r["channel_layout"],
                "duration_s": r["duration_s"],
                "feature": feature,
            }
        )
    return out


def _records(cue: dict[str, Any], options: ExportOptions) -> Iterator[dict[str, Any]]:
    if options.per == "cue":
        yield cue
        return
    head = {
        k: cue[k] for k in ("cue_id", "cue_name", "cue_path", "sample_rate_hz", "midi_offset_s")
    }
    files = {f["midi_file_id"]: f for f in cue["midi_files"]}
    stems = {s["stem_id"]: s for s in cue["stems"]}
    for track in cue["tracks"]:
        own = [track["match"], *track["other_matches"]]
        for k, pair in enumerate(own):  # one record per pair: a part may own several stems
            yield {
                **head,
                "midi_file": files[track["midi_file_id"]],
                "track": {**track, "match": pair, "other_matches": own[:k] + own[k + 1 :]},
                "stem": stems[pair["stem_id"]],
            }


class _JsonlWriter:
    """One JSON object per line; feature matrices are written row by row, never as one big list.

    ``json.dumps`` renders each array as a placeholder string, which is then replaced in the output
    by the array's rows, so the Python floats of a long log-mel never exist all at once.
    """

    def __init__(self, path: Path, options: ExportOptions) -> None:
        self._handle = path.open("w", encoding="utf-8")
        # A random mark no stored text can contain by accident.
        nonce = secrets.token_hex(8)
        self._mark = f"\x00{nonce}:"
        self._token = re.compile(rf'"\\u0000{nonce}:(\d+)"')

    def write(self, records: list[dict[str, Any]]) -> None:
        for record in records:
            self._write_record(record)

    def _write_record(self, record: dict[str, Any]) -> None:
        arrays: list[np.ndarray] = []

        def placeholder(value: Any) -> Any:
            if isinstance(value, np.ndarray):
                arrays.append(value)
                return f"{self._mark}{len(arrays) - 1}"
            raise TypeError(f"cannot write {type(value).__name__} as JSON")

        text = json.dumps(record, default=placeholder, separators=(",", ":"))
        # split() with one group alternates text and array indexes: t0, i0, t1, i1, ..., tn
        for k, piece in enumerate(self._token.split(text)):
            if k % 2 == 0:
                self._handle.write(piece)
            else:
                _write_matrix(self._handle, arrays[int(piece)])
        self._handle.write("\n")

    def close(self) -> None:
        self._handle.close()

    def abort(self) -> None:
        self._handle.close()


def _write_matrix(handle: Any, values: np.ndarray) -> None:
    # float16 -> float32 -> Python float is exact, and json writes the shortest text that reads
    # back to the same float, so the JSON round-trips bit-exact.
    handle.write("[")
    for i, row in enumerate(values):
        if i:
            handle.write(",")
        handle.write(json.dumps(row.astype(np.float32).tolist(), separators=(",", ":")))
    handle.write("]")


class _ParquetWriter:
    """One row group per cue, against a fixed schema (so every row group has the same types)."""

    def __init__(self, path: Path, options: ExportOptions) -> None:
        import pyarrow.parquet as pq

        self._schema = parquet_schema(options.per)
        self._writer = pq.ParquetWriter(str(path), self._schema, compression="zstd")

    def write(self, records: list[dict[str, Any]]) -> None:
        import pyarrow as pa

        if records:
            prepared = [_arrow_ready(r) for r in records]
            self._writer.write_table(pa.Table.from_pylist(prepared, schema=self._schema))

    def close(self) -> None:
        self._writer.close()

    def abort(self) -> None:
        self._writer.close()


def _arrow_ready(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _arrow_ready(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_arrow_ready(v) for v in value]
    if isinstance(value, np.ndarray):
        return list(value.astype(np.float32))
    return value


def parquet_schema(per: str) -> Any:
    """The pyarrow schema of the Parquet export (``per`` is ``"cue"`` or ``"track"``)."""
    import pyarrow as pa

    i16, i32, i64, f64, s, b = (
        pa.int16(),
        pa.int32(),
        pa.int64(),
        pa.float64(),
        pa.string(),
        pa.bool_(),
    )
    midi_file = pa.struct(
        [
            ("midi_file_id", i64),
            ("file_name", s),
            ("rel_path", s),
            ("midi_format", i16),
            ("timing", s),
            ("ticks_per_beat", i32),
            ("length_s", f64),
            (
                "tempo_map",
                pa.list_(
                    pa.struct([("tick", i64), ("time_s", f64), ("tempo_us", i32), ("bpm", f64)])
                ),
            ),
            (
                "time_signatures",
                pa.list_(
                    pa.struct(
                        [
                            ("tick", i64),
                            ("time_s", f64),
                            ("bar", i32),
                            ("numerator", i16),
                            ("denominator", i16),
                        ]
                    )
                ),
            ),
        ]
    )
    note_types = {
        "pitch": i16,
        "velocity": i16,
        "channel": i16,
        "start_tick": i64,
        "end_tick": i64,
        "start_s": f64,
        "end_s": f64,
        "end_sustain_s": f64,
        "start_bar": i32,
        "start_beat": f64,
    }
    match = pa.struct(
        [("stem_id", i64), ("method", s), ("score", f64), ("verified", b), ("stem_rank", i16)]
    )
    track = pa.struct(
        [
            ("track_id", i64),
            ("midi_file_id", i64),
            ("track_index", i32),
            ("part_index", i32),
            ("name", s),
            ("part_name", s),
            ("category", s),
            ("program", i16),
            ("channel", i16),
            ("is_drum", b),
            ("note_count", i32),
            ("notes", pa.struct([(name, pa.list_(note_types[name])) for name in NOTE_FIELDS])),
            ("match", match),
            ("other_matches", pa.list_(match)),
        ]
    )
    feature = pa.struct(
        [
            ("feature_id", i64),
            ("kind", s),
            ("sample_rate_hz", i32),
            ("n_fft", i32),
            ("hop_length", i32),
            ("n_mels", i32),
            ("fmin_hz", f64),
            ("fmax_hz", f64),
            ("db_ref", f64),
            ("centered", b),
            ("n_frames", i32),
            ("values", pa.list_(pa.list_(pa.float32()))),
            ("path", s),
        ]
    )
    stem = pa.struct(
        [
            ("stem_id", i64),
            ("name", s),
            ("category", s),
            ("channel_layout", s),
            ("duration_s", f64),
            ("feature", feature),
        ]
    )
    head = [
        ("cue_id", i64),
        ("cue_name", s),
        ("cue_path", s),
        ("sample_rate_hz", i32),
        ("midi_offset_s", f64),
    ]
    if per == "track":
        return pa.schema([*head, ("midi_file", midi_file), ("track", track), ("stem", stem)])
    return pa.schema(
        [
            *head,
            ("midi_files", pa.list_(midi_file)),
            ("tracks", pa.list_(track)),
            ("stems", pa.list_(stem)),
            ("final_mixes", pa.list_(stem)),
        ]
    )


def summary_dict(summary: ExportSummary) -> dict[str, Any]:
    """``summary`` as JSON-ready plain data."""
    data = asdict(summary)
    for key in ("out", "manifest", "feature_dir"):
        data[key] = None if data[key] is None else str(data[key])
    return data
