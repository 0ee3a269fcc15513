import json
import subprocess
import sys

from kmidi_ingest import __version__
from kmidi_ingest.cli import main
from tests.conftest import EXAMPLES


def test_usage_errors_exit_2(capsys, tmp_path):
    assert main([str(tmp_path), "zero"]) == 2
    assert capsys.readouterr().err == (
        "usage: kmidi-ingest ROOT SAMPLE_RATE [options]\n"
        "       kmidi-ingest {db,check,stats,export,plot} ...\n"
        "kmidi-ingest: error: argument SAMPLE_RATE: expected a positive whole number, got 'zero'\n"
    )
    url = f"sqlite:///{tmp_path / 'x.sqlite'}"
    assert main([str(tmp_path / "missing"), "48000", "--database-url", url]) == 2
    assert capsys.readouterr().err == (
        f"kmidi-ingest: {tmp_path / 'missing'}: root folder does not exist or is not a folder\n"
    )


def test_bad_database_url_is_a_config_error(capsys, tmp_path):
    code = main([str(tmp_path), "48000", "--database-url", "mysql://u:secret@h/db"])
    assert code == 2
    assert capsys.readouterr().err == (
        "kmidi-ingest: unsupported database 'mysql://u:***@h/db': "
        "use sqlite:///FILE or postgresql://...\n"
    )


def test_database_errors_name_the_path_and_a_next_step(capsys, tmp_path):
    url = f"sqlite:///{tmp_path}/no/such/folder/x.sqlite"
    assert main([str(EXAMPLES), "8000", "--database-url", url, "--quiet"]) == 1
    assert capsys.readouterr().err == (
        f"kmidi-ingest: cannot open database file {tmp_path}/no/such/folder/x.sqlite: "
        "does the folder exist and is it writable?\n"
    )


def test_a_flag_wins_over_a_bad_setting_and_a_bad_setting_names_its_source(
    capsys, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("KMIDI_WORKERS=abc\n")
    monkeypatch.delenv("KMIDI_WORKERS", raising=False)
    url = f"sqlite:///{tmp_path / 'x.sqlite'}"
    root = tmp_path / "empty"
    root.mkdir()
    assert main([str(root), "8000", "--database-url", url]) == 2
    assert capsys.readouterr().err == (
        f"kmidi-ingest: configuration error: KMIDI_WORKERS='abc' in {tmp_path / '.env'}: "
        "expected a whole number of 1 or more (or give --workers N)\n"
    )
    assert main([str(root), "8000", "--database-url", url, "--workers", "2", "--quiet"]) == 0
    monkeypatch.setenv("KMIDI_WORKERS", "-1")  # the environment wins over .env
    assert main([str(root), "8000", "--database-url", url]) == 2
    assert capsys.readouterr().err == (
        "kmidi-ingest: configuration error: KMIDI_WORKERS='-1' in the environment: "
        "expected a whole number of 1 or more (or give --workers N)\n"
    )


def test_help_and_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"kmidi-ingest {__version__}\n"
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "\ncommands (kmidi-ingest COMMAND --help for each):\n  db      " in out
    assert "\n  141  the output was closed early (e.g. piped into head); as Unix tools do\n" in out
    assert "\n  KMIDI_WORKERS           processes computing cues in parallel" in out


def test_json_summary_and_exit_code_on_failure(make_cue, tmp_path, capsys):
    cue = make_cue("1M01 Opening")
    (cue / "Audio Files" / "1M01 Brass.wav").write_bytes(b"not audio")
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    assert main([str(tmp_path / "cues"), "16000", "--database-url", url, "--json"]) == 1
    summary = json.loads(capsys.readouterr().out)
    assert summary["cues_ingested"] == 1 and summary["stems"] == 1
    assert summary["errors"][0]["stage"] == "audio"
    assert "1M01 Brass.wav" in summary["errors"][0]["path"]


def test_python_m_runs_the_examples(tmp_path):
    env_url = f"sqlite:///{tmp_path / 'kmidi.sqlite'}"
    proc = subprocess.run(
        [sys.executable, "-m", "kmidi_ingest", str(EXAMPLES), "16000", "--database-url", env_url],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "3 found, 3 ingested" in proc.stdout
    assert "186 notes" in proc.stdout
