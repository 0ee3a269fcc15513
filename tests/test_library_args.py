"""The library takes explicit arguments: no environment, no .env, parameter names in its errors."""

from __future__ import annotations

import pytest

from kmidi_ingest import ingest, plan
from kmidi_ingest.cli import main
from kmidi_ingest.errors import ConfigError

SR = 8000


def test_ingest_and_plan_ignore_the_environment_and_dotenv(make_cue, tmp_path, monkeypatch):
    make_cue("1M01 Opening")
    work = tmp_path / "work"
    work.mkdir()
    (work / ".env").write_text("KMIDI_WORKERS=abc\nKMIDI_MATCHER=bogus\n")
    monkeypatch.chdir(work)
    monkeypatch.setenv("KMIDI_WORKERS", "abc")
    monkeypatch.setenv("KMIDI_MATCHER", "llm")
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'from_env.sqlite'}")
    url = f"sqlite:///{tmp_path / 'given.sqlite'}"
    summary = ingest(tmp_path / "cues", SR, database_url=url)
    assert summary.ok and summary.cues_ingested == 1 and summary.matcher == "fuzzy"
    assert plan(tmp_path / "cues", SR, database_url=url).cues[0].action == "skip"
    assert not (tmp_path / "from_env.sqlite").exists()
    # The documented default database, in the working directory, not $DATABASE_URL.
    ingest(tmp_path / "cues", SR)
    assert (work / "kmidi.sqlite").is_file() and not (tmp_path / "from_env.sqlite").exists()


@pytest.mark.parametrize("rate", [0, 1, 7999, 384001, 1_000_000_000])
def test_sample_rate_outside_8000_to_384000_hz_is_refused_before_anything(
    make_cue, tmp_path, capsys, rate
):
    make_cue("1M01 Opening")
    db = tmp_path / "r.sqlite"
    message = f"sample rate must be a whole number of Hz from 8000 to 384000, got {rate}"
    for call in (ingest, plan):
        with pytest.raises(ConfigError) as raised:
            call(tmp_path / "cues", rate, database_url=f"sqlite:///{db}")
        assert str(raised.value) == message
    assert not db.exists()
    if rate > 0:  # the CLI refuses 0 itself, as "not a positive whole number"
        args = [str(tmp_path / "cues"), str(rate), "--database-url", f"sqlite:///{db}"]
        assert main(args) == 2
        assert capsys.readouterr().err == (
            "kmidi-ingest: SAMPLE_RATE must be a whole number of Hz from 8000 to 384000, "
            f"got {rate}\n"
        )
        assert main([*args, "--dry-run"]) == 2
        assert not db.exists()


@pytest.mark.parametrize("rate", [8000, 384000])
def test_sample_rate_range_ends_are_accepted(make_cue, tmp_path, rate):
    make_cue("1M01 Opening")
    report = plan(tmp_path / "cues", rate, database_url=f"sqlite:///{tmp_path / 'p.sqlite'}")
    assert report.sample_rate_hz == rate and len(report.cues) == 1


def test_errors_name_parameters_and_the_cli_names_flags(tmp_path, capsys):
    sqlite = f"sqlite:///{tmp_path / 'd.sqlite'}"
    cases = [
        ({"executor": "dask"}, 'executor="dask" needs scheduler="tcp://HOST:PORT"'),
        ({"scheduler": "tcp://x:1"}, 'scheduler is only used with executor="dask"'),
        ({"executor": "spark"}, "executor='spark' is not one of local, dask"),
        ({"matcher": "psychic"}, "matcher='psychic' is not one of fuzzy, llm, auto"),
        ({"workers": 0}, "workers must be at least 1, got 0"),
        (
            {"executor": "dask", "scheduler": "tcp://x:1"},
            'executor="dask" needs a PostgreSQL database: every Dask worker writes its cues '
            "itself and SQLite allows one writer only; use "
            'database_url="postgresql://..." or executor="local"',
        ),
    ]
    for kwargs, message in cases:
        with pytest.raises(ConfigError) as raised:
            ingest(tmp_path, SR, database_url=sqlite, **kwargs)
        assert str(raised.value) == message
    args = [str(tmp_path), str(SR), "--database-url", sqlite, "--executor", "dask"]
    assert main([*args, "--scheduler", "tcp://x:1"]) == 2
    assert capsys.readouterr().err == (
        "kmidi-ingest: --executor dask needs a PostgreSQL database: every Dask worker writes "
        "its cues itself and SQLite allows one writer only; use --database-url "
        "postgresql://... or --executor local\n"
    )
    assert main(args) == 2
    assert capsys.readouterr().err == (
        "kmidi-ingest: --executor dask needs --scheduler tcp://HOST:PORT\n"
    )


def test_store_conflict_is_a_store_error_naming_the_cue():
    from kmidi_ingest.errors import StoreError
    from kmidi_ingest.store import CueConflict

    conflict = CueConflict("Reel 1/1M01 Opening")
    assert isinstance(conflict, StoreError) and conflict.stage == "store"
    assert str(conflict) == "Reel 1/1M01 Opening: another writer stored this cue first"


def test_one_hz_to_mel_equals_librosa():
    import librosa
    import numpy as np

    from kmidi_ingest.audio import hz_to_mel

    hz = np.array([0.0, 20.0, 440.0, 999.9, 1000.0, 4000.0, 22050.0, 192000.0])
    np.testing.assert_allclose(hz_to_mel(hz), librosa.hz_to_mel(hz), rtol=1e-12)


def test_non_utf8_names_are_escaped_at_the_database_edge_on_postgresql(make_cue, tmp_path, pg_url):
    import os

    from tests.dbutil import scalar

    root = tmp_path / "cues"
    plain = make_cue("1M02 Plain", root=root)
    os.rename(plain, root / os.fsdecode(b"1M02 Caf\xe9"))  # a lone surrogate in Python
    summary = ingest(root, SR, database_url=pg_url)
    assert summary.ok and summary.cues_ingested == 1, summary.problems
    assert scalar(pg_url, "SELECT rel_path FROM cues") == "1M02 Caf\\xe9"
    assert scalar(pg_url, "SELECT abs_path FROM cues").endswith("1M02 Caf\\xe9")
    assert ingest(root, SR, database_url=pg_url).cues_skipped == 1
