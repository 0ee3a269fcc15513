"""Kit evidence: a drum track's hits against each stem's rise in the hat and cymbal bands."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from kmidi_ingest import assign, discover, kit
from kmidi_ingest.audio import MelParams, StemData, process_group
from kmidi_ingest.midi import NOTE_DTYPE
from tests.test_assign import evidence

SR = 22050
SECONDS = 12.0


def hits(seed: int) -> list[tuple[float, int]]:
    """A kick on an uneven beat and a hat between the kicks."""
    rng = np.random.default_rng(seed)
    out, now = [], 0.3
    while now < SECONDS - 0.5:
        out.append((round(now, 3), 36))
        out.append((round(now + 0.12, 3), 42))
        now += float(rng.uniform(0.25, 0.6))
    return out


def notes_of(rows: list[tuple[float, int]]) -> np.ndarray:
    notes = np.zeros(len(rows), dtype=NOTE_DTYPE)
    for row, (start, pitch) in zip(notes, rows, strict=True):
        row["start_s"], row["end_s"], row["pitch"], row["velocity"] = start, start + 0.1, pitch, 100
    return notes


def kit_render(rows: list[tuple[float, int]]) -> np.ndarray:
    """Kick: a 60 Hz thump; hat: a 40 ms burst of noise, high-passed (its energy at the top)."""
    rng = np.random.default_rng(0)
    out = np.zeros(int(SECONDS * SR))
    t = np.arange(int(0.15 * SR)) / SR
    for start, key in rows:
        i = int(start * SR)
        sound = (
            0.5 * np.sin(2 * np.pi * 60 * t) * np.exp(-t / 0.05)
            if key == 36
            else 0.5 * np.diff(rng.standard_normal(len(t) + 1)) * np.exp(-t / 0.04)
        )
        out[i : i + len(t)] += sound[: len(out) - i]
    return out


def bass_render(rows: list[tuple[float, int]]) -> np.ndarray:
    """A bass line on the kicks: E1 (41 Hz) with six harmonics, decaying."""
    out = np.zeros(int(SECONDS * SR))
    t = np.arange(int(0.3 * SR)) / SR
    tone = sum(np.sin(2 * np.pi * 41.2 * h * t) / h for h in range(1, 7)) * np.exp(-t / 0.12)
    for start, key in rows:
        if key == 36:
            i = int(start * SR)
            out[i : i + len(t)] += (0.3 * tone)[: len(out) - i]
    return out


def stem(path, samples) -> StemData:
    sf.write(str(path), samples, SR, subtype="PCM_16")  # at SR: the hat bands reach 11 kHz
    (group,) = discover.group_channels([(path, path.name)])
    return process_group(group, sample_rate_hz=SR, params=MelParams())


@pytest.fixture(scope="module")
def kit_z(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("kit")
    rows = hits(3)
    stems = [stem(tmp / "kit.wav", kit_render(rows)), stem(tmp / "bass.wav", bass_render(rows))]
    bass_line = notes_of([(s, 28) for s, k in rows if k == 36])
    tracks = [(notes_of(rows), True), (bass_line, False)]
    return kit.kit_evidence(tracks, [s.feature for s in stems])


def test_the_kits_stem_stands_out_and_a_bass_on_the_kicks_does_not(kit_z):
    drums = kit_z[0]
    assert drums[0] == pytest.approx(8.04, abs=0.05)  # far beyond the shifted copies
    assert drums[1] == pytest.approx(3.48, abs=0.05)  # the bass follows the kicks: its attacks
    assert drums[0] - drums[1] >= assign.KIT_MARGIN
    assert assign._kit_choice(drums) == 0


def test_pitched_tracks_have_no_kit_evidence(kit_z):
    assert np.isnan(kit_z[1]).all()


def test_too_few_hits_give_no_kit_z(tmp_path):
    rows = hits(3)
    silent_free = stem(tmp_path / "kit.wav", kit_render(rows))
    got = kit.kit_evidence([(notes_of(rows[:3]), True)], [silent_free.feature])
    assert np.isnan(got).all()


def test_the_kit_moves_an_unverified_drum_pick_and_never_verifies_it():
    # the content picked the bass stem (1) for the drum track 0, weakly; the kit says stem 2
    ev = evidence([[1.0, 3.5, 3.0], [1.0, 6.0, 1.0]], [[0.0, 0.004, 0.003], [0.0, 0.03, 0.0]])
    kit_z = np.array([[0.5, 1.0, 6.0], [np.nan, np.nan, np.nan]])
    before = assign.decide([None, None], ev, stem_names=assign_stems())
    assert before[0].stem_index == 1 and before[0].verified is None
    got = assign.decide([None, None], ev, stem_names=assign_stems(), kit=kit_z)
    assert (got[0].stem_index, got[0].decided_by, got[0].verified) == (2, "content", None)
    assert got[0].reason.startswith("the kit's hats and cymbals are in this stem (kit z 6.0)")
    assert (got[1].stem_index, got[1].verified) == (1, True)  # the bass keeps its verified pick


def test_a_names_proposal_and_an_unclear_kit_are_left_alone():
    ev = evidence([[1.0, 3.5, 3.0]], [[0.0, 0.004, 0.003]])
    named = assign.decide([1], ev, stem_names=assign_stems(), kit=np.array([[0.5, 1.0, 6.0]]))
    assert (named[0].stem_index, named[0].decided_by) == (1, "name+content")
    close = np.array([[0.5, 3.5, 6.0]])  # 2.5 above the runner-up: less than KIT_MARGIN
    assert assign._kit_choice(close[0]) is None


def assign_stems() -> tuple[str, ...]:
    return ("Strings", "Bass", "Drums")
