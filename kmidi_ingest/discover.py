"""Discover stage: walk a tree, find cue folders by their content, group audio channel files.

A cue is a folder holding a MIDI folder, MIDI files, or an audio folder (``Audio Files`` …). Its
MIDI and audio files are every such file below it (a cue is not searched for nested cues). A flat
folder of performances is a unit per MIDI file instead (see :func:`scan`).
Multi-mono channel files (``Strings.L.wav``, ``Strings.R.wav``) are grouped into one stem by the
name before the channel suffix; names matching a final-mix pattern (:data:`DEFAULT_FINAL_MIX_PATTERNS`:
``6mx``, ``2mx``, ``mix``, ``Full Mix``, ``PrintMaster``, ``LtRt`` …) become final mixes.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Literal

from .errors import DiscoverError
from .midi import MIDI_SUFFIXES
from .problems import Problem
from .text import safe_text

# The file-type rule, used by discover and by ``check`` (see file_kind): audio formats by
# libsndfile's format name, with the extensions they are delivered under. Headerless (RAW) and
# ambiguous (MAT, SF, XI …) libsndfile formats are left out: their extensions name other things.
AUDIO_FORMAT_SUFFIXES = {
    "WAV": (".wav", ".wave", ".bwf"),
    "AIFF": (".aif", ".aiff", ".aifc"),
    "FLAC": (".flac",),
    "W64": (".w64",),
    "RF64": (".rf64", ".bw64"),
    "CAF": (".caf",),
    "AU": (".au", ".snd"),
    "OGG": (".ogg", ".oga"),
    "OPUS": (".opus",),  # an OGG subtype in libsndfile
    "MP3": (".mp3", ".mp2"),
    "SD2": (".sd2",),
    "VOC": (".voc",),
}
# Audio types libsndfile never reads: named in a warning, never skipped without a word.
OTHER_AUDIO_SUFFIXES = (
    ".m4a", ".aac", ".alac", ".wma", ".ape", ".wv", ".dsf", ".dff", ".ac3", ".ec3", ".dts",
    ".mka", ".tta", ".amr", ".ra", ".mpc",
)  # fmt: skip
FileKind = Literal["midi", "audio", "unreadable-audio"]
MIDI_FOLDER_NAMES = ("midi", "midi files")
AUDIO_FOLDER_NAMES = ("audio files", "audio", "stems", "bounced files", "bounces", "prints")

# Pro Tools multi-mono suffixes (5.1, 7.1, 7.1.4 and ambisonic/aux numbering), matched
# case-insensitively; the spelling here is the label stored.
CHANNEL_LABELS = (
    "L", "R", "C", "LFE", "Ls", "Rs", "Lss", "Rss", "Lsr", "Rsr", "Lrs", "Rrs", "Cs", "Lc",
    "Rc", "Lw", "Rw", "Ltf", "Rtf", "Ltr", "Rtr", "M", "S",
    *(f"A{i}" for i in range(1, 17)),
)  # fmt: skip
LFE_LABELS = frozenset({"LFE"})
# Position of each label in a canonical film order, so channels are stored L, R, C, LFE, Ls, Rs...
CHANNEL_ORDER = {label.upper(): i for i, label in enumerate(CHANNEL_LABELS)}
# Final mixes: Python regexes searched case-insensitively in a group's key (the file name without
# extension and channel suffix). "Mix" alone is a word of its own, never part of one ("Remix FX",
# "Mixolydian Lead", "Mixed Choir"), and a premix, submix or remix is a stem's own layer; "Mx"
# without a channel count is film shorthand for music ("Mx Perc" is a music percussion stem).
_B, _E = r"(?<![a-z0-9])", r"(?![a-z0-9])"  # word edges where "_" separates too
DEFAULT_FINAL_MIX_PATTERNS = (
    _B + r"\d{1,2}mx" + _E,  # film: 6mx (5.1), 8mx (7.1), 2mx (stereo fold-down)
    _B + r"(?<!pre[ _.-])(?<!sub[ _.-])(?<!re[ _.-])mix(?:down)?" + _E,  # mix.wav, Full Mix, _MIX
    _B + r"(?:down ?mix|fold[ _.-]?down)" + _E,  # stereo downmix / fold-down
    _B + r"(?:lt[ _.-]?rt|lo[ _.-]?ro)" + _E,  # matrixed (Lt/Rt) and plain (Lo/Ro) stereo
    _B + r"(?:print|stereo|full|final|main)[ _.-]?master" + _E,  # PrintMaster, Stereo Master
    r"^mixture$",  # MUSDB18, DSD100, MoisesDB (whole name: an organ's Mixture stop is a stem)
    r"^aumix" + _E,  # URMP AuMix_01_Jupiter_vn_vc
)
CUE_CODE = re.compile(r"^\s*\d+[mM]\d+[a-zA-Z]?(?:[\s._-]+|$)")


@dataclass(frozen=True, kw_only=True)
class GroupingRules:
    """How channel files are grouped into stems (configurable, Pro Tools defaults)."""

    channel_labels: tuple[str, ...] = CHANNEL_LABELS
    separators: str = "._- "
    final_mix_patterns: tuple[str, ...] = DEFAULT_FINAL_MIX_PATTERNS
    exclude_from_mono: frozenset[str] = LFE_LABELS

    def suffix_regex(self) -> re.Pattern[str]:
        labels = "|".join(
            sorted((re.escape(x) for x in self.channel_labels), key=len, reverse=True)
        )
        seps = re.escape(self.separators)
        return re.compile(rf"^(?P<base>.+?)[{seps}](?P<label>{labels})$", re.IGNORECASE)

    def is_final_mix(self, name: str) -> bool:
        """Whether ``name`` (a group key) matches one of :attr:`final_mix_patterns`."""
        return any(re.search(p, name, re.IGNORECASE) for p in self.final_mix_patterns)


@dataclass(frozen=True, kw_only=True)
class ChannelFile:
    """One audio file of a stem; ``label`` is its channel suffix (``None`` when it has none)."""

    path: Path
    rel_path: str  # relative to the cue folder
    label: str | None


@dataclass(frozen=True, kw_only=True)
class StemGroup:
    """Audio files that together form one stem or one final mix."""

    key: str  # file name without extension and channel suffix
    name: str  # canonical name: key without a leading cue code such as "1M01"
    is_final_mix: bool
    files: tuple[ChannelFile, ...]


UNIT_KINDS = ("cue", "performance", "file")


@dataclass(frozen=True, kw_only=True)
class CueSource:
    """A unit of work: a cue folder, or one performance or MIDI file of a flat folder.

    ``kind`` is ``cue`` (a folder and everything below it: a DAW cue, a Slakh track),
    ``performance`` (a MIDI file and its same-named audio files) or ``file`` (a MIDI file
    without audio). ``path`` is the folder the unit's files are relative to; ``rel_path`` is the
    unit's identity below the root: the folder for a cue (``"."`` for the root itself), the MIDI
    file for the others (``2018/take.midi``).
    """

    path: Path
    rel_path: str
    name: str
    midi_files: tuple[Path, ...]
    audio_files: tuple[Path, ...]
    # The audio files grouped into stems and final mixes (grouped once, here; see scan).
    groups: tuple[StemGroup, ...] = ()
    problems: tuple[Problem, ...] = field(default=())  # found while walking the cue
    kind: str = "cue"


@dataclass(frozen=True, kw_only=True)
class TreeScan:
    """Every cue below a root, plus the problems met outside any cue."""

    cues: tuple[CueSource, ...]
    problems: tuple[Problem, ...] = ()


def canonical_name(key: str) -> str:
    """Strip a leading cue code (``1M01``, ``2m03b``) and separators; keep the rest as written."""
    stripped = CUE_CODE.sub("", key, count=1).strip(" ._-")
    return stripped or key.strip()


def group_channels(
    files: list[tuple[Path, str]], rules: GroupingRules | None = None
) -> list[StemGroup]:
    """Group ``(path, rel_path)`` audio files into stems and final mixes.

    Files in one folder sharing the name before their channel suffix (and their extension) form one
    group, ordered L R C LFE Ls Rs …; a numbered take keeps its number in the name
    (``Vln_02.L.wav`` → ``Vln_02``). A file without a suffix is a stem on its own (mono or
    interleaved).
    """
    rules = rules or GroupingRules()
    regex = rules.suffix_regex()
    buckets: dict[tuple[str, str, str, bool], list[ChannelFile]] = {}
    keys: dict[tuple[str, str, str, bool], str] = {}
    for path, rel_path in files:
        name = Path(path.name)
        match = regex.match(name.stem)
        base, label = (match.group("base"), match.group("label")) if match else (name.stem, None)
        if label is not None:
            label = next(x for x in rules.channel_labels if x.lower() == label.lower())
        # Channel files of one stem share folder, base name and format; a suffix-less file is a
        # stem on its own and never merges with a multi-mono group of the same base name.
        folder = Path(rel_path).parent.as_posix().lower()
        bucket = (folder, base.lower().strip(), name.suffix.lower(), label is not None)
        buckets.setdefault(bucket, []).append(
            ChannelFile(path=path, rel_path=rel_path, label=label)
        )
        keys.setdefault(bucket, base.strip())
    groups = []
    for bucket, members in buckets.items():
        members.sort(key=lambda f: (CHANNEL_ORDER.get((f.label or "").upper(), 99), f.rel_path))
        key = keys[bucket]
        groups.append(
            StemGroup(
                key=key,
                name=canonical_name(key),
                is_final_mix=rules.is_final_mix(key),
                files=tuple(members),
            )
        )
    groups.sort(key=lambda g: (g.is_final_mix, g.key.lower(), g.files[0].rel_path))
    return groups


@cache
def audio_suffixes() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``(readable, unreadable)`` audio extensions: readable where this machine's libsndfile
    reads the format (``soundfile.available_formats()``, Opus among the OGG subtypes)."""
    import soundfile as sf

    formats = set(sf.available_formats())
    if "OGG" in formats and "OPUS" in sf.available_subtypes("OGG"):
        formats.add("OPUS")
    readable: list[str] = []
    unreadable = list(OTHER_AUDIO_SUFFIXES)
    for fmt, suffixes in AUDIO_FORMAT_SUFFIXES.items():
        (readable if fmt in formats else unreadable).extend(suffixes)
    return tuple(readable), tuple(unreadable)


def file_kind(name: str) -> FileKind | None:
    """What a file is by its name: ``"midi"``, ``"audio"`` (a format read here),
    ``"unreadable-audio"`` (an audio type this machine cannot read) or ``None``.

    AppleDouble ``._x.wav`` files are resource forks, not audio or MIDI.
    """
    if name.startswith("._"):
        return None
    lowered = name.lower()
    if lowered.endswith(MIDI_SUFFIXES):
        return "midi"
    readable, unreadable = audio_suffixes()
    if lowered.endswith(readable):
        return "audio"
    if lowered.endswith(unreadable):
        return "unreadable-audio"
    return None


def unreadable_audio_message(name: str) -> str:
    """The warning for an audio file of a type that cannot be read here."""
    import soundfile as sf

    suffix = Path(name).suffix.lower()
    return (
        f"audio format {suffix} cannot be read here (libsndfile {sf.__libsndfile_version__});"
        " skipped: convert it to WAV or FLAC to ingest it"
    )


def _is_midi(name: str) -> bool:
    return file_kind(name) == "midi"


def _is_cue_dir(dirnames: list[str], filenames: list[str]) -> bool:
    lowered = {d.lower() for d in dirnames}
    return any(name in lowered for name in MIDI_FOLDER_NAMES + AUDIO_FOLDER_NAMES) or any(
        _is_midi(f) for f in filenames
    )


def scan(root: str | Path, rules: GroupingRules | None = None) -> TreeScan:
    """Walk ``root`` and return its units of work (sorted by relative path) and the problems met.

    A folder holding a MIDI folder, an audio folder or MIDI files is a cue, and everything below
    it belongs to it (a DAW cue ``MIDI/`` + ``Audio Files/``; a Slakh ``TrackNNNNN`` with
    ``all_src.mid``, ``MIDI/``, ``stems/`` and ``mix.*``) — unless it is a *flat folder of
    performances*: MIDI files side by side with no MIDI or audio folder and no media in any
    subfolder, where every audio file is named after one of the MIDI files (``X.midi`` beside
    ``X.wav`` or ``X.L.wav``/``X.R.wav``; no audio at all counts). Each MIDI file there is a unit
    of its own, with its same-named audio (a MAESTRO year, a Groove session, a Lakh folder): one
    changed file recomputes one unit, and a transaction holds one file's rows.

    Each cue's audio files come grouped into stems and final mixes by ``rules`` (default
    :class:`GroupingRules`), see :func:`group_channels`.

    Symlinked folders are followed once: a link back to a folder already walked (a loop) is
    reported and skipped. Unreadable folders, broken symlinks and empty (0-byte) files are
    reported as problems of the nearest cue (or of the tree) and the walk goes on; a cue with
    MIDI but no audio, or audio but no MIDI, gets a warning. Raises :class:`DiscoverError` only
    when ``root`` itself cannot be read.
    """
    root = Path(root)
    rules = rules or GroupingRules()
    if not root.is_dir():
        raise DiscoverError("root folder does not exist or is not a folder", path=root)
    try:
        os.listdir(root)
    except OSError as exc:
        raise DiscoverError(f"cannot read root folder: {exc.strerror}", path=root) from exc

    cues: list[CueSource] = []
    problems: list[Problem] = []
    visited: set[tuple[int, int]] = set()
    for dirpath, dirnames, filenames in _walk(root, visited, problems):
        if not _is_cue_dir(dirnames, filenames):
            continue
        cue_dir = Path(dirpath)
        dirnames.clear()  # the cue owns everything below it
        cue = _collect(root, cue_dir, visited, rules)
        units = _performances(root, cue, rules)
        if units is None:
            cues.append(cue)
        else:
            cues.extend(units)
            problems.extend(p for p in cue.problems if p.error_type not in _FOLDER_WARNINGS)
    cues.sort(key=lambda c: c.rel_path)
    return TreeScan(cues=tuple(cues), problems=tuple(problems))


# Warnings about a cue folder's content as a whole; a folder of performances is not one cue.
_FOLDER_WARNINGS = frozenset({"MidiWithoutAudio", "AudioWithoutMidi", "EmptyCue"})


def _performances(root: Path, cue: CueSource, rules: GroupingRules) -> list[CueSource] | None:
    """The units of ``cue`` when it is a flat folder of performances (see :func:`scan`), else
    ``None``."""
    media = cue.midi_files + cue.audio_files
    if not cue.midi_files or any(p.parent != cue.path for p in media):
        return None
    try:
        subfolders = [e.name.lower() for e in os.scandir(cue.path) if e.is_dir()]
    except OSError:
        return None
    if any(name in subfolders for name in MIDI_FOLDER_NAMES + AUDIO_FOLDER_NAMES):
        return None
    regex = rules.suffix_regex()
    midi_names = {p.stem.lower() for p in cue.midi_files}
    by_name: dict[str, list[Path]] = {}
    for path in cue.audio_files:
        # "take C.wav" beside "take C.mid" is that take, not channel C of "take".
        match = None if path.stem.lower() in midi_names else regex.match(path.stem)
        by_name.setdefault((match.group("base") if match else path.stem).lower(), []).append(path)
    if not by_name.keys() <= midi_names:
        return None  # loose prints of their own (1M01.mid + Strings.wav): one cue
    units = []
    for midi in sorted(cue.midi_files):
        audio = tuple(sorted(by_name.pop(midi.stem.lower(), ())))  # X.mid and X.midi: the first
        rel = (Path(cue.rel_path) / midi.name).as_posix() if cue.rel_path != "." else midi.name
        units.append(
            CueSource(
                path=cue.path,
                rel_path=rel,
                name=midi.stem,
                midi_files=(midi,),
                audio_files=audio,
                groups=tuple(
                    group_channels([(p, p.relative_to(cue.path).as_posix()) for p in audio], rules)
                ),
                kind="performance" if audio else "file",
            )
        )
    return units


def _walk(
    top: Path, visited: set[tuple[int, int]], problems: list[Problem]
) -> Iterator[tuple[str, list[str], list[str]]]:
    """``os.walk`` following symlinked folders, but never into a folder already walked."""

    def on_error(exc: OSError) -> None:
        problems.append(
            Problem(
                stage="discover",
                path=safe_text(str(exc.filename)),
                error_type="UnreadableFolder",
                message=f"cannot read folder: {exc.strerror}",
            )
        )

    for dirpath, dirnames, filenames in os.walk(top, onerror=on_error, followlinks=True):
        # A folder counts as walked once entered: a link back to an ancestor (a loop) or to a
        # folder already walked is then skipped instead of being walked forever or twice.
        visited.add(_key(Path(dirpath)))
        dirnames.sort()
        filenames.sort()
        keep = []
        for name in dirnames:
            path = os.path.join(dirpath, name)
            try:
                st = os.stat(path)
            except OSError as exc:  # vanished, or a link to nowhere
                on_error(exc)
                continue
            if (st.st_dev, st.st_ino) in visited:
                problems.append(
                    Problem(
                        stage="discover",
                        path=safe_text(path),
                        error_type="SymlinkLoop",
                        message="folder already walked (symlink loop or second link); skipped",
                        severity="warning",
                    )
                )
                continue
            keep.append(name)
        dirnames[:] = keep
        yield dirpath, dirnames, filenames


def _collect(
    root: Path, cue_dir: Path, visited: set[tuple[int, int]], rules: GroupingRules
) -> CueSource:
    midi: list[Path] = []
    audio: list[Path] = []
    problems: list[Problem] = []
    # The cue folder itself was marked visited by the walk that found it.
    visited.discard(_key(cue_dir))
    for dirpath, _dirnames, filenames in _walk(cue_dir, visited, problems):
        for name in filenames:
            kind = file_kind(name)
            if kind is None:
                continue
            path = Path(dirpath) / name
            if kind == "unreadable-audio":
                problems.append(
                    Problem(
                        stage="discover",
                        path=safe_text(str(path)),
                        error_type="UnsupportedAudio",
                        message=unreadable_audio_message(name),
                        severity="warning",
                    )
                )
                continue
            if kind == "audio":
                # Judged by the audio stage (audio.open_channel_file, the rule `check` uses
                # too): an empty or unreadable channel file fails its whole stem there, instead
                # of the stem being stored without it.
                audio.append(path)
                continue
            try:
                size = path.stat().st_size
            except OSError as exc:
                problems.append(
                    Problem(
                        stage="discover",
                        path=safe_text(str(path)),
                        error_type="BrokenSymlink" if path.is_symlink() else "UnreadableFile",
                        message=f"cannot read file: {exc.strerror}; skipped",
                    )
                )
                continue
            if size == 0:
                problems.append(
                    Problem(
                        stage="discover",
                        path=safe_text(str(path)),
                        error_type="EmptyFile",
                        message="file is empty (0 bytes); skipped",
                    )
                )
                continue
            midi.append(path)
    rel = cue_dir.relative_to(root).as_posix()
    if midi and not audio:
        problems.append(
            Problem(
                stage="discover",
                path=safe_text(str(cue_dir)),
                error_type="MidiWithoutAudio",
                message="cue has MIDI files but no audio files; stored without stems",
                severity="warning",
            )
        )
    elif audio and not midi:
        problems.append(
            Problem(
                stage="discover",
                path=safe_text(str(cue_dir)),
                error_type="AudioWithoutMidi",
                message="cue has audio files but no MIDI files; stored without notes",
                severity="warning",
            )
        )
    elif not audio and not midi and not problems:
        problems.append(
            Problem(
                stage="discover",
                path=safe_text(str(cue_dir)),
                error_type="EmptyCue",
                message="cue folder holds no MIDI or audio files",
                severity="warning",
            )
        )
    return CueSource(
        path=cue_dir,
        rel_path=rel,
        name=cue_dir.name if rel != "." else root.resolve().name,
        midi_files=tuple(midi),
        audio_files=tuple(audio),
        groups=tuple(
            group_channels([(p, p.relative_to(cue_dir).as_posix()) for p in audio], rules)
        ),
        problems=tuple(problems),
    )


def _key(path: Path) -> tuple[int, int]:
    try:
        st = os.stat(path)
    except OSError:
        return (-1, -1)
    return (st.st_dev, st.st_ino)


def stat_fingerprint(cue: CueSource) -> str:
    """Cheap fingerprint from names, sizes and modification times (no file is read)."""
    digest = hashlib.sha256()
    for path in sorted(cue.midi_files + cue.audio_files):
        try:
            st = path.stat()
            entry = f"{path.relative_to(cue.path).as_posix()}\0{st.st_size}\0{st.st_mtime_ns}\n"
        except OSError:
            entry = f"{path.relative_to(cue.path).as_posix()}\0missing\n"
        digest.update(entry.encode("utf-8", "surrogateescape"))
    return digest.hexdigest()


def sha256_file(path: Path, *, block_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    buffer = bytearray(block_size)  # one buffer reused: no allocation or copy per block
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as handle:
        while count := handle.readinto(buffer):
            digest.update(view[:count])
    return digest.hexdigest()
