"""A stem is stored only when all its audio is sound; every format libsndfile reads here; stem
levels; the LFE rule (issues 12.3, 14.4, 14.6, 14.7). Real files written by the tests, cut with
real bytes, read by ingest and by ``check`` alike."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from sqlalchemy import text

from kmidi_ingest import ingest
from kmidi_ingest.audio import StemError, check_file, process_group
from kmidi_ingest.cli import main
from kmidi_ingest.db import make_engine
from kmidi_ingest.discover import file_kind, scan
from kmidi_ingest.health import check_tree
from tests.conftest import REPO, write_tone
from tests.test_audio import F16_TOL, one_group, patch_mask, reference_log_mel, tones

SR = 8000
REAL = REPO.parent / "shared" / "data" / "real"


def cut(path: Path, keep: int) -> Path:
    """Keep the first ``keep`` bytes of ``path`` (a cut-off copy, as on a delivered drive)."""
    path.write_bytes(path.read_bytes()[:keep])
    return path


def rows(url: str, sql: str) -> list[tuple]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(text(sql))]
    finally:
        engine.dispose()


# --- the soundness rule, file by file -----------------------------------------------------

# format, subtype, suffix, bytes per sample: formats whose header states the data length
BYTE_FORMATS = [
    ("WAV", "PCM_16", "wav", 2),
    ("WAVEX", "PCM_24", "wav", 3),
    ("AIFF", "PCM_16", "aif", 2),
    ("AIFF", "PCM_24", "aifc", 3),
    ("W64", "PCM_16", "w64", 2),
    ("RF64", "PCM_24", "rf64", 3),
    ("AU", "PCM_16", "au", 2),
]


@pytest.mark.parametrize(("fmt", "subtype", "suffix", "width"), BYTE_FORMATS)
def test_a_cut_off_file_fails_its_stem_with_promised_and_held_bytes(
    tmp_path, fmt, subtype, suffix, width
):
    frames, channels = 22050, 2
    path = tmp_path / f"S.{suffix}"
    sf.write(str(path), tones(frames, channels, 22050), 22050, format=fmt, subtype=subtype)
    assert check_file(path) is None and process_group(one_group([path]), sample_rate_hz=SR)
    data = frames * channels * width
    header = path.stat().st_size - data  # the samples are the file's last bytes
    cut(path, header + data // 2 + 1)  # cut mid-sample, as a copy breaks off
    message = f"truncated: the header promises {data} bytes, the file holds {data // 2 + 1}"
    with pytest.raises(StemError) as info:
        process_group(one_group([path]), sample_rate_hz=SR)
    assert [(e.path, e.reason) for e in info.value.errors] == [(str(path), message)]
    assert check_file(path) == message  # `check` applies the same rule


def test_a_cut_off_flac_fails_where_it_stops_decoding(tmp_path):
    path = tmp_path / "S.flac"
    sf.write(str(path), tones(22050, 2, 22050), 22050, format="FLAC", subtype="PCM_16")
    cut(path, path.stat().st_size // 2)
    with pytest.raises(StemError) as info:
        process_group(one_group([path]), sample_rate_hz=SR)
    ((where, reason),) = [(e.path, e.reason) for e in info.value.errors]
    found = re.fullmatch(
        r"cannot decode audio after frame (\d+) of the 22050 the header promises "
        r"\(cut off or damaged\): .+",
        reason,
    )
    assert where == str(path) and found and 0 < int(found[1]) < 22050
    assert check_file(path) == reason


def test_a_cut_off_mp3_decodes_fewer_frames_than_promised(tmp_path):
    path = tmp_path / "S.mp3"
    sf.write(str(path), tones(22050, 1, 22050)[:, 0], 22050, format="MP3")
    cut(path, path.stat().st_size // 2)
    reason = check_file(path)
    found = re.fullmatch(r"truncated: the header promises 22050 frames, only (\d+) decode", reason)
    assert found and 0 < int(found[1]) < 22050


def test_nan_samples_make_a_file_unsound(tmp_path):
    data = tones(4000, 1, 22050)
    data[1234, 0] = np.nan
    path = tmp_path / "S.wav"
    sf.write(str(path), data, 22050, subtype="FLOAT")
    assert check_file(path) == "audio holds NaN or infinite samples"
    with pytest.raises(StemError):
        process_group(one_group([path]), sample_rate_hz=SR)


# --- the rule through ingest --------------------------------------------------------------


def test_a_stem_with_an_unsound_file_is_not_stored_the_rest_of_the_cue_is(
    make_cue, tmp_path, capsys
):
    root = tmp_path / "cues"
    cue = make_cue("1M01 Opening", root=root)
    audio = cue / "Audio Files"
    strings_r = audio / "1M01 Strings.R.wav"  # 1 s mono PCM_16 at 22050 Hz: 44,100 data bytes
    cut(strings_r, strings_r.stat().st_size - 22050)
    write_tone(audio / "1M01 Harp.L.wav")
    (audio / "1M01 Harp.R.wav").write_bytes(b"")  # today: stored as a 1-channel L stem
    write_tone(audio / "1M01 Celesta.L.wav", seconds=1.0)
    write_tone(audio / "1M01 Celesta.R.wav", seconds=0.5)
    write_tone(audio / "1M01 Pad.L.wav", amplitude=0.5, freq=200)
    write_tone(audio / "1M01 Pad.R.wav", amplitude=0.1, freq=300)
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    code = main([str(root), str(SR), "--database-url", url, "--workers", "1"])
    assert code == 1
    errors = rows(
        url,
        "SELECT file_path, stage, error_type, message FROM ingest_errors"
        " WHERE severity = 'error' ORDER BY file_path",
    )
    assert [(Path(f).name, stage, kind, message) for f, stage, kind, message in errors] == [
        (
            "1M01 Celesta.R.wav",
            "audio",
            "AudioError",
            "length 11025 frames (0.500 s) differs from the 22050 frames (1.000 s) of the other "
            "channel files of stem '1M01 Celesta'; re-export the stem's channels at one length",
        ),
        ("1M01 Harp.R.wav", "audio", "AudioError", "file is empty (0 bytes)"),
        (
            "1M01 Strings.R.wav",
            "audio",
            "AudioError",
            "truncated: the header promises 44100 bytes, the file holds 22050",
        ),
    ]
    assert rows(url, "SELECT name FROM audio_files ORDER BY name") == [("Brass",), ("Pad",)]
    assert rows(url, "SELECT name, channel_count FROM final_mixes") == [("6mx", 6)]
    assert rows(url, "SELECT status FROM cues") == [("complete",)]
    assert rows(url, "SELECT COUNT(*) FROM midi_files") == [(1,)]
    # Stem levels: the loudest channel's peak; RMS over every sample of both channels.
    ((peak, rms),) = rows(url, "SELECT peak, rms FROM audio_files WHERE name = 'Pad'")
    channels = rows(
        url,
        "SELECT c.label, c.peak, c.rms FROM audio_channels c JOIN audio_files a"
        " ON a.id = c.audio_file_id WHERE a.name = 'Pad' ORDER BY c.channel_order",
    )
    assert [label for label, _, _ in channels] == ["L", "R"]
    assert [p for _, p, _ in channels] == pytest.approx([0.5, 0.1], abs=1e-3)
    assert [r for _, _, r in channels] == pytest.approx([0.5 / 2**0.5, 0.1 / 2**0.5], rel=1e-3)
    assert peak == pytest.approx(0.5, abs=1e-3)  # the composite's would be ~0.3
    assert rms == pytest.approx(np.sqrt((0.5**2 + 0.1**2) / 4), rel=1e-3)

    # `check` calls exactly these files broken, with the same reasons, per file.
    report = check_tree(root)
    assert [(Path(b.rel_path).name, b.reason) for b in report.broken] == [
        ("1M01 Harp.R.wav", "file is empty (0 bytes)"),
        ("1M01 Strings.R.wav", "truncated: the header promises 44100 bytes, the file holds 22050"),
    ]


# --- every format libsndfile reads here ---------------------------------------------------


def test_ogg_opus_mp3_stems_are_read_and_other_audio_types_are_named(make_cue, tmp_path):
    root = tmp_path / "cues"
    cue = make_cue("1M01 Opening", root=root)
    audio = cue / "Audio Files"
    for label, freq in (("L", 440), ("R", 550)):
        y = 0.4 * np.sin(2 * np.pi * freq * np.arange(22050) / 22050)
        sf.write(str(audio / f"Guitar.{label}.ogg"), y, 22050, format="OGG", subtype="VORBIS")
    sf.write(str(audio / "Pad.opus"), tones(48000, 2, 48000), 48000, format="OGG", subtype="OPUS")
    sf.write(str(audio / "Bass.mp3"), tones(22050, 1, 22050)[:, 0], 22050, format="MP3")
    (audio / "Lead.m4a").write_bytes(b"\0\0\0\x20ftypM4A " + bytes(64))
    assert [file_kind(n) for n in ("a.OGG", "a.opus", "a.mp3", "a.m4a", "._a.ogg", "a.txt")] == [
        "audio",
        "audio",
        "audio",
        "unreadable-audio",
        None,
        None,
    ]
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    summary = ingest(root, SR, database_url=url, workers=1)
    assert summary.ok, summary.errors
    warnings = [(p.error_type, Path(p.path or "").name, p.message) for p in summary.warnings]
    assert (
        "UnsupportedAudio",
        "Lead.m4a",
        f"audio format .m4a cannot be read here (libsndfile {sf.__libsndfile_version__});"
        " skipped: convert it to WAV or FLAC to ingest it",
    ) in warnings
    stored = rows(
        url,
        "SELECT a.name, a.channel_layout, c.audio_format, c.subtype FROM audio_files a"
        " JOIN audio_channels c ON c.audio_file_id = a.id"
        " WHERE c.channel_order = 0 ORDER BY a.name",
    )
    assert stored == [
        ("Bass", "M", "MP3", "MPEG_LAYER_III"),
        ("Brass", "M", "WAV", "PCM_16"),
        ("Guitar", "L,R", "OGG", "VORBIS"),
        ("Pad", "L,R", "OGG", "OPUS"),
        ("Strings", "L,R", "WAV", "PCM_16"),
    ]
    report = check_tree(root)
    assert report.ok and [(b.rel_path, b.kind) for b in report.skipped] == [
        ("1M01 Opening/Audio Files/Lead.m4a", "audio")
    ]


def test_frets_on_fire_cue_gets_its_ogg_stems(tmp_path):
    cue = REAL / "cues" / "1M01 Escape from chaosland true"
    if not cue.is_dir():
        pytest.skip("../shared/data/real/cues is not present")
    (found,) = scan(cue).cues
    assert sorted(p.name for p in found.audio_files) == [
        "Band.L.ogg",
        "Band.R.ogg",
        "Guitar.L.ogg",
        "Guitar.R.ogg",
    ]
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    summary = ingest(cue, SR, database_url=url, workers=1)
    assert summary.ok and summary.stems == 2
    stems = rows(
        url,
        "SELECT name, channel_layout, source_sample_rate_hz, duration_s FROM audio_files"
        " ORDER BY name",
    )
    assert [(n, lay, rate) for n, lay, rate, _ in stems] == [
        ("Band", "L,R", 22050),
        ("Guitar", "L,R", 22050),
    ]
    assert all(d == pytest.approx(30.0, abs=0.1) for *_, d in stems)


# --- stem levels ---------------------------------------------------------------------------


def test_stem_peak_is_the_loudest_channels_and_rms_covers_every_sample(tmp_path):
    left = write_tone(tmp_path / "Drums.L.wav", amplitude=0.312, freq=150)
    right = write_tone(tmp_path / "Drums.R.wav", amplitude=0.05, freq=150, subtype="PCM_24")
    stem = process_group(one_group([left, right]), sample_rate_hz=SR)
    samples = np.stack([sf.read(str(p), dtype="float64")[0] for p in (left, right)])
    assert [c.peak for c in stem.channels] == [float(np.max(np.abs(x))) for x in samples]
    assert stem.peak == max(c.peak for c in stem.channels) == pytest.approx(0.312, abs=1e-4)
    assert stem.rms == pytest.approx(float(np.sqrt(np.mean(samples**2))), rel=1e-6)


# --- which channel leaves the composite ---------------------------------------------------


def test_a_six_channel_file_that_is_no_mix_keeps_all_six_channels(tmp_path):
    data = tones(11025, 6, 22050)
    hex_pickup = tmp_path / "00_BN1-129-Eb_comp_hex.wav"
    sf.write(str(hex_pickup), data, 22050, format="WAVEX", subtype="PCM_24")
    patch_mask(hex_pickup, 0x3F)  # what libsndfile writes for 6 channels by default
    stem = process_group(one_group([hex_pickup]), sample_rate_hz=22050)
    assert stem.layout == "L,R,C,LFE,Ls,Rs"  # what the header says
    assert [c.in_mono for c in stem.channels] == [True] * 6
    expected = reference_log_mel([hex_pickup], [[1 / 6] * 6], sample_rate_hz=22050)
    assert np.max(np.abs(stem.feature.values.astype(np.float32) - expected)) <= F16_TOL

    mix = tmp_path / "1M01 6mx.wav"  # the same bytes named as a final mix: a 5.1 fold-down
    mix.write_bytes(hex_pickup.read_bytes())
    stem = process_group(one_group([mix]), sample_rate_hz=22050)
    assert [c.in_mono for c in stem.channels] == [True, True, True, False, True, True]
    weights = [[0.2, 0.2, 0.2, 0.0, 0.2, 0.2]]
    expected = reference_log_mel([mix], weights, sample_rate_hz=22050)
    assert np.max(np.abs(stem.feature.values.astype(np.float32) - expected)) <= F16_TOL

    # A multi-mono group with an LFE file is a surround mix whatever its name.
    files = [write_tone(tmp_path / f"Boom.{x}.wav", freq=60) for x in ("L", "R", "LFE")]
    stem = process_group(one_group(files), sample_rate_hz=22050)
    assert [c.in_mono for c in stem.channels] == [True, True, False]


def test_real_guitarset_hex_pickup_keeps_all_six_strings(tmp_path):
    path = REAL / "guitarset" / "audio_hex-pickup_original" / "03_BN3-119-G_solo_hex.wav"
    if not path.is_file():
        pytest.skip("../shared/data/real/guitarset is not present")
    stem = process_group(one_group([path]), sample_rate_hz=SR)
    assert stem.layout == "L,R,C,LFE,Ls,Rs" and not stem.is_final_mix
    assert [c.in_mono for c in stem.channels] == [True] * 6
