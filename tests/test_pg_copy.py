"""PostgreSQL's binary ``COPY`` of the channel events: the buffer's bytes, and the stored rows
against the old CSV ``COPY`` path and against SQLite, on a real server."""

from __future__ import annotations

import os
import shutil
import struct
from pathlib import Path

import mido
import numpy as np
import pytest
from sqlalchemy import insert, text

from kmidi_ingest import ingest, migrate, store, store_midi, store_pg
from kmidi_ingest import models as m
from kmidi_ingest.batch import writer
from kmidi_ingest.db import make_engine
from kmidi_ingest.errors import StoreError
from kmidi_ingest.midi import BEND_DTYPE, CC_DTYPE, NOTE_DTYPE, PROGRAM_DTYPE, TOUCH_DTYPE, Track
from kmidi_ingest.pg_copy import HEADER, TRAILER, Column, copy_buffer
from kmidi_ingest.store_pg import PgEventBatches
from tests.conftest import SHARED_MIDI, note_track, write_midi
from tests.dbutil import content
from tests.fixtures.make_midi_fixtures import HERE

EVENT_TABLES = ["midi_notes", "midi_cc", "midi_program_changes", "midi_pitch_bends",
                "midi_aftertouch"]  # fmt: skip
MIDI_TABLES = ["midi_files", "midi_tracks", *EVENT_TABLES, "tempo_changes", "time_signatures",
               "key_signatures", "markers"]  # fmt: skip


def test_copy_buffer_is_postgresql_binary_format_with_nulls_cut_out():
    cc = np.zeros(2, CC_DTYPE)
    buffer = copy_buffer(
        "midi_cc",
        [
            Column("track_id", np.array([7, -(2**40)])),
            Column("channel", np.array([3, 15])),
            Column("time_s", np.array([0.5, -1e300])),
            Column("bar", np.array([0, 2**31 - 1]), np.array([True, False])),
            Column("value", cc["value"] + np.array([-32768, 32767])),
        ],
    )
    first = struct.pack(">hiqihid", 5, 8, 7, 2, 3, 8, 0.5) + struct.pack(">i", -1)
    first += struct.pack(">ih", 2, -32768)
    second = struct.pack(">hiqihid", 5, 8, -(2**40), 2, 15, 8, -1e300)
    second += struct.pack(">iiih", 4, 2**31 - 1, 2, 32767)
    assert buffer == HEADER + first + second + TRAILER
    assert b"PGCOPY\n\xff\r\n\x00" + bytes(8) == HEADER


def test_copy_buffer_refuses_integers_that_do_not_fit_and_booleans_are_one_byte():
    with pytest.raises(StoreError, match=r"midi_notes\.start_bar: value out of range for 32-bit"):
        copy_buffer("midi_notes", [Column("start_bar", np.array([1, 2**31]))])
    with pytest.raises(StoreError, match=r"midi_notes\.pitch: value out of range for 16-bit"):
        copy_buffer("midi_notes", [Column("pitch", np.array([-32769]))])
    flags = copy_buffer("midi_notes", [Column("end_inferred", np.array([True, False]))])
    assert flags == HEADER + struct.pack(">hib", 1, 1, 1) + struct.pack(">hib", 1, 1, 0) + TRAILER
    assert copy_buffer("midi_notes", []) == HEADER + TRAILER


def _extreme_track(index: int) -> Track:
    """A part whose events hold every NULL sentinel, negatives, and the columns' extremes."""
    notes = np.zeros(5, NOTE_DTYPE)
    notes["channel"] = [0, 9, 15, -1, 32767]
    notes["pitch"] = [0, 127, 60, -32768, 64]
    notes["velocity"] = [1, 127, 0, 64, 100]
    notes["release_velocity"] = [-1, 0, 127, -1, 64]  # -1: NULL
    notes["start_tick"] = [0, 2**62, -5, 480, 2**63 - 1]
    notes["end_tick"] = [10, 2**62 + 1, 0, 960, 2**63 - 1]
    notes["start_s"] = [0.0, 2.0**33, -0.25, 1.0000005, 1e-7]
    notes["end_s"] = [0.123456789, 2.0**33 + 0.5, 0.0, 2.5, 3.3]
    notes["end_sustain_s"] = [0.123456789, 2.0**33 + 1, 1.0, 2.5, 4.4]  # equal to end_s: NULL
    notes["start_bar"] = [0, 1, 2**31 - 1, -(2**31), 7]  # 0: NULL
    notes["start_beat"] = [np.nan, 1.0, 4.999999999999, -0.0, 1e-300]  # NaN: NULL
    notes["end_inferred"] = [True, False, True, False, False]
    cc = np.zeros(3, CC_DTYPE)
    cc["channel"], cc["tick"] = [0, 1, 15], [0, 2**40, 7]
    cc["time_s"], cc["bar"], cc["beat"] = [0.0, 1e9, 3.25], [0, 5, 1], [np.nan, 2.5, 1.0]
    cc["controller"], cc["value"] = [64, 7, 121], [127, 0, 64]
    bends = np.zeros(3, BEND_DTYPE)
    bends["tick"], bends["time_s"], bends["value"] = [1, 2, 3], [0.1, 0.2, 0.3], [-8192, 0, 8191]
    bends["bar"], bends["beat"] = [1, 0, 2], [1.5, np.nan, 2.0]
    touch = np.zeros(2, TOUCH_DTYPE)
    touch["pitch"], touch["value"], touch["bar"] = [-1, 60], [100, 0], [3, 0]  # -1: channel
    touch["beat"] = [1.0, np.nan]
    programs = np.zeros(1, PROGRAM_DTYPE)
    programs["program"], programs["bar"] = [127], [1]
    return Track(
        index=index, part_index=0, name=f"t{index}", part_name=f"t{index}", channel=0,
        program=0, is_drum=False, is_conductor=False, notes=notes, cc=cc,
        program_changes=programs, pitch_bends=bends, aftertouch=touch,
        sysex_count=0, stray_note_off_count=0, end_tick=0, end_s=0.0,
    )  # fmt: skip


def _part(conn, cue_rel: str) -> int:
    cue = conn.execute(
        insert(m.Cue).returning(m.Cue.id),
        {"name": cue_rel, "rel_path": cue_rel, "abs_path": "/" + cue_rel, "status": "complete",
         "stat_fingerprint": "x", "content_fingerprint": "x", "sample_rate_hz": 16000,
         "ingested_at": store.now()},
    ).scalar_one()  # fmt: skip
    file_id = conn.execute(
        insert(m.MidiFile).returning(m.MidiFile.id),
        {"cue_id": cue, "rel_path": "a.mid", "file_name": "a.mid", "size_bytes": 0,
         "sha256": "x", "midi_format": 1, "timing": "ppq", "track_count": 1, "note_count": 0,
         "length_tick": 0, "length_s": 0.0},
    ).scalar_one()  # fmt: skip
    return int(
        conn.execute(
            insert(m.MidiTrack).returning(m.MidiTrack.id),
            {"midi_file_id": file_id, "track_index": 0, "part_index": 0, "name": "",
             "part_name": "", "is_conductor": False, "is_drum": False, "note_count": 0,
             "end_tick": 0, "end_s": 0.0},
        ).scalar_one()
    )  # fmt: skip


COLUMNS = {
    "midi_notes": store_midi.NOTE_COLUMNS[1:],
    **{
        table: ("channel", "tick", "time_s", "bar", "beat", *extra)
        for table, (_, extra) in store_midi._EVENT_TABLES.items()
    },
}


def _rows(conn, table: str, track_id: int) -> list[tuple]:
    """The rows of one part, without id and track_id, in the columns' order of the writer."""
    sql = f"SELECT {', '.join(COLUMNS[table])} FROM {table} WHERE track_id = :t ORDER BY id"
    return [tuple(row) for row in conn.execute(text(sql), {"t": track_id})]


def test_binary_copy_stores_exactly_what_the_csv_copy_stored(pg_url):
    engine = make_engine(pg_url)
    migrate.upgrade(engine)
    track = _extreme_track(0)
    with engine.begin() as conn:
        binary_part, csv_part = _part(conn, "binary"), _part(conn, "csv")
        binary = PgEventBatches(conn)
        binary.add(binary_part, track)
        binary.flush()
        old = store_midi._EventBatches(conn)
        old.add(csv_part, track)
        old.flush()
    with engine.connect() as conn:
        for table in EVENT_TABLES:
            stored = _rows(conn, table, binary_part)
            assert stored == _rows(conn, table, csv_part), table
            assert stored, table
        notes = _rows(conn, "midi_notes", binary_part)
        cc = _rows(conn, "midi_cc", binary_part)
        touch = _rows(conn, "midi_aftertouch", binary_part)
        bends = _rows(conn, "midi_pitch_bends", binary_part)
    engine.dispose()
    # channel, pitch, velocity, release, start/end tick, start/end/sustain µs, bar, beat, inferred
    assert notes[0] == (0, 0, 1, None, 0, 10, 0, 123457, None, None, None, True)
    assert notes[1][4:10] == (2**62, 2**62 + 1, 8_589_934_592_000_000,
                              8_589_934_592_500_000, 8_589_934_593_000_000, 1)  # fmt: skip
    assert notes[2][:4] == (15, 60, 0, 127) and notes[2][8:10] == (1_000_000, 2**31 - 1)
    assert notes[2][10] == 4.999999999999
    assert notes[3][:4] == (-1, -32768, 64, None) and notes[3][9] == -(2**31)
    assert notes[4][4:6] == (2**63 - 1, 2**63 - 1) and notes[4][10] == 1e-300
    assert [(r[3], r[4]) for r in cc] == [(None, None), (5, 2.5), (1, 1.0)]
    assert [r[5] for r in bends] == [-8192, 0, 8191] and bends[1][3:5] == (None, None)
    assert [(r[5], r[6]) for r in touch] == [(None, 100), (60, 0)]


def test_few_events_sent_as_array_literals_store_what_the_binary_copy_stored(pg_url):
    engine = make_engine(pg_url)
    migrate.upgrade(engine)
    track = _extreme_track(0)
    with engine.begin() as conn:
        copy_part, literal_part = _part(conn, "copy"), _part(conn, "literal")
        copied = PgEventBatches(conn)
        copied.add(copy_part, track)
        copied.flush()
        literal = PgEventBatches(conn)
        literal.add(literal_part, track)
        small = literal.take_small(store_pg.SMALL_EVENT_ROWS)
        assert sorted(t for t, _ in small) == sorted(EVENT_TABLES)
        cursor = conn.connection.dbapi_connection.cursor()
        for table, columns in small:
            statement, names = store_pg._unnest_sql, tuple(c.name for c in columns)
            cursor.execute(statement(table, names), [store_pg.array_literal(c) for c in columns])
        literal.flush()  # nothing left to COPY
    with engine.connect() as conn:
        for table in EVENT_TABLES:
            stored = _rows(conn, table, literal_part)
            assert stored == _rows(conn, table, copy_part), table
            assert stored, table
    engine.dispose()
    notes = store_pg.note_columns(np.array([1, 2]), track.notes[:2])
    assert store_pg.array_literal(notes[4]) == "{NULL,0}"  # release velocity -1: NULL
    assert store_pg.array_literal(notes[-1]) == "{t,f}"
    assert store_pg.array_literal(Column("x", np.array([0.1, 1e-300]))) == "{0.1,1e-300}"


def _collection(tmp_path):
    """Real MIDI files (a sample of ``../shared/data/midi``, one cue per source folder) and the
    edge-case fixtures (SMPTE: no bars; aftertouch, pitch bends; unreleased notes)."""
    root = tmp_path / "cues"
    sources = sorted(p for p in SHARED_MIDI.rglob("*") if p.suffix.lower() in (".mid", ".midi"))
    if not sources:
        pytest.skip(f"no real MIDI files in {SHARED_MIDI}")
    for path in sources[::6]:
        folder = root / path.relative_to(SHARED_MIDI).parts[0] / "MIDI"
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, folder / path.name)
    edge = root / "edge" / "MIDI"
    edge.mkdir(parents=True)
    for name in (
        "smpte_25fps",
        "pitch_bend_and_aftertouch",
        "unreleased_notes",
        "marker_track_only",
    ):
        shutil.copy(HERE / f"{name}.mid", edge / f"{name}.mid")
    return root


def _previous_path(patch) -> None:
    """The previous PostgreSQL path: ``INSERT … RETURNING`` of files and parts, multi-row
    ``INSERT``s of the file-level tables through SQLAlchemy, rows and CSV ``COPY`` of events."""
    patch.setattr(store_midi, "_event_batches", store_midi._EventBatches)
    patch.setattr(store_midi, "_midi_batch_writer", lambda conn: store_midi._write_midi_batch)


def _all_rows(url: str) -> dict[str, list[tuple]]:
    engine = make_engine(url)
    with engine.connect() as conn:
        out = {t: [tuple(r) for r in conn.execute(text(f"SELECT * FROM {t} ORDER BY id"))]
               for t in MIDI_TABLES}  # fmt: skip
    engine.dispose()
    return out


def test_a_collection_on_postgresql_gives_the_rows_of_sqlite_and_of_the_csv_path(
    tmp_path, pg_server, monkeypatch
):
    root = _collection(tmp_path)
    urls = {name: pg_server.create_database(f"t_copy_{name}_{tmp_path.name[-8:]}".lower())
            for name in ("binary", "csv", "threads")}  # fmt: skip
    sqlite = f"sqlite:///{tmp_path}/db.sqlite"
    try:
        threaded = ingest(root, 16000, database_url=urls["threads"], workers=1)
        # one writer thread: the ids come out in cue order, as on SQLite, for the comparison
        # below, ids included (two threads interleave the cues' ids)
        monkeypatch.setattr(writer, "WRITER_THREADS", 1)
        binary = ingest(root, 16000, database_url=urls["binary"], workers=1)
        ingest(root, 16000, database_url=sqlite, workers=1)
        with monkeypatch.context() as patch:
            _previous_path(patch)
            ingest(root, 16000, database_url=urls["csv"], workers=1)
        assert threaded.cues_ingested == binary.cues_ingested and threaded.notes == binary.notes
        assert content(urls["threads"], MIDI_TABLES) == content(urls["binary"], MIDI_TABLES)
        assert binary.cues_ingested >= 5 and binary.notes > 10_000
        new, old = _all_rows(urls["binary"]), _all_rows(urls["csv"])
        for table in MIDI_TABLES:  # ids included: the same rows in the same order
            assert new[table] == old[table], table
        nulls = {
            "release_velocity": "release_velocity IS NULL",
            "end_sustain_us": "end_sustain_us IS NULL",
            "start_bar": "start_bar IS NULL",
            "start_beat": "start_beat IS NULL",
        }
        engine = make_engine(urls["binary"])
        with engine.connect() as conn:
            for column, where in nulls.items():
                count = conn.execute(text(f"SELECT COUNT(*) FROM midi_notes WHERE {where}"))
                assert count.scalar_one() > 0, column
            assert conn.execute(text("SELECT MIN(value) FROM midi_pitch_bends")).scalar_one() < 0
        engine.dispose()
        assert content(urls["binary"], MIDI_TABLES) == content(sqlite, MIDI_TABLES)
    finally:
        for url in urls.values():
            pg_server.drop_database(url.rsplit("/", 1)[1])


def _latin1(text: str) -> str:
    """``text``'s UTF-8 bytes as mido's latin-1 meta text: the file holds UTF-8."""
    return text.encode("utf-8").decode("latin-1")


def _text_collection(root):
    """Cues whose names and MIDI text hold what the text columns must keep: a non-UTF-8 folder
    and file name (escaped to ``\\xNN`` at the database edge), unicode, control characters, quotes
    and backslashes, SMPTE timing (NULL ticks per beat), tempo, meter and key changes."""
    odd = os.fsencode(root) + b"/caf\xe9 cue/MIDI"
    os.makedirs(odd)
    texts = ["Violon I \u2014 \u00e9t\u00e9 \u65e5\u672c", "bell\x07 esc\x1b[31m tab\tnl\n",
             "quote ' \" back\\slash {braces}, NULL", "\U0001f3bb emoji", ""]  # fmt: skip
    tracks = []
    for i, name in enumerate(texts):
        track = note_track(_latin1(name), [(0, 240, 60 + i), (480, 960, 62 + i)], channel=i)
        track.insert(0, mido.MetaMessage("marker", text=_latin1(texts[-1 - i]), time=0))
        tracks.append(track)
    tracks[0][:0] = [
        mido.MetaMessage("set_tempo", tempo=500_000, time=0),
        mido.MetaMessage("time_signature", numerator=7, denominator=8, time=0),
        mido.MetaMessage("key_signature", key="F#m", time=0),
        mido.MetaMessage("text", text=_latin1("\u00a9 2026 \u00c5ngstr\u00f6m"), time=0),
        mido.MetaMessage("set_tempo", tempo=333_333, time=720),
        mido.MetaMessage("key_signature", key="Bb", time=0),
        mido.MetaMessage("cue_marker", text="", time=0),
    ]
    write_midi(Path(os.fsdecode(odd + b"/m\xf6\xff.mid")), tracks)
    write_midi(root / "\u00c9t\u00e9 \u00e0 Paris" / "MIDI" / "\u65e5\u672c.mid", tracks[1:3])
    smpte = root / "smpte" / "MIDI"
    smpte.mkdir(parents=True)
    shutil.copy(HERE / "smpte_25fps.mid", smpte / "a.mid")
    shutil.copy(HERE / "marker_track_only.mid", smpte / "b.mid")


def test_file_level_tables_and_parents_store_the_text_of_the_previous_path(
    tmp_path, pg_server, monkeypatch
):
    root = tmp_path / "cues"
    _text_collection(root)
    urls = {name: pg_server.create_database(f"t_text_{name}_{tmp_path.name[-8:]}".lower())
            for name in ("new", "old")}  # fmt: skip
    sqlite = f"sqlite:///{tmp_path}/db.sqlite"
    monkeypatch.setattr(writer, "WRITER_THREADS", 1)  # ids in cue order: compared below
    try:
        assert ingest(root, 16000, database_url=urls["new"], workers=1).cues_ingested == 3
        ingest(root, 16000, database_url=sqlite, workers=1)
        with monkeypatch.context() as patch:
            _previous_path(patch)
            ingest(root, 16000, database_url=urls["old"], workers=1)
        new, old = _all_rows(urls["new"]), _all_rows(urls["old"])
        for table in MIDI_TABLES:
            assert new[table] == old[table], table
            assert new[table] or table in EVENT_TABLES[1:], table
        assert content(urls["new"], MIDI_TABLES) == content(sqlite, MIDI_TABLES)
        engine = make_engine(urls["new"])
        with engine.connect() as conn:
            files = dict(
                conn.execute(text("SELECT file_name, ticks_per_beat FROM midi_files")).all()
            )
            names = {r[0] for r in conn.execute(text("SELECT name FROM midi_tracks"))}
            markers = {r[0] for r in conn.execute(text("SELECT text FROM markers"))}
            keys = [r[0] for r in conn.execute(text("SELECT key FROM key_signatures ORDER BY id"))]
            tempos = conn.execute(text("SELECT tempo_us, bar FROM tempo_changes ORDER BY id")).all()
            meter = conn.execute(text("SELECT numerator, denominator FROM time_signatures")).all()
            cues = {r[0] for r in conn.execute(text("SELECT rel_path FROM cues"))}
            file_paths = {r[0] for r in conn.execute(text("SELECT rel_path FROM midi_files"))}
        engine.dispose()
        assert "m\\xf6\\xff.mid" in files and "caf\\xe9 cue" in cues
        assert "MIDI/m\\xf6\\xff.mid" in file_paths
        assert files["a.mid"] is None and files["m\\xf6\\xff.mid"] == 480  # SMPTE: no PPQ
        assert "\u65e5\u672c.mid" in files and "\u00c9t\u00e9 \u00e0 Paris" in cues
        assert {"Violon I \u2014 \u00e9t\u00e9 \u65e5\u672c", "bell\x07 esc\x1b[31m tab\tnl\n",
                "quote ' \" back\\slash {braces}, NULL", "\U0001f3bb emoji"} <= names  # fmt: skip
        assert {"\u00a9 2026 \u00c5ngstr\u00f6m", "bell\x07 esc\x1b[31m tab\tnl\n", ""} <= markers
        assert keys[:2] == ["F#m", "Bb"] and (7, 8) in meter
        assert (500_000, 1) in tempos and (333_333, 1) in tempos
    finally:
        for url in urls.values():
            pg_server.drop_database(url.rsplit("/", 1)[1])
