import librosa
import numpy as np
import pytest
import soundfile as sf
import soxr

from kmidi_ingest import features
from kmidi_ingest.audio import MelParams, process_group
from kmidi_ingest.discover import group_channels
from kmidi_ingest.errors import AudioError
from tests.conftest import write_tone


def test_composite_mono_mel_matches_librosa_within_float16(tmp_path):
    left = write_tone(tmp_path / "X.L.wav", seconds=3.3, sample_rate=44100, freq=440)
    right = write_tone(
        tmp_path / "X.R.wav", seconds=3.3, sample_rate=44100, freq=660, amplitude=0.25
    )
    (group,) = group_channels([(left, left.name), (right, right.name)])
    stem = process_group(group, sample_rate_hz=48000)
    a = sf.read(left, dtype="float32")[0]
    b = sf.read(right, dtype="float32")[0]
    mono = (soxr.resample(a, 44100, 48000, "HQ") + soxr.resample(b, 44100, 48000, "HQ")) / 2
    power = librosa.feature.melspectrogram(y=mono, sr=48000, n_fft=2048, hop_length=512, n_mels=128)
    expected = librosa.power_to_db(power, ref=1.0, amin=1e-10, top_db=None)
    got = stem.feature.values
    assert got.dtype == np.float16 and got.shape == expected.shape == (128, 1 + len(mono) // 512)
    # float16 spacing is 2**-5 for |x| in [32, 64) and 2**-4 in [64, 128): half of it + fp slack.
    assert np.max(np.abs(got.astype(np.float32) - expected)) <= 0.04
    assert stem.layout == "L,R"
    assert stem.duration_s == pytest.approx(3.3)
    assert [c.peak for c in stem.channels] == pytest.approx([0.5, 0.25], abs=1e-3)


def test_lfe_is_left_out_of_the_composite(tmp_path):
    files = []
    for label, amp in (("L", 0.2), ("R", 0.2), ("LFE", 0.9)):
        files.append(write_tone(tmp_path / f"M 6mx.{label}.wav", amplitude=amp, freq=100))
    (group,) = group_channels([(f, f.name) for f in files])
    stem = process_group(group, sample_rate_hz=22050)
    assert group.is_final_mix
    assert [c.in_mono for c in stem.channels] == [True, True, False]
    assert stem.peak == pytest.approx(0.2, abs=1e-3)


def test_feature_round_trip_is_bit_exact_in_small_chunks():
    values = np.random.default_rng(0).normal(size=(128, 3000)).astype(np.float16)
    chunks, digest = features.encode(values, chunk_bytes=100_000)
    assert len(chunks) == 8 and all(len(c) <= 100_000 for c in chunks)
    back = features.decode(chunks, sha256=digest)
    assert back.dtype == values.dtype and np.array_equal(back, values)


def test_unreadable_channel_fails_the_stem_with_its_path(tmp_path):
    good = write_tone(tmp_path / "S.L.wav")
    bad = tmp_path / "S.R.wav"
    bad.write_bytes(b"RIFF1234WAVEjunk")
    (group,) = group_channels([(good, good.name), (bad, bad.name)])
    with pytest.raises(AudioError) as info:
        process_group(group, sample_rate_hz=22050, params=MelParams())
    assert str(bad) in str(info.value)
