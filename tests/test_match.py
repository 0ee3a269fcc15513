"""The fuzzy matcher on the case table, its normalisation and sharing rules, and the categories."""

from __future__ import annotations

import numpy as np
import pytest

from kmidi_ingest.categories import categorize
from kmidi_ingest.match import (
    ABBREVIATIONS,
    FuzzyMatcher,
    MatchRequest,
    fuzzy_match,
    may_share,
    normalize_name,
    resolve_matcher,
    score_names,
)
from tests.match_cases import CASES, MatchCase


def predicted(c: MatchCase) -> list[str | None]:
    results = fuzzy_match(c.tracks, c.stems)
    return [None if r.stem_index is None else c.stems[r.stem_index] for r in results]


def test_case_table_is_large_and_well_formed():
    assert len(CASES) >= 60
    assert len({c.name for c in CASES}) == len(CASES)
    for c in CASES:
        assert len(c.tracks) == len(c.expected), c.name
        assert all(e is None or e in c.stems for e in c.expected), c.name


def test_fuzzy_accuracy_on_the_case_table_is_at_least_95_percent():
    right = total = 0
    wrong = []
    for c in CASES:
        for track, got, want in zip(c.tracks, predicted(c), c.expected, strict=True):
            total += 1
            right += got == want
            if got != want:
                wrong.append(f"{c.name}: {track!r} -> {got!r}, expected {want!r}")
    assert right / total >= 0.95, wrong


@pytest.mark.parametrize(
    ("raw", "normal"),
    [
        ("1M01 VLN1 spic.L", "violin 1 spiccato"),
        ("2m03b TAIKO_02", "taiko"),
        ("10M112 Hns a4", "horn"),
        ("R3 3M12 Violins v2", "violin"),
        ("1M21-LOW_STRINGS", "low string"),
        ("3M01 Violins II", "violin 2"),
        ("Synth Pad - Warm", "synth pad warm"),
        ("PAD WRM.R", "pad warm"),
        ("Cor Anglais", "english horn"),
        ("French Horns", "horn"),
        ("Snare_01", "snare"),
        ("Str.Hi", "string high"),
        ("CB Sus", "contrabass sustain"),
    ],
)
def test_normalize_name(raw, normal):
    assert normalize_name(raw) == normal


def test_issue_abbreviations_are_in_the_table():
    for short in [
        "vln",
        "vla",
        "vc",
        "cb",
        "hn",
        "tpt",
        "tbn",
        "fl",
        "ob",
        "cl",
        "bsn",
        "perc",
        "timp",
        "gtr",
        "pno",
        "syn",
        "vox",
    ]:
        assert short in ABBREVIATIONS, short
    assert normalize_name("TUBA") == "tuba"


def test_scores_rank_the_right_stem_first_and_reject_other_instruments():
    assert score_names("Hns a4", "2M03 French Horns") == 100.0
    assert score_names("Vln 1 Spicc", "1M02 VLN1 spic.L") == 100.0
    assert score_names("Low Perc (Taiko)", "1M01 Taiko_02") >= 60
    assert score_names("Cello", "4M40 Celeste") <= 30
    assert score_names("Violins", "VLAS") <= 30
    assert score_names("Pad 1", "Pad 2") < 60
    assert score_names("Perc Lo", "High Perc") < score_names("Perc Lo", "Low Perc")
    assert score_names("Click", "1M01 Strings") < 60
    assert score_names("Track 2", "5M30 Harp") == 0.0


def test_one_stem_takes_several_tracks_only_where_the_names_say_so():
    stems = ["4M02 Violins", "4M02 Violas"]
    got = fuzzy_match(["Vln 1", "Vln 2", "Vla"], stems)
    assert [r.stem_index for r in got] == [0, 0, 1]
    # a numbered stem is one part: Vln 2 does not join VLN1
    got = fuzzy_match(["Vln 1", "Vln 2"], ["VLN1"])
    assert [r.stem_index for r in got] == [0, None]
    assert may_share("Horn 4", "Horn 3", "HN 3+4", same_file=True)
    assert not may_share("Horn 2", "Horn 3", "HN 3+4", same_file=True)
    # the same name in another MIDI file is an alternate, not a second part
    assert not may_share("Hns a4", "Hns a4", "Horns", same_file=False)
    assert may_share("Hns a4", "Hns a4", "Horns", same_file=True)


def test_threshold_leaves_weak_pairs_unmatched():
    got = fuzzy_match(["Click", "Strings"], ["Strings", "Brass"], threshold=60)
    assert got[0].stem_index is None and got[0].score < 60
    assert got[1].stem_index == 0 and got[1].score == 100.0
    assert fuzzy_match(["Strings"], ["Strings Hi"], threshold=100.0)[0].stem_index is None


def test_onset_correlation_breaks_ties_between_alternates():
    tracks, stems = ["Hns a4", "Hns a4"], ["2M03 French Horns", "2M03 Low Perc"]
    plain = fuzzy_match(tracks, stems, track_files=[0, 1])
    assert sorted(r.stem_index for r in plain if r.stem_index is not None) == [0]
    evidence = np.array([[0.64, 0.3], [0.9, 0.4]])
    got = fuzzy_match(tracks, stems, track_files=[0, 1], onset_correlation=evidence)
    assert [r.stem_index for r in got] == [None, 0]
    assert got[1].score == 100.0  # the stored score stays the name score
    evidence = np.array([[0.9, 0.3], [0.2, np.nan]])
    got = fuzzy_match(tracks, stems, track_files=[0, 1], onset_correlation=evidence)
    assert [r.stem_index for r in got] == [0, None]


def test_fuzzy_matcher_is_deterministic_and_handles_empty_cues():
    request = MatchRequest(track_names=CASES[3].tracks, stem_names=CASES[3].stems)
    first = FuzzyMatcher().match(request)
    assert all(FuzzyMatcher().match(request) == first for _ in range(3))
    assert all(r.method == "fuzzy" and r.fallback_reason is None for r in first.results)
    assert fuzzy_match([], ["Strings"]) == []
    assert [r.stem_index for r in fuzzy_match(["Strings"], [])] == [None]


def test_auto_matcher_uses_the_llm_only_with_a_key():
    assert resolve_matcher("auto", api_key=None) == "fuzzy"
    assert resolve_matcher("auto", api_key="sk-x") == "llm"
    assert resolve_matcher("fuzzy", api_key="sk-x") == "fuzzy"
    assert resolve_matcher("llm", api_key=None) == "llm"


@pytest.mark.parametrize(
    ("name", "program", "is_drum", "category", "source"),
    [
        # a descriptive name beats the drum channel and a generic GM program
        ("Low Perc (Taiko)", 0, True, "Low Percussion", "keyword"),
        ("Click", 115, False, "Ticker", "keyword"),
        ("Strings Hi", 48, False, "Strings", "keyword"),
        ("Hns a4", 60, False, "Brass", "keyword"),
        # names that say nothing fall back to the GM program or drum channel
        ("Track 3", 48, False, "Strings", "gm"),
        ("Kontakt 2", None, True, "Drums", "gm"),
        ("Inst 1", 38, False, "Synth Bass", "gm"),
        ("Inst 1", None, False, "Other", "default"),
    ],
)
def test_category_rule_name_first_then_gm(name, program, is_drum, category, source):
    guess = categorize(name, program=program, is_drum=is_drum)
    assert (guess.category, guess.source) == (category, source)
