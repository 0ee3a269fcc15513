"""The match step inside the pipeline: verification rows, the cue offset, alternates, categories."""

from __future__ import annotations

import pytest

from kmidi_ingest import ingest
from kmidi_ingest.cli import format_summary
from tests.conftest import EXAMPLES
from tests.synth import SR, render, rhythm, write_stem, write_track_midi
from tests.test_llm import rows

MATCHES = (
    "SELECT t.name, a.name, m.method, m.onset_correlation, m.lag_s, m.verified "
    "FROM track_matches m JOIN midi_tracks t ON t.id = m.track_id "
    "JOIN midi_files f ON f.id = t.midi_file_id "
    "LEFT JOIN audio_files a ON a.id = m.audio_file_id ORDER BY f.file_name, t.track_index"
)


def test_preroll_offset_and_a_stem_that_does_not_follow(tmp_path):
    cue = tmp_path / "cues" / "5M01 Pre"
    tracks = {"Marimba": rhythm(1), "Harp": rhythm(3), "Celesta": rhythm(4)}
    write_track_midi(cue / "MIDI" / "5M01 Pre.mid", tracks)
    audio = cue / "Audio Files"
    write_stem(audio / "5M01 Marimba.wav", render(tracks["Marimba"], offset_s=0.5))
    write_stem(audio / "5M01 Harp_02.wav", render(tracks["Harp"], offset_s=0.5))
    write_stem(audio / "5M01 CELESTE.wav", render(rhythm(5), offset_s=0.5))  # wrong part printed
    url = f"sqlite:///{tmp_path / 'x.sqlite'}"
    summary = ingest(tmp_path / "cues", SR, database_url=url)
    assert summary.ok, summary.problems
    got = rows(url, MATCHES)
    assert [(r[0], r[1], r[2], r[5]) for r in got] == [
        ("Marimba", "Marimba", "fuzzy", True),
        ("Harp", "Harp_02", "fuzzy", True),
        ("Celesta", "CELESTE", "fuzzy", False),
    ]
    for name, _, _, correlation, lag, verified in got:
        if verified:
            assert correlation > 0.75, name
            assert lag == pytest.approx(0.5, abs=0.035), name
        else:
            assert correlation < 0.45, name
    (offset,) = rows(url, "SELECT midi_offset_s FROM cues")[0]
    assert offset == pytest.approx(0.5, abs=0.035)
    assert summary.midi_offsets == {"5M01 Pre": offset}
    assert rows(url, "SELECT stage, error_type, message FROM ingest_errors") == [
        (
            "match",
            "MidiOffset",
            f"the stems are {offset:.3f} s behind the MIDI (constant offset of 2 verified "
            "pair(s); stored in cues.midi_offset_s)",
        )
    ]
    assert f"  offset      5M01 Pre: stems {offset:.3f} s behind the MIDI" in format_summary(
        summary
    )


def test_examples_alternate_take_categories_and_verification(tmp_path):
    url = f"sqlite:///{tmp_path / 'x.sqlite'}"
    summary = ingest(EXAMPLES, SR, database_url=url, workers=1)
    assert summary.ok, summary.problems
    got = {
        (r[0], r[1]): r
        for r in rows(url, MATCHES.replace("t.name,", "f.file_name || '/' || t.name,"))
    }
    pairs = {key: r[1] for key, r in got.items()}
    assert pairs == {
        ("1M01 Opening.mid/Strings Hi", "Strings"): "Strings",
        ("1M01 Opening.mid/Brass Ens", "Brass"): "Brass",
        ("1M01 Opening.mid/Low Perc (Taiko)", "Taiko_02"): "Taiko_02",
        ("1M01 Opening.mid/Click", None): None,
        ("1M02 Tension.mid/Vln 1 Spicc", "VLN1 spic"): "VLN1 spic",
        ("1M02 Tension.mid/Synth Pad - Warm", "Synth Pad"): "Synth Pad",
        ("1M02 Tension.mid/Piano", "PNO"): "PNO",
        # the alternate horn line has the same name; the audio follows the other file
        ("2M03 Chase alt.mid/Hns a4", None): None,
        ("2M03 Chase.mid/Hns a4", "French Horns"): "French Horns",
        ("2M03 Chase.mid/Low Perc (Taiko)", "Low Perc"): "Low Perc",
        ("2M03 Chase.mid/Synth Bass", "Synth Bass"): "Synth Bass",
    }
    matched = [r for r in got.values() if r[1] is not None]
    assert all(r[5] == 1 and r[3] > 0.5 and abs(r[4]) < 0.04 for r in matched), matched
    assert all(r[3:] == (None, None, None) for r in got.values() if r[1] is None)
    offsets = [o for (o,) in rows(url, "SELECT midi_offset_s FROM cues")]
    assert len(offsets) == 3 and all(abs(o) < 0.04 for o in offsets)
    assert summary.midi_offsets == {} and summary.warnings == []
    categories = rows(
        url,
        "SELECT DISTINCT name, category, category_source FROM midi_tracks "
        "WHERE NOT is_conductor ORDER BY name",
    )
    assert categories == [
        ("Brass Ens", "Brass", "keyword"),
        ("Click", "Ticker", "keyword"),
        ("Hns a4", "Brass", "keyword"),
        ("Low Perc (Taiko)", "Low Percussion", "keyword"),
        ("Piano", "Piano", "keyword"),
        ("Strings Hi", "Strings", "keyword"),
        ("Synth Bass", "Synth Bass", "keyword"),
        ("Synth Pad - Warm", "Synth Pad", "keyword"),
        ("Vln 1 Spicc", "Strings", "keyword"),
    ]


def test_llm_proposals_go_through_the_same_content_check(tmp_path):
    """An LLM answer that pairs a track with the wrong stem is overruled by clear content."""
    from dataclasses import dataclass

    from kmidi_ingest import discover
    from kmidi_ingest.batch.compute import CueSpec, process_cue
    from kmidi_ingest.match import CueMatch, MatchRequest, MatchResult
    from kmidi_ingest.pairing import apply_matcher

    cue_dir = tmp_path / "cues" / "6M01 Ask"
    tracks = {"Marimba": rhythm(1, seconds=8.0), "Harp": rhythm(3, seconds=8.0)}
    write_track_midi(cue_dir / "MIDI" / "6M01 Ask.mid", tracks)
    write_stem(cue_dir / "Audio Files" / "6M01 Marimba.wav", render(tracks["Marimba"], seconds=8.0))
    write_stem(cue_dir / "Audio Files" / "6M01 Harp.wav", render(tracks["Harp"], seconds=8.0))
    (cue,) = discover.scan(tmp_path / "cues").cues
    result = process_cue(cue, CueSpec(sample_rate_hz=SR), stat_fingerprint="x")
    stems = [s.name for s in result.stems]

    @dataclass
    class Proposes:
        name: str = "llm"

        def match(self, request: MatchRequest) -> CueMatch:
            harp = stems.index("Harp")
            return CueMatch(
                results=tuple(
                    MatchResult(track_index=i, stem_index=harp, score=90.0, method="llm")
                    for i in range(len(request.track_names))
                )
            )

    updated, _ = apply_matcher(result, Proposes())
    got = {
        r.track_index: (stems[r.stem_index], r.decided_by, r.verified, r.method)
        for r in updated.matches
        if r.stem_index is not None
    }
    assert got == {
        1: ("Marimba", "content", True, "llm"),
        2: ("Harp", "llm+content", True, "llm"),
    }


def test_one_file_per_track_is_paired_by_the_file_name(tmp_path):
    """Dataset-style exports: MIDI/Marimba.mid beside Audio Files/Marimba.wav, tracks named after
    the song. The file's name is name evidence; the same song name in both files is no alternate."""
    cue = tmp_path / "cues" / "Song"
    parts = {"Marimba": rhythm(1, seconds=8.0), "Harp": rhythm(3, seconds=8.0)}
    for name, notes in parts.items():
        write_track_midi(cue / "MIDI" / f"{name}.mid", {"My Song": notes})
        write_stem(cue / "Audio Files" / f"{name}.wav", render(notes, seconds=8.0))
    url = f"sqlite:///{tmp_path / 'x.sqlite'}"
    summary = ingest(tmp_path / "cues", SR, database_url=url)
    assert summary.ok, summary.problems
    got = rows(
        url,
        "SELECT f.file_name, a.name, m.verified, m.decided_by, m.name_score FROM track_matches m "
        "JOIN midi_tracks t ON t.id = m.track_id JOIN midi_files f ON f.id = t.midi_file_id "
        "LEFT JOIN audio_files a ON a.id = m.audio_file_id ORDER BY f.file_name",
    )
    assert got == [
        ("Harp.mid", "Harp", 1, "name+content", 100.0),
        ("Marimba.mid", "Marimba", 1, "name+content", 100.0),
    ]
