"""Match stage: pair each MIDI track with the stem it was printed to, by name (offline, thefuzz).

Names are normalised first (case, cue code, take numbers, channel suffixes, separators,
abbreviations expanded through :data:`ABBREVIATIONS`), every track × stem pair is scored, and the
pairs are then chosen globally, best score first. A stem may take several tracks (``Vln 1`` and
``Vln 2`` printed to ``Violins``); a track takes at most one stem, and none below the threshold.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

DEFAULT_THRESHOLD = 60.0

# Abbreviation → full word, applied to whole words after lower-casing.
ABBREVIATIONS = {
    "vln": "violin",
    "vlns": "violins",
    "vl": "violin",
    "vn": "violin",
    "vla": "viola",
    "vlas": "violas",
    "vc": "cello",
    "vcs": "cellos",
    "vcl": "cello",
    "celli": "cellos",
    "cb": "contrabass",
    "kb": "contrabass",
    "db": "contrabass",
    "hn": "horn",
    "hns": "horns",
    "hrn": "horn",
    "tpt": "trumpet",
    "tpts": "trumpets",
    "tp": "trumpet",
    "tbn": "trombone",
    "tbns": "trombones",
    "tb": "trombone",
    "fl": "flute",
    "fls": "flutes",
    "ob": "oboe",
    "obs": "oboes",
    "cl": "clarinet",
    "cls": "clarinets",
    "bsn": "bassoon",
    "bsns": "bassoons",
    "perc": "percussion",
    "timp": "timpani",
    "timps": "timpani",
    "gtr": "guitar",
    "gtrs": "guitars",
    "pno": "piano",
    "pf": "piano",
    "syn": "synth",
    "synths": "synth",
    "vox": "vocal",
    "str": "strings",
    "strs": "strings",
    "ww": "woodwinds",
    "brs": "brass",
    "wrm": "warm",
    "spic": "spiccato",
    "spicc": "spiccato",
    "stacc": "staccato",
    "leg": "legato",
    "trem": "tremolo",
    "orch": "orchestra",
    "fx": "effects",
    "sfx": "effects",
    "lo": "low",
    "hi": "high",
    "elec": "electric",
    "ac": "acoustic",
    "acc": "acoustic",
    "bs": "bass",
    "dr": "drums",
    "drm": "drums",
    "kit": "drums",
    "pizz": "pizzicato",
}
# Words that say nothing about the instrument.
STOPWORDS = frozenset(
    {
        "the",
        "and",
        "of",
        "ens",
        "ensemble",
        "section",
        "sect",
        "a2",
        "a3",
        "a4",
        "a6",
        "a8",
        "tutti",
        "stem",
        "stems",
        "print",
        "mix",
        "mono",
        "st",
        "stereo",
        "midi",
        "track",
        "trk",
        "inst",
        "instr",
    }
)
_CUE_CODE = re.compile(r"\b\d+m\d+[a-z]?\b")
_CHANNEL_SUFFIX = re.compile(r"[ ._-](l|r|c|lfe|ls|rs|lss|rss|lsr|rsr|m|s)$", re.IGNORECASE)


@dataclass(frozen=True, kw_only=True)
class MatchResult:
    """The stem chosen for one track (``stem_index`` ``None`` when unmatched)."""

    track_index: int
    stem_index: int | None
    score: float
    method: str = "fuzzy"
    fallback_reason: str | None = None


def normalize_name(name: str) -> str:
    """Lower-case, drop cue codes, channel suffixes, take numbers and noise; expand abbreviations.

    >>> normalize_name("1M01 VLN1 spic.L")
    'violin 1 spiccato'
    """
    text = _CHANNEL_SUFFIX.sub("", name.strip())
    text = text.lower()
    text = _CUE_CODE.sub(" ", text)
    text = re.sub(r"[_\-.()\[\]/+,&:]+", " ", text)
    text = re.sub(r"(?<=[a-z])(?=\d)|(?<=\d)(?=[a-z])", " ", text)
    words = []
    for word in text.split():
        if word in STOPWORDS:
            continue
        if re.fullmatch(r"0\d+", word):  # take numbers such as _02
            continue
        words.append(ABBREVIATIONS.get(word, word))
    return " ".join(words)


def score_names(track_name: str, stem_name: str) -> float:
    """Similarity 0..100 of two normalised names (thefuzz token-set ratio, singular-insensitive)."""
    from thefuzz import fuzz

    a, b = _singular(track_name), _singular(stem_name)
    if not a or not b:
        return 0.0
    return float(max(fuzz.token_set_ratio(a, b), fuzz.ratio(a, b)))


def _singular(text: str) -> str:
    return " ".join(
        w[:-1] if len(w) > 3 and w.endswith("s") and not w.endswith("ss") else w
        for w in text.split()
    )


def fuzzy_match(
    track_names: Sequence[str],
    stem_names: Sequence[str],
    *,
    threshold: float = DEFAULT_THRESHOLD,
) -> list[MatchResult]:
    """Match tracks to stems by name; deterministic; one result per track, in track order."""
    tracks = [normalize_name(n) for n in track_names]
    stems = [normalize_name(n) for n in stem_names]
    scores = [[score_names(t, s) for s in stems] for t in tracks]
    best: dict[int, MatchResult] = {}
    pairs = sorted(
        ((scores[i][j], i, j) for i in range(len(tracks)) for j in range(len(stems))),
        key=lambda p: (-p[0], p[1], p[2]),
    )
    for score, i, j in pairs:
        if score < threshold:
            break
        if i not in best:
            best[i] = MatchResult(track_index=i, stem_index=j, score=score)
    return [
        best.get(i)
        or MatchResult(
            track_index=i,
            stem_index=None,
            score=max(scores[i], default=0.0),
        )
        for i in range(len(tracks))
    ]
