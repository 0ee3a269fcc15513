"""End to end on real recordings (``../shared/data/real/cues``): ``verified`` means identity.

Frets on Fire songs (chart MIDI; the guitar and the band without it as stems): the true cue
verifies ``Guitar`` ↔ its guitar stem, the swapped cue verifies nothing against the stem named
``Guitar`` (the notes are in ``Band``), the cross cue (another song's guitar) verifies nothing.
The JTD trio: the piano track ↔ ``Piano``; bass, drums and the mix never. OGG stems are decoded
to WAV in a temporary folder first (the audio stage may not read OGG yet).
"""

from __future__ import annotations

import sqlite3

import pytest

from kmidi_ingest import ingest
from tests.conftest import REPO

REAL_CUES = next(
    (
        base / "shared" / "data" / "real" / "cues"
        for base in (REPO.parent, REPO.parent.parent)
        if (base / "shared" / "data" / "real" / "cues").is_dir()
    ),
    None,
)
pytestmark = pytest.mark.skipif(REAL_CUES is None, reason="../shared/data/real/cues is not present")


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory) -> dict[str, list[tuple]]:
    assert REAL_CUES is not None
    db = tmp_path_factory.mktemp("real") / "x.sqlite"
    summary = ingest(REAL_CUES, 22050, database_url=f"sqlite:///{db}", workers=1)
    assert summary.ok, summary.problems
    with sqlite3.connect(db) as conn:
        got: dict[str, list[tuple]] = {}
        for row in conn.execute(
            "SELECT c.name, a.name, m.verified, m.content_z, m.margin_z, m.decided_by, "
            "m.verify_reason FROM track_matches m JOIN midi_tracks t ON t.id = m.track_id "
            "JOIN midi_files f ON f.id = t.midi_file_id JOIN cues c ON c.id = f.cue_id "
            "LEFT JOIN audio_files a ON a.id = m.audio_file_id ORDER BY c.name"
        ):
            got.setdefault(row[0], []).append(row[1:])
    return got


SONGS = ("1M0{} Escape from chaosland", "2M0{} Metal madness", "3M0{} War of freedom")


@pytest.mark.parametrize("song", SONGS)
def test_true_guitar_pair_is_verified(outcomes, song):
    (row,) = outcomes[song.format(1) + " true"]
    assert row[0] == "Guitar" and row[1] == 1, row
    assert row[2] >= 3.5 and row[3] >= 2


@pytest.mark.parametrize("song", SONGS)
def test_swapped_stems_never_verify_the_stem_named_guitar(outcomes, song):
    (row,) = outcomes[song.format(2) + " swapped"]
    assert not (row[0] == "Guitar" and row[1] == 1), row
    if row[1] == 1:  # the content moved the track to the stem that holds its notes
        assert row[0] == "Band" and row[4] == "content"


@pytest.mark.parametrize("song", SONGS)
def test_cross_cue_verifies_nothing(outcomes, song):
    (row,) = outcomes[song.format(3) + " cross"]
    assert row[1] is not True, row


def test_jtd_piano_is_verified_against_its_stem_and_never_the_mix(outcomes):
    (row,) = outcomes["4M01 JTD Barron trio"]
    # the track has no name: its file's name (piano_midi.mid) and the content agree
    assert row[0] == "Piano" and row[1] == 1 and row[4] == "name+content", row
