"""Feature storage: MB per stem-minute stored against the raw ``.npy`` bytes, and encode time
against the audio stage's own time, on the project's log-mel of real-ish dense audio.

Stems: MIDI files from ``../shared/data/midi`` rendered with fluidsynth (FluidR3 GM) at 48 kHz
(a sparse piano, drums alone, a band without drums, the full band, a rock mix), and the real
recordings in ``../shared/data/real`` (Frets on Fire guitar and band OGGs, the JTD trio's stems
and mix). Each feature is computed by :func:`kmidi_ingest.audio.process_group` at 48 kHz with the
default :class:`~kmidi_ingest.audio.MelParams`, i.e. the matrices the store writes. Audio lives
under ``/tmp`` and is deleted afterwards; a source that is absent is skipped.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TypeVar

from benchmarks.common import Row

T = TypeVar("T")

SECTION = "features"
RATE = 48000
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
SOUNDFONT = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")
TARGET_MB_PER_MIN = 0.9
RAW_MB_PER_MIN = 128 * 2 * RATE / 512 * 60 / 1e6  # float16 (128, frames), hop 512: 1.44
# (name, MIDI file, channels kept (None: all), channels dropped); GM drums are channel index 9.
RENDERS = (
    ("piano, sparse", "debian-pianobooster/04-ClairDeLaLune.mid", {2, 3}, set()),
    ("drums", "debian-mma/mid2seq__rockgroove.mid", {9}, set()),
    ("band without drums", "debian-openttd-openmsx/keep_on_rolling.mid", None, {9}),
    ("full band mix", "debian-openttd-openmsx/keep_on_rolling.mid", None, set()),
    ("rock mix", "debian-mma/pflib__metal1.mid", None, set()),
)


def _cut_midi(
    src: Path, dst: Path, *, seconds: float, keep: set[int] | None, drop: set[int]
) -> None:
    """The first ``seconds`` of ``src`` as a format-0 file at a fixed tempo (times preserved)."""
    import mido

    ticks_per_s = 2000  # 1000 ticks a beat at 120 bpm
    out = mido.MidiFile(type=0, ticks_per_beat=1000)
    track = mido.MidiTrack()
    out.tracks.append(track)
    elapsed_s, last_tick = 0.0, 0
    for msg in mido.MidiFile(src):  # merged tracks, msg.time in seconds
        elapsed_s += msg.time
        if elapsed_s > seconds:
            break
        if msg.is_meta and msg.type != "end_of_track":
            continue  # tempo already applied to the times
        channel = getattr(msg, "channel", None)
        if channel is not None and ((keep is not None and channel not in keep) or channel in drop):
            continue
        if msg.type == "end_of_track":
            continue
        tick = round(elapsed_s * ticks_per_s)
        track.append(msg.copy(time=tick - last_tick))
        last_tick = tick
    # fluidsynth renders until every voice is silent: release what the cut left held.
    delta = max(0, round(seconds * ticks_per_s) - last_tick)
    for channel in range(16):
        for control in (64, 123, 120):  # sustain off, all notes off, all sound off
            track.append(
                mido.Message("control_change", channel=channel, control=control, time=delta)
            )
            delta = 0
    out.save(dst)


def _render(midi: Path, wav: Path) -> None:
    subprocess.run(  # the timeout guards against a synth that never falls silent
        ["fluidsynth", "-ni", "-q", "-g", "0.5", "-r", str(RATE), "-F", str(wav)]
        + [str(SOUNDFONT), str(midi)],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=600,
    )


def _sources(folder: Path, seconds: float, quick: bool) -> list[tuple[str, Path]]:
    sources: list[tuple[str, Path]] = []
    if shutil.which("fluidsynth") and SOUNDFONT.exists() and (SHARED / "midi").exists():
        for name, rel, keep, drop in RENDERS[:2] if quick else RENDERS:
            midi = folder / f"{len(sources)}.mid"
            _cut_midi(SHARED / "midi" / rel, midi, seconds=seconds, keep=keep, drop=drop)
            sources.append((f"rendered {name}", folder / f"{len(sources)}.wav"))
            _render(midi, sources[-1][1])
    real = SHARED / "real"
    for song in sorted((real / "fretsonfire").glob("*"))[: 1 if quick else 3]:
        for part, label in (("guitar", "guitar"), ("song", "band")):
            if (song / f"{part}.ogg").exists():
                sources.append((f"real {song.name} {label}", song / f"{part}.ogg"))
    if not quick:
        for path in sorted((real / "jtd").rglob("*.wav")):
            part = path.stem.rsplit("_", 1)[-1] if path.parent.name == "processed" else "mix"
            sources.append((f"real JTD trio {part}", path))
    return sources


def _best(rounds: int, work: Callable[[], T]) -> tuple[float, T]:
    """Fewest seconds of ``rounds`` calls (the machine is shared), and the last result."""
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        result = work()
        best = min(best, time.perf_counter() - started)
    return best, result


def run(quick: bool) -> list[Row]:
    from kmidi_ingest import features
    from kmidi_ingest.audio import process_group
    from kmidi_ingest.discover import group_channels

    seconds = 20.0 if quick else 60.0
    folder = Path(tempfile.mkdtemp(prefix="kmidi-bench-features-", dir="/tmp"))
    rows: list[Row] = []
    mel_s = encode_s = minutes_total = 0.0
    try:
        sources = _sources(folder, seconds, quick)
        for i, (name, path) in enumerate(sources):
            (group,) = group_channels([(path, path.name)])
            if i == 0:
                process_group(group, sample_rate_hz=RATE)  # warm: FFT plans, page cache
            started = time.perf_counter()
            stem = process_group(group, sample_rate_hz=RATE)
            took = time.perf_counter() - started
            values = stem.feature.values
            minutes = stem.duration_s / 60
            stored = {}
            for codec in (features.DEFAULT_CODEC, features.LOSSLESS):
                enc_s, (chunks, _) = _best(3, partial(features.encode, values, codec=codec))
                stored[codec] = sum(len(c) for c in chunks) / 1e6 / minutes
                if codec == features.DEFAULT_CODEC:
                    encode_s += enc_s
            mel_s += took
            minutes_total += minutes
            raw = (values.nbytes + 128) / 1e6 / minutes
            for codec, label, target in (
                (features.DEFAULT_CODEC, "default, 1/16 dB", TARGET_MB_PER_MIN / RAW_MB_PER_MIN),
                (features.LOSSLESS, "lossless", None),
            ):
                rows.append(
                    Row(
                        section=SECTION,
                        figure=f"stored MB/stem-min ({label}), {name}",
                        value=stored[codec],
                        unit="MB",
                        baseline="raw float16 .npy",
                        baseline_value=raw,
                        higher_is_better=False,
                        target=target,
                    )
                )
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    if minutes_total:
        rows.append(
            Row(
                section=SECTION,
                figure=f"encode time per stem-min (default codec), {len(sources)} stems",
                value=encode_s / minutes_total,
                unit="s",
                baseline="audio stage (decode + resample + log-mel)",
                baseline_value=mel_s / minutes_total,
                higher_is_better=False,
                target=0.1,
            )
        )
    return rows
