"""Audio through the whole job: stored channel layouts, features read back bit-exact, bad files
recorded per file while the rest of the cue is stored (SQLite and PostgreSQL)."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
from sqlalchemy import delete, insert, inspect, select, text, update

from kmidi_ingest import features, ingest, migrate
from kmidi_ingest.audio import MelParams, process_group
from kmidi_ingest.batch import CueOptions
from kmidi_ingest.db import make_engine
from kmidi_ingest.discover import group_channels
from kmidi_ingest.errors import StoreError
from kmidi_ingest.features import CHUNK_BYTES
from kmidi_ingest.models import AudioFeature, AudioFeatureChunk
from kmidi_ingest.store import read_feature
from tests.conftest import write_tone
from tests.test_audio import tones


def test_long_feature_is_compressed_chunked_and_read_back_bit_exact(make_cue, tmp_path, db_url):
    cue = make_cue("1M01 Opening")
    long_stem = cue / "Audio Files" / "1M01 Drone.wav"
    noise = 0.3 * np.random.default_rng(3).standard_normal((8000 * 90, 2))  # compresses least
    sf.write(str(long_stem), noise, 8000, subtype="PCM_16")
    mel = MelParams(hop_length=128, n_mels=256)  # 512 bytes a frame: 90 s = 2.9 MB raw
    options = CueOptions(mel=mel)
    summary = ingest(tmp_path / "cues", 8000, database_url=db_url, options=options)
    assert summary.ok, summary.problems
    (group,) = [g for g in group_channels([(long_stem, long_stem.name)]) if g.key == "1M01 Drone"]
    expected = process_group(group, sample_rate_hz=8000, params=mel).feature.values
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            row = conn.execute(
                text(
                    "SELECT f.id, f.chunk_count, f.byte_count, f.n_frames, f.n_mels, f.hop_length,"
                    " f.dtype, f.encoding, f.codec FROM audio_features f"
                    " JOIN audio_files a ON a.id = f.audio_file_id WHERE a.name = 'Drone'"
                )
            ).one()
            sizes = list(
                conn.execute(
                    text(
                        "SELECT LENGTH(data) FROM audio_feature_chunks WHERE feature_id = :f"
                        " ORDER BY chunk_index"
                    ),
                    {"f": row.id},
                ).scalars()
            )
            codecs = set(conn.execute(select(AudioFeature.codec)).scalars())
            back = read_feature(conn, row.id)
            every = [read_feature(conn, i) for i in conn.execute(select(AudioFeature.id)).scalars()]
    finally:
        engine.dispose()
    assert expected.shape == (256, 1 + 8000 * 90 // 128)
    assert (row.encoding, row.codec) == ("npy", features.DEFAULT_CODEC) and codecs == {row.codec}
    # Bit-exact against the stored matrix: the computed one on the codec's 1/16 dB grid.
    assert back.dtype == np.float16
    assert np.array_equal(back.view(np.uint16), features.quantise_db(expected).view(np.uint16))
    error = np.abs(back.astype(np.float64) - expected.astype(np.float64))
    assert error.max() <= features.QUANTISED_STEP_DB / 2 and error.max() > 0
    assert (row.n_frames, row.n_mels, row.hop_length, row.dtype) == (5626, 256, 128, "float16")
    assert row.chunk_count == len(sizes) >= 2 and sum(sizes) == row.byte_count
    assert sizes[:-1] == [CHUNK_BYTES] * (len(sizes) - 1)
    assert row.byte_count < 0.9 * (expected.nbytes + 128)
    assert len(every) == 4 and all(v.shape[0] == 256 for v in every)


def test_raw_rows_from_before_codecs_stay_readable_across_the_migration(make_cue, tmp_path, db_url):
    make_cue("1M01 Opening")
    summary = ingest(tmp_path / "cues", 8000, database_url=db_url)
    assert summary.ok, summary.problems
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            ids = list(conn.execute(select(AudioFeature.id).order_by(AudioFeature.id)).scalars())
            stored = {i: read_feature(conn, i) for i in ids}
        with pytest.raises(RuntimeError, match=f"{len(ids)} audio_features rows hold compressed"):
            migrate.downgrade(engine, "0005")
        assert migrate.current_revision(engine) == migrate.head_revision()
        with engine.begin() as conn:  # rewrite every feature as the writer before codecs did
            for i, values in stored.items():
                chunks, digest = features.encode(values, codec=None, chunk_bytes=1000)
                conn.execute(delete(AudioFeatureChunk).where(AudioFeatureChunk.feature_id == i))
                conn.execute(
                    insert(AudioFeatureChunk),
                    [{"feature_id": i, "chunk_index": k, "data": c} for k, c in enumerate(chunks)],
                )
                conn.execute(
                    update(AudioFeature)
                    .where(AudioFeature.id == i)
                    .values(
                        codec=None,
                        sha256=digest,
                        byte_count=sum(map(len, chunks)),
                        chunk_count=len(chunks),
                    )
                )
        migrate.downgrade(engine, "0005")
        assert "codec" not in {c["name"] for c in inspect(engine).get_columns("audio_features")}
        migrate.upgrade(engine)
        with engine.connect() as conn:
            assert set(conn.execute(select(AudioFeature.codec)).scalars()) == {None}
            assert min(conn.execute(select(AudioFeature.chunk_count)).scalars()) > 1
            for i, values in stored.items():
                back = read_feature(conn, i)
                assert np.array_equal(back.view(np.uint16), values.view(np.uint16))
            conn.execute(
                update(AudioFeatureChunk)
                .where(AudioFeatureChunk.feature_id == ids[0], AudioFeatureChunk.chunk_index == 0)
                .values(data=b"\x93NUMPY")
            )
            with pytest.raises(StoreError, match=f"audio_features id {ids[0]}: .*sha256"):
                read_feature(conn, ids[0])
    finally:
        engine.dispose()


def test_bad_audio_files_are_recorded_and_the_rest_of_the_cue_is_stored(make_cue, tmp_path, db_url):
    cue = make_cue("1M01 Opening")
    audio = cue / "Audio Files"
    (audio / "1M01 Harp.wav").write_bytes(b"")
    (audio / "1M01 Bells.aif").write_bytes(b"FORM\0\0\0\x04AIFFgarbage" * 4)
    write_tone(audio / "1M01 Celesta.L.wav", sample_rate=22050)
    write_tone(audio / "1M01 Celesta.R.wav", sample_rate=16000)
    sf.write(str(audio / "1M01 Perc.wav"), tones(11025, 6, 22050), 22050, format="WAVEX")
    summary = ingest(tmp_path / "cues", 16000, database_url=db_url)
    assert not summary.ok and summary.cues_ingested == 1 and summary.cues_failed == 0
    assert sorted((p.error_type, str(p.path).rsplit("/", 1)[-1]) for p in summary.errors) == [
        ("AudioError", "1M01 Bells.aif"),
        ("AudioError", "1M01 Celesta.R.wav"),
        ("AudioError", "1M01 Harp.wav"),
    ]
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            errors = conn.execute(
                text(
                    "SELECT file_path, stage, error_type, message FROM ingest_errors"
                    " WHERE severity = 'error' ORDER BY file_path"
                )
            ).all()
            stems = list(conn.execute(text("SELECT name FROM audio_files ORDER BY name")).scalars())
            status = conn.execute(text("SELECT status FROM cues")).scalar_one()
            perc = conn.execute(
                text(
                    "SELECT c.label, c.file_channel, c.file_channels, c.audio_format, c.subtype,"
                    " c.in_mono FROM audio_channels c JOIN audio_files a"
                    " ON a.id = c.audio_file_id WHERE a.name = 'Perc' ORDER BY c.channel_order"
                )
            ).all()
    finally:
        engine.dispose()
    assert status == "complete"
    assert stems == ["Brass", "Perc", "Strings"]
    assert [(e.file_path.rsplit("/", 1)[-1], e.stage, e.error_type) for e in errors] == [
        ("1M01 Bells.aif", "audio", "AudioError"),
        ("1M01 Celesta.R.wav", "audio", "AudioError"),
        ("1M01 Harp.wav", "audio", "AudioError"),
    ]
    assert errors[0].message.startswith("cannot decode audio")
    assert errors[1].message.startswith("sample rate 16000 Hz differs from the 22050 Hz")
    assert errors[2].message == "file is empty (0 bytes)"
    assert [tuple(r) for r in perc] == [  # an interleaved stem, not a mix: its LFE is mixed in
        (label, k, 6, "WAVEX", "PCM_16", True)
        for k, label in enumerate(("L", "R", "C", "LFE", "Ls", "Rs"))
    ]
