import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from kmidi_ingest.timing import MeterMap, TempoMap, last_per_tick


def test_tempo_change_charges_each_segment_at_its_own_tempo():
    tempo = TempoMap.from_events(480, [(0, 500_000), (960, 250_000)])
    # 960 ticks at 120 BPM = 1.0 s, then 480 ticks at 240 BPM = 0.25 s.
    assert tempo.seconds([0, 480, 960, 1440]).tolist() == [0.0, 0.5, 1.0, 1.25]


def test_default_tempo_before_first_event():
    tempo = TempoMap.from_events(96, [(192, 1_000_000)])
    assert tempo.seconds([96, 192, 288]).tolist() == [0.5, 1.0, 2.0]


def test_last_event_at_a_tick_wins():
    events = last_per_tick([(0, 1, 400_000), (0, 2, 600_000), (10, 0, 1)])
    assert events == [(0, 600_000), (10, 1)]


def test_meter_change_mid_bar_starts_a_new_bar():
    # 4/4 at 480 tpb: bar = 1920 ticks. Change to 3/8 at tick 2400 (mid bar 2).
    meter = MeterMap.from_events(480, [(0, (4, 4)), (2400, (3, 8))])
    bars, beats = meter.bar_beat([0, 480, 1920, 2400, 2640, 3120])
    assert bars.tolist() == [1, 1, 2, 3, 3, 4]
    assert beats.tolist() == [1.0, 2.0, 1.0, 1.0, 2.0, 1.0]


@given(
    st.lists(st.tuples(st.integers(1, 10_000), st.integers(100_000, 2_000_000)), max_size=40),
    st.lists(st.integers(0, 200_000), min_size=1, max_size=50),
)
def test_tempo_map_agrees_with_step_by_step_reference(events, ticks):
    events = sorted({tick: tempo for tick, tempo in events}.items())
    tempo_map = TempoMap.from_events(480, events)
    fast = tempo_map.seconds(ticks)
    for tick, seconds in zip(ticks, fast, strict=True):
        current, position, elapsed = 500_000, 0, 0.0
        for at, value in events:
            if at > tick:
                break
            elapsed += (at - position) * current / 480e6
            position, current = at, value
        elapsed += (tick - position) * current / 480e6
        assert abs(seconds - elapsed) < 1e-9
    assert np.all(np.diff(tempo_map.seconds(sorted(ticks))) >= 0)
    back = tempo_map.ticks_at(fast)
    assert np.allclose(back, ticks, atol=1e-6)
