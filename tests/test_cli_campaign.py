"""A campaign of hostile arguments against every command: missing and extra arguments, bad
numbers, missing and unreadable paths, a file where a folder is expected, bad URLs and schemes,
bad revisions, empty strings, huge values and non-UTF-8 bytes. Each run must end with a
documented exit code, a message (never a traceback) and, where it is one of the main messages,
exactly that message. Most run in-process through ``main(argv)``; closed pipes, ``.env`` files
and real non-UTF-8 argv bytes run as real processes."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest

from kmidi_ingest import migrate
from kmidi_ingest.cli import main
from kmidi_ingest.commands._common import EXIT_CODES
from kmidi_ingest.config import ENVIRONMENT
from tests.conftest import EXAMPLES, REPO, run_as_nobody

DOCUMENTED = set(EXIT_CODES)
REFUSED_PG = "postgresql://kmidi:hunter2@127.0.0.1:1/kmidi"  # nothing listens on port 1
CONNECT_HINT = "is the server running, and are the host, port, user and password right?"


@pytest.fixture(scope="module")
def world() -> Iterator[dict[str, str]]:
    """Paths and URLs the cases are written with: ``{db}`` is an ingested copy of the examples."""
    base = Path(tempfile.mkdtemp(prefix="kmidi-campaign-"))
    base.chmod(0o755)  # nobody must reach the unreadable cases below
    (base / "cwd").mkdir()
    (base / "empty").mkdir()
    (base / "out").mkdir()
    (base / "file.txt").write_text("not a folder\n")
    (base / "garbage.sqlite").write_text("not a database\n")
    (base / "locked").mkdir()
    (base / "locked" / "1M01 Cue" / "MIDI").mkdir(parents=True)
    broken = base / "broken"
    broken.mkdir()
    (broken / os.fsdecode(b"bad\xff name.mid")).write_bytes(b"MThd nonsense")
    db = base / "db.sqlite"
    saved_env = {name: os.environ.pop(name) for name, _, _ in ENVIRONMENT if name in os.environ}
    cwd = Path.cwd()
    os.chdir(base / "cwd")
    try:
        args = [str(EXAMPLES), "8000", "--database-url", f"sqlite:///{db}", "--quiet"]
        with redirect_stdout(io.StringIO()):
            assert main([*args, "--workers", "1"]) == 0
    finally:
        os.chdir(cwd)
        os.environ.update(saved_env)
    (base / "locked").chmod(0o000)
    (base / "locked.sqlite").write_bytes(db.read_bytes())
    (base / "locked.sqlite").chmod(0o000)
    yield {
        "w": str(base),
        "db": f"sqlite:///{db}",
        "dbpath": str(db),
        "scratch": f"sqlite:///{base / 'scratch.sqlite'}",
        "examples": str(EXAMPLES),
        "head": migrate.head_revision(),
        "known": ", ".join(r.revision for r in migrate.history()),
    }
    (base / "locked").chmod(0o755)
    shutil.rmtree(base)


@pytest.fixture(autouse=True)
def clean_environment(world, monkeypatch):
    """No DATABASE_URL or other setting leaks in, no ``.env`` in the working directory."""
    for name, _, _ in ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(Path(world["w"]) / "cwd")


USAGE = "usage error from argparse"  # the last line is argparse's "PROG: error: ..."

# (argv, exit code, the last line of stderr or None). ``{name}`` is filled from ``world``.
CASES: list[tuple[list[str], int | set[int], str | None]] = [
    # --- ingest ---------------------------------------------------------------------------------
    ([], 2, "kmidi-ingest: error: the following arguments are required: ROOT, SAMPLE_RATE"),
    (["{w}/empty"], 2, "kmidi-ingest: error: the following arguments are required: SAMPLE_RATE"),
    (["{w}/empty", "48000", "extra"], 2, "kmidi-ingest: error: unrecognized arguments: extra"),
    (
        ["{w}/empty", "abc"],
        2,
        "kmidi-ingest: error: argument SAMPLE_RATE: expected a positive whole number, got 'abc'",
    ),
    (["{w}/empty", "-5"], 2, None),
    (["{w}/empty", "0"], 2, None),
    (["{w}/empty", "4.8e4"], 2, None),
    (["", "48000"], 2, "kmidi-ingest: error: argument ROOT: must not be empty"),
    (
        ["{w}/missing", "48000", "--database-url", "{scratch}"],
        2,
        "kmidi-ingest: {w}/missing: root folder does not exist or is not a folder",
    ),
    (
        ["{w}/file.txt", "48000", "--database-url", "{scratch}"],
        2,
        "kmidi-ingest: {w}/file.txt: root folder does not exist or is not a folder",
    ),
    (
        ["{w}/missing", "48000", "--dry-run", "--database-url", "{scratch}"],
        2,
        "kmidi-ingest: {w}/missing: root folder does not exist or is not a folder",
    ),
    (
        [os.fsdecode(b"/nonexistent/caf\xe9"), "48000", "--database-url", "{scratch}"],
        2,
        "kmidi-ingest: /nonexistent/caf\\xe9: root folder does not exist or is not a folder",
    ),
    (
        ["{w}/empty", "48000", "--database-url", "mysql://u:secret@h/db"],
        2,
        "kmidi-ingest: unsupported database 'mysql://u:***@h/db': use sqlite:///FILE or "
        "postgresql://...",
    ),
    (["{w}/empty", "48000", "--database-url", "foo://x"], 2, None),
    (["{w}/empty", "48000", "--database-url", ""], 2, None),
    (["{w}/empty", "48000", "--database-url", "not a url"], 2, None),
    (
        ["{w}/empty", "48000", "--database-url", "sqlite:////nonexistent/dir/x.sqlite"],
        1,
        "kmidi-ingest: cannot open database file /nonexistent/dir/x.sqlite: does the folder "
        "exist and is it writable?",
    ),
    (
        ["{w}/empty", "48000", "--database-url", "sqlite:///{w}/garbage.sqlite"],
        1,
        "kmidi-ingest: garbage.sqlite is not a SQLite database: check --database-url or "
        "DATABASE_URL".replace("garbage.sqlite", "{w}/garbage.sqlite"),
    ),
    (["{w}/empty", "48000", "--database-url", REFUSED_PG], 1, None),
    (["{w}/empty", "48000", "--workers", "0"], 2, None),
    (
        ["{w}/empty", "48000", "--workers", "abc"],
        2,
        "kmidi-ingest: error: argument --workers: expected a positive whole number, got 'abc'",
    ),
    (["{w}/empty", "48000", "--workers", "9" * 30, "--database-url", "{scratch}"], 0, None),
    (
        ["{w}/empty", "9" * 30, "--database-url", "{scratch}"],
        2,
        f"kmidi-ingest: SAMPLE_RATE must be a whole number of Hz from 8000 to 384000, got {'9' * 30}",
    ),
    (
        ["{w}/empty", "1", "--database-url", "{scratch}"],
        2,
        "kmidi-ingest: SAMPLE_RATE must be a whole number of Hz from 8000 to 384000, got 1",
    ),
    (["{w}/empty", "48000", "--matcher", "best"], 2, None),
    (["{w}/empty", "48000", "--executor", "nope"], 2, None),
    (["{w}/empty", "48000", "--executor", "dask", "--database-url", "{scratch}"], 2, None),
    (["{w}/empty", "48000", "--log-level", "LOUD"], 2, None),
    (["{w}/empty", "48000", "--no-such-flag"], 2, None),
    # --- check ----------------------------------------------------------------------------------
    (["check"], 2, "kmidi-ingest check: error: the following arguments are required: ROOT"),
    (["check", "{w}/empty", "extra"], 2, None),
    (["check", ""], 2, "kmidi-ingest check: error: argument ROOT: must not be empty"),
    (
        ["check", "{w}/missing"],
        2,
        "kmidi-ingest check: {w}/missing: root folder does not exist or is not a folder",
    ),
    (
        ["check", "{w}/file.txt"],
        2,
        "kmidi-ingest check: {w}/file.txt: root folder does not exist or is not a folder",
    ),
    (["check", os.fsdecode(b"/nonexistent/\xff")], 2, None),
    (["check", "{w}/broken"], 1, None),  # a broken file with a non-UTF-8 name
    (["check", "{w}/broken", "--json"], 1, None),
    (
        ["check", "{w}/broken", "--quarantine", "{w}/broken"],
        2,
        "kmidi-ingest check: --quarantine {w}/broken must not be ROOT or hold it",
    ),
    (["check", "{w}/broken", "--quarantine", "{w}/file.txt"], 1, None),
    (["check", "{w}/empty", "--quarantine", ""], 2, None),
    # --- stats ----------------------------------------------------------------------------------
    (["stats", "--database-url", "{db}"], 0, None),
    (["stats", "--database-url", "{db}", "extra"], 2, None),
    (
        ["stats", "--database-url", "sqlite:///{w}/missing.sqlite"],
        2,
        "kmidi-ingest stats: no database at {w}/missing.sqlite",
    ),
    (
        ["stats", "--database-url", "sqlite:///{w}/empty"],
        2,
        "kmidi-ingest stats: {w}/empty is a folder, not a database file",
    ),
    (
        ["stats", "--database-url", "sqlite:///{w}/garbage.sqlite"],
        1,
        "kmidi-ingest stats: {w}/garbage.sqlite is not a SQLite database: check --database-url "
        "or DATABASE_URL",
    ),
    (["stats", "--database-url", "mysql://u:secret@h/db"], 2, None),
    (["stats", "--database-url", "foo://bar"], 2, None),
    (["stats", "--database-url", ""], 2, None),
    (["stats", "--database-url", os.fsdecode(b"sqlite:////nonexistent/\xff.sqlite")], 2, None),
    (
        ["stats", "--database-url", REFUSED_PG],
        1,
        "kmidi-ingest stats: cannot connect to postgresql://kmidi:***@127.0.0.1:1/kmidi: "
        'connection to server at "127.0.0.1", port 1 failed: Connection refused: ' + CONNECT_HINT,
    ),
    # --- export ---------------------------------------------------------------------------------
    (
        ["export"],
        2,
        "kmidi-ingest export: error: the following arguments are required: OUT, --format",
    ),
    (["export", "{w}/out/x.jsonl"], 2, None),
    (["export", "{w}/out/x.jsonl", "--format", "csv"], 2, None),
    (["export", "", "--format", "jsonl"], 2, None),
    (["export", "{w}/out/x.jsonl", "--format", "jsonl", "--min-notes", "-1"], 2, None),
    (["export", "{w}/out/x.jsonl", "--format", "jsonl", "--min-notes", "abc"], 2, None),
    (
        [
            "export",
            "{w}/out/a.jsonl",
            "--format",
            "jsonl",
            "--cue",
            "9M99 Nothing",
            "--database-url",
            "{db}",
        ],
        1,
        "kmidi-ingest export: no cue matches --cue '9M99 Nothing' (matched ignoring case); "
        "nothing written",
    ),
    (
        [
            "export",
            "{w}/out/b.jsonl",
            "--format",
            "jsonl",
            "--category",
            "kazoo",
            "--cue",
            "x",
            "--database-url",
            "{db}",
        ],
        1,
        "kmidi-ingest export: no cue matches --cue 'x'; no track or stem matches --category "
        "'kazoo' (matched ignoring case); nothing written",
    ),
    (
        [
            "export",
            "{w}/out/c.jsonl",
            "--format",
            "jsonl",
            "--min-notes",
            "9" * 30,
            "--database-url",
            "{db}",
        ],
        0,
        None,
    ),
    (
        ["export", "{w}/missing/x.jsonl", "--format", "jsonl", "--database-url", "{db}"],
        2,
        "kmidi-ingest export: {w}/missing: output folder does not exist",
    ),
    (["export", "{w}/out", "--format", "jsonl", "--database-url", "{db}"], 2, None),
    (["export", "{w}/out", "--format", "jsonl", "--overwrite", "--database-url", "{db}"], 1, None),
    (
        [
            "export",
            "{w}/out/d.jsonl",
            "--format",
            "jsonl",
            "--database-url",
            "sqlite:///{w}/nope.sqlite",
        ],
        2,
        "kmidi-ingest export: no database at {w}/nope.sqlite",
    ),
    (["export", "{w}/out/e.jsonl", "--format", "jsonl", "--database-url", REFUSED_PG], 1, None),
    # --- plot -----------------------------------------------------------------------------------
    (["plot"], 2, "kmidi-ingest plot: error: the following arguments are required: CUE, --out"),
    (["plot", "1M01 Opening"], 2, None),
    (["plot", "", "--out", "{w}/out/p.png"], 2, None),
    (
        ["plot", "1M01 Opening", "--out", "{w}/out/p.png", "--width", "9" * 30],
        2,
        "kmidi-ingest plot: error: argument --width: must be 400 to 16000 pixels, got " + "9" * 30,
    ),
    (["plot", "1M01 Opening", "--out", "{w}/out/p.png", "--width", "abc"], 2, None),
    (["plot", "1M01 Opening", "--out", "{w}/out/p.png", "--width", "100"], 2, None),
    (["plot", "9M99 Nothing", "--out", "{w}/out/p.png", "--database-url", "{db}"], 1, None),
    (["plot", "1M01 Opening", "--out", "{w}/missing/p.png", "--database-url", "{db}"], 1, None),
    (
        [
            "plot",
            "1M01 Opening",
            "--out",
            "{w}/out/p.png",
            "--database-url",
            "sqlite:///{w}/nope.sqlite",
        ],
        2,
        "kmidi-ingest plot: no database at {w}/nope.sqlite",
    ),
    # --- db -------------------------------------------------------------------------------------
    (["db"], 2, "kmidi-ingest db: error: the following arguments are required: ACTION"),
    (["db", "frobnicate"], 2, None),
    (["db", "history", "extra"], 2, None),
    (
        ["db", "upgrade", "nope", "--database-url", "{scratch}"],
        2,
        "kmidi-ingest db: unknown revision 'nope'; this version knows: {known} (or 'head', 'base')",
    ),
    (
        ["db", "upgrade", "", "--database-url", "{scratch}"],
        2,
        "kmidi-ingest db upgrade: error: argument REV: must not be empty",
    ),
    (["db", "upgrade", "head+1", "--database-url", "{scratch}"], 2, None),
    (["db", "stamp", "-1", "--database-url", "{scratch}"], 2, None),
    (["db", "downgrade", "--database-url", "{scratch}"], 2, None),
    (
        ["db", "current", "--database-url", "sqlite:///{w}/nope.sqlite"],
        2,
        "kmidi-ingest db: no database at {w}/nope.sqlite",
    ),
    (
        ["db", "downgrade", "base", "--database-url", "sqlite:///{w}/nope.sqlite"],
        2,
        "kmidi-ingest db: no database at {w}/nope.sqlite",
    ),
    (["db", "current", "--database-url", "sqlite:///{w}/garbage.sqlite"], 1, None),
    (["db", "current", "--database-url", "{db}"], 0, None),
    (
        ["db", "upgrade", "--database-url", "sqlite:////nonexistent/dir/x.sqlite"],
        1,
        "kmidi-ingest db: cannot open database file /nonexistent/dir/x.sqlite: does the folder "
        "exist and is it writable?",
    ),
    (
        ["db", "upgrade", "--database-url", "mysql://u:secret@h/db"],
        2,
        "kmidi-ingest db: configuration error: unsupported database 'mysql://u:***@h/db': use "
        "sqlite:///FILE or postgresql://...",
    ),
    (
        ["db", "current", "--database-url", REFUSED_PG],
        1,
        "kmidi-ingest db: cannot connect to postgresql://kmidi:***@127.0.0.1:1/kmidi: "
        'connection to server at "127.0.0.1", port 1 failed: Connection refused: ' + CONNECT_HINT,
    ),
    (["db", "copy"], 2, None),
    (["db", "copy", "{db}"], 2, None),
    (["db", "copy", "{db}", "{scratch}", "extra"], 2, None),
    (
        ["db", "copy", "sqlite:///{w}/nope.sqlite", "{scratch}"],
        2,
        "kmidi-ingest db: SOURCE_URL: no database at {w}/nope.sqlite",
    ),
    (
        ["db", "copy", "{db}", "{scratch}", "--chunk-rows", "0"],
        2,
        "kmidi-ingest db copy: error: argument --chunk-rows: must be at least 1, got 0",
    ),
    (["db", "copy", "{db}", "{scratch}", "--chunk-rows", "abc"], 2, None),
    (["db", "copy", "{db}", "foo://target"], 2, None),
    (["db", "copy", "{db}", "sqlite:////nonexistent/dir/t.sqlite", "--quiet"], 1, None),
]


def fill(argv: list[str], world: dict[str, str]) -> list[str]:
    return [a.format(**world) if "{" in a and "}" in a else a for a in argv]


def run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def check_run(code: int, out: str, err: str, expected: int | set[int], message: str | None) -> None:
    assert "Traceback" not in err and "Exception ignored" not in err, err
    assert code in (expected if isinstance(expected, set) else {expected}), err
    assert code in DOCUMENTED
    if code != 0:
        assert err.strip() or (code == 1 and out.strip()), "a failure must say why"
        lines = err.strip().splitlines() if err.strip() else ["kmidi-ingest (report on stdout)"]
        assert all(line.startswith(("kmidi-ingest", "usage:", " ")) for line in lines), err
    if message is not None:
        assert err.strip().splitlines()[-1] == message


@pytest.mark.parametrize(
    ("argv", "expected", "message"), CASES, ids=[" ".join(c[0])[:70] or "(none)" for c in CASES]
)
def test_hostile_arguments(world, argv, expected, message):
    code, out, err = run(fill(argv, world))
    check_run(code, out, err, expected, None if message is None else message.format(**world))


def test_read_only_commands_created_no_database(world):
    created = {p.name for p in Path(world["w"]).glob("*.sqlite")}
    assert "missing.sqlite" not in created and "nope.sqlite" not in created


def test_unreadable_paths_as_an_unprivileged_user(world):
    """chmod 000 does not stop root: run these as ``nobody`` in a forked child."""

    def task() -> str:
        answers = []
        for argv in (
            ["check", f"{world['w']}/locked"],
            [f"{world['w']}/locked", "8000", "--dry-run", "--database-url", "sqlite://"],
            ["stats", "--database-url", f"sqlite:///{world['w']}/locked.sqlite"],
        ):
            code, _, err = run(argv)
            answers.append(f"{code}\t{err.strip()}")
        return "\n".join(answers)

    answers = [line.split("\t", 1) for line in run_as_nobody(task).splitlines()]
    (check_code, check_err), (plan_code, plan_err), (stats_code, stats_err) = answers
    assert "Traceback" not in check_err + plan_err + stats_err
    assert int(check_code) in DOCUMENTED and int(plan_code) in DOCUMENTED
    assert (int(stats_code), stats_err) == (
        1,
        f"kmidi-ingest stats: cannot open database file {world['w']}/locked.sqlite: does the "
        "folder exist and is it writable?",
    )


# --- real processes -------------------------------------------------------------------------------


def cli(
    *args: str | bytes, cwd: Path, env: dict[str, str] | None = None, close_stdout: bool = False
) -> tuple[int, str]:
    """Run ``python -m kmidi_ingest ARGS``; with ``close_stdout`` its stdout is closed at once,
    as by ``| head -0``. Returns the exit code and stderr."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "kmidi_ingest", *args],
        cwd=cwd,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    if close_stdout:
        proc.stdout.close()
        err = proc.stderr.read()
    else:
        _, err = proc.communicate(timeout=300)
    proc.wait(timeout=300)
    proc.stderr.close()
    if not close_stdout:
        proc.stdout.close()
    return proc.returncode, err.decode("utf-8", "backslashreplace")


@pytest.mark.parametrize(
    "args",
    [
        ["db", "history"],
        ["check", str(EXAMPLES), "--json"],
        ["stats", "--database-url", "{db}"],
        [
            str(EXAMPLES),
            "8000",
            "--database-url",
            "{scratch}",
            "--workers",
            "1",
            "--quiet",
            "--force",
        ],
    ],
    ids=["db history", "check --json", "stats", "ingest summary"],
)
def test_output_closed_early_ends_quietly(world, args, tmp_path):
    code, err = cli(*fill(args, world), cwd=tmp_path, close_stdout=True)
    assert (code, err) == (141, "")


def test_a_bad_dotenv_value_names_the_file_and_blocks_only_its_users(world, tmp_path):
    (tmp_path / ".env").write_text("KMIDI_WORKERS=abc\n")
    code, err = cli(
        str(Path(world["w"]) / "empty"), "8000", "--database-url", world["scratch"], cwd=tmp_path
    )
    assert (code, err) == (
        2,
        f"kmidi-ingest: configuration error: KMIDI_WORKERS='abc' in {tmp_path / '.env'}: "
        "expected a whole number of 1 or more (or give --workers N)\n",
    )
    # a flag wins over the bad value; commands that never use it are not troubled by it
    for args in (
        [
            str(Path(world["w"]) / "empty"),
            "8000",
            "--database-url",
            world["scratch"],
            "--workers",
            "2",
        ],
        [str(Path(world["w"]) / "empty"), "8000", "--dry-run", "--database-url", world["scratch"]],
        ["stats", "--database-url", world["db"]],
        ["db", "current", "--database-url", world["db"]],
        ["export", str(tmp_path / "x.jsonl"), "--format", "jsonl", "--database-url", world["db"]],
        ["plot", "1M01 Opening", "--out", str(tmp_path / "x.png"), "--database-url", world["db"]],
    ):
        assert cli(*args, cwd=tmp_path) == (0, ""), args


def test_a_bad_environment_value_says_it_came_from_the_environment(world, tmp_path):
    code, err = cli(
        str(Path(world["w"]) / "empty"),
        "8000",
        cwd=tmp_path,
        env={"KMIDI_MATCHER": "best", "DATABASE_URL": world["scratch"]},
    )
    assert (code, err) == (
        2,
        "kmidi-ingest: configuration error: KMIDI_MATCHER='best' in the environment: expected "
        "one of fuzzy, llm, auto (or give --matcher NAME)\n",
    )
    assert cli(
        "stats", cwd=tmp_path, env={"KMIDI_WORKERS": "abc", "DATABASE_URL": world["db"]}
    ) == (
        0,
        "",
    )


def test_a_dotenv_file_that_is_not_utf8_is_a_configuration_error(world, tmp_path):
    (tmp_path / ".env").write_bytes(b"DATABASE_URL=sqlite:///\xff.sqlite\n")
    assert cli("stats", cwd=tmp_path) == (
        2,
        f"kmidi-ingest stats: {tmp_path / '.env'}: cannot read the settings file: not UTF-8 text\n",
    )
    assert cli("stats", "--database-url", world["db"], cwd=tmp_path) == (0, "")


def test_non_utf8_argv_bytes_are_escaped_in_messages(tmp_path):
    code, err = cli("check", b"/nonexistent/caf\xe9", cwd=tmp_path)
    assert (code, err) == (
        2,
        "kmidi-ingest check: /nonexistent/caf\\xe9: root folder does not exist or is not a folder\n",
    )
