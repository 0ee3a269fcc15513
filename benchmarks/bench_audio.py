"""Audio stage: throughput on a generated cue of realistic size, and peak memory on long groups.

Throughput is stem-seconds (the duration of every stem and final mix, summed) processed per
wall-clock second by the whole audio stage (grouping, reading, mixing, resampling, log-mel,
levels), beside two figures from the same run on the same files:

- the limit: a bare ``soundfile.read`` of every channel file plus one
  ``librosa.feature.melspectrogram`` of each stem's mono mix, nothing else;
- the original tool's way: ``librosa.load`` of each channel, mean, melspectrogram normalised to
  its maximum, ``tolist()`` to JSON text.

Peak memory: a multi-mono 6-channel 96 kHz 24-bit group is processed at 48 kHz in a fresh
interpreter; its resident size after the imports (the baseline) is subtracted from its peak
resident size at the end (``VmHWM``, reset after the imports); two lengths show that, apart
from the returned feature matrix itself (about 1.5 MB per audio minute at 48 kHz), it does not
grow with the files. Generated audio lives under ``/tmp`` and is
deleted afterwards.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from benchmarks.common import Row

SECTION = "audio"
RATE = 48000
SURROUND = ("L", "R", "C", "LFE", "Ls", "Rs")
STEM_NAMES = ("Strings", "Brass", "Woodwinds", "Perc", "Piano", "Synth Pad", "Choir", "Harp")


def _write_signal(path: Path, *, seconds: float, channels: int, rate: int, seed: int) -> None:
    """Write ``seconds`` of band-limited noise plus tones, 24-bit, in 10 s blocks (flat memory)."""
    import soundfile as sf

    rng = np.random.default_rng(seed)
    block = 10 * rate
    t = np.arange(block) / rate
    base = 0.2 * np.sin(2 * np.pi * (110 + 55 * seed) * t) + 0.05 * rng.standard_normal(block)
    with sf.SoundFile(
        str(path), "w", samplerate=rate, channels=channels, subtype="PCM_24", format="WAV"
    ) as out:
        remaining = int(seconds * rate)
        while remaining > 0:
            n = min(block, remaining)
            data = np.repeat(base[:n, None], channels, axis=1) * rng.uniform(0.3, 1.0, channels)
            out.write(data.astype(np.float32))
            remaining -= n


def make_cue(folder: Path, *, stems: int, seconds: float) -> list[Path]:
    """A cue of ``stems`` multi-mono stereo stems and a multi-mono 5.1 ``6mx`` mix at 48 kHz."""
    audio = folder / "1M01 Bench" / "Audio Files"
    audio.mkdir(parents=True)
    paths = []
    for i, name in enumerate(STEM_NAMES[:stems]):
        for label in ("L", "R"):
            paths.append(audio / f"1M01 {name}.{label}.wav")
            _write_signal(paths[-1], seconds=seconds, channels=1, rate=RATE, seed=i)
    for k, label in enumerate(SURROUND):
        paths.append(audio / f"1M01 6mx.{label}.wav")
        _write_signal(paths[-1], seconds=seconds, channels=1, rate=RATE, seed=20 + k)
    return paths


def _ours(paths: list[Path]) -> float:
    from kmidi_ingest.audio import process_group
    from kmidi_ingest.discover import group_channels

    seconds = 0.0
    for group in group_channels([(p, p.name) for p in paths]):
        seconds += process_group(group, sample_rate_hz=RATE).duration_s
    return seconds


def _limit(paths: list[Path]) -> float:
    import librosa
    import soundfile as sf

    from kmidi_ingest.discover import group_channels

    seconds = 0.0
    for group in group_channels([(p, p.name) for p in paths]):
        channels = [sf.read(str(f.path), dtype="float32")[0] for f in group.files]
        mono = np.mean(channels, axis=0)
        librosa.feature.melspectrogram(y=mono, sr=RATE, n_fft=2048, hop_length=512, n_mels=128)
        seconds += len(mono) / RATE
    return seconds


def _original(paths: list[Path]) -> float:
    import librosa

    from kmidi_ingest.discover import group_channels

    seconds = 0.0
    for group in group_channels([(p, p.name) for p in paths]):
        channels = [librosa.load(str(f.path), sr=RATE)[0] for f in group.files]
        mono = np.mean(channels, axis=0)
        mel = librosa.feature.melspectrogram(y=mono, sr=RATE)
        json.dumps(librosa.power_to_db(mel, ref=np.max).tolist())
        seconds += len(mono) / RATE
    return seconds


def _rate(fn: Callable[[list[Path]], float], paths: list[Path], repeats: int) -> float:
    """Best stem-seconds per wall-second over ``repeats`` runs (the machine is shared)."""
    best = 0.0
    for _ in range(repeats):
        started = time.perf_counter()
        seconds = fn(paths)
        best = max(best, seconds / (time.perf_counter() - started))
    return best


_RSS_CHILD = """
import sys
from pathlib import Path
import numpy, soundfile, soxr, scipy.fft, scipy.sparse
from kmidi_ingest.audio import process_group
from kmidi_ingest.discover import group_channels


def status_kb(field):
    line = next(x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith(field))
    return int(line.split()[1])


# Imports peak above what they keep: reset the high-water mark (Linux >= 4.0). VmHWM is read
# rather than ru_maxrss, which also remembers the parent's size from before exec.
Path("/proc/self/clear_refs").write_text("5")
base = status_kb("VmRSS:")
paths = sorted(Path(sys.argv[1]).glob("*.wav"))
(group,) = group_channels([(p, p.name) for p in paths])
stem = process_group(group, sample_rate_hz=48000)
assert stem.layout == "L,R,C,LFE,Ls,Rs", stem.layout
feature_mb = stem.feature.values.nbytes / 2**20
print((status_kb("VmHWM:") - base) / 1024, stem.duration_s, feature_mb)
"""


def _rss_above_baseline(folder: Path, *, seconds: float) -> tuple[float, float]:
    """MB of peak RSS a fresh interpreter adds processing a 6-channel 96 kHz group, and the MB
    of the feature matrix it returns (the one part that must grow with the length)."""
    group = folder / f"rss_{int(seconds)}"
    group.mkdir()
    try:
        for k, label in enumerate(SURROUND):
            _write_signal(
                group / f"1M01 6mx.{label}.wav", seconds=seconds, channels=1, rate=96000, seed=k
            )
        repo = Path(__file__).resolve().parents[1]
        out = subprocess.run(
            [sys.executable, "-c", _RSS_CHILD, str(group)],
            check=True,
            capture_output=True,
            text=True,
            cwd=repo,
            env={"PYTHONPATH": str(repo), "PATH": "/usr/bin:/bin"},
        ).stdout.split()
        assert abs(float(out[1]) - seconds) < 1e-6
        return float(out[0]), float(out[2])
    finally:
        shutil.rmtree(group)


def run(quick: bool) -> list[Row]:
    stems, seconds, repeats = (3, 20.0, 1) if quick else (6, 120.0, 2)
    rss_lengths = (60.0, 120.0) if quick else (300.0, 600.0)
    folder = Path(tempfile.mkdtemp(prefix="kmidi-bench-audio-", dir="/tmp"))
    try:
        paths = make_cue(folder, stems=stems, seconds=seconds)
        warm = paths[:2]  # numba/FFT plans compiled and files in the page cache for everyone
        for fn in (_limit, _ours, _original):
            fn(warm)
        limit = _rate(_limit, paths, repeats)
        ours = _rate(_ours, paths, repeats)
        original = _rate(_original, paths, 1)
        # Each length twice, alternated, keeping the lower peak: RSS noise only ever adds.
        runs = [_rss_above_baseline(folder, seconds=s) for _ in range(2) for s in rss_lengths]
        rss_short, out_short = min(runs[0::2])
        rss_long, out_long = min(runs[1::2])
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    cue = f"{stems} stereo stems + 5.1 mix, {seconds:g} s, 48 kHz 24-bit"
    short_min, long_min = (s / 60 for s in rss_lengths)
    return [
        Row(
            section=SECTION,
            figure=f"audio stage ({cue})",
            value=ours,
            unit="stem-s/s",
            baseline="limit: soundfile.read + librosa mel",
            baseline_value=limit,
            target=0.8,
        ),
        Row(
            section=SECTION,
            figure=f"audio stage ({cue})",
            value=ours,
            unit="stem-s/s",
            baseline="original: librosa.load/channel + mel + JSON",
            baseline_value=original,
        ),
        Row(
            section=SECTION,
            figure=f"peak RSS above interpreter, {long_min:g}-min 6-ch 96 kHz group",
            value=rss_long,
            unit="MB",
            baseline="budget (issue)",
            baseline_value=300.0,
            higher_is_better=False,
            target=1.0,
        ),
        Row(
            section=SECTION,
            figure=f"working memory (peak RSS - feature matrix), {long_min:g}-min group",
            value=rss_long - out_long,
            unit="MB",
            baseline=f"same, {short_min:g}-min group (flat = 1×)",
            baseline_value=rss_short - out_short,
            higher_is_better=False,
            target=1.1,
        ),
    ]
