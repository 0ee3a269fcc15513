"""The big fuzz campaign (not run in CI): ``python -m benchmarks.campaign [--midi N] [--audio N]``.

Mutates the real MIDI files of ``../shared/data/midi`` (default 10,000 mutants) and small
WAV/AIFF/FLAC files written here (default 1,000 mutants) with the mutations of
:mod:`tests.fuzz_inputs`, runs each through its stage functions (``read_midi`` and the MIDI
health check; the audio group processing and the audio health check) and prints the counts:
results, ``KmidiError`` per stage and reason class, and anything else — which must be 0 (the exit
code is 1 otherwise, and each such input is kept under ``--keep`` to reproduce it).

Each input runs under a time limit (``--timeout-s``), and the process under an address-space
limit (``--memory-gb``), so a hang or a runaway allocation is counted, not suffered.
"""

from __future__ import annotations

import argparse
import functools
import random
import resource
import signal
import sys
import tempfile
import time
import traceback
import warnings
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.fuzz_inputs import (
    midi_seeds,
    mutate,
    random_mutations,
    run_audio,
    run_midi,
    write_audio_seeds,
)

SHARED_MIDI = Path(__file__).resolve().parents[2] / "shared" / "data" / "midi"


class InputTimeout(Exception):
    pass


def _alarm(_signum: int, _frame: Any) -> None:
    raise InputTimeout


def _guarded(call: Callable[[], Any], timeout_s: int) -> tuple[Any, str | None]:
    """``(value, None)``, or ``(None, what went wrong)`` for anything but a normal return."""
    signal.alarm(timeout_s)
    try:
        return call(), None
    except InputTimeout:
        return None, f"timeout after {timeout_s} s"
    except BaseException as exc:  # noqa: BLE001 - every escape is what the campaign counts
        if isinstance(exc, KeyboardInterrupt):
            raise
        frame = traceback.extract_tb(exc.__traceback__)[-1]
        where = f"{Path(frame.filename).name}:{frame.lineno}"
        return None, f"{type(exc).__name__} at {where}: {str(exc)[:80]}"
    finally:
        signal.alarm(0)


def campaign(
    *,
    midi_count: int,
    audio_count: int,
    seed: int,
    timeout_s: int,
    keep: Path,
    work: Path,
    midi_dir: Path = SHARED_MIDI,
) -> tuple[dict[str, Counter[str]], int]:
    """Run the campaign; return the counters per stage and the number of crashes."""
    rng = random.Random(seed)
    counts: dict[str, Counter[str]] = {
        "midi": Counter(),
        "audio process": Counter(),
        "audio health": Counter(),
    }
    crashes = 0
    seeds = [p.read_bytes() for p in midi_seeds(midi_dir)]
    if not seeds and midi_count:
        print(f"no MIDI seeds: {midi_dir} is absent; MIDI part skipped", file=sys.stderr)
    target = work / "mutant.mid"
    for i in range(midi_count if seeds else 0):
        mutations = random_mutations(rng)
        raw = mutate(rng.choice(seeds), mutations)
        target.write_bytes(raw)
        label, crash = _guarded(functools.partial(run_midi, target), timeout_s)
        if crash is not None:
            crashes += 1
            counts["midi"][f"OTHER {crash}"] += 1
            (keep / f"midi_{i}.mid").write_bytes(raw)
        else:
            counts["midi"][label] += 1
    audio_seeds = [(p.suffix, p.read_bytes()) for p in write_audio_seeds(work / "seeds")]
    for i in range(audio_count):
        suffix, seed_raw = rng.choice(audio_seeds)
        raw = mutate(seed_raw, random_mutations(rng))
        target = work / f"mutant{suffix}"
        target.write_bytes(raw)
        labels, crash = _guarded(functools.partial(run_audio, target), timeout_s)
        if crash is not None:
            crashes += 1
            counts["audio process"][f"OTHER {crash}"] += 1
            (keep / f"audio_{i}{suffix}").write_bytes(raw)
        else:
            counts["audio process"][labels[0]] += 1
            counts["audio health"][labels[1]] += 1
        target.unlink()
    return counts, crashes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--midi", type=int, default=10_000, help="mutated MIDI files (10000)")
    parser.add_argument("--audio", type=int, default=1_000, help="mutated audio files (1000)")
    parser.add_argument("--seed", type=int, default=12, help="random seed (12)")
    parser.add_argument("--timeout-s", type=int, default=30, help="limit per input (30 s)")
    parser.add_argument("--memory-gb", type=float, default=4.0, help="address-space limit (4)")
    parser.add_argument("--midi-dir", type=Path, default=SHARED_MIDI, help="MIDI seeds folder")
    parser.add_argument("--keep", type=Path, default=Path("campaign-crashes"))
    args = parser.parse_args(argv)
    limit = int(args.memory_gb * 2**30)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    signal.signal(signal.SIGALRM, _alarm)
    warnings.simplefilter("ignore", RuntimeWarning)  # numpy overflow on mutated float samples
    args.keep.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="kmidi-campaign-") as tmp:
        counts, crashes = campaign(
            midi_count=args.midi,
            audio_count=args.audio,
            seed=args.seed,
            timeout_s=args.timeout_s,
            keep=args.keep,
            work=Path(tmp),
            midi_dir=args.midi_dir,
        )
    elapsed = time.perf_counter() - started
    for stage, counter in counts.items():
        total = sum(counter.values())
        print(f"{stage}: {total} inputs")
        for label, n in counter.most_common():
            print(f"  {n:>6}  {label}")
    print(f"anything else (crashes, hangs): {crashes}   [{elapsed:.0f} s, seed {args.seed}]")
    if crashes:
        print(f"crashing inputs kept in {args.keep}/")
    elif not any(args.keep.iterdir()):
        args.keep.rmdir()
    return 1 if crashes else 0


if __name__ == "__main__":
    raise SystemExit(main())
