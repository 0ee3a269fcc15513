"""Hypothesis fuzz of the audio stage: mutated WAV, AIFF and FLAC headers and bodies (files this
test writes) through the stem-group processing and the health check. Each either gives a result
or raises a ``KmidiError``; nothing else. ``benchmarks/campaign.py`` runs the same on 1,000 files.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from kmidi_ingest.audio import process_group
from kmidi_ingest.discover import ChannelFile, StemGroup
from kmidi_ingest.errors import AudioError
from tests.fuzz_inputs import AUDIO_SEEDS, KINDS, run_audio, write_audio_seeds
from tests.fuzz_inputs import mutate as apply_mutations

MUTATIONS = st.lists(
    st.tuples(st.sampled_from(KINDS), st.floats(0, 1, exclude_max=True), st.integers(0, 2**32 - 1)),
    min_size=1,
    max_size=6,
)


@pytest.fixture(scope="module")
def seeds(tmp_path_factory) -> dict[str, bytes]:
    folder = tmp_path_factory.mktemp("audio-seeds")
    return {p.name: p.read_bytes() for p in write_audio_seeds(folder)}


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("audio-fuzz")


def test_the_seeds_themselves_are_sound(seeds, work):
    for name, raw in seeds.items():
        path = work / name
        path.write_bytes(raw)
        assert run_audio(path) == ("result", "healthy"), name


# Bounded for CI (a few seconds) and derandomized, so a failure reproduces on every machine.
@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # overflow on mutated float samples
@settings(
    max_examples=80,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(st.sampled_from([name for name, *_ in AUDIO_SEEDS]), MUTATIONS)
@example("pcm16.wav", [("header_u32_le", 4 / 64, 0x100 + 7)])  # RIFF size 0x7FFFFFFF
@example("pcm16.wav", [("header_u32_le", 40 / 64, 0x100 + 9)])  # data size 0xFFFFFFFF
@example("pcm24_stereo.wav", [("header_u16_be", 22 / 64, 0)])  # 0 channels
@example("pcm16.wav", [("header_u32_le", 24 / 64, 0x100 + 1)])  # 1 Hz
@example("pcm16.aiff", [("cut", 0.5, 0)])  # truncated body
@example("pcm16.flac", [("flip", 0.6, 0x55), ("flip", 0.7, 0xAA)])  # damaged frames
def test_mutated_audio_gives_a_result_or_a_kmidi_error(seeds, work, name, mutations):
    path = work / f"mutant{Path(name).suffix}"
    path.write_bytes(apply_mutations(seeds[name], mutations))
    processed, health = run_audio(path)  # raises anything that is not a KmidiError
    assert processed == "result" or processed.startswith("KmidiError audio: "), processed
    assert health == "healthy" or health.startswith("broken: "), health


@pytest.mark.parametrize("rate_hz", [1, 999, 768_001, 0x7FFFFFFF])
def test_a_header_rate_outside_the_range_is_refused_at_once(seeds, work, rate_hz):
    # Found by this fuzz: a WAV whose header says 1 Hz took a minute to resample (0.2 s of
    # 22.05 kHz samples read as 73 minutes of audio); a whole stem would take hours.
    raw = bytearray(seeds["pcm16.wav"])
    assert raw[24:28] == (22050).to_bytes(4, "little")
    raw[24:28] = rate_hz.to_bytes(4, "little")
    path = work / "rate.wav"
    path.write_bytes(bytes(raw))
    started = time.perf_counter()
    with pytest.raises(AudioError) as refused:
        process_group(
            StemGroup(
                key="rate",
                name="rate",
                is_final_mix=False,
                files=(ChannelFile(path=path, rel_path=path.name, label=None),),
            ),
            sample_rate_hz=16000,
        )
    assert time.perf_counter() - started < 5
    (error,) = refused.value.errors
    assert error.path == str(path)
    assert error.reason == (
        f"sample rate {rate_hz} Hz is outside 1000..768000 Hz: a damaged header? re-export the file"
    )
