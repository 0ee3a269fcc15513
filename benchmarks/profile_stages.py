"""Where one cue's time goes, stage by stage, against each stage's floor on this machine.

``python -m benchmarks.profile_stages [--quick]`` writes one cue of the peer section's shape
(7 stereo stems + a 5.1 multi-mono mix, 90 s at 48 kHz, 16-bit), ingests it once to warm up
(imports, page cache), then ingests it again on 1 worker under ``cProfile`` timed by
``time.process_time`` — CPU time, not wall time: the machine is shared and its wall time is
noise. Each stage's CPU seconds come from the profile's cumulative time of the functions that
make it; each floor is the bare library call doing that stage's work on the same data
(``soundfile.read``, ``hashlib.sha256``, ``scipy.fft.rfft`` of every frame, the sparse mel
product, ``np.log10``, a float16 cast, ``blosc2.compress2``), best of 3. Profiling adds a few
per cent to the Python-heavy stages. Last, the cue's result is handed to another process both
ways a pool can (its pipe; a file in shared memory, :mod:`kmidi_ingest.batch.shipping`), in wall
seconds, best of 3.
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import os
import pickle
import pstats
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.bench_batch import SR, make_corpus
from benchmarks.bench_peer import FULL, QUICK_PEER

# Stage -> functions (file suffix, function name) whose cumulative CPU time it is.
STAGES: dict[str, tuple[tuple[str, str], ...]] = {
    "hash (sha256 of every file)": (("batch/compute.py", "_hash_files"),),
    "MIDI read": (("kmidi_ingest/midi.py", "read_midi"),),
    "decode (soundfile reads)": (("kmidi_ingest/audio.py", "_read"),),
    "mono mix, peak, rms": (("kmidi_ingest/audio.py", "_accumulate"),),
    "resample (soxr)": (("", "resample_chunk"),),
    "STFT: rfft": (("scipy/fft/_basic_backend.py", "rfft"),),
    "mel product (sparse)": (("scipy/sparse/_base.py", "_matmul_dispatch"),),
    "mel: window, power, f32 check": (("kmidi_ingest/mel.py", "_mel_power"),),
    "float16, onset strength": (("kmidi_ingest/mel.py", "_store"),),
    "log (dB), frame buffer": (("kmidi_ingest/mel.py", "_emit"),),
    "match (tracks to stems)": (("kmidi_ingest/pairing.py", "match_offline"),),
    "feature encode (q, npy, blosc2, sha)": (("kmidi_ingest/features.py", "encode"),),
    "SQLite write (write_cue)": (("kmidi_ingest/store.py", "write_cue"),),
    "whole ingest": (("batch/runner.py", "ingest"),),
}
# Parts of a stage's cumulative time that belong to another row (nested calls).
NESTED = {
    "mel: window, power, f32 check": ("STFT: rfft", "mel product (sparse)"),
    "log (dB), frame buffer": ("mel: window, power, f32 check", "float16, onset strength"),
}


def _encode_in_writer(stats: pstats.Stats) -> float:
    """Cumulative time of ``features.encode`` called from the store (before the worker did it)."""
    total = 0.0
    for (filename, _line, func), entry in stats.stats.items():  # type: ignore[attr-defined]
        if func == "encode" and filename.endswith("kmidi_ingest/features.py"):
            for (caller_file, _l, _f), (_cc, _nc, _tt, ct) in entry[4].items():
                if caller_file.endswith("kmidi_ingest/store.py"):
                    total += ct
    return total


def _cumulative(stats: pstats.Stats, suffix: str, name: str) -> float:
    total = 0.0
    for (filename, _line, func), (_cc, _nc, _tt, ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        if func == name and filename.endswith(suffix):
            total += ct
    return total


def _best(fn: Callable[[], Any], n: int = 3) -> float:
    best = float("inf")
    for _ in range(n):
        started = time.process_time()
        fn()
        best = min(best, time.process_time() - started)
    return best


def _loaded_size(value: Any) -> int:
    """In a pool worker: the object handed over, loaded (from shared memory if shipped)."""
    from kmidi_ingest.batch import shipping

    return len(
        pickle.dumps(shipping.unship(value) if isinstance(value, shipping.Shipped) else value)
    )


def hand_off_seconds(result: Any, n: int = 3) -> tuple[float, float]:
    """Wall seconds (best of ``n``) to hand ``result`` to another process and load it there:
    through a process pool's pipe, and as :mod:`kmidi_ingest.batch.shipping` does (a file in
    shared memory, its arrays mapped). Wall time: the cost is in both processes."""
    from concurrent.futures import ProcessPoolExecutor

    from kmidi_ingest.batch import shipping

    folder = shipping.ship_folder()
    best = [float("inf"), float("inf")]
    try:
        with ProcessPoolExecutor(1) as pool:
            pool.submit(_loaded_size, 0).result()  # the worker started
            for _ in range(n):
                for way in (0, 1):
                    started = time.perf_counter()
                    sent = shipping.ship(result, folder) if way else result
                    pool.submit(_loaded_size, sent).result()
                    best[way] = min(best[way], time.perf_counter() - started)
                    shipping.discard(sent)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return best[0], best[1]


def floors(cue: Path, frames_total: int) -> dict[str, float]:
    """CPU seconds of the bare library calls for one cue's work, best of 3."""
    import blosc2
    import soundfile as sf
    from numpy.lib.stride_tricks import sliding_window_view
    from scipy import fft, sparse

    from kmidi_ingest.audio import mel_filter_bank
    from kmidi_ingest.features import _blosc2_params

    files = sorted(p for p in cue.rglob("*") if p.is_file())
    wavs = [p for p in files if p.suffix == ".wav"]

    def sha() -> None:
        for p in files:
            hashlib.sha256(p.read_bytes()).hexdigest()

    x = np.random.default_rng(0).standard_normal(SR * 10).astype(np.float32)
    windows = sliding_window_view(x, 2048)[::512]
    batch = np.empty((128, 2048), np.float32)

    def rfft() -> None:
        for i in range(0, frames_total, 128):
            j = i % (len(windows) - 128)
            np.copyto(batch, windows[j : j + 128])
            fft.rfft(batch, axis=1, overwrite_x=True)

    basis = sparse.csr_array(
        mel_filter_bank(
            sample_rate_hz=SR, n_fft=2048, n_mels=128, fmin_hz=0.0, fmax_hz=SR / 2
        ).astype(np.float32)
    )
    power = np.abs(np.random.default_rng(1).standard_normal((1025, 128))).astype(np.float32)
    mel = np.abs(np.random.default_rng(2).standard_normal((128, frames_total))).astype(np.float32)
    half = mel.astype(np.float16)
    return {
        "hash (sha256 of every file)": _best(sha),
        "decode (soundfile reads)": _best(lambda: [sf.read(p, dtype="int16") for p in wavs]),
        "STFT: rfft": _best(rfft),
        "mel product (sparse)": _best(lambda: [basis @ power for _ in range(0, frames_total, 128)]),
        "log (dB), frame buffer": _best(lambda: np.log10(mel)),
        "float16, onset strength": _best(lambda: mel.astype(np.float16)),
        "feature encode (q, npy, blosc2, sha)": _best(
            lambda: blosc2.compress2(half.tobytes(), **_blosc2_params(2))
        ),
    }


def profile(root: Path, work: Path) -> tuple[dict[str, float], Any]:
    from kmidi_ingest import ingest

    ingest(root, SR, database_url=f"sqlite:///{work / 'warm.sqlite'}", workers=1)
    prof = cProfile.Profile(time.process_time)
    prof.enable()
    summary = ingest(root, SR, database_url=f"sqlite:///{work / 'timed.sqlite'}", workers=1)
    prof.disable()
    if not summary.ok:
        raise RuntimeError(f"profiled ingest failed: {summary.problems[:3]}")
    stats = pstats.Stats(prof)
    cumulative = {
        stage: sum(_cumulative(stats, s, f) for s, f in funcs) for stage, funcs in STAGES.items()
    }
    own = dict(cumulative)
    for stage, inner in NESTED.items():
        own[stage] = cumulative[stage] - sum(cumulative[i] for i in inner)
    own["SQLite write (write_cue)"] -= _encode_in_writer(stats)
    return own, summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a few seconds of audio")
    args = parser.parse_args(argv)
    shape = replace(QUICK_PEER if args.quick else FULL, cues=1)
    work = Path(tempfile.mkdtemp(prefix="kmidi-profile-", dir="/tmp"))
    try:
        root = make_corpus(work / "cues", shape, audio_dir="PT/Audio Files")
        cue = next(root.glob("*/*/MIDI")).parent
        own, _summary = profile(root, work)
        from kmidi_ingest.discover import scan

        stems = len(scan(root).cues[0].groups)
        frames_total = stems * (1 + int(shape.seconds * SR) // 512)
        floor = floors(cue, frames_total)
        from kmidi_ingest.batch.compute import CueSpec, process_cue

        source = scan(root).cues[0]
        result = process_cue(source, CueSpec(sample_rate_hz=SR), stat_fingerprint="")
        size_mb = len(pickle.dumps(result, protocol=5)) / 1e6
        piped, shipped = hand_off_seconds(result)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    load = os.getloadavg()
    print(f"one cue: {stems} stems + mixes, {shape.seconds:g} s at {SR} Hz; CPU seconds")
    print(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} cores")
    print(f"{'stage':40s} {'CPU s':>7s} {'floor s':>8s} {'gap s':>7s}")
    for stage, seconds in own.items():
        f = floor.get(stage)
        gap = "" if f is None else f"{seconds - f:7.3f}"
        print(f"{stage:40s} {seconds:7.3f} {'' if f is None else f'{f:8.3f}':>8s} {gap:>7s}")
    print(f"the cue's result ({size_mb:.1f} MB) handed to another process, wall seconds:")
    print(f"{'  through the pool pipe (as before)':40s} {piped:7.3f}")
    print(f"{'  through shared memory (shipping)':40s} {shipped:7.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
