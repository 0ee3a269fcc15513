"""Windows section: training windows per second against reading the raw stored features of the
same stems, and the window export's peak memory on a database of many cues against few.

The corpus: cues of two tone-rendered stems (each paired with its MIDI track by name) and a mix,
ingested at 16 kHz into a temporary SQLite database. Figures:

- windows: ``kmidi_ingest.windows`` (3 s windows, 1.5 s hop, every stem) in windows/s, against
  ``read_feature`` of every stem's log-mel alone (its chunks read, decoded and checked — the work
  any reader of the stored features must do), expressed in the same windows/s. Target ≥ 0.5×.
  Best of 3, alternated.
- export memory: peak RSS of ``export --format windows`` in a child process on the whole corpus
  against the same on a quarter of it. Flat memory means a ratio near 1 (target ≤ 1.25×).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import mido
import numpy as np
import soundfile as sf
from sqlalchemy import Engine, select

from benchmarks.common import Row
from kmidi_ingest import models as m
from kmidi_ingest.db import make_engine
from kmidi_ingest.store import read_feature
from kmidi_ingest.windowing import windows

SECTION = "windows"
SR = 16_000


def make_cues(root: Path, count: int, seconds: float, *, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    t = np.arange(int(0.3 * SR)) / SR
    for c in range(count):
        cue = root / f"{c + 1}M{c + 1:02d} Take"
        (cue / "MIDI").mkdir(parents=True)
        (cue / "Audio Files").mkdir()
        mid = mido.MidiFile(type=1, ticks_per_beat=480)
        mid.tracks.append(mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=500_000)]))
        mix = np.zeros(int(seconds * SR))
        for k, name in enumerate(("Piano", "Bass")):
            starts = np.sort(rng.uniform(0, seconds - 0.5, int(seconds * 3)))
            pitches = rng.integers(40 + 12 * (1 - k), 70 + 12 * (1 - k), len(starts))
            audio = np.zeros_like(mix)
            track = mido.MidiTrack([mido.MetaMessage("track_name", name=name)])
            events = []
            for s, p in zip(starts, pitches, strict=True):
                i = int(s * SR)
                tone = 0.2 * np.sin(2 * np.pi * 440 * 2 ** ((p - 69) / 12) * t) * np.exp(-t / 0.1)
                audio[i : i + len(tone)] += tone[: len(audio) - i]
                events += [
                    (round(s * 960), "note_on", int(p)),
                    (round(s * 960) + 240, "note_off", int(p)),
                ]
            now = 0
            for tick, kind, p in sorted(events):
                track.append(mido.Message(kind, note=p, velocity=90, channel=k, time=tick - now))
                now = tick
            mid.tracks.append(track)
            sf.write(cue / "Audio Files" / f"{name}.wav", audio, SR, subtype="PCM_16")
            mix += audio
        mid.save(cue / "MIDI" / "cue.mid")
        sf.write(cue / "Audio Files" / "Take 6mx.wav", 0.5 * mix, SR, subtype="PCM_16")


def _ingest(root: Path, url: str) -> None:
    from kmidi_ingest import ingest

    summary = ingest(root, SR, database_url=url, workers=2)
    assert summary.ok, summary.problems


def _time_windows(engine: Engine) -> tuple[float, int]:
    started = time.perf_counter()
    count = sum(1 for _ in windows(engine, window_s=3.0, hop_s=1.5))
    return time.perf_counter() - started, count


def _time_reads(engine: Engine) -> float:
    started = time.perf_counter()
    with engine.connect() as conn:
        ids = conn.execute(
            select(m.AudioFeature.id).where(m.AudioFeature.audio_file_id.is_not(None))
        ).scalars()
        for feature_id in list(ids):
            read_feature(conn, feature_id)
    return time.perf_counter() - started


_EXPORT_RSS = """
import resource, sys
from kmidi_ingest.window_export import export_windows
export_windows(sys.argv[1], sys.argv[2], window_s=3.0, hop_s=1.5, shard_mb=32)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""


def _export_rss(url: str, out: Path) -> float:
    done = subprocess.run(
        [sys.executable, "-c", _EXPORT_RSS, url, str(out)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    return float(done.stdout.strip().splitlines()[-1])


def run(quick: bool) -> list[Row]:
    cues, seconds = (4, 10.0) if quick else (32, 60.0)
    with tempfile.TemporaryDirectory(prefix="kmidi-bench-windows-") as tmp:
        base = Path(tmp)
        make_cues(base / "all", cues, seconds)
        small = base / "quarter"
        small.mkdir()
        for cue in sorted((base / "all").iterdir())[: max(1, cues // 4)]:
            (small / cue.name).symlink_to(cue, target_is_directory=True)
        url_all = f"sqlite:///{base / 'all.sqlite'}"
        url_small = f"sqlite:///{base / 'quarter.sqlite'}"
        _ingest(base / "all", url_all)
        _ingest(small, url_small)
        ours, reads, count = [], [], 0
        engine = make_engine(url_all)
        for _ in range(3):
            elapsed, count = _time_windows(engine)
            ours.append(elapsed)
            reads.append(_time_reads(engine))
        engine.dispose()
        rss_small = _export_rss(url_small, base / "out-small")
        rss_all = _export_rss(url_all, base / "out-all")
    return [
        Row(
            section=SECTION,
            figure=f"windows (3 s, hop 1.5 s) of {cues} cues × 2 stems of {seconds:g} s",
            value=count / min(ours),
            unit="windows/s",
            baseline="read_feature of the same stems, same windows",
            baseline_value=count / min(reads),
            target=0.5,
        ),
        Row(
            section=SECTION,
            figure=f"export --format windows peak RSS, {cues} cues",
            value=rss_all,
            unit="MB",
            baseline=f"the same export of {max(1, cues // 4)} cues",
            baseline_value=rss_small,
            higher_is_better=False,
            target=1.25,
        ),
    ]
