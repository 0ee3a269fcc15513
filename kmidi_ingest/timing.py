"""Tick → seconds and tick → bar/beat conversions (pure, vectorised).

Both maps are piecewise-linear: each segment starts at a tick with a known exact offset, so a
conversion never accumulates rounding error across thousands of tempo events.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from fractions import Fraction
from typing import TypeVar

import numpy as np

DEFAULT_TEMPO_US = 500_000  # 120 BPM until the first tempo event (SMF spec)
DEFAULT_METER = (4, 4)

# SMPTE frame rates as stored in the header byte; 29 means 29.97 drop-frame (30000/1001).
SMPTE_FPS = {24: Fraction(24), 25: Fraction(25), 29: Fraction(30000, 1001), 30: Fraction(30)}


T = TypeVar("T")


def last_per_tick(events: Iterable[tuple[int, int, T]]) -> list[tuple[int, T]]:
    """Sort ``(tick, order, value)`` events by tick and order; at one tick keep the last.

    Players apply every event at a tick in file order, so the last one is the one in force.
    """
    ordered = sorted(events, key=lambda event: (event[0], event[1]))
    result: list[tuple[int, T]] = []
    for tick, _order, value in ordered:
        if result and result[-1][0] == tick:
            result[-1] = (tick, value)
        else:
            result.append((tick, value))
    return result


@dataclass(frozen=True)
class TempoMap:
    """Tempo segments for a PPQ file, or a constant rate for an SMPTE file.

    Parameters
    ----------
    ticks : int64 array, shape (n,)
        Start tick of each segment, strictly increasing, ``ticks[0] == 0``.
    tempos_us : int64 array, shape (n,)
        Microseconds per quarter note in each segment.
    starts_s : float64 array, shape (n,)
        Exact time in seconds at which each segment starts.
    ticks_per_second : Fraction | None
        Set for SMPTE timing (frames/s × ticks/frame): seconds = tick / ticks_per_second, and
        tempo events are ignored.
    """

    ticks: np.ndarray
    tempos_us: np.ndarray
    starts_s: np.ndarray
    ticks_per_beat: int | None
    ticks_per_second: Fraction | None = None

    @classmethod
    def from_events(cls, ticks_per_beat: int, events: Iterable[tuple[int, int]]) -> TempoMap:
        """Build from effective ``(tick, tempo_us)`` events (already de-duplicated and sorted)."""
        seg_ticks = [0]
        seg_tempos = [DEFAULT_TEMPO_US]
        for tick, tempo in events:
            if tick == 0:
                seg_tempos[0] = tempo
            else:
                seg_ticks.append(tick)
                seg_tempos.append(tempo)
        # Exact rational start of each segment: sum of (ticks * tempo) in integer µs·ticks.
        starts: list[float] = [0.0]
        acc = 0
        denominator = 1_000_000 * ticks_per_beat
        for i in range(1, len(seg_ticks)):
            acc += (seg_ticks[i] - seg_ticks[i - 1]) * seg_tempos[i - 1]
            starts.append(acc / denominator)
        return cls(
            ticks=np.asarray(seg_ticks, dtype=np.int64),
            tempos_us=np.asarray(seg_tempos, dtype=np.int64),
            starts_s=np.asarray(starts, dtype=np.float64),
            ticks_per_beat=ticks_per_beat,
        )

    @classmethod
    def smpte(cls, fps: Fraction, ticks_per_frame: int) -> TempoMap:
        zero = np.zeros(1, dtype=np.int64)
        return cls(
            ticks=zero,
            tempos_us=np.full(1, DEFAULT_TEMPO_US, dtype=np.int64),
            starts_s=np.zeros(1),
            ticks_per_beat=None,
            ticks_per_second=fps * ticks_per_frame,
        )

    def seconds(self, ticks: np.ndarray | list[int] | int) -> np.ndarray:
        """Convert ticks (any shape) to seconds, float64."""
        t = np.asarray(ticks, dtype=np.int64)
        if self.ticks_per_second is not None:
            # tick × den / num: one correctly rounded division (29.97 fps is 30000/1001).
            rate = self.ticks_per_second
            return (t * rate.denominator).astype(np.float64) / rate.numerator
        assert self.ticks_per_beat is not None
        i = np.maximum(np.searchsorted(self.ticks, t, side="right") - 1, 0)
        delta = (t - self.ticks[i]).astype(np.float64)
        return self.starts_s[i] + delta * self.tempos_us[i] / (1e6 * self.ticks_per_beat)

    def ticks_at(self, seconds: np.ndarray | list[float] | float) -> np.ndarray:
        """Inverse of :meth:`seconds` (float ticks, not rounded)."""
        s = np.asarray(seconds, dtype=np.float64)
        if self.ticks_per_second is not None:
            rate = self.ticks_per_second
            return s * rate.numerator / rate.denominator
        assert self.ticks_per_beat is not None
        i = np.maximum(np.searchsorted(self.starts_s, s, side="right") - 1, 0)
        return (
            self.ticks[i] + (s - self.starts_s[i]) * 1e6 * self.ticks_per_beat / self.tempos_us[i]
        )


@dataclass(frozen=True)
class MeterMap:
    """Time-signature segments: bar numbers and beat lengths (in ticks) from each change on.

    A change starts a new bar even if the previous bar was not complete.
    """

    ticks: np.ndarray  # segment start ticks, ticks[0] == 0
    first_bars: np.ndarray  # 1-based bar number at each segment start
    bar_ticks: np.ndarray  # float64 length of a bar in ticks
    beat_ticks: np.ndarray  # float64 length of one beat (the denominator's unit) in ticks

    @classmethod
    def from_events(
        cls, ticks_per_beat: int, events: Iterable[tuple[int, tuple[int, int]]]
    ) -> MeterMap:
        """Build from effective ``(tick, (numerator, denominator))`` events (sorted, unique)."""
        seg_ticks = [0]
        meters = [DEFAULT_METER]
        for tick, meter in events:
            if tick == 0:
                meters[0] = meter
            else:
                seg_ticks.append(tick)
                meters.append(meter)
        beat = np.array([4 * ticks_per_beat / den for _num, den in meters], dtype=np.float64)
        bar = np.array([num for num, _den in meters], dtype=np.float64) * beat
        first = [1]
        for i in range(1, len(seg_ticks)):
            span = seg_ticks[i] - seg_ticks[i - 1]
            # ceil: a partial bar before the change still counts as a bar.
            first.append(first[-1] + int(-(-span // bar[i - 1])) if bar[i - 1] > 0 else first[-1])
        return cls(
            ticks=np.asarray(seg_ticks, dtype=np.int64),
            first_bars=np.asarray(first, dtype=np.int64),
            bar_ticks=bar,
            beat_ticks=beat,
        )

    def bar_beat(self, ticks: np.ndarray | list[int] | int) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(bar, beat)``: 1-based bar (int64) and 1-based fractional beat (float64)."""
        t = np.asarray(ticks, dtype=np.int64)
        i = np.maximum(np.searchsorted(self.ticks, t, side="right") - 1, 0)
        offset = (t - self.ticks[i]).astype(np.float64)
        bars_in = np.floor(offset / self.bar_ticks[i])
        within = offset - bars_in * self.bar_ticks[i]
        return self.first_bars[i] + bars_in.astype(np.int64), 1.0 + within / self.beat_ticks[i]

    def bar_start_ticks(self, last_tick: int) -> np.ndarray:
        """Ticks at which each bar starts, up to ``last_tick`` (for bar lines in plots)."""
        starts: list[np.ndarray] = []
        for i, start in enumerate(self.ticks):
            end = self.ticks[i + 1] if i + 1 < len(self.ticks) else last_tick + 1
            starts.append(np.arange(start, end, self.bar_ticks[i]))
        return np.concatenate(starts) if starts else np.zeros(0)
