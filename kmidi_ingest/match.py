"""Match stage: pair each MIDI track with the stem it was printed to, and name its category.

Three strategies behind one :class:`Matcher` protocol (``--matcher`` / ``KMIDI_MATCHER``):

``fuzzy`` (:class:`FuzzyMatcher`, offline, deterministic)
    Names are normalised (:func:`normalize_name`: case, cue codes such as ``1M01``/``2m03b``,
    reel and version tags, take numbers ``_01``, channel suffixes ``.L``, separators, the
    abbreviation table :data:`ABBREVIATIONS`), every track × stem pair is scored
    (:func:`score_names`, thefuzz), and the pairs are chosen globally with the Hungarian algorithm
    (``scipy.optimize.linear_sum_assignment``) so that the total score is maximal. A pair below
    the threshold is never made. After that one-to-one assignment, a still unmatched track may
    *join* a stem that is taken only where the names say the stem holds several parts
    (:func:`may_share`): ``Vln 1`` and ``Vln 2`` → ``Violins``, ``Horn 3`` and ``Horn 4`` →
    ``HN 3+4``; never an alternate version of the same track from another MIDI file. When the
    content verification (:mod:`kmidi_ingest.verify`) has measured how well each stem's audio
    follows each track's notes, up to :data:`AUDIO_TIE_BREAK` points of onset correlation are
    added to the name score: similar names are then decided by the audio.
``llm`` (:class:`LlmMatcher`)
    One chat-completions request per cue with every track and stem name, a strict JSON-schema
    answer (pairs, categories, confidence), validated against the real names; timeouts, retries
    with exponential backoff, answers cached through an :class:`AnswerCache`. An unreachable
    server or an invalid answer falls back to ``fuzzy`` with ``method="fuzzy_fallback"`` and the
    reason.
``auto``
    ``llm`` when an API key is configured, else ``fuzzy`` (:func:`resolve_matcher`).
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from .categories import CATEGORIES

DEFAULT_THRESHOLD = 60.0
AUDIO_TIE_BREAK = 8.0  # name-score points added for a perfect onset correlation

# Abbreviation → full word, applied to whole lower-case words (after separators are split and
# letters are split from digits, so "VLN1" is "vln 1"). Plural abbreviations map to the singular
# word: plurals are ignored when scoring.
ABBREVIATIONS: dict[str, str] = {
    # strings
    "vln": "violin", "vlns": "violin", "vl": "violin", "vn": "violin", "vns": "violin",
    "vla": "viola", "vlas": "viola", "va": "viola",
    "vc": "cello", "vcs": "cello", "vcl": "cello", "vcls": "cello", "celli": "cello",
    "basses": "contrabass", "cb": "contrabass", "cbs": "contrabass", "kb": "contrabass", "db": "contrabass",
    "str": "string", "strs": "string", "stgs": "string",
    # brass
    "hn": "horn", "hns": "horn", "hrn": "horn", "hrns": "horn",
    "tpt": "trumpet", "tpts": "trumpet", "tp": "trumpet", "trp": "trumpet", "trps": "trumpet",
    "tbn": "trombone", "tbns": "trombone", "tb": "trombone", "trb": "trombone", "bones": "trombone",
    "tba": "tuba", "cimb": "cimbasso", "flugel": "flugelhorn", "brs": "brass",
    # woodwinds
    "fl": "flute", "fls": "flute", "picc": "piccolo", "ob": "oboe", "obs": "oboe",
    "eh": "english horn", "cl": "clarinet", "cls": "clarinet", "clar": "clarinet",
    "bsn": "bassoon", "bsns": "bassoon", "cbsn": "contrabassoon", "ww": "woodwind",
    "eng": "english",
    # percussion
    "perc": "percussion", "timp": "timpani", "timps": "timpani", "tymp": "timpani",
    "cym": "cymbal", "cyms": "cymbal", "sn": "snare", "bd": "bass drum", "kik": "kick",
    "hh": "hihat", "hat": "hihat", "hats": "hihat", "tamb": "tambourine",
    "glock": "glockenspiel", "xylo": "xylophone", "vibes": "vibraphone", "vib": "vibraphone",
    "kit": "drum", "drm": "drum", "drms": "drum", "dr": "drum",
    # keys, plucked, voices, synths
    "pno": "piano", "pnos": "piano", "pf": "piano", "ep": "electric piano", "kbd": "keyboard",
    "keys": "keyboard", "cel": "celesta", "celeste": "celesta", "org": "organ",
    "gtr": "guitar", "gtrs": "guitar", "egtr": "electric guitar",
    "agtr": "acoustic guitar", "elec": "electric", "ac": "acoustic", "acc": "acoustic",
    "bs": "bass", "vox": "vocal", "vx": "vocal", "voc": "vocal", "sop": "soprano",
    "ten": "tenor", "syn": "synth", "synths": "synth",
    "arp": "arpeggio", "fx": "effect", "sfx": "effect",
    "fhn": "horn", "fhns": "horn", "oh": "overhead", "ohs": "overhead", "el": "electric",
    "cymb": "cymbal", "xyl": "xylophone", "mar": "marimba", "mrb": "marimba",
    "wind": "woodwind", "winds": "woodwind", "bari": "baritone",
    "tops": "high", "top": "high", "bottoms": "low", "bottom": "low", "mids": "middle",
    # qualifiers and articulations
    "hi": "high", "lo": "low", "mid": "middle", "wrm": "warm", "drk": "dark",
    "spic": "spiccato", "spicc": "spiccato", "stacc": "staccato", "stac": "staccato",
    "leg": "legato", "trem": "tremolo", "pizz": "pizzicato", "sus": "sustain",
    "sust": "sustain", "marc": "marcato", "orch": "orchestra", "rh": "right", "lh": "left",
}  # fmt: skip
# Multi-word names rewritten before scoring (after abbreviations are expanded).
PHRASES: tuple[tuple[str, str], ...] = (
    ("cor anglais", "english horn"),
    ("gran cassa", "bass drum"),
    ("hi hat", "hihat"),
    ("high hat", "hihat"),
    ("double bass", "contrabass"),
    ("string bass", "contrabass"),
    ("french horn", "horn"),
)
# Words that say nothing about which stem a track was printed to.
STOPWORDS = frozenset(
    {
        "the", "and", "of", "ens", "ensemble", "section", "sect", "tutti", "stem", "stems",
        "print", "printed", "mix", "mono", "stereo", "midi", "track", "trk", "inst", "instr",
        "a2", "a3", "a4", "a5", "a6", "a8", "temp", "all", "full", "group",
    }
)  # fmt: skip
# Instrument words: two names that each name instruments, none of them shared, never match.
INSTRUMENTS = frozenset(
    {
        "violin", "viola", "cello", "contrabass", "string", "horn", "trumpet", "trombone",
        "tuba", "cimbasso", "flugelhorn", "brass", "flute", "piccolo", "oboe", "english",
        "clarinet", "bassoon", "contrabassoon", "woodwind", "percussion", "timpani", "cymbal",
        "snare", "kick", "hihat", "tom", "taiko", "tambourine", "shaker", "glockenspiel",
        "xylophone", "vibraphone", "marimba", "celesta", "drum", "piano", "organ", "rhodes",
        "guitar", "bass", "harp", "synth", "pad", "choir", "vocal", "soprano", "alto", "tenor",
        "baritone", "nylon", "arpeggio", "pulse", "drone", "riser", "hit", "braam", "boom",
        "click", "metronome", "keyboard", "mallet", "bell", "chime", "texture",
    }
)  # fmt: skip
# Register words: names that both give a register and give different ones do not match.
REGISTERS = frozenset({"high", "low", "middle"})
# Family stems: a stem named by a family word holds the instruments listed (kit pieces in
# ``DRUMS``, voices in ``CHOIR``, ``Sub Drop`` in ``SUB HITS``). Written from orchestration and
# print-template practice, not from the held-out benchmark table.
FAMILIES: dict[str, frozenset[str]] = {
    "drum": frozenset({"kick", "snare", "hihat", "tom", "ride", "crash", "cymbal", "overhead",
                       "room", "china", "splash", "rim", "clap", "loop", "breakbeat"}),
    "percussion": frozenset({"taiko", "shaker", "tambourine", "snare", "bass drum", "drum",
                             "cymbal", "tam", "gong", "conga", "bongo", "triangle", "cabasa",
                             "woodblock", "guiro", "anvil", "cajon", "djembe", "clap", "cassa",
                             "timbale", "agogo", "cowbell", "castanet", "frame", "toms", "tom"}),
    "choir": frozenset({"soprano", "alto", "tenor", "baritone", "vocal", "voice", "chorus"}),
    "vocal": frozenset({"soprano", "alto", "tenor", "baritone", "choir", "voice"}),
    "mallet": frozenset({"glockenspiel", "vibraphone", "xylophone", "marimba", "crotale",
                         "tubular", "chime", "bell", "celesta"}),
    "brass": frozenset({"horn", "trumpet", "trombone", "tuba", "cimbasso", "flugelhorn",
                        "euphonium", "cornet"}),
    "string": frozenset({"violin", "viola", "cello", "contrabass"}),
    "woodwind": frozenset({"flute", "piccolo", "oboe", "clarinet", "bassoon", "english",
                           "contrabassoon", "duduk", "shakuhachi", "ney", "bansuri", "whistle",
                           "recorder", "saxophone", "sax"}),
    "synth": frozenset({"pad", "arpeggio", "pulse", "lead", "sequence", "seq"}),
    "keyboard": frozenset({"piano", "organ", "celesta", "rhodes", "harpsichord", "wurlitzer"}),
    "hit": frozenset({"drop", "boom", "impact", "braam", "slam", "stab"}),
    "effect": frozenset({"whoosh", "riser", "reverse", "sweep", "swell", "downer", "texture",
                         "drone", "noise"}),
}  # fmt: skip
# The register an instrument implies, for family stems split by register (``STR HIGH``).
IMPLIED_REGISTER: dict[str, str] = {
    "violin": "high", "viola": "middle", "cello": "low", "contrabass": "low",
    "piccolo": "high", "flute": "high", "bassoon": "low", "contrabassoon": "low",
    "tuba": "low", "cimbasso": "low", "trumpet": "high", "taiko": "low", "cassa": "low",
    "shaker": "high", "tambourine": "high", "triangle": "high", "hihat": "high",
    "cymbal": "high", "soprano": "high", "alto": "middle", "tenor": "middle",
    "baritone": "low",
}  # fmt: skip
FAMILY_SCORE = 70.0
_ROMAN = {"i": "1", "ii": "2", "iii": "3", "iv": "4", "v": "5", "vi": "6"}
# Channel suffixes of Pro Tools multi-mono files (see DESIGN.md), removed from stem names.
_CHANNEL_SUFFIX = re.compile(
    r"[ ._-](l|r|c|lfe|ls|rs|lss|rss|lsr|rsr|lrs|rrs|cs|lc|rc|lw|rw|ltf|rtf|ltr|rtr|a\d{1,2}|m|s)$",
    re.IGNORECASE,
)
_CUE_CODE = re.compile(r"\b\d{1,2}m\d{1,3}[a-z]?\b")  # 1M01, 2m03b, 10M112
_REEL = re.compile(r"\b(r|reel|rl)\s?\d{1,2}\b")
_VERSION = re.compile(r"\b(v|ver|version|rev)\s?\d{1,3}\b")
_TAKE = re.compile(r"(?:[_ ]|\b)(?:0\d+|t\d+|tk\d+|take\s?\d+)$")
"""Take numbers (``_01``, ``_02``, ``tk3``) at the end of a name; a leading zero marks a take."""
_SEPARATORS = re.compile(r"[_\-.()\[\]{}/\\+,&:;|#*\"']+")


def normalize_name(name: str) -> str:
    """Canonical form of a track or stem name, for scoring.

    Lower-cases; removes the channel suffix (``.L``), the cue code (``1M01``, ``2m03b``), reel
    and version tags (``R3``, ``v2``), take numbers (``_01``, ``tk3``) and stopwords; splits
    separators and letters from digits (``VLN1`` → ``vln 1``); turns Roman part numbers into
    digits; expands :data:`ABBREVIATIONS` and :data:`PHRASES`; drops plurals.

    >>> normalize_name("1M01 VLN1 spic.L")
    'violin 1 spiccato'
    >>> normalize_name("2m03b TAIKO_02")
    'taiko'
    """
    text = name.strip()
    text = _CHANNEL_SUFFIX.sub("", text).lower()
    text = _CUE_CODE.sub(" ", text)
    text = _REEL.sub(" ", text)
    text = _VERSION.sub(" ", text)
    text = _TAKE.sub("", text.strip())
    text = _SEPARATORS.sub(" ", text)
    text = re.sub(r"(?<=[a-z])(?=\d)|(?<=\d)(?=[a-z])", " ", text)
    words: list[str] = []
    for index, word in enumerate(text.split()):
        if word in STOPWORDS or re.fullmatch(r"0\d+", word):
            continue
        if index > 0 and word in _ROMAN:
            words.append(_ROMAN[word])
            continue
        expanded = ABBREVIATIONS.get(word) or ABBREVIATIONS.get(_singular(word)) or _singular(word)
        words.extend(expanded.split())
    text = " ".join(words)
    for phrase, replacement in PHRASES:
        text = re.sub(rf"\b{phrase}\b", replacement, text)
    return text


def _singular(word: str) -> str:
    if len(word) <= 3 or not word.endswith("s") or word.endswith(("ss", "us", "is")):
        return word
    if word.endswith("sses"):
        return word[:-2]
    return word[:-1]


@dataclass(frozen=True, kw_only=True)
class _Name:
    text: str
    words: frozenset[str]
    numbers: frozenset[str]

    @classmethod
    def of(cls, raw: str) -> _Name:
        text = normalize_name(raw)
        tokens = text.split()
        return cls(
            text=text,
            words=frozenset(t for t in tokens if not t.isdigit()),
            numbers=frozenset(t for t in tokens if t.isdigit()),
        )


def score_names(track_name: str, stem_name: str) -> float:
    """Similarity 0..100 of a track name and a stem name (raw names; normalised here).

    The blend ``0.7·token_set_ratio + 0.3·token_sort_ratio`` (thefuzz) scores a name that is
    contained in the other high (``Hns a4`` ↔ ``French Horns``) and an exact name higher still.
    Names that both name instruments but no common one score at most 30 (``Cello`` ↔
    ``Celesta``); different part numbers (``Pad 1`` ↔ ``Pad 2``) or registers (``Hi`` ↔ ``Lo``)
    cost 30 points.
    """
    return _score(_Name.of(track_name), _Name.of(stem_name))


def _score(a: _Name, b: _Name) -> float:
    from thefuzz import fuzz

    if not a.words or not b.words:
        return 0.0
    score = 0.7 * fuzz.token_set_ratio(a.text, b.text) + 0.3 * fuzz.token_sort_ratio(a.text, b.text)
    instruments_a, instruments_b = a.words & INSTRUMENTS, b.words & INSTRUMENTS
    family = _family_match(a, b) or _family_match(b, a)
    if family:
        score = max(score, FAMILY_SCORE)
    elif instruments_a and instruments_b and not instruments_a & instruments_b:
        score = min(score, 30.0)
    if a.numbers and b.numbers and not a.numbers & b.numbers:
        score -= 30.0
    registers_a, registers_b = a.words & REGISTERS, b.words & REGISTERS
    if registers_a and registers_b and not registers_a & registers_b:
        score -= 30.0
    return float(max(0.0, min(100.0, score)))


def _family_match(member: _Name, family: _Name) -> bool:
    """``member`` names an instrument of a family ``family`` names (``Kick`` in ``DRUMS``).

    Not when ``family`` also names an instrument ``member`` lacks (``Drums`` is a family of
    ``Kick``, ``Bass Drums`` is not a family of ``Snare``), nor when the stem's register differs
    from the one the instrument implies (``Cellos`` is not ``STR HIGH``).
    """
    words = member.words
    for name in family.words & FAMILIES.keys():
        members = FAMILIES[name]
        hits = words & members
        if not hits or words & FAMILIES.keys():
            continue
        others = (family.words & INSTRUMENTS) - {name} - members - words
        if others:
            continue
        registers = family.words & REGISTERS
        implied = {IMPLIED_REGISTER[w] for w in hits if w in IMPLIED_REGISTER}
        if registers and implied and not registers & implied:
            continue
        return True
    return False


def may_share(track: str, partner: str, stem: str, *, same_file: bool) -> bool:
    """Whether ``track`` may be printed to ``stem`` beside ``partner``, already matched to it.

    True when the stem names nothing the track does not (its words are among the track's words:
    ``Violins`` for ``Vln 2``), its part numbers, if any, include the track's (``HN 3+4`` for
    ``Horn 4``), and the track is not an alternate of the partner: the same name in another MIDI
    file is another version of one part, not a second part.
    """
    t, p, s = _Name.of(track), _Name.of(partner), _Name.of(stem)
    if not same_file and t.text == p.text:
        return False
    if _family_match(t, s) and not s.numbers:
        return True  # a family stem holds several parts (kit pieces in DRUMS)
    if not s.words or not s.words <= t.words:
        return False
    return not s.numbers or t.numbers <= s.numbers and bool(t.numbers)


DESK_WORDS = frozenset({"desk", "dsk", "pult"})
"""Words a desk stem may add to the part's name (``Violin Desk 1``)."""


def numbered_variants(name: str, stem_names: Sequence[str]) -> tuple[int, ...]:
    """The stems that are numbered variants of one part's name (desk stems), by number.

    A stem is a variant when its name is the part's name plus a number (``violin`` →
    ``violin1``, ``Vln 2``, ``Violins.3``, ``Violin Desk 4``: the same words after
    :func:`normalize_name`, optionally :data:`DESK_WORDS`, and part numbers the name lacks).
    Only a name without numbers has variants, each number is taken once, and fewer than two
    variants are none: one ``Violin 1`` stem beside a ``Violin`` part is an ordinary pair. Take
    numbers (``violin_01``) and channel suffixes (``Horns a2``) are not part numbers.

    >>> numbered_variants("Violins", ["Vln 2", "violin1", "Viola 1", "Violins"])
    (1, 0)
    """
    part = _Name.of(name)
    if not part.words or part.numbers:
        return ()
    numbered: dict[tuple[int, ...], int] = {}
    for j, stem_name in enumerate(stem_names):
        stem = _Name.of(stem_name)
        if stem.numbers and stem.words - DESK_WORDS == part.words:
            numbered.setdefault(tuple(sorted(int(n) for n in stem.numbers)), j)
    return tuple(numbered[k] for k in sorted(numbered)) if len(numbered) >= 2 else ()


@dataclass(frozen=True, kw_only=True)
class MatchResult:
    """The stem chosen for one track (``stem_index`` ``None`` when unmatched).

    ``score`` is the name score 0..100 (fuzzy) or the confidence × 100 (LLM).
    """

    track_index: int
    stem_index: int | None
    score: float
    method: str = "fuzzy"
    fallback_reason: str | None = None


def name_scores(
    track_names: Sequence[str],
    stem_names: Sequence[str],
    *,
    file_names: Sequence[str | None] | None = None,
) -> np.ndarray:
    """Name score 0..100 of every track × stem, shape ``(n_tracks, n_stems)``.

    The better of :func:`score_names` on the track name and on the file name (where given).
    """
    tracks = [_Name.of(n) for n in track_names]
    files = [None if f is None else _Name.of(f) for f in (file_names or [None] * len(tracks))]
    stems = [_Name.of(n) for n in stem_names]
    scores = np.array(
        [
            [max(_score(t, s), _score(f, s) if f is not None else 0.0) for s in stems]
            for t, f in zip(tracks, files, strict=True)
        ],
        dtype=np.float64,
    )
    return scores.reshape(len(tracks), len(stems))


def fuzzy_match(
    track_names: Sequence[str],
    stem_names: Sequence[str],
    *,
    threshold: float = DEFAULT_THRESHOLD,
    track_files: Sequence[int] | None = None,
    onset_correlation: np.ndarray | None = None,
    file_names: Sequence[str | None] | None = None,
) -> list[MatchResult]:
    """Match tracks to stems by name; deterministic; one result per track, in track order.

    Parameters
    ----------
    track_names, stem_names : sequence of str
        Raw names (normalised here).
    threshold : float
        Minimum name score (0..100) of a pair.
    track_files : sequence of int, optional
        The MIDI file each track comes from (alternates in different files never share a stem).
    onset_correlation : np.ndarray, optional
        Shape ``(n_tracks, n_stems)``, NaN where unknown: how well each stem's audio follows each
        track's notes (:func:`kmidi_ingest.verify.onset_evidence`). Adds up to
        :data:`AUDIO_TIE_BREAK` points to the score used to *choose* pairs; the stored score stays
        the name score, and the threshold applies to the name score.
    file_names : sequence of str or None, optional
        Per track, the name of its MIDI file when that file holds only this track (one file per
        track is a common export: ``MIDI/Drums.mid`` beside ``Audio Files/Drums.wav``); a pair
        scores the better of the track name and the file name (:func:`name_scores`).
    """
    n_tracks, n_stems = len(track_names), len(stem_names)
    files = list(track_files) if track_files is not None else [0] * n_tracks
    scores = name_scores(track_names, stem_names, file_names=file_names)
    choice = scores.copy()
    if onset_correlation is not None and onset_correlation.size:
        audio = np.nan_to_num(np.clip(onset_correlation, 0.0, 1.0), nan=0.0)
        choice += AUDIO_TIE_BREAK * audio
    allowed = scores >= threshold
    assigned: dict[int, int] = {}
    if n_tracks and n_stems and allowed.any():
        # Imported here: a cue without stems (a MIDI-only collection) never pays for scipy.
        from scipy.optimize import linear_sum_assignment

        # Forbidden pairs get a large cost so the optimum never pays for them.
        cost = np.where(allowed, -choice, 1e6)
        rows, cols = linear_sum_assignment(cost)
        assigned = {int(i): int(j) for i, j in zip(rows, cols, strict=True) if allowed[i, j]}
    owners = {j: i for i, j in assigned.items()}
    for i in range(n_tracks):
        if i in assigned or not allowed[i].any():
            continue
        j = int(np.argmax(np.where(allowed[i], choice[i], -np.inf)))
        partner = owners.get(j)
        if partner is not None and may_share(
            track_names[i],
            track_names[partner],
            stem_names[j],
            same_file=files[i] == files[partner],
        ):
            assigned[i] = j
    return [
        MatchResult(track_index=i, stem_index=assigned[i], score=float(scores[i, assigned[i]]))
        if i in assigned
        else MatchResult(
            track_index=i,
            stem_index=None,
            score=float(scores[i].max()) if n_stems else 0.0,
        )
        for i in range(n_tracks)
    ]


# ---------------------------------------------------------------------------------------------
# The Matcher interface and its strategies
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, eq=False)
class MatchRequest:
    """Everything a matcher sees of one cue.

    ``track_files`` gives the MIDI file (index) of each track; ``onset_correlation`` is the
    content evidence of :mod:`kmidi_ingest.verify`, shape ``(n_tracks, n_stems)``, or ``None``.
    """

    track_names: tuple[str, ...]
    stem_names: tuple[str, ...]
    track_files: tuple[int, ...] = ()
    onset_correlation: np.ndarray | None = None
    file_names: tuple[str | None, ...] = ()  # per track: its MIDI file's name if it is alone there


@dataclass(frozen=True, kw_only=True)
class CueMatch:
    """A matcher's answer for one cue.

    ``results`` has one entry per track, in request order. ``track_categories`` and
    ``stem_categories`` are filled (one per track / stem, ``None`` where unknown) only when an
    LLM answered; ``requests`` counts the HTTP requests made and ``cache_hit`` says whether the
    answer came from the cache.
    """

    results: tuple[MatchResult, ...]
    track_categories: tuple[str | None, ...] = ()
    stem_categories: tuple[str | None, ...] = ()
    requests: int = 0
    cache_hit: bool = False

    @property
    def fallback_reason(self) -> str | None:
        reasons = {r.fallback_reason for r in self.results if r.fallback_reason}
        return next(iter(reasons)) if len(reasons) == 1 else None


class Matcher(Protocol):
    """A track → stem matching strategy."""

    name: str

    def match(self, request: MatchRequest) -> CueMatch:
        """Match one cue; never raises for a bad or missing answer (falls back instead)."""
        ...


@dataclass(frozen=True, kw_only=True)
class FuzzyMatcher:
    """The offline matcher (:func:`fuzzy_match`)."""

    threshold: float = DEFAULT_THRESHOLD
    name: str = "fuzzy"

    def match(self, request: MatchRequest) -> CueMatch:
        return CueMatch(
            results=tuple(
                fuzzy_match(
                    request.track_names,
                    request.stem_names,
                    threshold=self.threshold,
                    track_files=request.track_files or None,
                    onset_correlation=request.onset_correlation,
                    file_names=request.file_names or None,
                )
            )
        )


class AnswerCache(Protocol):
    """Where LLM answers are kept between runs (implemented by ``store.DbAnswerCache``)."""

    def get(self, key: str) -> str | None:
        """The cached answer (the JSON text the model returned) or ``None``."""
        ...

    def put(self, key: str, *, model: str, request_json: str, response_json: str) -> None:
        """Remember a validated answer."""
        ...


class MemoryAnswerCache:
    """An :class:`AnswerCache` in a dict (for library use without a database)."""

    def __init__(self) -> None:
        self.answers: dict[str, str] = {}

    def get(self, key: str) -> str | None:
        return self.answers.get(key)

    def put(self, key: str, *, model: str, request_json: str, response_json: str) -> None:
        self.answers[key] = response_json


class AnswerRejected(ValueError):
    """An LLM answer that does not fit the request (bad JSON, unknown names, ...)."""


PROMPT_VERSION = 1
SYSTEM_PROMPT = """\
You pair the MIDI tracks of one film-music cue with the audio stems they were printed to.
Names are abbreviated in many ways (VLN violins, VLA violas, VC celli, CB basses, HN horns,
TPT trumpets, TBN trombones, FL flutes, OB oboes, CL clarinets, BSN bassoons, PERC percussion,
TIMP timpani, GTR guitar, PNO piano, SYN synth, VOX vocals); stem names carry the cue code
(e.g. 1M01) and sometimes a take number (_02). Several tracks may be printed to one stem
(Vln 1 and Vln 2 to Violins). A click, guide or count-in track usually has no stem: answer null.
For every track give exactly one pair: its id, the exact stem name from the list or null, its
category, and your confidence from 0 to 1. Give a category for every stem too.
Categories: {categories}.
Answer with JSON only, following the schema."""


def answer_schema() -> dict[str, Any]:
    """The strict JSON schema of an LLM answer (``response_format`` json_schema)."""
    category = {"type": "string", "enum": list(CATEGORIES)}
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["pairs", "stems"],
        "properties": {
            "pairs": {
                "type": "array",
                "items": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["track_id", "stem", "category", "confidence"],
                    "properties": {
                        "track_id": {"type": "integer"},
                        "stem": {"type": ["string", "null"]},
                        "category": category,
                        "confidence": {"type": "number"},
                    },
                },
            },
            "stems": {
                "type": "array",
                "items": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["stem", "category"],
                    "properties": {"stem": {"type": "string"}, "category": category},
                },
            },
        },
    }


def request_payload(request: MatchRequest) -> dict[str, Any]:
    """The cue as the model sees it (also the cache key's content, with the model name)."""
    files = request.track_files or (0,) * len(request.track_names)
    return {
        "tracks": [
            {"id": i, "name": name, "midi_file": files[i]}
            for i, name in enumerate(request.track_names)
        ],
        "stems": list(request.stem_names),
    }


def cache_key(model: str, request: MatchRequest) -> str:
    """SHA-256 of the model, the prompt version and every track and stem name."""
    text = json.dumps(
        {"model": model, "prompt": PROMPT_VERSION, **request_payload(request)},
        sort_keys=True,
        ensure_ascii=False,
    )
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def parse_answer(text: str, request: MatchRequest) -> CueMatch:
    """Validate an LLM answer against the real names; raise :class:`AnswerRejected` if it is bad.

    Every track id must appear exactly once; a stem must be one of the stems (exactly, or
    ignoring case); categories must be in :data:`~kmidi_ingest.categories.CATEGORIES`;
    confidence in 0..1.
    """
    if not text.strip():
        raise AnswerRejected("empty answer")
    try:
        data = json.loads(text)
    except (TypeError, ValueError) as exc:
        raise AnswerRejected("not valid JSON") from exc
    if not isinstance(data, dict) or not isinstance(data.get("pairs"), list):
        raise AnswerRejected("no 'pairs' list")
    by_lower = {s.lower(): i for i, s in enumerate(request.stem_names)}
    exact = {s: i for i, s in enumerate(request.stem_names)}

    def stem_index(name: object) -> int:
        if not isinstance(name, str):
            raise AnswerRejected(f"stem {name!r} is not a name")
        found = exact.get(name, by_lower.get(name.lower()))
        if found is None:
            raise AnswerRejected(f"unknown stem {name!r}")
        return found

    def category(value: object) -> str:
        if value not in CATEGORIES:
            raise AnswerRejected(f"unknown category {value!r}")
        return str(value)

    n = len(request.track_names)
    results: dict[int, MatchResult] = {}
    track_categories: list[str | None] = [None] * n
    for pair in data["pairs"]:
        if not isinstance(pair, dict):
            raise AnswerRejected("a pair is not an object")
        track = pair.get("track_id")
        if not isinstance(track, int) or isinstance(track, bool) or not 0 <= track < n:
            raise AnswerRejected(f"unknown track id {track!r}")
        if track in results:
            raise AnswerRejected(f"track id {track} paired twice")
        confidence = pair.get("confidence")
        if not isinstance(confidence, int | float) or not 0 <= confidence <= 1:
            raise AnswerRejected(f"confidence {confidence!r} is not in 0..1")
        stem = pair.get("stem")
        results[track] = MatchResult(
            track_index=track,
            stem_index=None if stem is None else stem_index(stem),
            score=round(float(confidence) * 100.0, 3),
            method="llm",
        )
        track_categories[track] = category(pair.get("category"))
    missing = [i for i in range(n) if i not in results]
    if missing:
        raise AnswerRejected(f"track id {missing[0]} missing")
    stem_categories: list[str | None] = [None] * len(request.stem_names)
    for entry in data.get("stems") or ():
        if not isinstance(entry, dict):
            raise AnswerRejected("a stem entry is not an object")
        stem_categories[stem_index(entry.get("stem"))] = category(entry.get("category"))
    return CueMatch(
        results=tuple(results[i] for i in range(n)),
        track_categories=tuple(track_categories),
        stem_categories=tuple(stem_categories),
    )


_CONNECTION_ERROR = "connection error"


class _Unreachable(Exception):
    """The server gave no answer after ``attempts`` requests."""

    def __init__(self, kind: str, *, retry: bool) -> None:
        super().__init__(kind)
        self.kind = kind
        self.retry = retry
        self.attempts = 0


@dataclass(kw_only=True)
class LlmMatcher:
    """Match through an OpenAI-compatible chat-completions server, with cache and fuzzy fallback.

    One request per cue carries every track and stem name; the answer must follow
    :func:`answer_schema` (``response_format`` json_schema, strict) and pass
    :func:`parse_answer`. Timeouts, connection errors, HTTP 429 and 5xx are retried up to
    ``max_attempts`` times with exponential backoff (``backoff_s``, doubled each time); other
    HTTP errors and invalid answers are not. Whatever goes wrong, the cue is matched by
    ``fallback`` and every row says ``method="fuzzy_fallback"`` with the reason. Only validated
    answers are cached, so a re-run costs no request and a bad answer is asked again next time.

    One matcher serves one run. When a cue's attempts all end in connection errors (nothing
    listens, DNS fails, the connection is reset), the server is taken as down for the rest of
    the run: later cues are not asked (0 requests) and fall back at once, with a reason that
    says so. Cached answers are still used.

    The client is built on first use (``max_retries=0``: the retries are ours).
    """

    model: str
    api_key: str
    cache: AnswerCache
    base_url: str | None = None
    timeout_s: float = 60.0
    max_attempts: int = 3
    backoff_s: float = 0.5
    fallback: FuzzyMatcher = field(default_factory=FuzzyMatcher)
    sleep: Callable[[float], None] = time.sleep
    name: str = "llm"
    _client: Any = field(default=None, init=False, repr=False)
    _down: str | None = field(default=None, init=False, repr=False)

    def match(self, request: MatchRequest) -> CueMatch:
        if not request.track_names or not request.stem_names:
            return self.fallback.match(request)  # nothing to ask: every track stays unmatched
        key = cache_key(self.model, request)
        cached = self.cache.get(key)
        if cached is not None:
            try:
                return _replace_counts(parse_answer(cached, request), requests=0, cache_hit=True)
            except AnswerRejected:
                pass  # an answer cached by an older validator: ask again
        if self._down is not None:
            return self._fall_back(request, self._down, requests=0)
        requests = 0
        try:
            text, requests = self._ask(request)
            answer = parse_answer(text, request)
        except _Unreachable as exc:
            reason = f"LLM unreachable after {exc.attempts} attempt(s): {exc.kind}"
            if exc.kind == _CONNECTION_ERROR:
                self._down = (
                    f"LLM unreachable: {exc.kind} at an earlier cue of this run, not asked again"
                )
            return self._fall_back(request, reason, requests=exc.attempts)
        except AnswerRejected as exc:
            return self._fall_back(request, f"LLM answer rejected: {exc}", requests=requests)
        self.cache.put(
            key,
            model=self.model,
            request_json=json.dumps(request_payload(request), ensure_ascii=False),
            response_json=text,
        )
        return _replace_counts(answer, requests=requests, cache_hit=False)

    def _fall_back(self, request: MatchRequest, reason: str, *, requests: int) -> CueMatch:
        fuzzy = self.fallback.match(request)
        return CueMatch(
            results=tuple(
                MatchResult(
                    track_index=r.track_index,
                    stem_index=r.stem_index,
                    score=r.score,
                    method="fuzzy_fallback",
                    fallback_reason=reason,
                )
                for r in fuzzy.results
            ),
            requests=requests,
        )

    def _client_instance(self) -> Any:
        if self._client is None:
            from openai import OpenAI

            self._client = OpenAI(
                api_key=self.api_key,
                base_url=self.base_url,
                timeout=self.timeout_s,
                max_retries=0,
            )
        return self._client

    def _ask(self, request: MatchRequest) -> tuple[str, int]:
        """The answer text and the number of requests it took; raises :class:`_Unreachable`."""
        import openai

        client = self._client_instance()
        messages = [
            {"role": "system", "content": SYSTEM_PROMPT.format(categories=", ".join(CATEGORIES))},
            {"role": "user", "content": json.dumps(request_payload(request), ensure_ascii=False)},
        ]
        last: _Unreachable | None = None
        for attempt in range(1, self.max_attempts + 1):
            if attempt > 1:
                self.sleep(self.backoff_s * 2 ** (attempt - 2))
            try:
                completion = client.chat.completions.create(
                    model=self.model,
                    messages=messages,
                    temperature=0,
                    response_format={
                        "type": "json_schema",
                        "json_schema": {
                            "name": "track_stem_pairs",
                            "strict": True,
                            "schema": answer_schema(),
                        },
                    },
                )
            except openai.APITimeoutError:
                last = _Unreachable(f"timeout after {self.timeout_s:g} s", retry=True)
            except openai.APIConnectionError:
                last = _Unreachable(_CONNECTION_ERROR, retry=True)
            except openai.APIStatusError as exc:
                status = exc.status_code
                last = _Unreachable(f"HTTP {status}", retry=status == 429 or status >= 500)
            else:
                try:
                    content = completion.choices[0].message.content
                except (AttributeError, IndexError, TypeError):
                    content = None
                return str(content or ""), attempt
            last.attempts = attempt
            if not last.retry:
                break
        assert last is not None
        raise last


def _replace_counts(match: CueMatch, *, requests: int, cache_hit: bool) -> CueMatch:
    return CueMatch(
        results=match.results,
        track_categories=match.track_categories,
        stem_categories=match.stem_categories,
        requests=requests,
        cache_hit=cache_hit,
    )


def resolve_matcher(matcher: str, *, api_key: str | None) -> str:
    """``fuzzy`` or ``llm``: the strategy a run uses (``auto`` → ``llm`` when a key is set)."""
    if matcher == "auto":
        return "llm" if api_key else "fuzzy"
    return matcher
