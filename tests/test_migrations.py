from sqlalchemy import inspect, text

from kmidi_ingest import migrate
from kmidi_ingest.db import make_engine

REQUIRED = {
    "midi_files",
    "midi_tracks",
    "midi_notes",
    "midi_cc",
    "midi_program_changes",
    "audio_files",
    "audio_features",
    "final_mixes",
    "cues",
    "ingest_runs",
    "ingest_errors",
    "tempo_changes",
    "time_signatures",
    "audio_channels",
}


def _insert_cue_and_file(conn, *, tracks: int, notes: int, length_tick: int, length_s: float):
    """Cue 1, complete, holding MIDI file 1 (``a.mid``), inserted as any revision stores them."""
    conn.execute(
        text(
            "INSERT INTO cues (id, name, rel_path, abs_path, status, stat_fingerprint, "
            "content_fingerprint, sample_rate_hz, midi_file_count, stem_count, "
            "final_mix_count, error_count, ingested_at) VALUES (1, 'c', 'c', '/c', "
            "'complete', 'x', 'y', 16000, 1, 0, 0, 0, CURRENT_TIMESTAMP)"
        )
    )
    conn.execute(
        text(
            "INSERT INTO midi_files (id, cue_id, rel_path, file_name, size_bytes, sha256, "
            "midi_format, timing, track_count, note_count, length_tick, length_s, lenient) "
            "VALUES (1, 1, 'a.mid', 'a.mid', 1, 'h', 1, 'ppq', :t, :n, :lt, :ls, FALSE)"
        ),
        {"t": tracks, "n": notes, "lt": length_tick, "ls": length_s},
    )


def _insert_violins_part(conn, *, end_tick: int, end_s: float):
    """Part 5 of file 1, "Violins" with 2 notes, as revisions 0007 and later store parts."""
    conn.execute(
        text(
            "INSERT INTO midi_tracks (id, midi_file_id, track_index, part_index, name, "
            "part_name, is_conductor, is_drum, note_count, sysex_count, "
            "stray_note_off_count, end_tick, end_s) "
            "VALUES (5, 1, 0, 0, 'Violins', 'Violins', FALSE, FALSE, 2, 0, 0, :et, :es)"
        ),
        {"et": end_tick, "es": end_s},
    )


def test_upgrade_creates_schema_and_models_match_migrations(db_url):
    engine = make_engine(db_url)
    migrate.upgrade(engine)
    names = set(inspect(engine).get_table_names())
    assert names >= REQUIRED
    assert {"notes_view", "cue_summary"} <= set(inspect(engine).get_view_names())
    migrate.check(engine)  # raises on drift between models and migrations
    assert migrate.current_revision(engine) == migrate.head_revision()
    migrate.downgrade(engine, "base")
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    migrate.upgrade(engine)
    assert set(inspect(engine).get_table_names()) >= REQUIRED
    engine.dispose()


def test_parts_migration_keeps_stored_tracks_and_their_notes(db_url):
    """0007 on a database written before parts: each track row becomes its own single part."""
    engine = make_engine(db_url)
    migrate.upgrade(engine, "0005")
    with engine.begin() as conn:
        _insert_cue_and_file(conn, tracks=2, notes=1, length_tick=480, length_s=0.5)
        for track_id, index, name in ((1, 0, "Tempo"), (2, 1, "Violins")):
            conn.execute(
                text(
                    "INSERT INTO midi_tracks (id, midi_file_id, track_index, name, is_conductor, "
                    "is_drum, note_count, sysex_count, stray_note_off_count, end_tick, end_s) "
                    "VALUES (:id, 1, :i, :n, :c, FALSE, :k, 0, 0, 480, 0.5)"
                ),
                {"id": track_id, "i": index, "n": name, "c": index == 0, "k": index},
            )
        conn.execute(
            text(
                "INSERT INTO midi_notes (id, track_id, channel, pitch, velocity, start_tick, "
                "end_tick, start_s, end_s, end_sustain_s, end_inferred) "
                "VALUES (1, 2, 0, 60, 100, 0, 480, 0.0, 0.5, 0.5, FALSE)"
            )
        )
    migrate.upgrade(engine)
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT id, track_index, part_index, name, part_name FROM midi_tracks ORDER BY id")
        ).all()
        assert [tuple(r) for r in rows] == [
            (1, 0, 0, "Tempo", "Tempo"),
            (2, 1, 1, "Violins", "Violins"),
        ]
        view = conn.execute(text("SELECT part_index, part_name, pitch FROM notes_view")).all()
        assert [tuple(r) for r in view] == [(1, "Violins", 60)]
    migrate.check(engine)
    migrate.downgrade(engine, "0005")
    with engine.connect() as conn:
        assert conn.execute(text("SELECT COUNT(*) FROM midi_notes")).scalar_one() == 1
    engine.dispose()


def test_compact_notes_migration_converts_stored_notes_both_ways(db_url):
    """0007: seconds become whole microseconds (sustain NULL where it equals the end), ids kept,
    the view still answers in seconds; the downgrade gives the seconds back."""
    engine = make_engine(db_url)
    migrate.upgrade(engine, "0008")
    with engine.begin() as conn:
        _insert_cue_and_file(conn, tracks=1, notes=2, length_tick=960, length_s=1.0)
        _insert_violins_part(conn, end_tick=960, end_s=1.0)
        for note_id, start_s, end_s, sustain_s in ((7, 0.25, 0.5, 0.5), (9, 1 / 3, 0.75, 0.9)):
            conn.execute(
                text(
                    "INSERT INTO midi_notes (id, track_id, channel, pitch, velocity, start_tick, "
                    "end_tick, start_s, end_s, end_sustain_s, start_bar, start_beat, "
                    "end_inferred) VALUES (:id, 5, 0, 60, 100, 0, 480, :s, :e, :p, 1, 1.5, FALSE)"
                ),
                {"id": note_id, "s": start_s, "e": end_s, "p": sustain_s},
            )
    migrate.upgrade(engine)
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT id, start_us, end_us, end_sustain_us FROM midi_notes ORDER BY id")
        ).all()
        assert [tuple(r) for r in rows] == [
            (7, 250_000, 500_000, None),
            (9, 333_333, 750_000, 900_000),
        ]
        view = conn.execute(
            text("SELECT note_id, start_s, duration_s, end_sustain_s FROM notes_view ORDER BY 1")
        ).all()
        assert [tuple(r) for r in view] == [(7, 0.25, 0.25, 0.5), (9, 0.333333, 0.416667, 0.9)]
    migrate.check(engine)
    migrate.downgrade(engine, "0008")
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT id, start_s, end_s, end_sustain_s, start_beat FROM midi_notes ORDER BY id")
        ).all()
        assert [tuple(r) for r in rows] == [(7, 0.25, 0.5, 0.5, 1.5), (9, 0.333333, 0.75, 0.9, 1.5)]
    migrate.upgrade(engine)  # and up again over the downgraded table
    engine.dispose()


def test_note_lengths_migration_keeps_every_end_time_both_ways(db_url):
    """0012: on SQLite the rows store lengths and ``end_tick``/``end_us`` become virtual columns
    reading the same values; PostgreSQL keeps its stored end columns. The downgrade stores the
    ends again."""
    engine = make_engine(db_url)
    sqlite = engine.dialect.name == "sqlite"
    migrate.upgrade(engine, "0011")
    notes = [(7, 0, 480, 0, 500_000, None), (9, 480, 2400, 500_000, 2_750_001, 3_000_000)]
    with engine.begin() as conn:
        _insert_cue_and_file(conn, tracks=1, notes=2, length_tick=2400, length_s=2.75)
        _insert_violins_part(conn, end_tick=2400, end_s=2.75)
        for note in notes:
            conn.execute(
                text(
                    "INSERT INTO midi_notes (id, track_id, channel, pitch, velocity, start_tick, "
                    "end_tick, start_us, end_us, end_sustain_us, start_bar, start_beat, "
                    "end_inferred) VALUES (:id, 5, 0, 60, 100, :st, :et, :su, :eu, :p, 1, 1.5, "
                    "FALSE)"
                ),
                dict(zip(("id", "st", "et", "su", "eu", "p"), note, strict=True)),
            )
    read = text(
        "SELECT id, start_tick, end_tick, start_us, end_us, end_sustain_us FROM midi_notes "
        "ORDER BY id"
    )
    migrate.upgrade(engine)
    with engine.connect() as conn:
        assert [tuple(r) for r in conn.execute(read)] == notes
        view = conn.execute(text("SELECT end_tick, end_s, duration_s FROM notes_view ORDER BY 1"))
        assert [tuple(r) for r in view] == [(480, 0.5, 0.5), (2400, 2.750001, 2.250001)]
        if sqlite:
            stored = conn.execute(
                text("SELECT duration_ticks, duration_us FROM midi_notes ORDER BY id")
            ).all()
            assert [tuple(r) for r in stored] == [(480, 500_000), (1920, 2_250_001)]
            # hidden = 2: a virtual generated column, which the row does not store
            xinfo = {r[1]: r[6] for r in conn.exec_driver_sql("PRAGMA table_xinfo(midi_notes)")}
            assert (xinfo["end_tick"], xinfo["end_us"], xinfo["duration_us"]) == (2, 2, 0)
        else:
            names = {c["name"] for c in inspect(conn).get_columns("midi_notes")}
            assert {"end_tick", "end_us"} <= names
            assert not names & {"duration_ticks", "duration_us"}
    migrate.check(engine)
    migrate.downgrade(engine, "0011")
    with engine.connect() as conn:
        assert [tuple(r) for r in conn.execute(read)] == notes
        names = {c["name"] for c in inspect(conn).get_columns("midi_notes")}
        assert not names & {"duration_ticks", "duration_us"}
    migrate.upgrade(engine)
    engine.dispose()


def test_notes_view_by_track_reads_the_same_rows_and_searches_notes_per_track(db_url):
    """0013: ``notes_view`` names the tracks first and the notes through ``CROSS JOIN``. It
    gives the rows it gave at 0012, and on SQLite a question over every note reads each track's
    notes as one range of the table instead of looking up a track per note."""
    engine = make_engine(db_url)
    sqlite = engine.dialect.name == "sqlite"
    migrate.upgrade(engine)
    ends = "duration_ticks, duration_us" if sqlite else "end_tick, end_us"
    with engine.begin() as conn:
        _insert_cue_and_file(conn, tracks=1, notes=2, length_tick=2400, length_s=2.75)
        _insert_violins_part(conn, end_tick=2400, end_s=2.75)
        for note_id, start_tick, start_us in ((7, 0, 0), (9, 480, 500_000)):
            conn.execute(
                text(
                    "INSERT INTO midi_notes (id, track_id, channel, pitch, velocity, "
                    f"start_tick, start_us, start_bar, start_beat, end_inferred, {ends}) "
                    "VALUES (:id, 5, 0, 60, 100, :st, :su, 1, 1.5, FALSE, :l1, :l2)"
                ),
                {
                    "id": note_id,
                    "st": start_tick,
                    "su": start_us,
                    "l1": 480 if sqlite else start_tick + 480,
                    "l2": 500_000 if sqlite else start_us + 500_000,
                },
            )
    read = text("SELECT * FROM notes_view ORDER BY note_id")
    with engine.connect() as conn:
        at_head = [tuple(r) for r in conn.execute(read)]
        if sqlite:
            plan = [
                r[3]
                for r in conn.exec_driver_sql(
                    "EXPLAIN QUERY PLAN SELECT track_category, COUNT(*) FROM notes_view GROUP BY 1"
                )
            ]
            assert "SEARCH n USING PRIMARY KEY (track_id=?)" in plan
            assert not [p for p in plan if p.startswith("SCAN n")]
    assert [(r[0], r[6], r[8], r[23], r[24]) for r in at_head] == [
        (7, 5, "Violins", 0.0, 0.5),
        (9, 5, "Violins", 0.5, 1.0),
    ]
    migrate.downgrade(engine, "0012")
    with engine.connect() as conn:
        assert [tuple(r) for r in conn.execute(read)] == at_head
    migrate.upgrade(engine)
    migrate.check(engine)
    engine.dispose()
