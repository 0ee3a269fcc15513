"""Multitrack export: the paired parts of each cue as a dataset in Slakh's layout.

One folder per cue, laid out as Slakh2100 ships a track, so loaders written for Slakh (mirdata's,
training code that globs ``*/MIDI/S*.mid`` and ``*/stems/S*.*``) read it unchanged::

    OUT/<cue>/MIDI/S00.mid     one instrument part (or the parts printed to one stem), mido
    OUT/<cue>/stems/S00.wav    that stem's audio (the extension is the source file's)
    OUT/<cue>/all_src.mid      the cue's MIDI file, byte for byte (cues with one MIDI file)
    OUT/<cue>/mix.wav          the cue's final mix, when it has one
    OUT/<cue>/metadata.yaml    per Sxx: inst_class, program_num, is_drum, midi_program_name,
                               plugin_name, audio_rendered, midi_saved, and the match evidence

``Sxx`` numbers the stems that a part is paired with (``track_matches``), in file and part order;
parts paired with the same stem share its ``Sxx.mid`` (one track each). A part that owns several
stems (desk stems ``violin1`` … ``violin4`` of one ``violin`` part) is written into each of their
``Sxx`` (its primary stem first, then by ``stem_rank``): every stem keeps its own audio and its own
evidence, and ``all_src.mid`` still holds the part once. The export's ``parts`` count counts these
part-in-stem entries.

Decisions, where Slakh's own rendering differs from a film delivery:

- **MIDI**: format 1, the source file's ticks per quarter, track 0 the tempo map, time and key
  signatures of the source file (of the part's own track in format 2), then the part on channel
  0 — 9 for drums — as Slakh writes its ``Sxx.mid``. Ticks are the stored ticks, so every note
  starts and ends at the same second as in the database. SMPTE-timed files are written as PPQ
  with ``round(fps) × ticks/frame`` ticks per quarter at ``10⁶ × round(fps) / fps`` µs per quarter,
  which keeps every tick at its second. A note never released (``end_inferred``) is written
  released at its stored end.
- **Audio**: Slakh's stems are mono renders of one instrument; a printed stem is the files the
  mixer printed (``Strings.L.wav`` + ``Strings.R.wav``, or one interleaved file). The stem is
  written at its own rate and bit depth, never the resampled composite: a stem of one file is
  copied byte for byte, a multi-mono stem is interleaved into one file of its first file's format
  (channels in the stored order, shorter channels padded with silence). ``audio_rendered`` is
  false when a source file is gone.
- **metadata.yaml**: ``program_num`` 128 and ``inst_class`` / ``midi_program_name`` ``Drums`` for
  drum parts (Slakh's convention); ``inst_class`` is the General MIDI family of the program
  (:mod:`kmidi_ingest.gm`), ``plugin_name`` the stem's name. The verification fields
  (``match_method``, ``match_score``, ``onset_correlation``, ``lag_s``, ``verified``,
  ``stem_rank``: 0 for the part's primary stem) and the
  part's origin (``source_midi_file``, ``source_track_index``, ``source_channel``, ``part_name``,
  ``category``) are added beside Slakh's keys.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import mido
import numpy as np
import soundfile as sf
import yaml
from sqlalchemy import Connection, Engine, or_, select

from . import __version__, gm
from . import models as m
from .config import mask_url
from .errors import KmidiError

DRUM_PROGRAM_NUM = 128  # Slakh's program_num for drum stems
_UNSAFE = re.compile(r'[\\/:*?"<>|\x00-\x1f]')


class MultitrackError(KmidiError):
    """The multitrack export cannot be written (existing output, no kmidi schema, ...)."""

    stage = "export"


@dataclass(frozen=True, kw_only=True)
class MultitrackSummary:
    """What :func:`export_multitrack` wrote; ``missing_audio`` lists source files that are gone."""

    out: Path
    manifest: Path
    cues: int
    stems: int
    parts: int
    notes: int
    final_mixes: int
    missing_audio: tuple[str, ...] = ()


def export_multitrack(
    engine: Engine,
    out: str | Path,
    *,
    categories: tuple[str, ...] = (),
    cues: tuple[str, ...] = (),
    min_notes: int = 0,
    verified_only: bool = False,
    overwrite: bool = False,
) -> MultitrackSummary:
    """Write the paired parts of every complete cue at ``engine`` into the folder ``out``.

    Parameters
    ----------
    categories, min_notes, verified_only
        Keep only parts of these categories (the part's or its stem's), with at least
        ``min_notes`` notes, or whose match was verified.
    cues
        Only these cues, by name or relative path.
    overwrite
        Replace an earlier multitrack export at ``out`` (only one this function wrote).

    Returns
    -------
    MultitrackSummary
        The folder is built under a temporary name and renamed when complete; its manifest,
        ``<out>.manifest.json``, is written beside it.

    Raises
    ------
    MultitrackError
        When ``out`` exists (and is not an earlier multitrack export, or ``overwrite`` is off),
        its parent folder does not exist, or the database holds no kmidi schema.
    """
    from .migrate import current_revision, head_revision

    out = Path(out)
    manifest_path = out.with_name(out.name + ".manifest.json")
    if out.exists() or manifest_path.exists():
        if not overwrite:
            raise MultitrackError("already exists; choose another name or overwrite", path=out)
        if out.exists() and not _is_multitrack_export(manifest_path):
            raise MultitrackError(
                "exists and is not a multitrack export (no multitrack manifest beside it); "
                "not replacing it",
                path=out,
            )
    if not out.parent.is_dir():
        raise MultitrackError("output folder does not exist", path=out.parent)
    db_revision = current_revision(engine)
    if db_revision is None:
        raise MultitrackError(
            f"{mask_url(str(engine.url))} holds no kmidi schema; ingest a tree into it first"
        )

    partial = out.with_name(f".{out.name}.partial")
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir()
    counts = dict.fromkeys(("cues", "stems", "parts", "notes", "final_mixes"), 0)
    missing: list[str] = []
    wanted = {c.lower() for c in categories}
    try:
        with engine.connect() as conn:
            used_names: set[str] = set()
            for cue in _cues(conn, cues):
                parts = [
                    p
                    for p in _paired_parts(conn, cue["id"])
                    if p["note_count"] >= min_notes
                    and (not verified_only or p["verified"] is True)
                    and (
                        not wanted
                        or {(p["category"] or "").lower(), (p["stem_category"] or "").lower()}
                        & wanted
                    )
                ]
                if not parts:
                    continue
                folder = partial / _folder_name(cue, used_names)
                _write_cue(conn, cue, parts, folder, counts, missing)
                counts["cues"] += 1
        if out.exists():
            shutil.rmtree(out)
        os.replace(partial, out)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise

    manifest = {
        "export_format": "multitrack",
        "layout": "slakh",
        "schema_version": head_revision(),
        "source_database_revision": db_revision,
        "source_database": mask_url(str(engine.url)),
        "kmidi_ingest_version": __version__,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "output": out.name,
        "parameters": {
            "category": list(categories),
            "cue": list(cues),
            "min_notes": min_notes,
            "verified_only": verified_only,
        },
        "counts": counts,
        "missing_audio": missing,
    }
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return MultitrackSummary(
        out=out,
        manifest=manifest_path,
        missing_audio=tuple(missing),
        **counts,
    )


def _is_multitrack_export(manifest_path: Path) -> bool:
    try:
        return json.loads(manifest_path.read_text())["export_format"] == "multitrack"
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _rows(conn: Connection, query: Any) -> list[dict[str, Any]]:
    return [dict(row._mapping) for row in conn.execute(query)]


def _cues(conn: Connection, names: tuple[str, ...]) -> list[dict[str, Any]]:
    query = (
        select(m.Cue.id, m.Cue.name, m.Cue.rel_path, m.Cue.abs_path, m.Cue.content_fingerprint)
        .where(m.Cue.status == "complete")
        .order_by(m.Cue.rel_path)
    )
    if names:
        query = query.where(or_(m.Cue.name.in_(names), m.Cue.rel_path.in_(names)))
    return _rows(conn, query)


def _folder_name(cue: dict[str, Any], used: set[str]) -> str:
    name = _UNSAFE.sub("_", cue["name"]).strip(" .") or f"cue {cue['id']}"
    if name.lower() in used:  # two cues of one name in different folders
        name = f"{name} ({cue['id']})"
    used.add(name.lower())
    return name


def _paired_parts(conn: Connection, cue_id: int) -> list[dict[str, Any]]:
    """Every part of the cue paired with a stem, in file and part order."""
    t, f, tm, a = m.MidiTrack, m.MidiFile, m.TrackMatch, m.AudioFile
    return _rows(
        conn,
        select(
            t.id.label("track_id"),
            t.midi_file_id,
            t.track_index,
            t.part_index,
            t.part_name,
            t.channel,
            t.program,
            t.is_drum,
            t.category,
            t.note_count,
            t.end_tick,
            f.rel_path.label("midi_rel_path"),
            a.id.label("stem_id"),
            a.name.label("stem_name"),
            a.category.label("stem_category"),
            tm.method,
            tm.score,
            tm.onset_correlation,
            tm.lag_s,
            tm.verified,
            tm.stem_rank,
        )
        .join(f, f.id == t.midi_file_id)
        .join(tm, tm.track_id == t.id)
        .join(a, a.id == tm.audio_file_id)
        .where(f.cue_id == cue_id, t.is_conductor.is_(False))
        .order_by(f.rel_path, t.part_index, tm.stem_rank),
    )


def _write_cue(
    conn: Connection,
    cue: dict[str, Any],
    parts: list[dict[str, Any]],
    folder: Path,
    counts: dict[str, int],
    missing: list[str],
) -> None:
    (folder / "MIDI").mkdir(parents=True)
    (folder / "stems").mkdir()
    cue_dir = Path(cue["abs_path"])
    by_stem: dict[int, list[dict[str, Any]]] = {}
    for part in parts:
        by_stem.setdefault(part["stem_id"], []).append(part)
    files = {
        r["id"]: r
        for r in _rows(
            conn,
            select(
                m.MidiFile.id,
                m.MidiFile.rel_path,
                m.MidiFile.midi_format,
                m.MidiFile.timing,
                m.MidiFile.ticks_per_beat,
                m.MidiFile.smpte_fps,
                m.MidiFile.smpte_ticks_per_frame,
                m.MidiFile.sha256,
            ).where(m.MidiFile.cue_id == cue["id"]),
        )
    }
    stems_meta: dict[str, dict[str, Any]] = {}
    for k, (stem_id, stem_parts) in enumerate(by_stem.items()):
        sid = f"S{k:02d}"
        first = stem_parts[0]
        midi_file = files[first["midi_file_id"]]
        mid = _part_midi(conn, midi_file, stem_parts)
        mid.save(str(folder / "MIDI" / f"{sid}.mid"))
        rendered = _write_audio(
            conn, m.AudioChannel.audio_file_id == stem_id, cue_dir, folder / "stems" / sid, missing
        )
        is_drum = bool(first["is_drum"])
        stems_meta[sid] = {
            "audio_rendered": rendered,
            "inst_class": gm.family(first["program"], is_drum=is_drum) or "Unknown",
            "is_drum": is_drum,
            "midi_program_name": gm.program_name(first["program"], is_drum=is_drum) or "Unknown",
            "midi_saved": True,
            "plugin_name": first["stem_name"],
            "program_num": DRUM_PROGRAM_NUM if is_drum else first["program"],
            "category": first["category"],
            "stem_category": first["stem_category"],
            "parts": [
                {
                    "part_name": p["part_name"],
                    "source_midi_file": p["midi_rel_path"],
                    "source_track_index": p["track_index"],
                    "source_part_index": p["part_index"],
                    "source_channel": p["channel"],
                    "note_count": p["note_count"],
                    "match_method": p["method"],
                    "match_score": p["score"],
                    "onset_correlation": p["onset_correlation"],
                    "lag_s": p["lag_s"],
                    "verified": p["verified"],
                    "stem_rank": p["stem_rank"],
                }
                for p in stem_parts
            ],
        }
        counts["stems"] += 1
        counts["parts"] += len(stem_parts)
        counts["notes"] += sum(p["note_count"] for p in stem_parts)

    if len(files) == 1:
        (only,) = files.values()
        source = cue_dir / only["rel_path"]
        if source.is_file():
            shutil.copyfile(source, folder / "all_src.mid")
    mixes = _rows(
        conn,
        select(m.FinalMix.id).where(m.FinalMix.cue_id == cue["id"]).order_by(m.FinalMix.name),
    )
    mix_rendered = None
    if mixes:
        mix_rendered = _write_audio(
            conn, m.AudioChannel.final_mix_id == mixes[0]["id"], cue_dir, folder / "mix", missing
        )
        counts["final_mixes"] += 1
    metadata = {
        "UUID": cue["content_fingerprint"],
        "audio_dir": "stems",
        "midi_dir": "MIDI",
        "source_cue": cue["rel_path"],
        "mix_rendered": mix_rendered,
        "stems": stems_meta,
    }
    with (folder / "metadata.yaml").open("w", encoding="utf-8") as handle:
        yaml.safe_dump(metadata, handle, sort_keys=True, allow_unicode=True)


def _tempo_basis(midi_file: dict[str, Any]) -> tuple[int, int | None]:
    """Ticks per quarter of the written file, and the one tempo SMPTE timing becomes."""
    if midi_file["timing"] != "smpte":
        return int(midi_file["ticks_per_beat"]), None
    fps = float(midi_file["smpte_fps"])
    nominal = round(fps)
    return nominal * int(midi_file["smpte_ticks_per_frame"]), round(1e6 * nominal / fps)


def _part_midi(
    conn: Connection, midi_file: dict[str, Any], parts: list[dict[str, Any]]
) -> mido.MidiFile:
    """A format-1 file: the conductor track, then one track per part (times in ticks)."""
    ticks_per_beat, smpte_tempo = _tempo_basis(midi_file)
    mid = mido.MidiFile(type=1, ticks_per_beat=ticks_per_beat)
    file_id = midi_file["id"]
    own_track = parts[0]["track_index"] if midi_file["midi_format"] == 2 else None
    conductor: list[tuple[int, int, Any]] = []

    def file_rows(model: Any, *columns: Any) -> list[dict[str, Any]]:
        query = select(model.tick, *columns).where(model.midi_file_id == file_id)
        if own_track is not None:
            query = query.where(model.track_index == own_track)
        return _rows(conn, query.order_by(model.tick, model.id))

    if smpte_tempo is not None:
        conductor.append((0, 0, mido.MetaMessage("set_tempo", tempo=smpte_tempo)))
    else:
        for r in file_rows(m.TempoChange, m.TempoChange.tempo_us):
            conductor.append((r["tick"], 0, mido.MetaMessage("set_tempo", tempo=r["tempo_us"])))
    for r in file_rows(
        m.TimeSignature,
        m.TimeSignature.numerator,
        m.TimeSignature.denominator,
        m.TimeSignature.clocks_per_click,
        m.TimeSignature.notated_32nds_per_beat,
    ):
        conductor.append(
            (
                r["tick"],
                1,
                mido.MetaMessage(
                    "time_signature",
                    numerator=r["numerator"],
                    denominator=r["denominator"],
                    clocks_per_click=r["clocks_per_click"],
                    notated_32nd_notes_per_beat=r["notated_32nds_per_beat"],
                ),
            )
        )
    for r in file_rows(m.KeySignature, m.KeySignature.key):
        conductor.append((r["tick"], 2, mido.MetaMessage("key_signature", key=r["key"])))
    mid.tracks.append(_track(conductor, end_tick=0))
    for part in parts:
        mid.tracks.append(_part_track(conn, part))
    return mid


def _track(events: list[tuple[int, int, Any]], *, end_tick: int) -> mido.MidiTrack:
    """Messages at absolute ticks (sorted by tick, then rank, then list order) as delta times."""
    track = mido.MidiTrack()
    now = 0
    for tick, _, message in sorted(events, key=lambda e: (e[0], e[1])):
        track.append(message.copy(time=tick - now))
        now = tick
    track.append(mido.MetaMessage("end_of_track", time=max(end_tick - now, 0)))
    return track


# Order of events at one tick: note-offs of sounding notes, then controllers and programs (so a
# patch set at a note's tick sounds on it), then note-ons, then the offs of zero-length notes.
_OFF, _CONTROL, _ON, _ZERO_OFF = range(4)


def _part_track(conn: Connection, part: dict[str, Any]) -> mido.MidiTrack:
    channel = 9 if part["is_drum"] else 0  # as Slakh writes its Sxx.mid
    track_id = part["track_id"]
    events: list[tuple[int, int, Any]] = [
        (0, -1, mido.MetaMessage("track_name", name=part["part_name"]))
    ]
    notes = _rows(
        conn,
        select(
            m.MidiNote.pitch,
            m.MidiNote.velocity,
            m.MidiNote.release_velocity,
            m.MidiNote.start_tick,
            m.MidiNote.end_tick,
        )
        .where(m.MidiNote.track_id == track_id)
        .order_by(m.MidiNote.id),
    )
    for n in notes:
        events.append(
            (
                n["start_tick"],
                _ON,
                mido.Message("note_on", channel=channel, note=n["pitch"], velocity=n["velocity"]),
            )
        )
        events.append(
            (
                n["end_tick"],
                _ZERO_OFF if n["end_tick"] == n["start_tick"] else _OFF,
                mido.Message(
                    "note_off",
                    channel=channel,
                    note=n["pitch"],
                    velocity=n["release_velocity"] or 0,
                ),
            )
        )
    programs = _rows(
        conn,
        select(m.MidiProgramChange.tick, m.MidiProgramChange.program)
        .where(
            m.MidiProgramChange.track_id == track_id,
            m.MidiProgramChange.channel == part["channel"],
        )
        .order_by(m.MidiProgramChange.tick, m.MidiProgramChange.id),
    )
    if part["program"] is not None and not programs:
        programs = [{"tick": 0, "program": part["program"]}]
    for r in programs:
        message = mido.Message("program_change", channel=channel, program=r["program"])
        events.append((r["tick"], _CONTROL, message))
    # Only the part's own channel: events of a note-less channel kept with the part stay out.
    for r in _rows(
        conn,
        select(m.MidiCC.tick, m.MidiCC.controller, m.MidiCC.value)
        .where(m.MidiCC.track_id == track_id, m.MidiCC.channel == part["channel"])
        .order_by(m.MidiCC.tick, m.MidiCC.id),
    ):
        message = mido.Message(
            "control_change", channel=channel, control=r["controller"], value=r["value"]
        )
        events.append((r["tick"], _CONTROL, message))
    for r in _rows(
        conn,
        select(m.MidiPitchBend.tick, m.MidiPitchBend.value)
        .where(m.MidiPitchBend.track_id == track_id, m.MidiPitchBend.channel == part["channel"])
        .order_by(m.MidiPitchBend.tick, m.MidiPitchBend.id),
    ):
        message = mido.Message("pitchwheel", channel=channel, pitch=r["value"])
        events.append((r["tick"], _CONTROL, message))
    for r in _rows(
        conn,
        select(m.MidiAftertouch.tick, m.MidiAftertouch.pitch, m.MidiAftertouch.value)
        .where(m.MidiAftertouch.track_id == track_id, m.MidiAftertouch.channel == part["channel"])
        .order_by(m.MidiAftertouch.tick, m.MidiAftertouch.id),
    ):
        if r["pitch"] is None:
            message = mido.Message("aftertouch", channel=channel, value=r["value"])
        else:
            message = mido.Message("polytouch", channel=channel, note=r["pitch"], value=r["value"])
        events.append((r["tick"], _CONTROL, message))
    return _track(events, end_tick=part["end_tick"])


def _write_audio(
    conn: Connection, owner: Any, cue_dir: Path, target: Path, missing: list[str]
) -> bool:
    """Write a stem's (or mix's) channels to ``target`` plus the source's extension.

    Returns whether the audio was written (``False`` when a source file is gone).
    """
    channels = _rows(
        conn,
        select(
            m.AudioChannel.rel_path,
            m.AudioChannel.file_channel,
            m.AudioChannel.file_channels,
        )
        .where(owner)
        .order_by(m.AudioChannel.channel_order),
    )
    sources = [cue_dir / c["rel_path"] for c in channels]
    gone = [str(p) for p in dict.fromkeys(sources) if not p.is_file()]
    if not channels or gone:
        missing.extend(gone)
        return False
    suffix = sources[0].suffix.lower()
    if len(set(sources)) == 1 and len(channels) == channels[0]["file_channels"]:
        shutil.copyfile(sources[0], target.with_suffix(suffix))  # the file as printed
        return True
    info = sf.info(str(sources[0]))
    columns = []
    for path, c in zip(sources, channels, strict=True):
        data, _ = sf.read(str(path), dtype="float64", always_2d=True)
        columns.append(data[:, c["file_channel"]])
    frames = max(len(x) for x in columns)
    stacked = np.zeros((frames, len(columns)))
    for i, column in enumerate(columns):
        stacked[: len(column), i] = column
    sf.write(
        str(target.with_suffix(suffix)),
        stacked,
        info.samplerate,
        subtype=info.subtype,
        format=info.format,
    )
    return True
