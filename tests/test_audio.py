"""Audio stage: channel labels for every container, composite mono, log-mel, bad input."""

from __future__ import annotations

import shutil
import struct
import tempfile
from pathlib import Path

import librosa
import numpy as np
import pytest
import soundfile as sf
import soxr

from kmidi_ingest import audio, features
from kmidi_ingest.audio import (
    BLOCK_FRAMES,
    MelParams,
    MelStream,
    StemError,
    file_channel_labels,
    hann_window,
    mask_labels,
    mel_filter_bank,
    process_group,
    read_channel_mask,
)
from kmidi_ingest.discover import GroupingRules, group_channels
from kmidi_ingest.errors import AudioError, ConfigError
from tests.conftest import run_as_nobody, write_tone

# float16 spacing is 2**-4 for |x| in [64, 128): half of it plus float32 slack.
F16_TOL = 0.04


def tones(frames: int, channels: int, sample_rate: int) -> np.ndarray:
    """``(frames, channels)`` sines at distinct frequencies and levels, float64 in [-1, 1]."""
    t = np.arange(frames) / sample_rate
    return np.stack(
        [(0.5 / (k + 1)) * np.sin(2 * np.pi * (220 + 110 * k) * t) for k in range(channels)],
        axis=1,
    )


def patch_mask(path: Path, mask: int) -> None:
    """Overwrite the dwChannelMask of a WAVE_FORMAT_EXTENSIBLE file written by libsndfile."""
    data = bytearray(path.read_bytes())
    fmt = data.index(b"fmt ")
    assert struct.unpack_from("<H", data, fmt + 8)[0] == 0xFFFE
    struct.pack_into("<I", data, fmt + 8 + 20, mask)
    path.write_bytes(bytes(data))


def insert_bext(path: Path) -> None:
    """Make a BWF: put a 602-byte ``bext`` chunk first, as Pro Tools does."""
    data = path.read_bytes()
    assert data[:4] == b"RIFF" and data[8:12] == b"WAVE"
    bext = bytearray(602)
    bext[:12] = b"kmidi tests\0"
    struct.pack_into("<Q", bext, 338, 48000 * 3600)  # TimeReference: 01:00:00:00 at 48 kHz
    chunk = b"bext" + struct.pack("<I", len(bext)) + bytes(bext)
    body = data[12:]
    path.write_bytes(
        b"RIFF" + struct.pack("<I", 4 + len(chunk) + len(body)) + b"WAVE" + chunk + body
    )


def set_flac_mask(path: Path, mask: str) -> None:
    """Replace a FLAC file's Vorbis comment block by one holding only the WAVE channel mask tag."""
    data = path.read_bytes()
    assert data[:4] == b"fLaC"
    tag = f"WAVEFORMATEXTENSIBLE_CHANNEL_MASK={mask}".encode()
    vendor = b"kmidi tests"
    comment = struct.pack("<I", len(vendor)) + vendor + struct.pack("<II", 1, len(tag)) + tag
    out, pos, last = bytearray(b"fLaC"), 4, False
    while not last:
        head = data[pos]
        size = int.from_bytes(data[pos + 1 : pos + 4], "big")
        last = bool(head & 0x80)
        body = data[pos + 4 : pos + 4 + size]
        if head & 0x7F == 4:
            body = comment
        out += bytes([head]) + len(body).to_bytes(3, "big") + body
        pos += 4 + size
    path.write_bytes(bytes(out) + data[pos:])


def wav_header(
    *, tag: int, channels: int, rate: int = 48000, bits: int = 16, data: bytes = b""
) -> bytes:
    """A hand-made RIFF/WAVE file with any format tag (for codecs libsndfile cannot decode)."""
    align = max(1, channels * bits // 8)
    fmt = struct.pack("<HHIIHH", tag, channels, rate, rate * align, align, bits)
    chunks = b"fmt " + struct.pack("<I", len(fmt)) + fmt
    chunks += b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", 4 + len(chunks)) + b"WAVE" + chunks


def reference_log_mel(
    files: list[Path], weights: list[list[float]], *, sample_rate_hz: int
) -> np.ndarray:
    """The documented composite, computed in one piece: float32 weighted sum of every channel at
    the files' rate (zero-padded), resampled once with soxr HQ, then librosa mel + power_to_db."""
    signals = [sf.read(str(f), dtype="float32", always_2d=True) for f in files]
    source_rate = signals[0][1]
    length = max(len(x) for x, _ in signals)
    mono = np.zeros(length, dtype=np.float32)
    for (x, _), w in zip(signals, weights, strict=True):
        for k, wk in enumerate(w):
            if wk:
                mono[: len(x)] += np.float32(wk) * x[:, k]
    if source_rate != sample_rate_hz:
        mono = soxr.resample(mono, source_rate, sample_rate_hz, "HQ")
    power = librosa.feature.melspectrogram(
        y=mono, sr=sample_rate_hz, n_fft=2048, hop_length=512, n_mels=128
    )
    return librosa.power_to_db(power, ref=1.0, amin=1e-10, top_db=None)


def one_group(paths: list[Path], rules: GroupingRules | None = None):
    (group,) = group_channels([(p, p.name) for p in paths], rules)
    return group


# --- labels -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mask", "channels", "labels"),
    [
        (0x3, 2, ("L", "R")),
        (0x4, 1, ("C",)),
        (0x33, 4, ("L", "R", "Ls", "Rs")),  # quad: back pair
        (0x3F, 6, ("L", "R", "C", "LFE", "Ls", "Rs")),  # 5.1 (back)
        (0x60F, 6, ("L", "R", "C", "LFE", "Ls", "Rs")),  # 5.1 (side)
        (0x63F, 8, ("L", "R", "C", "LFE", "Lsr", "Rsr", "Lss", "Rss")),  # 7.1
        (
            0x2D63F,
            12,
            ("L", "R", "C", "LFE", "Lsr", "Rsr", "Lss", "Rss", "Ltf", "Rtf", "Ltr", "Rtr"),
        ),  # 7.1.4
        (0x3, 4, ("L", "R", "A1", "A2")),  # more channels than mask bits
        (0x3F, 2, ("L", "R")),  # more mask bits than channels
    ],
)
def test_channel_mask_labels(mask, channels, labels):
    assert mask_labels(mask, channels) == labels


def test_file_labels_without_mask_and_with_a_name_suffix():
    assert file_channel_labels(suffix_label=None, channels=1, mask=None) == ("M",)
    assert file_channel_labels(suffix_label="Ls", channels=1, mask=None) == ("Ls",)
    assert file_channel_labels(suffix_label=None, channels=8, mask=None) == (
        "L", "R", "C", "LFE", "Lsr", "Rsr", "Lss", "Rss",
    )  # fmt: skip
    assert file_channel_labels(suffix_label=None, channels=10, mask=None)[-1] == "A10"
    assert file_channel_labels(suffix_label=None, channels=2, mask=0) == ("L", "R")
    assert file_channel_labels(suffix_label="A1", channels=2, mask=None) == ("A1.L", "A1.R")


# --- every container ----------------------------------------------------------------------

FORMATS = [
    # name, soundfile format, subtype, channels, mask to write, bext, stored format, labels
    ("1M01 Pad.wav", "WAV", "PCM_24", 2, None, False, "WAV", "L,R"),
    ("1M01 Keys.flac", "FLAC", "PCM_16", 2, None, False, "FLAC", "L,R"),
    ("1M01 Surround.flac", "FLAC", "PCM_24", 8, 0x63F, False, "FLAC", "L,R,C,LFE,Lsr,Rsr,Lss,Rss"),
    ("1M01 Side.flac", "FLAC", "PCM_16", 4, 0x603, False, "FLAC", "L,R,Ls,Rs"),
    ("1M01 Choir.aif", "AIFF", "PCM_16", 1, None, False, "AIFF", "M"),
    ("1M01 Choir Wide.aifc", "AIFF", "FLOAT", 2, None, False, "AIFF", "L,R"),
    ("1M01 Perc.wav", "WAVEX", "PCM_24", 6, 0x60F, False, "WAVEX", "L,R,C,LFE,Ls,Rs"),
    ("1M01 Atmos 6mx.bwf", "WAVEX", "PCM_24", 8, 0x63F, True, "WAVEX", "L,R,C,LFE,Lsr,Rsr,Lss,Rss"),
    ("1M01 Quad.wav", "WAVEX", "PCM_16", 4, 0x33, True, "WAVEX", "L,R,Ls,Rs"),
    ("1M01 Long 6mx.rf64", "RF64", "PCM_24", 6, 0x3F, False, "RF64", "L,R,C,LFE,Ls,Rs"),
    ("1M01 Wide.w64", "W64", "PCM_24", 8, None, False, "W64", "L,R,C,LFE,Lsr,Rsr,Lss,Rss"),
]


@pytest.mark.parametrize(
    ("name", "fmt", "subtype", "channels", "mask", "bext", "stored", "layout"),
    FORMATS,
    ids=[f[0].split()[-1] for f in FORMATS],
)
def test_every_container_is_read_with_its_channel_layout(
    tmp_path, name, fmt, subtype, channels, mask, bext, stored, layout
):
    rate, frames = 48000, 24000 + 77
    path = tmp_path / name
    sf.write(str(path), tones(frames, channels, rate), rate, format=fmt, subtype=subtype)
    if mask is not None and fmt == "WAVEX":
        patch_mask(path, mask)
    if mask is not None and fmt == "FLAC":
        set_flac_mask(path, f"0x{mask:04X}" if channels > 4 else str(mask))  # both spellings
    if bext:
        insert_bext(path)
    assert read_channel_mask(path) == mask
    group = one_group([path])
    stem = process_group(group, sample_rate_hz=22050)
    assert group.files[0].label is None and stem.name == name.split(" ", 1)[1].rsplit(".", 1)[0]
    assert stem.layout == layout
    assert [c.file_channel for c in stem.channels] == list(range(channels))
    assert {c.audio_format for c in stem.channels} == {stored}
    assert {c.subtype for c in stem.channels} == {subtype}
    assert stem.duration_s == pytest.approx(frames / rate)
    n_out = int(np.ceil(frames * 22050 / rate))
    assert stem.feature.values.shape == (128, 1 + n_out // 512)
    in_mono = [c.in_mono for c in stem.channels]
    # The LFE of an interleaved file is left out only when the file is a surround mix.
    assert in_mono == [not (stem.is_final_mix and c.label == "LFE") for c in stem.channels]
    expected_peaks = [0.5 / (k + 1) for k in range(channels)]
    assert [c.peak for c in stem.channels] == pytest.approx(expected_peaks, abs=2e-3)
    assert [c.rms for c in stem.channels] == pytest.approx(
        [p / np.sqrt(2) for p in expected_peaks], rel=2e-3
    )
    share = 1.0 / sum(in_mono)
    expected = reference_log_mel(
        [path], [[share if used else 0.0 for used in in_mono]], sample_rate_hz=22050
    )
    assert np.max(np.abs(stem.feature.values.astype(np.float32) - expected)) <= F16_TOL


# --- composite mono and log-mel -----------------------------------------------------------


def test_multi_mono_resampled_mel_matches_librosa_within_float16(tmp_path):
    left = write_tone(tmp_path / "X.L.wav", seconds=3.3, sample_rate=44100, freq=440)
    right = write_tone(
        tmp_path / "X.R.wav", seconds=3.3, sample_rate=44100, freq=660, amplitude=0.25
    )
    stem = process_group(one_group([left, right]), sample_rate_hz=48000)
    expected = reference_log_mel([left, right], [[0.5], [0.5]], sample_rate_hz=48000)
    got = stem.feature.values
    assert got.dtype == np.float16 and got.shape == expected.shape == (128, 1 + 158400 // 512)
    assert np.max(np.abs(got.astype(np.float32) - expected)) <= F16_TOL
    assert stem.layout == "L,R" and stem.source_sample_rate_hz == 44100
    assert stem.duration_s == pytest.approx(3.3)
    assert [c.peak for c in stem.channels] == pytest.approx([0.5, 0.25], abs=1e-3)
    # Resampling each channel and then averaging (the other order) gives the same spectrogram
    # wherever it is above the float32 rounding noise of the two orders (~110 dB below the
    # loudest band; the two composites differ by ~1e-7).
    a, b = (sf.read(str(p), dtype="float32")[0] for p in (left, right))
    other = (soxr.resample(a, 44100, 48000, "HQ") + soxr.resample(b, 44100, 48000, "HQ")) / 2
    power = librosa.feature.melspectrogram(y=other, sr=48000)
    other_db = librosa.power_to_db(power, ref=1.0, amin=1e-10, top_db=None)
    loud = other_db > other_db.max() - 100
    assert np.max(np.abs(got.astype(np.float32) - other_db)[loud]) <= F16_TOL


@pytest.mark.parametrize(
    ("fmt", "subtype", "suffix"),
    [
        ("WAV", "PCM_16", "wav"),
        ("WAV", "PCM_24", "wav"),
        ("FLAC", "PCM_16", "flac"),
        ("FLAC", "PCM_24", "flac"),
        ("AIFF", "PCM_16", "aif"),
        ("AIFF", "PCM_24", "aif"),
    ],
)
def test_integer_reads_equal_libsndfile_float_reads_bit_for_bit(
    tmp_path, monkeypatch, fmt, subtype, suffix
):
    rate, frames = 48000, BLOCK_FRAMES + 999  # two read blocks
    rng = np.random.default_rng(7)
    paths = []
    for k, label in enumerate(("L", "R", "C")):
        data = 0.3 * rng.standard_normal(frames)
        data[k * 100] = -1.0  # full scale, the one value whose magnitude is 2^15 (2^23)
        path = tmp_path / f"S.{label}.{suffix}"
        sf.write(str(path), np.clip(data, -1, 1), rate, format=fmt, subtype=subtype)
        paths.append(path)
    paths.append(tmp_path / f"S.Ls.{suffix}")  # a 16-bit file in a 24-bit group and vice versa
    other = "PCM_16" if subtype == "PCM_24" else "PCM_24"
    sf.write(str(paths[-1]), 0.1 * rng.standard_normal(frames), rate, format=fmt, subtype=other)

    fast = process_group(one_group(paths), sample_rate_hz=rate)
    monkeypatch.setattr(audio, "INT_READS", {})  # every file through libsndfile's float path
    slow = process_group(one_group(paths), sample_rate_hz=rate)
    assert np.array_equal(fast.feature.values, slow.feature.values)
    assert (fast.peak, fast.rms) == (slow.peak, slow.rms)
    assert [(c.peak, c.rms) for c in fast.channels] == [(c.peak, c.rms) for c in slow.channels]
    assert [c.peak for c in fast.channels][:3] == [1.0, 1.0, 1.0]
    columns = np.stack([sf.read(str(p), dtype="float64")[0] for p in paths])
    assert fast.peak == 1.0  # the loudest channel's peak
    assert fast.rms == pytest.approx(np.sqrt(np.mean(columns**2)), rel=1e-6)  # all samples


def test_long_interleaved_mix_spans_many_blocks_and_matches_librosa(tmp_path):
    rate = 24000
    frames = 2 * BLOCK_FRAMES + 12345  # three read blocks, a partial last one
    path = tmp_path / "1M01 6mx.wav"
    data = tones(frames, 6, rate)
    data[:, 3] *= 0.0  # silent LFE: the mean must still divide by 5
    sf.write(str(path), data, rate, format="WAVEX", subtype="PCM_24")
    stem = process_group(one_group([path]), sample_rate_hz=rate)
    assert stem.is_final_mix and stem.layout == "L,R,C,LFE,Ls,Rs"
    w = [[0.2, 0.2, 0.2, 0.0, 0.2, 0.2]]
    expected = reference_log_mel([path], w, sample_rate_hz=rate)
    assert stem.feature.values.shape == expected.shape == (128, 1 + frames // 512)
    assert np.max(np.abs(stem.feature.values.astype(np.float32) - expected)) <= F16_TOL
    samples = sf.read(str(path), dtype="float64")[0]
    assert stem.peak == pytest.approx(float(np.max(np.abs(samples))), rel=1e-6)
    assert stem.rms == pytest.approx(float(np.sqrt(np.mean(samples**2))), rel=1e-6)


def test_float32_fast_path_and_float64_fallback_both_match_librosa():
    """Broadband frames take the float32 FFT, near-pure tones are redone in float64; both stay
    within float16 precision of librosa (which transforms in float64)."""
    rate = 48000
    rng = np.random.default_rng(11)
    t = np.arange(3 * rate) / rate
    noisy = (0.2 * np.sin(2 * np.pi * 330 * t) + 0.05 * rng.standard_normal(t.size)).astype(
        np.float32
    )
    # A comb-filtered copy (the mean of two shifted noises) has deep notches next to a tone.
    combed = 0.5 * (noisy + np.roll(noisy, 31))
    tone = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    precise = []
    for y in (noisy, combed, tone):
        stream = MelStream(rate, MelParams())
        stream.push(y)
        got = stream.finish().astype(np.float32)
        power = librosa.feature.melspectrogram(y=y, sr=rate, n_fft=2048, hop_length=512)
        expected = librosa.power_to_db(power, ref=1.0, amin=1e-10, top_db=None)
        assert got.shape == expected.shape
        assert np.max(np.abs(got - expected)) <= F16_TOL
        precise.append(stream.precise_frames / got.shape[1])
    assert precise[0] == 0.0  # broadband: all float32
    assert precise[2] > 0.5  # a pure tone's quiet bands need float64


def test_mel_stream_is_independent_of_how_samples_are_pushed():
    y = np.random.default_rng(3).normal(scale=0.1, size=50_000).astype(np.float32)
    whole = MelStream(16000, MelParams())
    whole.push(y)
    pieces = MelStream(16000, MelParams())
    for piece in np.split(y, [1, 700, 701, 20_000, 49_999]):
        pieces.push(piece)
    a, b = whole.finish(), pieces.finish()
    assert a.shape == (128, 1 + 50_000 // 512) and np.array_equal(a, b)


def test_streams_of_one_analysis_share_one_read_only_filter_bank():
    first, second = MelStream(48000, MelParams()), MelStream(48000, MelParams())
    assert first._basis32 is second._basis32 and first._basis64 is second._basis64
    assert MelStream(44100, MelParams())._basis32 is not first._basis32
    with pytest.raises(ValueError, match="read-only"):
        first._basis32.data[0] = 1.0
    with pytest.raises(ValueError, match="read-only"):
        first._inv_weight_sum[0, 0] = 1.0
    dense = mel_filter_bank(
        sample_rate_hz=48000, n_fft=2048, n_mels=128, fmin_hz=0.0, fmax_hz=24000.0
    )
    assert np.array_equal(first._basis64.toarray(), dense)


def test_lfe_is_left_out_of_the_composite_and_levels_are_not_normalised(tmp_path):
    files = []
    for label, amp in (("L", 0.2), ("R", 0.2), ("LFE", 0.9)):
        files.append(write_tone(tmp_path / f"M 6mx.{label}.wav", amplitude=amp, freq=100))
    group = one_group(files)
    stem = process_group(group, sample_rate_hz=22050)
    assert group.is_final_mix
    assert [c.in_mono for c in stem.channels] == [True, True, False]
    assert stem.peak == pytest.approx(0.9, abs=1e-3)  # the loudest channel's, LFE included
    quiet = write_tone(tmp_path / "Q.wav", amplitude=0.02, freq=100)
    quiet_stem = process_group(one_group([quiet]), sample_rate_hz=22050)
    # A fixed dB reference: a stem 20 dB quieter reads 20 dB lower.
    loud_db = float(np.max(stem.feature.values.astype(np.float32)))
    quiet_db = float(np.max(quiet_stem.feature.values.astype(np.float32)))
    assert loud_db - quiet_db == pytest.approx(20.0, abs=0.1)


def test_lfe_inclusion_is_configurable(tmp_path):
    files = [
        write_tone(tmp_path / f"M.{label}.wav", amplitude=amp, freq=100)
        for label, amp in (("L", 0.2), ("LFE", 0.6))
    ]
    rules = GroupingRules(exclude_from_mono=frozenset())
    stem = process_group(one_group(files, rules), sample_rate_hz=22050, rules=rules)
    assert [c.in_mono for c in stem.channels] == [True, True]
    expected = reference_log_mel(files, [[0.5], [0.5]], sample_rate_hz=22050)
    assert np.max(np.abs(stem.feature.values.astype(np.float32) - expected)) <= F16_TOL


def test_channel_files_of_unequal_length_fail_their_stem(tmp_path):
    left = write_tone(tmp_path / "S.L.wav", seconds=1.0)
    right = write_tone(tmp_path / "S.R.wav", seconds=0.5)
    with pytest.raises(StemError) as info:
        process_group(one_group([left, right]), sample_rate_hz=22050)
    assert [(e.path, e.reason) for e in info.value.errors] == [
        (
            str(right),
            "length 11025 frames (0.500 s) differs from the 22050 frames (1.000 s) of the other"
            " channel files of stem 'S'; re-export the stem's channels at one length",
        )
    ]


# --- feature encoding ---------------------------------------------------------------------


def test_feature_round_trip_is_bit_exact_in_small_chunks():
    values = np.random.default_rng(0).normal(size=(128, 3000)).astype(np.float16)
    chunks, digest = features.encode(values, codec=None, chunk_bytes=100_000)
    assert len(chunks) == 8 and all(len(c) <= 100_000 for c in chunks)
    back = features.decode(chunks, codec=None, sha256=digest)
    assert back.dtype == values.dtype and np.array_equal(back, values)


def test_corrupt_feature_bytes_are_refused():
    chunks, digest = features.encode(np.zeros((4, 4), np.float16), codec=None)
    with pytest.raises(ValueError, match="sha256"):
        features.decode([chunks[0][:-1]], codec=None, sha256=digest)


# --- bad input ----------------------------------------------------------------------------

BAD_FILES = {
    "empty": (lambda p: p.write_bytes(b""), "file is empty (0 bytes)"),
    "wrong header": (lambda p: p.write_bytes(b"RIFF1234WAVEjunk" * 8), "cannot decode audio"),
    "text": (lambda p: p.write_text("not audio at all\n" * 20), "cannot decode audio"),
    "unsupported codec": (
        lambda p: p.write_bytes(wav_header(tag=0x2000, channels=2, data=bytes(4096))),
        "cannot decode audio",
    ),
    "zero channels": (
        lambda p: p.write_bytes(wav_header(tag=1, channels=0, data=bytes(4096))),
        "cannot decode audio",
    ),
    "zero frames": (
        lambda p: sf.write(str(p), np.zeros((0, 1)), 22050),
        "no audio in file (1 channels, 0 frames, 22050 Hz)",
    ),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_bad_channel_file_fails_its_stem_with_path_and_reason(tmp_path, case):
    make, reason = BAD_FILES[case]
    good = write_tone(tmp_path / "S.L.wav")
    bad = tmp_path / "S.R.wav"
    make(bad)
    with pytest.raises(StemError) as info:
        process_group(one_group([good, bad]), sample_rate_hz=22050)
    (error,) = info.value.errors
    assert isinstance(error, AudioError) and error.stage == "audio"
    assert error.path == str(bad) and reason in error.reason
    assert str(bad) in str(info.value)


def test_mismatched_sample_rates_name_each_odd_file(tmp_path):
    files = [
        write_tone(tmp_path / "Mix 6mx.L.wav", sample_rate=48000),
        write_tone(tmp_path / "Mix 6mx.R.wav", sample_rate=44100),
        write_tone(tmp_path / "Mix 6mx.C.wav", sample_rate=48000),
        write_tone(tmp_path / "Mix 6mx.Ls.wav", sample_rate=96000),
    ]
    with pytest.raises(StemError) as info:
        process_group(one_group(files), sample_rate_hz=48000)
    errors = info.value.errors
    assert [Path(str(e.path)).name for e in errors] == ["Mix 6mx.R.wav", "Mix 6mx.Ls.wav"]
    assert "sample rate 44100 Hz differs from the 48000 Hz" in errors[0].reason
    assert "sample rate 96000 Hz differs from the 48000 Hz" in errors[1].reason


def test_every_bad_file_of_a_stem_is_reported(tmp_path):
    empty = tmp_path / "S.L.wav"
    empty.write_bytes(b"")
    junk = tmp_path / "S.R.wav"
    junk.write_bytes(b"junk" * 100)
    missing = tmp_path / "S.C.wav"
    with pytest.raises(StemError) as info:
        process_group(one_group([empty, junk, missing]), sample_rate_hz=22050)
    reasons = {Path(str(e.path)).name: e.reason for e in info.value.errors}
    assert reasons["S.L.wav"] == "file is empty (0 bytes)"
    assert reasons["S.R.wav"].startswith("cannot decode audio")
    assert reasons["S.C.wav"] == "cannot read file: No such file or directory"


def test_unreadable_file_permissions():
    """chmod 000 does not stop root, so under root the stem is read in a forked child that has
    dropped to ``nobody`` (the file lives in a folder that user may enter)."""
    base = Path(tempfile.mkdtemp(prefix="kmidi-perm-"))
    try:
        base.chmod(0o755)
        bad = write_tone(base / "S.wav")
        bad.chmod(0)

        def read() -> str:
            try:
                process_group(one_group([bad]), sample_rate_hz=22050)
            except StemError as exc:
                return exc.errors[0].reason
            return "no error"

        answer = run_as_nobody(read)
        assert answer == "cannot read file: Permission denied"
    finally:
        shutil.rmtree(base)


@pytest.mark.parametrize("rate", [0, 1, 7999, 384001, 1_000_000_000])
def test_sample_rate_outside_8000_to_384000_hz_is_refused(tmp_path, rate):
    with pytest.raises(ConfigError) as raised:
        process_group(one_group([write_tone(tmp_path / "S.wav")]), sample_rate_hz=rate)
    assert str(raised.value) == (
        f"sample rate must be a whole number of Hz from 8000 to 384000, got {rate}"
    )


def test_permission_error_is_reported_as_such(tmp_path, monkeypatch):
    import kmidi_ingest.audio as audio

    bad = write_tone(tmp_path / "S.wav")

    def refuse(path, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(audio, "open", refuse, raising=False)
    with pytest.raises(StemError) as info:
        process_group(one_group([bad]), sample_rate_hz=22050)
    (error,) = info.value.errors
    assert (error.path, error.reason) == (str(bad), "cannot read file: Permission denied")


@pytest.mark.parametrize(
    ("sample_rate_hz", "n_fft", "n_mels", "fmin_hz", "fmax_hz"),
    [(48000, 2048, 128, 0.0, 24000.0), (22050, 1024, 64, 30.0, 8000.0), (8000, 512, 40, 0, 4000)],
)
def test_mel_filter_bank_and_window_equal_librosa(sample_rate_hz, n_fft, n_mels, fmin_hz, fmax_hz):
    ours = mel_filter_bank(
        sample_rate_hz=sample_rate_hz, n_fft=n_fft, n_mels=n_mels, fmin_hz=fmin_hz, fmax_hz=fmax_hz
    )
    theirs = librosa.filters.mel(
        sr=sample_rate_hz, n_fft=n_fft, n_mels=n_mels, fmin=fmin_hz, fmax=fmax_hz, dtype=np.float64
    )
    np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-15)
    window = librosa.filters.get_window("hann", n_fft, fftbins=True)
    np.testing.assert_allclose(hann_window(n_fft), window, rtol=0, atol=1e-15)


def test_channel_mask_reader_survives_odd_headers(tmp_path):
    cases = {
        "huge chunk before fmt": b"RIFF\0\0\0\0WAVEjunk\xf0\xff\xff\xff" + bytes(32),
        "truncated fmt": b"RIFF\0\0\0\0WAVEfmt \x28\0\0\0\xfe\xff\x06\0",
        "w64 zero-size chunk": b"riff" + bytes(36) + b"junk" + bytes(20),
        "not riff": b"FORM\0\0\0\x04AIFF",
        "flac huge comment": b"fLaC\x04\xff\xff\xff" + bytes(10),
        "flac only streaminfo": b"fLaC\x80\0\0\x22" + bytes(34),
        "plain pcm": wav_header(tag=1, channels=6, data=bytes(12)),
    }
    for name, data in cases.items():
        path = tmp_path / f"{name}.wav"
        path.write_bytes(data)
        assert read_channel_mask(path) is None, name
