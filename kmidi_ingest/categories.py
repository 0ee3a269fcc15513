"""The fixed instrument categories and the offline rules that assign them.

Order of evidence (``category_source``):

1. ``llm`` — the LLM matcher's answer, when it answered (set by the pipeline, not here);
2. ``keyword`` — the *name*, through the keyword table :data:`KEYWORDS`, when it says what the
   instrument is;
3. ``gm`` — the track's General MIDI program, or channel 10 (drums), for names that say nothing
   (``Track 3``, ``Inst 1``, ``Kontakt 2``);
4. ``Other`` with source ``default``.

The issue proposed GM before keywords. We put a descriptive name first because in film templates
the program and channel are set by the playback device, not by the instrument: every percussion
track sits on channel 10 whatever it plays (``Low Perc (Taiko)`` is Low Percussion, not Drums),
sample libraries answer to arbitrary programs (a ``Click`` on program 115 "Woodblock" is a Ticker,
not Mid Percussion), and the name is what the orchestrator typed. The GM family still decides
every track whose name matches no keyword.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

CATEGORIES = (
    "Strings", "Woodwinds", "Brass", "Electric Guitar", "Acoustic Guitar", "Piano", "Organ",
    "Bells", "Harp", "Synth Pulse", "Synth Pad", "Synth Bass", "Low Percussion",
    "Mid Percussion", "High Percussion", "Drums", "Orch Percussion", "Bass", "Double Bass", "FX",
    "Choir", "Solo Vocals", "Mallets", "Plucked", "Sub Hits", "Guitar FX", "Orch FX", "Ticker",
    "Other",
)  # fmt: skip

# Keyword → category, first match wins, so specific phrases come before general words.
# Matched against the lower-cased name split into words (abbreviations included).
KEYWORDS: tuple[tuple[str, str], ...] = (
    (r"\b(click|ticker|tick|metronome|clk)\b", "Ticker"),
    (r"\bsub ?(hit|drop|boom)s?\b|\bsub\b", "Sub Hits"),
    (r"\b(gtr|guitar)\b.*\b(fx|sfx|noise|scrape)\b|\bgtr ?fx\b", "Guitar FX"),
    (r"\borch(estral)? ?(fx|sfx|hits?|rise|riser)\b", "Orch FX"),
    (r"\bsynth ?bass\b|\bsyn ?bass\b|\bsub ?bass\b|\b808\b|\bbass ?synth\b", "Synth Bass"),
    (r"\b(pad|pads|atmos|drone|texture|wash)\b", "Synth Pad"),
    (r"\b(pulse|arp|arpeggio|seq|sequence|ostinato synth)\b", "Synth Pulse"),
    (r"\b(double ?bass|contrabass|basses|cb|kb|contra)\b", "Double Bass"),
    (r"\b(e ?gtr|elec(tric)? ?(gtr|guitar)|dist(orted)? ?gtr|egtr)\b", "Electric Guitar"),
    (
        r"\b(ac(oustic)? ?(gtr|guitar)|nylon|steel ?(gtr|guitar)|agtr|guitar|gtr)\b",
        "Acoustic Guitar",
    ),
    (r"\b(bass|elec bass|e ?bass|bass gtr)\b", "Bass"),
    (r"\b(celesta|celeste|bells?|chimes?|tubular|glock(enspiel)?|crotales?)\b", "Bells"),
    (r"\b(marimba|vibes|vibraphone|xylo(phone)?|mallets?)\b", "Mallets"),
    (r"\b(harp|harps)\b", "Harp"),
    (r"\b(piano|pno|pf|keys|rhodes|wurli|epiano)\b", "Piano"),
    (r"\b(organ|hammond|b3)\b", "Organ"),
    (r"\b(choir|chorus|voices|sopranos?|altos?|tenors?|basses? choir|satb)\b", "Choir"),
    (r"\b(vox|vocals?|voice|singer|solo vox|vocal)\b", "Solo Vocals"),
    (
        r"\b(timp|timpani|snare ?orch|orch ?perc|cymbals?|tam ?tam|gong|bass ?drum|gran ?cassa)\b",
        "Orch Percussion",
    ),
    (r"\b(taiko|taikos|low ?perc|boom|toms? low|surdo|daiko)\b", "Low Percussion"),
    (
        r"\b(shaker|shakers|tambourine|tamb|hats?|hi ?hat|high ?perc|triangle|claps?)\b",
        "High Percussion",
    ),
    (r"\b(perc|percussion|congas?|bongos?|toms?|mid ?perc|djembe|frame drum)\b", "Mid Percussion"),
    (r"\b(drums?|kit|kick|snare|drum ?kit|beat|loop)\b", "Drums"),
    (
        r"\b(violins?|violas?|vln|vla|vlns|vl|vc|vcs|cello|cellos|celli|strings?|str|strs|"
        r"spicc|spiccato|pizz|tremolo|trem|legato strings)\b",
        "Strings",
    ),
    (
        r"\b(horns?|hns?|hrn|trumpets?|tpts?|trombones?|tbns?|tuba|tubas|brass|cimbasso|"
        r"flugel|bones)\b",
        "Brass",
    ),
    (
        r"\b(flutes?|fl|fls|piccolo|picc|oboes?|ob|clarinets?|cl|cls|bassoons?|bsn|bsns|"
        r"winds|woodwinds?|ww|english horn|cor anglais|alto flute|bass clarinet|contrabassoon)\b",
        "Woodwinds",
    ),
    (
        r"\b(pluck|plucks|plucked|mandolin|banjo|ukulele|koto|harpsichord|kalimba|dulcimer|"
        r"zither|oud|sitar|bouzouki)\b",
        "Plucked",
    ),
    (r"\b(synth|syn|lead|saw)\b", "Synth Pulse"),
    (r"\b(fx|sfx|hits?|riser|rise|whoosh|impact|noise|braam|boom)\b", "FX"),
)
_COMPILED = tuple((re.compile(pattern), category) for pattern, category in KEYWORDS)


@dataclass(frozen=True, kw_only=True)
class CategoryGuess:
    category: str
    source: str  # llm | gm | keyword | default


def category_from_name(name: str) -> str | None:
    """Category from the keyword table, or ``None`` when no keyword matches."""
    text = re.sub(r"[_\-.()\[\]/+]+", " ", name.lower())
    text = re.sub(r"(?<=[a-z])(?=\d)|(?<=\d)(?=[a-z])", " ", text)  # "vln1" → "vln 1"
    for regex, category in _COMPILED:
        if regex.search(text):
            return category
    return None


def category_from_gm(program: int | None, *, is_drum: bool) -> str | None:
    """Category from a General MIDI program number (0-based), or channel 10 for drums."""
    if is_drum:
        return "Drums"
    if program is None:
        return None
    family = program // 8
    specific = {
        6: "Plucked",
        7: "Bells",
        8: "Bells",
        9: "Bells",
        10: "Bells",
        11: "Mallets",
        12: "Mallets",
        13: "Mallets",
        14: "Bells",
        15: "Plucked",
        32: "Bass",
        33: "Bass",
        34: "Bass",
        35: "Bass",
        36: "Bass",
        37: "Bass",
        38: "Synth Bass",
        39: "Synth Bass",
        43: "Double Bass",
        46: "Harp",
        47: "Orch Percussion",
        55: "Orch FX",
        104: "Plucked",
        105: "Plucked",
        106: "Plucked",
        107: "Plucked",
        108: "Mallets",
        112: "Bells",
        113: "High Percussion",
        114: "Mid Percussion",
        115: "Mid Percussion",
        116: "Low Percussion",
        117: "Mid Percussion",
        118: "Mid Percussion",
        119: "FX",
    }
    if program in specific:
        return specific[program]
    by_family = {
        0: "Piano",
        2: "Organ",
        3: "Acoustic Guitar",
        5: "Strings",
        6: "Strings",
        7: "Brass",
        8: "Woodwinds",
        9: "Woodwinds",
        10: "Synth Pulse",
        11: "Synth Pad",
        12: "FX",
        15: "FX",
    }
    if family == 3 and program >= 26:
        return "Electric Guitar"
    if family == 6 and program in (52, 53, 54):
        return "Choir"
    return by_family.get(family)


def categorize(name: str, *, program: int | None = None, is_drum: bool = False) -> CategoryGuess:
    """Offline category for a track (name + GM program) or a stem (name only).

    The name's keyword wins; the GM program or drum channel decides names that match no keyword
    (see the module docstring for why).

    >>> categorize("Low Perc (Taiko)", program=0, is_drum=True)
    CategoryGuess(category='Low Percussion', source='keyword')
    >>> categorize("Track 3", program=48)
    CategoryGuess(category='Strings', source='gm')
    """
    from_name = category_from_name(name)
    if from_name is not None:
        return CategoryGuess(category=from_name, source="keyword")
    from_gm = category_from_gm(program, is_drum=is_drum)
    if from_gm is not None:
        return CategoryGuess(category=from_gm, source="gm")
    return CategoryGuess(category="Other", source="default")
