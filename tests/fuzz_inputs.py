"""Mutated inputs for the fuzz tests and ``benchmarks/campaign.py``, and the stage calls they feed.

A mutation is a short list of operations on the bytes of a real file (:data:`KINDS`), each
``(kind, where, value)`` with ``where`` in [0, 1) a relative position and ``value`` a 32-bit
integer: Hypothesis draws them in the tests, a seeded :class:`random.Random` in the campaign, and
:func:`mutate` applies them the same way for both. Header-aimed kinds hit the first 64 bytes,
where the chunk sizes, formats, channel counts and rates live.

Every stage call returns an outcome label: ``"result"`` or ``"KmidiError <stage>: <reason
class>"``; anything else propagates (the tests and the campaign count it as a crash).
"""

from __future__ import annotations

import random
import re
import struct
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from kmidi_ingest.errors import KmidiError

Mutation = tuple[str, float, int]

KINDS = (
    "flip",  # one byte anywhere set to value & 0xFF
    "header_byte",  # one byte of the first 64 set to value & 0xFF
    "header_u32_le",  # a little-endian 32-bit field in the first 64 bytes (RIFF sizes, rates);
    # with bit 8 of value set, the header kinds write SPECIAL_U32[(value & 0xFF) % 10] instead
    "header_u32_be",  # a big-endian one (MThd/MTrk/FORM lengths, AIFF, FLAC)
    "header_u16_be",  # a big-endian 16-bit one (MIDI format, track count, division)
    "cut",  # truncate at where
    "delete",  # remove value % 64 + 1 bytes at where
    "insert",  # insert value % 64 + 1 copies of byte value >> 24 at where
    "duplicate",  # repeat a run of value % 256 + 1 bytes at where
)

# Field values that break parsers: zero, all ones, sign bits, and "just past the end".
SPECIAL_U32 = (0, 1, 2, 0x7F, 0x80, 0xFF, 0xFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF)


def mutate(raw: bytes, mutations: Sequence[Mutation]) -> bytes:
    """Apply ``mutations`` in order to ``raw`` (see the module docstring)."""
    data = bytearray(raw)
    for kind, where, value in mutations:
        if not data:
            break
        at = min(int(where * len(data)), len(data) - 1)
        head = min(int(where * 64), max(len(data) - 1, 0))
        if kind == "flip":
            data[at] = value & 0xFF
        elif kind == "header_byte":
            data[head] = value & 0xFF
        elif kind in ("header_u32_le", "header_u32_be", "header_u16_be"):
            special = SPECIAL_U32[(value & 0xFF) % len(SPECIAL_U32)] if value & 0x100 else value
            fmt, size = {
                "header_u32_le": ("<I", 4),
                "header_u32_be": (">I", 4),
                "header_u16_be": (">H", 2),
            }[kind]
            field = struct.pack(fmt, special & (0xFFFFFFFF if size == 4 else 0xFFFF))
            data[head : head + size] = field
        elif kind == "cut":
            del data[int(where * len(data)) :]
        elif kind == "delete":
            del data[at : at + value % 64 + 1]
        elif kind == "insert":
            data[at:at] = bytes([value >> 24 & 0xFF]) * (value % 64 + 1)
        elif kind == "duplicate":
            data[at:at] = data[at : at + value % 256 + 1]
        else:
            raise ValueError(f"unknown mutation {kind!r}")
    return bytes(data)


def random_mutations(rng: random.Random, *, max_ops: int = 6) -> list[Mutation]:
    """1..``max_ops`` mutations drawn from ``rng`` (the campaign's counterpart of the strategy);
    one or two most often, so that many mutants get past the header into the body."""
    count = min(max_ops, rng.choice((1, 1, 1, 2, 2, 3, 4, max_ops)))
    return [(rng.choice(KINDS), rng.random(), rng.getrandbits(32)) for _ in range(count)]


def reason_class(reason: str) -> str:
    """A reason with numbers, quoted text and paths blanked: ``wrong chunk length N at byte N``."""
    text = reason.split("\n", 1)[0]
    text = re.sub(r"'[^']*'|\"[^\"]*\"", "'…'", text)
    text = re.sub(r"0x[0-9a-fA-F]+|\d+(\.\d+)?", "N", text)
    return text[:70]


def outcome(exc: KmidiError) -> str:
    """The label of an error; a stem error is labelled by its first file's reason."""
    inner = getattr(exc, "errors", ())
    reason = inner[0].reason if inner else exc.reason
    return f"KmidiError {exc.stage}: {reason_class(reason)}"


# ---- MIDI


def midi_seeds(folder: Path) -> list[Path]:
    """The real MIDI files under ``folder`` (empty when it is absent)."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".mid", ".midi", ".kar"))


def run_midi(path: Path) -> str:
    """``read_midi`` on ``path``; the result's invariants are asserted."""
    from kmidi_ingest.health import check_midi
    from kmidi_ingest.midi import read_midi

    try:
        data = read_midi(path)
    except KmidiError as exc:
        assert exc.path == str(path) and exc.reason, exc
        assert check_midi(path) == exc.reason  # the health check says the same
        return outcome(exc)
    for track in data.tracks:
        notes = track.notes
        assert np.all(notes["end_tick"] >= notes["start_tick"])
        assert np.all(np.isfinite(notes["start_s"])) and np.all(np.isfinite(notes["end_s"]))
        assert np.all(notes["end_s"] >= notes["start_s"])
    assert check_midi(path) is None
    return "result"


# ---- audio

AUDIO_SEEDS = (
    # (file name, soundfile format, subtype, channels, sample rate in Hz)
    ("pcm16.wav", "WAV", "PCM_16", 1, 22050),
    ("pcm24_stereo.wav", "WAV", "PCM_24", 2, 16000),
    ("float.wav", "WAV", "FLOAT", 1, 8000),
    ("wavex_51.wav", "WAVEX", "PCM_16", 6, 8000),
    ("pcm16.aiff", "AIFF", "PCM_16", 2, 22050),
    ("pcm24.aiff", "AIFF", "PCM_24", 1, 11025),
    ("pcm16.flac", "FLAC", "PCM_16", 2, 16000),
    ("pcm24.flac", "FLAC", "PCM_24", 1, 8000),
)


def write_audio_seeds(folder: Path, *, seconds: float = 0.2) -> list[Path]:
    """Write the small WAV/AIFF/FLAC files of :data:`AUDIO_SEEDS` into ``folder``."""
    import soundfile as sf

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    out = []
    for name, fmt, subtype, channels, rate in AUDIO_SEEDS:
        t = np.arange(int(seconds * rate)) / rate
        tone = 0.3 * np.sin(2 * np.pi * 440 * t)[:, None] * np.arange(1, channels + 1) / channels
        data = tone + 0.01 * rng.standard_normal((len(t), channels))
        path = folder / name
        sf.write(path, data.astype(np.float32), rate, format=fmt, subtype=subtype)
        out.append(path)
    return out


def run_audio(path: Path, *, sample_rate_hz: int = 16000) -> tuple[str, str]:
    """The audio group processing and the health check on ``path``: their two outcomes."""
    from kmidi_ingest.audio import StemData, process_group
    from kmidi_ingest.discover import ChannelFile, StemGroup
    from kmidi_ingest.health import check_audio

    group = StemGroup(
        key=path.stem,
        name=path.stem,
        is_final_mix=False,
        files=(ChannelFile(path=path, rel_path=path.name, label=None),),
    )
    try:
        stem = process_group(group, sample_rate_hz=sample_rate_hz)
    except KmidiError as exc:
        assert exc.reason, exc
        processed = outcome(exc)
    else:
        assert isinstance(stem, StemData)
        assert stem.duration_s >= 0 and np.isfinite(stem.duration_s)
        processed = "result"
    reason = check_audio(path)
    assert reason is None or (isinstance(reason, str) and reason)
    health = "healthy" if reason is None else f"broken: {reason_class(reason)}"
    return processed, health
