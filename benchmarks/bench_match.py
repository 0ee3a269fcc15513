"""Matching: the fuzzy matcher's accuracy on the case table beside a naive baseline, and its speed.

The baseline is what a first script would do: for every track, ``thefuzz.process.extractOne`` over
the raw stem names with the same threshold (60), no normalisation, no global assignment.
"""

from __future__ import annotations

import time

from benchmarks.common import Row
from kmidi_ingest.match import DEFAULT_THRESHOLD, fuzzy_match
from tests.match_cases import CASES


def _accuracy(predict) -> float:
    right = total = 0
    for case in CASES:
        for got, want in zip(predict(case), case.expected, strict=True):
            total += 1
            right += got == want
    return right / total


def _fuzzy(case) -> list[str | None]:
    return [
        None if r.stem_index is None else case.stems[r.stem_index]
        for r in fuzzy_match(case.tracks, case.stems)
    ]


def _naive(case) -> list[str | None]:
    from thefuzz import process

    out: list[str | None] = []
    for track in case.tracks:
        best = process.extractOne(track, case.stems, score_cutoff=DEFAULT_THRESHOLD)
        out.append(None if best is None else best[0])
    return out


def _ms_per_cue(predict, repeats: int) -> float:
    predict(CASES[0])  # imports and caches out of the timing
    started = time.perf_counter()
    for _ in range(repeats):
        for case in CASES:
            predict(case)
    return (time.perf_counter() - started) * 1000 / (repeats * len(CASES))


def run(quick: bool) -> list[Row]:
    repeats = 2 if quick else 10
    tracks = sum(len(c.tracks) for c in CASES)
    label = f"{len(CASES)} cues / {tracks} tracks"
    return [
        Row(
            section="match",
            figure=f"fuzzy accuracy ({label})",
            value=100 * _accuracy(_fuzzy),
            unit="%",
            baseline="naive extractOne on raw names",
            baseline_value=100 * _accuracy(_naive),
        ),
        Row(
            section="match",
            figure="fuzzy time per cue",
            value=_ms_per_cue(_fuzzy, repeats),
            unit="ms",
            baseline="naive extractOne on raw names",
            baseline_value=_ms_per_cue(_naive, repeats),
            higher_is_better=False,
        ),
    ]
