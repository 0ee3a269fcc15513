"""One part owning several stems: desk stems ``violin1`` … ``violin4`` of one ``violin`` part.

Names (:func:`kmidi_ingest.match.numbered_variants`), the decision and its content check
(:func:`kmidi_ingest.pairing.desk_stems`), migration 0011 up and down on both backends, and the
consumers that used to assume one stem per part (views, stats, export, windows, multitrack,
``db copy``), on cues rendered by the tests.
"""

from __future__ import annotations

import json

import pytest
import yaml
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from kmidi_ingest import dbcopy, ingest, migrate
from kmidi_ingest.db import make_engine
from kmidi_ingest.export import ExportOptions, export
from kmidi_ingest.inventory import inventory
from kmidi_ingest.match import numbered_variants
from kmidi_ingest.multitrack import export_multitrack
from kmidi_ingest.windowing import windows
from tests.dbutil import content
from tests.synth import SR, render, rhythm, write_stem, write_track_midi
from tests.test_llm import rows

PAIRS = (
    "SELECT t.name, a.name, m.stem_rank, m.verified, m.decided_by, r.name, m.verify_reason "
    "FROM track_matches m JOIN midi_tracks t ON t.id = m.track_id "
    "LEFT JOIN audio_files a ON a.id = m.audio_file_id "
    "LEFT JOIN audio_files r ON r.id = m.runner_up_audio_file_id "
    "ORDER BY t.track_index, m.stem_rank"
)


@pytest.mark.parametrize(
    ("part", "stems", "expected"),
    [
        ("violin", ["violin1", "violin2", "violin3", "violin4", "Cello"], (0, 1, 2, 3)),
        ("Violins", ["Vln 2", "VLN1", "Viola 1", "Violins"], (1, 0)),  # by number
        ("Strings", ["Strings.1", "Strings.2", "Strings"], (0, 1)),
        ("Violin", ["Violin Desk 1", "Violin Desk 2"], (0, 1)),
        ("violin", ["violin10", "violin2"], (1, 0)),
        ("violin", ["violin1"], ()),  # one numbered stem: an ordinary pair
        ("violin", ["violin1", "Vln 1"], ()),  # the same number twice is one variant
        ("Vln 1", ["Vln 1", "Vln 2"], ()),  # a numbered part owns no other number
        ("violin", ["violin_01", "violin_02"], ()),  # take numbers, not desks
        ("Horns", ["Horns a2", "Horns b2"], ()),  # a2: a due, stripped like a channel suffix
        ("violin", ["violin 1 pizz", "violin 2 pizz"], ()),  # another word: another part
        ("Strings", ["Str Hi 1", "Str Lo 2"], ()),
    ],
)
def test_numbered_variants(part, stems, expected):
    assert numbered_variants(part, stems) == expected


def _desk_cue(root, *, name="4M10 Desks", mix_gain=1.0):
    """``MIDI/<name>.mid`` with a ``violin`` and a ``Cello`` part; ``Audio Files/violin1`` …
    ``violin4`` (the violin's notes at four levels), ``Cello`` and a final mix."""
    cue = root / name
    tracks = {"violin": rhythm(11), "Cello": rhythm(12)}
    write_track_midi(cue / "MIDI" / f"{name}.mid", tracks)
    audio = cue / "Audio Files"
    for k in range(1, 5):
        write_stem(audio / f"violin{k}.wav", render(tracks["violin"]) * (0.6 + 0.1 * k))
    write_stem(audio / "Cello.wav", render(tracks["Cello"]))
    mix = (render(tracks["violin"]) + render(tracks["Cello"])) * 0.5 * mix_gain
    write_stem(audio / f"{name} 6MX.wav", mix)
    return cue


EXPECTED = [
    ("violin", "violin1", 0, True, "name+content", "Cello", None),
    ("violin", "violin2", 1, True, "name+content", "Cello", None),
    ("violin", "violin3", 2, True, "name+content", "Cello", None),
    ("violin", "violin4", 3, True, "name+content", "Cello", None),
]


def _normalised(got):
    return [(a, b, c, None if v is None else bool(v), d, r, why) for a, b, c, v, d, r, why in got]


def test_a_violin_part_owns_its_four_desk_stems(tmp_path, pg_url):
    root = tmp_path / "cues"
    _desk_cue(root)
    url = f"sqlite:///{tmp_path / 'x.sqlite'}"
    summary = ingest(root, SR, database_url=url, workers=1)
    assert summary.ok, summary.problems
    assert summary.matches == 2  # parts paired with a stem, not pairs
    got = _normalised(rows(url, PAIRS))
    assert got[:4] == EXPECTED
    # the cello is untouched: one row, its own stem, verified; the mix is never a candidate
    assert got[4][:5] == ("Cello", "Cello", 0, True, "name+content")
    assert len(got) == 5
    # each desk is verified on its own evidence, against the stems the part does not own
    evidence = rows(
        url,
        "SELECT a.name, m.content_z, m.margin_z, m.content_score FROM track_matches m "
        "JOIN audio_files a ON a.id = m.audio_file_id JOIN midi_tracks t ON t.id = m.track_id "
        "WHERE t.name = 'violin' ORDER BY m.stem_rank",
    )
    for stem, z, margin, share in evidence:
        assert z > 8 and margin > 5 and share > 0.02, stem

    # views: a note once, a part once
    notes = rows(url, "SELECT COUNT(*), COUNT(DISTINCT note_id) FROM notes_view")[0]
    assert notes[0] == notes[1] == rows(url, "SELECT SUM(note_count) FROM midi_tracks")[0][0]
    assert rows(url, "SELECT DISTINCT stem_name FROM notes_view WHERE track_name = 'violin'") == [
        ("violin1",)
    ]
    assert rows(url, "SELECT matched_tracks, stems FROM cue_summary") == [(2, 5)]
    engine = make_engine(url)
    try:
        stats = inventory(engine)
    finally:
        engine.dispose()
    assert (stats.tracks_matched, stats.pairs, stats.matches_verified) == (2, 5, 5)
    assert stats.stems_unmatched == 0

    # a re-run skips the cue; a changed file recomputes it into the same rows
    before = content(url, ["track_matches", "audio_files"])
    again = ingest(root, SR, database_url=url, workers=1)
    assert (again.cues_ingested, again.cues_skipped) == (0, 1)
    _desk_cue(root, mix_gain=0.9)
    changed = ingest(root, SR, database_url=url, workers=1)
    assert changed.cues_ingested == 1 and changed.ok
    assert _normalised(rows(url, PAIRS)) == got
    assert content(url, ["track_matches"]) == {"track_matches": before["track_matches"]}

    # db copy to PostgreSQL keeps every pair
    source, target = make_engine(url), make_engine(pg_url)
    try:
        assert dbcopy.copy_database(source, target).ok
    finally:
        source.dispose()
        target.dispose()
    assert _normalised(rows(pg_url, PAIRS)) == got
    assert rows(pg_url, "SELECT matched_tracks FROM cue_summary") == [(2,)]


def test_consumers_give_every_pair(tmp_path):
    root = tmp_path / "cues"
    _desk_cue(root)
    url = f"sqlite:///{tmp_path / 'x.sqlite'}"
    assert ingest(root, SR, database_url=url, workers=1).ok
    engine = make_engine(url)
    try:
        per_track = export(engine, tmp_path / "t.jsonl", ExportOptions(per="track"))
        per_cue = export(engine, tmp_path / "c.jsonl", ExportOptions(per="cue"))
        multi = export_multitrack(engine, tmp_path / "multi")
    finally:
        engine.dispose()

    records = [json.loads(line) for line in (tmp_path / "t.jsonl").read_text().splitlines()]
    assert per_track.records == 5
    pairs = [(r["track"]["part_name"], r["stem"]["name"], r["track"]["match"]) for r in records]
    assert [(p, s, m["stem_rank"], m["verified"]) for p, s, m in pairs] == [
        ("violin", "violin1", 0, True),
        ("violin", "violin2", 1, True),
        ("violin", "violin3", 2, True),
        ("violin", "violin4", 3, True),
        ("Cello", "Cello", 0, True),
    ]
    assert all(r["stem"]["stem_id"] == r["track"]["match"]["stem_id"] for r in records)
    assert [len(r["track"]["other_matches"]) for r in records] == [3, 3, 3, 3, 0]
    assert len(records[0]["track"]["notes"]["pitch"]) == records[0]["track"]["note_count"]

    (cue,) = [json.loads(line) for line in (tmp_path / "c.jsonl").read_text().splitlines()]
    assert per_cue.records == 1
    violin, cello = cue["tracks"]
    stem_names = {s["stem_id"]: s["name"] for s in cue["stems"]}
    assert stem_names[violin["match"]["stem_id"]] == "violin1"
    assert [(stem_names[m["stem_id"]], m["stem_rank"]) for m in violin["other_matches"]] == [
        ("violin2", 1),
        ("violin3", 2),
        ("violin4", 3),
    ]
    assert cello["other_matches"] == []

    # multitrack: the violin part in each of its four stems' Sxx, the cello in its own
    assert (multi.stems, multi.parts) == (5, 5)
    meta = yaml.safe_load((tmp_path / "multi" / "4M10 Desks" / "metadata.yaml").read_text())
    stems = meta["stems"]
    assert [(sid, s["plugin_name"], [p["stem_rank"] for p in s["parts"]]) for sid, s in
            sorted(stems.items())] == [
        ("S00", "violin1", [0]),
        ("S01", "violin2", [1]),
        ("S02", "violin3", [2]),
        ("S03", "violin4", [3]),
        ("S04", "Cello", [0]),
    ]  # fmt: skip

    # training windows: one set per pair, the mix roll holding each part once
    got = list(windows(url, window_s=2.0, hop_s=2.0, splits=(1.0, 0.0, 0.0), mixes=True))
    per_stem: dict[str, int] = {}
    for w in got:
        per_stem[w.stem_name] = per_stem.get(w.stem_name, 0) + 1
    stem_windows = {k: v for k, v in per_stem.items() if "6MX" not in k}
    assert sorted(stem_windows) == ["Cello", "violin1", "violin2", "violin3", "violin4"]
    assert len(set(stem_windows.values())) == 1  # same length, same notes: same windows
    violin_windows = [w for w in got if w.stem_name == "violin3"]
    assert all(w.pair["stem_rank"] == 2 and w.part["name"] == "violin" for w in violin_windows)
    assert len({w.window_id for w in got}) == len(got)
    mix = [w for w in got if w.kind == "mix"]
    assert mix and all(len(w.mix_parts) == 2 for w in mix)


def test_a_desk_stem_another_part_explains_stays_its(tmp_path):
    """``violin2`` holds the harp's notes (misprinted): the content gives it to the harp, and the
    violin part, with one desk left, is an ordinary pair. A ``Violin 3`` part keeps its desk."""
    cue = tmp_path / "cues" / "4M11 Desks"
    tracks = {"violin": rhythm(21), "Harp": rhythm(22), "Violin 3": rhythm(23)}
    write_track_midi(cue / "MIDI" / "4M11 Desks.mid", tracks)
    audio = cue / "Audio Files"
    write_stem(audio / "violin1.wav", render(tracks["violin"]))
    write_stem(audio / "violin2.wav", render(tracks["Harp"]))
    write_stem(audio / "violin3.wav", render(tracks["Violin 3"]))
    url = f"sqlite:///{tmp_path / 'x.sqlite'}"
    assert ingest(tmp_path / "cues", SR, database_url=url, workers=1).ok
    got = [r[:5] for r in _normalised(rows(url, PAIRS))]
    assert got == [
        ("violin", "violin1", 0, True, "name+content"),
        ("Harp", "violin2", 0, True, "content"),
        ("Violin 3", "violin3", 0, True, "name+content"),
    ]


def test_migration_keeps_stored_pairs_and_the_downgrade_keeps_the_primary(db_url):
    engine = make_engine(db_url)
    migrate.upgrade(engine, "0010")
    inserts = [
        "INSERT INTO cues (id, name, rel_path, abs_path, status, stat_fingerprint, "
        "content_fingerprint, sample_rate_hz, midi_file_count, stem_count, final_mix_count, "
        "error_count, ingested_at) VALUES (1, 'c', 'c', '/c', 'complete', 'x', 'y', 16000, 1, 2, "
        "0, 0, CURRENT_TIMESTAMP)",
        "INSERT INTO midi_files (id, cue_id, rel_path, file_name, size_bytes, sha256, midi_format, "
        "timing, track_count, note_count, length_tick, length_s, lenient) "
        "VALUES (1, 1, 'a.mid', 'a.mid', 1, 'h', 1, 'ppq', 1, 1, 480, 0.5, FALSE)",
        "INSERT INTO midi_tracks (id, midi_file_id, track_index, part_index, name, part_name, "
        "is_conductor, is_drum, note_count, sysex_count, stray_note_off_count, end_tick, end_s) "
        "VALUES (5, 1, 0, 0, 'violin', 'violin', FALSE, FALSE, 1, 0, 0, 480, 0.5)",
        "INSERT INTO midi_notes (id, track_id, channel, pitch, velocity, start_tick, end_tick, "
        "start_us, end_us, end_inferred) VALUES (1, 5, 0, 60, 100, 0, 480, 0, 500000, FALSE)",
    ]
    for k in (1, 2):
        inserts.append(
            "INSERT INTO audio_files (id, cue_id, name, group_key, channel_count, channel_layout, "
            "source_sample_rate_hz, duration_s, peak, rms) VALUES "
            f"({k}, 1, 'violin{k}', 'violin{k}', 1, 'M', 16000, 1.0, 0.5, 0.1)"
        )
    with engine.begin() as conn:
        for sql in inserts:
            conn.execute(text(sql))
        conn.execute(
            text(
                "INSERT INTO track_matches (id, track_id, audio_file_id, method, score, verified) "
                "VALUES (1, 5, 1, 'fuzzy', 93.0, TRUE)"
            )
        )
    migrate.upgrade(engine)
    migrate.check(engine)
    pair = (
        "INSERT INTO track_matches (id, track_id, audio_file_id, method, score, stem_rank) VALUES "
    )
    with engine.begin() as conn:
        assert conn.execute(text("SELECT stem_rank FROM track_matches")).scalar_one() == 0
        conn.execute(text(pair + "(2, 5, 2, 'fuzzy', 90.0, 1)"))
    for duplicate in ("(3, 5, 2, 'fuzzy', 90.0, 2)", "(4, 5, NULL, 'fuzzy', 0.0, 1)"):
        with pytest.raises(IntegrityError), engine.begin() as conn:
            conn.execute(text(pair + duplicate))  # one row per stem, one row per rank
    with engine.connect() as conn:
        assert conn.execute(text("SELECT stem_id FROM notes_view")).all() == [(1,)]
        assert conn.execute(text("SELECT matched_tracks FROM cue_summary")).all() == [(1,)]
    migrate.downgrade(engine, "0010")
    with engine.connect() as conn:
        assert conn.execute(
            text("SELECT id, track_id, audio_file_id, score FROM track_matches")
        ).all() == [(1, 5, 1, 93.0)]
        assert conn.execute(text("SELECT stem_id FROM notes_view")).all() == [(1,)]
    with pytest.raises(IntegrityError), engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO track_matches (id, track_id, audio_file_id, method, score) "
                "VALUES (6, 5, 2, 'fuzzy', 90.0)"
            )
        )  # back to one stem per part
    migrate.upgrade(engine)
    engine.dispose()


def test_a_desk_that_does_not_follow_the_notes_is_left_out(tmp_path):
    """``Vln 3`` holds notes no part plays: the content contradicts it (z < 2), so the
    ``Violins`` part owns ``Vln 1`` and ``Vln 2`` only, and ``Vln 3`` stays a stem without a part."""
    cue = tmp_path / "cues" / "4M12 Desks"
    tracks = {"Violins": rhythm(31), "Harp": rhythm(32)}
    write_track_midi(cue / "MIDI" / "4M12 Desks.mid", tracks)
    audio = cue / "Audio Files"
    write_stem(audio / "Vln 1.wav", render(tracks["Violins"]))
    write_stem(audio / "Vln 2.wav", render(tracks["Violins"]) * 0.7)
    write_stem(audio / "Vln 3.wav", render(rhythm(99)))
    write_stem(audio / "Harp.wav", render(tracks["Harp"]))
    url = f"sqlite:///{tmp_path / 'x.sqlite'}"
    assert ingest(tmp_path / "cues", SR, database_url=url, workers=1).ok
    got = [r[:4] for r in _normalised(rows(url, PAIRS))]
    assert got == [
        ("Violins", "Vln 1", 0, True),
        ("Violins", "Vln 2", 1, True),
        ("Harp", "Harp", 0, True),
    ]


def test_without_content_evidence_the_names_decide(tmp_path):
    """Stems of 3 s are too short for a null distribution: no content z, so the names give the
    part its three desks, each ``verified`` NULL with the reason."""
    cue = tmp_path / "cues" / "4M13 Short"
    notes = rhythm(41, seconds=3.0)
    write_track_midi(cue / "MIDI" / "4M13 Short.mid", {"Strings": notes})
    for k in (1, 2, 3):
        write_stem(cue / "Audio Files" / f"Strings.{k}.wav", render(notes, seconds=3.0))
    url = f"sqlite:///{tmp_path / 'x.sqlite'}"
    assert ingest(tmp_path / "cues", SR, database_url=url, workers=1).ok
    got = _normalised(rows(url, PAIRS))
    assert [r[:5] for r in got] == [
        ("Strings", "Strings.1", 0, None, "name"),
        ("Strings", "Strings.2", 1, None, "name"),
        ("Strings", "Strings.3", 2, None, "name"),
    ]
    assert all(r[6] for r in got)  # the reason NULL
