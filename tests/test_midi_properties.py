"""Hypothesis properties of the MIDI stage: tempo maps, note pairing, the decoder, and fuzzing."""

from __future__ import annotations

import io
from collections import Counter, deque
from fractions import Fraction
from functools import cache
from pathlib import Path

import mido
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kmidi_ingest.midi import convert
from kmidi_ingest.smf import SmfTrack, parse_smf
from kmidi_ingest.timing import TempoMap
from tests.conftest import SHARED_MIDI
from tests.fixtures import make_midi_fixtures as mk
from tests.fuzz_inputs import KINDS, midi_seeds, mutate, run_midi
from tests.midi_compare import mido_events, smf_as_mido

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

tempo_events = st.lists(
    st.tuples(st.integers(0, 50_000), st.integers(1, 0xFFFFFF)), max_size=60
).map(lambda events: sorted(dict(events).items()))


def exact_seconds(events: list[tuple[int, int]], tpb: int, tick: int) -> Fraction:
    """Step-by-step reference in exact rationals: walk the segments up to ``tick``."""
    current, position, elapsed = 500_000, 0, Fraction(0)
    for at, tempo in events:
        if at > tick:
            break
        elapsed += Fraction((at - position) * current, 1_000_000 * tpb)
        position, current = at, tempo
    return elapsed + Fraction((tick - position) * current, 1_000_000 * tpb)


@FAST
@given(tempo_events, st.integers(1, 32767), st.lists(st.integers(0, 100_000), min_size=1))
def test_tempo_map_is_exact_monotonic_and_invertible(events, tpb, ticks):
    tempo_map = TempoMap.from_events(tpb, events)
    seconds = tempo_map.seconds(ticks)
    for tick, value in zip(ticks, seconds, strict=True):
        reference = exact_seconds(events, tpb, tick)
        assert abs(value - float(reference)) <= 1e-9 * max(1.0, float(reference))
    ordered = tempo_map.seconds(sorted(ticks))
    assert np.all(np.diff(ordered) >= 0)
    # tick -> seconds -> tick, and seconds -> tick -> seconds. A float64 second pins a tick only
    # to a few of its ulps times the fastest tempo's ticks per second (1 us a beat: 1e6 * tpb).
    fastest = tpb * 1e6 / min([500_000] + [t for _, t in events])
    ulps = 4 * np.finfo(float).eps * float(np.max(seconds)) * fastest
    assert np.allclose(tempo_map.ticks_at(seconds), ticks, rtol=0, atol=1e-6 * tpb + ulps)
    # seconds -> nearest tick -> seconds: off by at most half a tick's duration.
    probe = np.linspace(0, float(ordered[-1]) + 1, 17)
    half_tick_s = max([500_000] + [t for _, t in events]) / (2e6 * tpb)
    back = tempo_map.seconds(np.round(tempo_map.ticks_at(probe)))
    assert np.all(np.abs(back - probe) <= half_tick_s * (1 + 1e-9) + 1e-9)
    assert np.allclose(
        [float(exact_seconds(events, tpb, 0))], tempo_map.seconds([0]), rtol=0, atol=0
    )


def test_no_drift_after_thousands_of_tempo_events():
    rng = np.random.default_rng(7)
    ticks = np.cumsum(rng.integers(1, 97, 5000))
    tempos = rng.integers(200_000, 1_500_000, 5000)
    events = list(zip(ticks.tolist(), tempos.tolist(), strict=True))
    tempo_map = TempoMap.from_events(959, events)
    probe = [int(ticks[-1]) + 1234, int(ticks[2500]) + 1, int(ticks[-1])]
    for tick, value in zip(probe, tempo_map.seconds(probe), strict=True):
        assert abs(value - float(exact_seconds(events, 959, tick))) < 1e-9


@FAST
@given(st.sampled_from([24, 25, 29, 30]), st.integers(1, 255), st.lists(st.integers(0, 10**7)))
def test_smpte_map_is_exact_and_invertible(fps, tpf, ticks):
    rate = (Fraction(30000, 1001) if fps == 29 else Fraction(fps)) * tpf
    tempo_map = TempoMap.smpte(rate / tpf, tpf)
    seconds = tempo_map.seconds(ticks)
    assert seconds.tolist() == [float(Fraction(t) / rate) for t in ticks]
    assert np.allclose(tempo_map.ticks_at(seconds), ticks, rtol=1e-12, atol=1e-6)


channel_event = st.tuples(
    st.integers(0, 40),  # delta ticks
    st.sampled_from(["on", "off", "on0"]),
    st.integers(0, 2),  # channel
    st.integers(60, 62),  # pitch
    st.integers(1, 127),  # velocity
)


@FAST
@given(st.lists(st.lists(channel_event, max_size=80), min_size=1, max_size=3))
def test_pairing_loses_no_note_and_ends_never_precede_starts(tracks):
    encoded = []
    expected = []
    for messages in tracks:
        tick = 0
        events = []
        opened: dict[tuple[int, int], deque[int]] = {}
        ons = closed = strays = 0
        for delta, kind, channel, pitch, velocity in messages:
            tick += delta
            if kind == "on":
                events.append((tick, 0x90 | channel, pitch, velocity, None))
                opened.setdefault((channel, pitch), deque()).append(tick)
                ons += 1
                continue
            status = 0x80 if kind == "off" else 0x90
            events.append((tick, status | channel, pitch, velocity if kind == "off" else 0, None))
            if opened.get((channel, pitch)):
                opened[(channel, pitch)].popleft()
                closed += 1
            else:
                strays += 1
        events.append((tick, 0xFF, 0x2F, 0, b""))
        encoded.append(events)
        expected.append((ons, strays, sum(len(q) for q in opened.values())))
    tracks_in = [SmfTrack.from_events(events) for events in encoded]
    data = convert(midi_format=1, division=96, tracks=tracks_in, path=Path("generated.mid"))
    # A track whose notes use several channels is several parts: check each track's parts as one.
    for index, (events, (ons, strays, still_open)) in enumerate(
        zip(encoded, expected, strict=True)
    ):
        parts = [part for part in data.tracks if part.index == index]
        assert parts and [p.part_index for p in parts] == sorted(p.part_index for p in parts)
        notes = np.concatenate([part.notes for part in parts])
        assert len(notes) == ons  # no note lost
        assert all(len(np.unique(part.notes["channel"])) <= 1 for part in parts)
        assert np.all(notes["end_tick"] >= notes["start_tick"])
        assert np.all(notes["end_s"] >= notes["start_s"])
        assert np.all(notes["end_sustain_s"] >= notes["end_s"])
        assert sum(part.stray_note_off_count for part in parts) == strays
        assert int(notes["end_inferred"].sum()) == still_open
        starts = Counter(
            (e[1] & 0x0F, e[2], e[0]) for e in events if e[1] & 0xF0 == 0x90 and e[3] > 0
        )
        assert starts == Counter(map(tuple, notes[["channel", "pitch", "start_tick"]].tolist()))


message = st.one_of(
    st.builds(
        lambda d, c, p, v: mk.on(d, p, v, c),
        st.integers(0, 5000),
        st.integers(0, 15),
        st.integers(0, 127),
        st.integers(0, 127),
    ),
    st.builds(
        lambda d, c, p, v: mk.off(d, p, v, c),
        st.integers(0, 5000),
        st.integers(0, 15),
        st.integers(0, 127),
        st.integers(0, 127),
    ),
    st.builds(
        lambda d, c, x, y: mk.msg(d, 0xB0 | c, x, y),
        st.integers(0, 300),
        st.integers(0, 15),
        st.integers(0, 127),
        st.integers(0, 127),
    ),
    st.builds(
        lambda d, c, x: mk.msg(d, 0xC0 | c, x),
        st.integers(0, 300),
        st.integers(0, 15),
        st.integers(0, 127),
    ),
    st.builds(
        lambda d, c, x, y: mk.msg(d, 0xE0 | c, x, y),
        st.integers(0, 0x0FFFFF),
        st.integers(0, 15),
        st.integers(0, 127),
        st.integers(0, 127),
    ),
    st.builds(lambda d, t: mk.tempo(d, t), st.integers(0, 300), st.integers(1, 0xFFFFFF)),
    st.builds(lambda d, t: mk.meta(d, 0x01, t), st.integers(0, 300), st.binary(max_size=300)),
)


@FAST
@given(st.lists(st.lists(message, max_size=40).map(b"".join), min_size=1, max_size=4))
def test_decoder_matches_mido_on_generated_files(bodies):
    raw = mk.smf(1, [mk.track(body) for body in bodies])
    mid = mido.MidiFile(file=io.BytesIO(raw))
    assert smf_as_mido(parse_smf(raw)) == [mido_events(t) for t in mid.tracks]


MUTATIONS = st.lists(
    st.tuples(st.sampled_from(KINDS), st.floats(0, 1, exclude_max=True), st.integers(0, 2**32 - 1)),
    min_size=1,
    max_size=6,
)


@cache
def seed_files() -> tuple[Path, ...]:
    return tuple(midi_seeds(SHARED_MIDI))


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


# Bounded for CI (a few seconds) and derandomized, so a failure reproduces on every machine;
# benchmarks/campaign.py runs the same mutations on 10,000 files.
@settings(
    max_examples=200,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(st.data(), MUTATIONS)
def test_fuzzed_real_files_give_a_result_or_a_midi_error(fuzz_dir, data, mutations):
    if not seed_files():
        pytest.skip(f"{SHARED_MIDI} is not present (the real MIDI files are the fuzz seeds)")
    seed = data.draw(st.sampled_from(seed_files()))
    path = fuzz_dir / "fuzzed.mid"
    path.write_bytes(mutate(seed.read_bytes(), mutations))
    # read_midi and the health check; run_midi asserts the invariants of a result.
    label = run_midi(path)
    assert label == "result" or label.startswith("KmidiError midi: "), label


def test_mutations_are_applied_as_documented():
    raw = bytes(range(100))
    assert mutate(raw, [("flip", 0.5, 0x1FF)])[50] == 0xFF
    assert mutate(raw, [("cut", 0.25, 0)]) == raw[:25]
    assert mutate(raw, [("delete", 0.0, 2)]) == raw[3:]
    assert mutate(raw, [("insert", 0.0, 0xAB000001)])[:3] == b"\xab\xab\x00"
    assert mutate(raw, [("header_u32_be", 0.0, 7)])[:4] == b"\x00\x00\x00\x07"
    assert mutate(raw, [("header_u32_le", 0.0, 0x100 + 9)])[:4] == b"\xff\xff\xff\xff"
    assert mutate(raw, [("duplicate", 0.0, 1)])[:4] == bytes([0, 1, 0, 1])
