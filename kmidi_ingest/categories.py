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
# Matched against the lower-cased name split into words (camelCase and letter/digit boundaries
# split, punctuation to single spaces, abbreviations included), so "E.Gtr" reads "e gtr" and
# "SynthStrings 1" reads "synth strings 1". Each GM program name reads as its family's category
# (tests/category_names.py); where a family word and a voice or section word meet, the rule for
# the instrument comes first ("Alto Sax" is a saxophone, not a choir's altos; "English Horn" a
# woodwind; "Lead 6 (voice)" a GM synth lead; "Reverse Cymbal" a riser).
KEYWORDS: tuple[tuple[str, str], ...] = (
    (r"\b(click|ticker|tick|metronome|clk)\b", "Ticker"),
    (r"\blead \d\b", "Synth Pulse"),  # GM "Lead 1 (square)" .. "Lead 8 (bass + lead)"
    (r"\bfx \d\b", "FX"),  # GM "FX 1 (rain)" .. "FX 8 (sci-fi)"
    (r"\bsub ?(hit|drop|boom)s?\b|\bsub\b(?! ?bass)", "Sub Hits"),
    (r"\b(gtr|guitar)\b.*\b(fx|sfx|noise|scrape)\b|\bgtr ?fx\b", "Guitar FX"),
    (r"\borch(estra|estral)? ?(fx|sfx|hits?|rise|riser)\b", "Orch FX"),
    (r"\brev(erse)? ?(cymbals?|cym|crash)\b", "FX"),
    (r"\bsynth ?bass\b|\bsyn ?bass\b|\bsub ?bass\b|\b808\b|\bbass ?synth\b", "Synth Bass"),
    (r"\bsynth ?(strings?|str)\b", "Strings"),
    (r"\bsynth ?brass\b", "Brass"),
    (r"\bsynth ?(voice|choir)\b|\b(oohs?|aahs?)\b", "Choir"),
    (r"\b(pad|pads|atmos|drone|texture|wash)\b", "Synth Pad"),
    (r"\b(pulse|arp|arpeggio|seq|sequence|ostinato synth)\b", "Synth Pulse"),
    (
        r"\b(sax|saxes|saxophones?|eng(lish)? ?horn|cor anglais|bassoons?|contrabassoon|"
        r"shakuhachi|ocarina|recorders?|whistles?|duduk|bag ?pipes?|shanai|shehnai|"
        r"blown bottle)\b",
        "Woodwinds",
    ),
    (
        r"\b(double ?bass|contrabass|basses|cb|kb|contra|string ?bass|acoustic ?bass)\b|"
        r"\bupright\b(?! ?(piano|pno))",
        "Double Bass",
    ),
    (r"\bbass ?(gtr|guitar)\b", "Bass"),
    (
        r"\b(e ?gtr|egtr|el(ec(tric)?)? ?(gtr|guitar)|dist(orted|ortion)? ?(gtr|guitar)|"
        r"overdriven? ?(gtr|guitar)|od ?gtr|(jazz|clean|muted) ?(gtr|guitar)|"
        r"guitar harmonics)\b",
        "Electric Guitar",
    ),
    (
        r"\b(ac(oustic)? ?(gtr|guitar)|a ?gtr|nylon|steel ?(gtr|guitar)|agtr|guitar|gtr)\b",
        "Acoustic Guitar",
    ),
    (r"\b(bass|elec bass|e ?bass)\b", "Bass"),
    (r"\b(celesta|celeste|bells?|chimes?|tubular|glock(enspiel)?|crotales?|music ?box)\b", "Bells"),
    (r"\b(marimba|vibes|vibraphone|xylo(phone)?|mallets?)\b", "Mallets"),
    # Free reeds sit in GM's Organ family; before Harp, for the "harp" of "Harp Harmonica".
    (r"\b(harmonicas?|accordions?|accordian|concertina)\b", "Organ"),
    (r"\b(harp|harps)\b", "Harp"),
    (r"\b(piano|pno|pf|keys|rhodes|wurli|epiano|clav|clavi)\b", "Piano"),
    (r"\b(organ|hammond|b ?3)\b", "Organ"),
    (r"\b(choir|chorus|voices|sopranos?|altos?|tenors?|basses? choir|satb)\b", "Choir"),
    (r"\b(vox|vocals?|voice|singer|solo vox|vocal)\b", "Solo Vocals"),
    (
        r"\b(timp|timpani|snare ?orch|orch ?perc|cymbals?|tam ?tam|gong|bass ?drum|gran ?cassa)\b",
        "Orch Percussion",
    ),
    (r"\b(taiko|taikos|low ?perc|boom|toms? low|surdo|daiko)\b", "Low Percussion"),
    (
        r"\b(shaker|shakers|tambourine|tamb|hats?|hi ?hat|high ?perc|triangle|claps?|agogo)\b",
        "High Percussion",
    ),
    (
        r"\b(perc|percussion|congas?|bongos?|toms?|mid ?perc|djembe|frame drum|wood ?block|"
        r"steel ?drums?)\b",
        "Mid Percussion",
    ),
    (r"\b(drums?|kit|kick|snare|drum ?kit|beat|loop)\b", "Drums"),
    (
        r"\b(violins?|violas?|vln|vla|vlns|vl|vc|vcs|cello|cellos|celli|strings?|str|strs|"
        r"spicc|spiccato|pizz|tremolo|trem|legato strings|fiddles?)\b",
        "Strings",
    ),
    (
        r"\b(horns?|hns?|hrn|trumpets?|tpts?|trombones?|tbns?|tuba|tubas|brass|cimbasso|"
        r"flugel|bones)\b",
        "Brass",
    ),
    (
        r"\b(flutes?|fl|fls|piccolo|picc|oboes?|ob|clarinets?|clar|cl|cls|bsn|bsns|"
        r"winds|woodwinds?|ww|alto flute|bass clarinet)\b",
        "Woodwinds",
    ),
    (
        r"\b(pluck|plucks|plucked|mandolin|banjo|ukulele|koto|harpsichord|kalimba|dulcimer|"
        r"zither|oud|sitar|bouzouki|shamisen)\b",
        "Plucked",
    ),
    (r"\b(synth|syn|lead|saw)\b", "Synth Pulse"),
    (
        r"\b(fx|sfx|hits?|riser|rise|whoosh|impact|noise|braam|boom|seashore|birds?|tweet|"
        r"telephone|helicopter|applause|gunshots?)\b",
        "FX",
    ),
)
_COMPILED = tuple((re.compile(pattern), category) for pattern, category in KEYWORDS)


@dataclass(frozen=True, kw_only=True)
class CategoryGuess:
    category: str
    source: str  # llm | gm | keyword | default


def category_from_name(name: str) -> str | None:
    """Category from the keyword table, or ``None`` when no keyword matches."""
    text = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", name).lower()  # "SynthStrings" → "synth strings"
    text = re.sub(r"[_\-.()\[\]/+&,]+", " ", text)
    text = re.sub(r"(?<=[a-z])(?=\d)|(?<=\d)(?=[a-z])", " ", text)  # "vln1" → "vln 1"
    text = " ".join(text.split())
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
    if not 0 <= program <= 127:
        return None
    return _GM_CATEGORIES[program]


# GM program (0-based) → category: its family's, or a finer category inside the family.
# Families without a category of their own (Ethnic, Percussive, Sound Effects) give each
# instrument its own family's: bag pipe and shanai are reeds, the fiddle a violin.
_GM_FAMILIES = (
    "Piano", "Bells", "Organ", "Acoustic Guitar", "Bass", "Strings", "Strings", "Brass",
    "Woodwinds", "Woodwinds", "Synth Pulse", "Synth Pad", "FX", "Plucked", "Mid Percussion", "FX",
)  # fmt: skip
_GM_SPECIFIC = {
    6: "Plucked",  # Harpsichord
    11: "Mallets", 12: "Mallets", 13: "Mallets",  # Vibraphone, Marimba, Xylophone
    15: "Plucked",  # Dulcimer
    **{p: "Electric Guitar" for p in range(26, 32)},  # jazz, clean, muted, overdriven, dist, harm.
    32: "Double Bass",  # Acoustic Bass: the upright
    38: "Synth Bass", 39: "Synth Bass",
    43: "Double Bass",  # Contrabass
    46: "Harp",
    47: "Orch Percussion",  # Timpani
    52: "Choir", 53: "Choir", 54: "Choir",  # Choir Aahs, Voice Oohs, Synth Voice
    55: "Orch FX",  # Orchestra Hit
    108: "Plucked",  # Kalimba
    109: "Woodwinds", 110: "Strings", 111: "Woodwinds",  # Bag pipe, Fiddle, Shanai
    112: "Bells",  # Tinkle Bell
    113: "High Percussion",  # Agogo
    116: "Low Percussion",  # Taiko Drum
    118: "Drums",  # Synth Drum
    119: "FX",  # Reverse Cymbal
    120: "Guitar FX",  # Guitar Fret Noise
}  # fmt: skip
_GM_CATEGORIES = tuple(_GM_SPECIFIC.get(p, _GM_FAMILIES[p // 8]) for p in range(128))


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
