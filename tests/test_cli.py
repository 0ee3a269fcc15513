import json
import subprocess
import sys

from kmidi_ingest.cli import main
from tests.conftest import EXAMPLES


def test_usage_errors_exit_2(capsys, tmp_path):
    assert main([str(tmp_path), "zero"]) == 2
    assert "expected a positive whole number" in capsys.readouterr().err
    assert (
        main(
            [
                str(tmp_path / "missing"),
                "48000",
                "--database-url",
                f"sqlite:///{tmp_path / 'x.sqlite'}",
            ]
        )
        == 2
    )
    assert "root folder does not exist" in capsys.readouterr().err


def test_bad_database_url_is_a_config_error(capsys, tmp_path):
    code = main([str(tmp_path), "48000", "--database-url", "mysql://u:secret@h/db"])
    err = capsys.readouterr().err
    assert code == 2
    assert "unsupported database" in err and "secret" not in err


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
