"""Batch runs: kill -9 and Ctrl-C survival, parallel and concurrent runs, Dask, run records."""

from __future__ import annotations

import io
import json
import multiprocessing
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import mido
import pytest
from sqlalchemy import text

from kmidi_ingest import ingest
from kmidi_ingest.batch import compute
from kmidi_ingest.cli import main
from kmidi_ingest.db import make_engine
from tests.conftest import REPO, note_track, write_midi, write_tone
from tests.dbutil import CUE_TABLES, content, counts, scalar

SR = 8000
# Problem rows of earlier (killed) runs legitimately stay; CUE_TABLES compares the cue data only.
TABLES = [*CUE_TABLES, "ingest_errors"]


def make_corpus(root: Path, n: int = 6, *, notes: int = 400) -> Path:
    """``n`` small cues (two instruments, a stereo stem, a mono stem, a 5.1 mix) under ``root``."""
    for i in range(n):
        code = f"{i // 3 + 1}M{i + 1:02d}"
        cue = root / f"Reel {i // 3 + 1}" / f"{code} Cue {i}"
        strings = [(k * 120, k * 120 + 100, 60 + (k + i) % 12) for k in range(notes)]
        brass = [(k * 240, k * 240 + 200, 40 + k % 7) for k in range(notes // 2)]
        write_midi(
            cue / "MIDI" / f"{code}.mid",
            [
                [mido.MetaMessage("set_tempo", tempo=500_000 + 1000 * i, time=0)],
                note_track("Strings", strings, program=48),
                note_track("Brass", brass, channel=1, program=61),
            ],
        )
        audio = cue / "Audio Files"
        for label, freq in (("L", 440), ("R", 660)):
            write_tone(audio / f"{code} Strings.{label}.wav", seconds=0.5, freq=freq + i)
        write_tone(audio / f"{code} Brass.wav", seconds=0.5, freq=220 + i)
        for label in ("L", "R", "C", "LFE", "Ls", "Rs"):
            write_tone(audio / f"{code} 6mx.{label}.wav", seconds=0.3, freq=330, amplitude=0.2)
    return root


def run(root: Path, url: str, **kwargs):
    return ingest(root, SR, database_url=url, **kwargs)


def cli(*args: str, **popen) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "kmidi_ingest", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **popen,
    )


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("batch") / "cues")


@pytest.fixture(scope="module")
def clean(corpus, tmp_path_factory):
    """The reference database: one uninterrupted serial run over the corpus."""
    url = f"sqlite:///{tmp_path_factory.mktemp('clean') / 'clean.sqlite'}"
    summary = run(corpus, url, workers=1)
    assert summary.ok and summary.cues_ingested == 6, summary.problems
    return url


def _lines_until(stream, needle: str, count: int, deadline: float) -> list[str]:
    seen: list[str] = []
    hits = 0
    while hits < count and time.monotonic() < deadline:
        line = stream.readline()
        if not line:
            break
        seen.append(line)
        hits += needle in line
    return seen


def _processes_running(marker: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        try:
            # bytes: another test's process may have a non-UTF-8 file name in its arguments
            if entry.name.isdigit() and marker.encode() in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


@pytest.mark.parametrize(("seed", "workers"), [(1, 1), (2, 1), (3, 2)])
def test_kill_9_at_a_random_point_then_rerun_equals_a_clean_run(
    seed, workers, corpus, clean, tmp_path
):
    rng = random.Random(seed)
    url = f"sqlite:///{tmp_path / 'killed.sqlite'}"
    args = ["--database-url", url, "--workers", str(workers), "--log-level", "INFO"]
    proc = cli(str(corpus), str(SR), *args)
    # Kill after a random number of stored cues (0: somewhere in start-up or migration).
    stored_before_kill = rng.randrange(0, 4)
    if stored_before_kill:
        _lines_until(proc.stderr, "ingested:", stored_before_kill, time.monotonic() + 60)
        time.sleep(rng.uniform(0.0, 0.05))
    else:
        time.sleep(rng.uniform(0.3, 2.0))
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    deadline = time.monotonic() + 15
    while _processes_running(url) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _processes_running(url) == []  # pool workers exit with their killed parent

    if Path(url.removeprefix("sqlite:///")).exists() and scalar(
        url, "SELECT COUNT(*) FROM sqlite_master WHERE name = 'cues'"
    ):
        # Only whole cues are visible, never a half-written one.
        assert scalar(url, "SELECT COUNT(*) FROM cues WHERE status <> 'complete'") == 0
        assert scalar(url, "SELECT COUNT(*) FROM cues") >= stored_before_kill
    killed_run = []
    if Path(url.removeprefix("sqlite:///")).exists() and scalar(
        url, "SELECT COUNT(*) FROM sqlite_master WHERE name = 'ingest_runs'"
    ):
        killed_run = [scalar(url, "SELECT status FROM ingest_runs")]
        assert killed_run in ([], [None], ["running"])  # no row yet, or left running
    again = run(corpus, url, workers=1)
    assert again.ok, again.problems
    assert again.cues_ingested + again.cues_skipped == 6
    assert content(url, CUE_TABLES) == content(clean, CUE_TABLES)
    statuses = rows(url, "SELECT status, finished_at IS NOT NULL FROM ingest_runs ORDER BY id")
    if killed_run == ["running"]:
        assert statuses == [("aborted", 1), ("ok", 1)]
    else:
        assert statuses[-1] == ("ok", 1)


def rows(url: str, sql: str) -> list[tuple]:
    engine = make_engine(url)
    with engine.connect() as conn:
        found = [tuple(r) for r in conn.execute(text(sql))]
    engine.dispose()
    return found


def test_a_killed_pool_worker_fails_only_its_cue_and_the_batch_goes_on(
    corpus, clean, tmp_path, monkeypatch, capsys
):
    victim = "Reel 1/1M02 Cue 1"
    pid_file = tmp_path / "victim.pid"

    def hang_on_victim(real):
        def hang(cue, *args, **kwargs):  # runs in the forked pool workers
            if cue.rel_path == victim:  # its stems may start on both workers at once
                written = tmp_path / f"pid.{os.getpid()}.tmp"
                written.write_text(str(os.getpid()))
                written.rename(pid_file)
                time.sleep(300)
            return real(cue, *args, **kwargs)

        return hang

    # A cue is computed whole or stem by stem (its stems on both workers, then its finish):
    # the victim's first task to start hangs and its worker is killed.
    for name in ("process_cue", "compute_stem", "finish_cue"):
        monkeypatch.setattr(compute, name, hang_on_victim(getattr(compute, name)))
    killed: list[int] = []

    def kill_the_victim() -> None:
        deadline = time.monotonic() + 120
        while not pid_file.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        pid = int(pid_file.read_text())
        assert pid in {p.pid for p in multiprocessing.active_children()}  # a real pool worker
        os.kill(pid, signal.SIGKILL)
        killed.append(pid)

    killer = threading.Thread(target=kill_the_victim)
    killer.start()
    url = f"sqlite:///{tmp_path / 'died.sqlite'}"
    code = main([str(corpus), str(SR), "--database-url", url, "--workers", "2", "--quiet"])
    killer.join(timeout=10)
    out = capsys.readouterr().out
    assert killed and code == 1
    message = "worker process died (signal 9) — out of memory?"
    assert "6 found, 5 ingested, 0 skipped (already stored), 1 failed" in out
    assert f"ERROR [ingest] {corpus / victim}: {message}" in out
    assert rows(
        url,
        "SELECT cue_path, file_path, stage, error_type, message FROM ingest_errors"
        " WHERE severity = 'error'",
    ) == [(victim, str(corpus / victim), "ingest", "WorkerDied", message)]
    assert rows(url, "SELECT status, cues_ingested, cues_failed FROM ingest_runs") == [
        ("failed", 5, 1)
    ]
    assert scalar(url, "SELECT COUNT(*) FROM cues") == 5  # each once: none lost or doubled
    assert all(not p.is_alive() for p in multiprocessing.active_children())

    monkeypatch.undo()
    again = run(corpus, url, workers=2)
    assert again.ok and (again.cues_ingested, again.cues_skipped) == (1, 5), again.problems
    assert content(url, CUE_TABLES) == content(clean, CUE_TABLES)


def test_a_dead_run_is_aborted_by_the_next_a_live_one_is_not_on_postgresql(corpus, pg_url):
    from kmidi_ingest import store
    from kmidi_ingest.claims import RunLock

    engine = make_engine(pg_url)
    run(corpus, pg_url, workers=1)  # the schema, and one finished run
    try:
        with RunLock(engine) as live:
            params = {"root": "/x", "sample_rate_hz": SR, "matcher": "fuzzy", "version": "t"}
            alive = store.start_run(engine, parameters={}, lock=live, **params)
            dead_lock = RunLock(engine)
            dead = store.start_run(engine, parameters={}, lock=dead_lock, **params)
            dead_lock.close()  # what a killed process's lost session does
            assert run(corpus, pg_url, workers=1).ok
            status = dict(rows(pg_url, "SELECT id, status FROM ingest_runs"))
            assert (status[alive], status[dead]) == ("running", "aborted")
        assert run(corpus, pg_url, workers=1).ok
        assert dict(rows(pg_url, "SELECT id, status FROM ingest_runs"))[alive] == "aborted"
    finally:
        engine.dispose()


def test_ctrl_c_stops_after_the_cues_in_flight_and_exits_130(tmp_path):
    corpus = make_corpus(tmp_path / "cues", 16, notes=40)
    url = f"sqlite:///{tmp_path / 'int.sqlite'}"
    proc = cli(
        str(corpus),
        str(SR),
        "--database-url",
        url,
        "--workers",
        "2",
        "--log-level",
        "INFO",
        start_new_session=True,  # its own process group, like a shell job
    )
    _lines_until(proc.stderr, "ingested:", 1, time.monotonic() + 60)
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the group, workers too
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted; finishing the cues in flight" in err
    assert "stopped after the cue in flight" in out and "16 found" in out
    stored = scalar(url, "SELECT COUNT(*) FROM cues")
    # Two workers hold at most a few cues (running + queued in the pool) when the flag is seen.
    assert 1 <= stored < 16, out
    assert scalar(url, "SELECT COUNT(*) FROM cues WHERE status <> 'complete'") == 0
    assert scalar(url, "SELECT status FROM ingest_runs") == "interrupted"
    assert scalar(url, "SELECT cues_ingested FROM ingest_runs") == stored
    again = run(corpus, url, workers=1)
    assert (again.cues_ingested, again.cues_skipped) == (16 - stored, stored)
    assert again.ok, again.problems
    assert scalar(url, "SELECT COUNT(DISTINCT rel_path) || '/' || COUNT(*) FROM cues") == "16/16"
    assert scalar(url, "SELECT COUNT(*) FROM midi_notes") == 16 * 60


def test_two_workers_give_the_same_database_as_one(corpus, clean, tmp_path):
    url = f"sqlite:///{tmp_path / 'two.sqlite'}"
    summary = run(corpus, url, workers=2)
    assert (summary.workers, summary.cues_ingested, summary.notes) == (2, 6, 6 * 600)
    assert content(url, TABLES) == content(clean, TABLES)


def test_stop_flag_in_process_pool_finishes_handed_out_cues_only(corpus, tmp_path):
    url = f"sqlite:///{tmp_path / 'stop.sqlite'}"
    stop = threading.Event()
    seen: list[str] = []

    def progress(cue: str, outcome: str) -> None:
        seen.append(outcome)
        stop.set()

    summary = run(corpus, url, workers=2, stop=stop, progress=progress)
    assert summary.interrupted and not summary.ok
    # 2 workers hold at most 2 running cues + 1 queued call each time the flag is checked.
    assert 1 <= summary.cues_ingested < 6
    assert counts(url)["cues"] == summary.cues_ingested == len(seen)


def test_every_run_is_recorded_with_parameters_version_timings_counts(corpus, clean):
    row = json.loads(scalar(clean, "SELECT parameters_json FROM ingest_runs"))
    assert (row["workers"], row["executor"], row["force"]) == (1, "local", False)
    assert scalar(clean, "SELECT version FROM ingest_runs") == "0.1.0"
    assert scalar(clean, "SELECT status FROM ingest_runs") == "ok"
    assert scalar(clean, "SELECT cues_found || '/' || cues_ingested FROM ingest_runs") == "6/6"
    assert scalar(clean, "SELECT elapsed_s > 0 AND finished_at >= started_at FROM ingest_runs")


def test_default_workers_is_the_cpu_count(make_cue, tmp_path):
    make_cue("1M01 Opening")
    summary = run(tmp_path / "cues", f"sqlite:///{tmp_path / 'w.sqlite'}", workers=None)
    assert summary.workers == (os.cpu_count() or 1)


def test_two_concurrent_runs_on_postgresql_never_duplicate_a_cue(corpus, clean, pg_url):
    procs = [
        cli(str(corpus), str(SR), "--database-url", pg_url, "--workers", "1", "--json")
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err for _, err in outputs]
    results = [json.loads(out) for out, _ in outputs]
    assert [p.returncode for p in procs] == [0, 0]
    assert sum(r["cues_ingested"] for r in results) == 6
    assert [r["cues_ingested"] + r["cues_skipped"] for r in results] == [6, 6]
    assert scalar(pg_url, "SELECT COUNT(DISTINCT rel_path) FROM cues") == 6
    assert content(pg_url, CUE_TABLES) == content(clean, CUE_TABLES)


@pytest.mark.parametrize("workers", [1, 2])
def test_concurrent_runs_on_postgresql_compute_each_cue_once(
    corpus, clean, pg_url, monkeypatch, workers
):
    computed: list[str] = []

    def counting(real):
        def count(cue, *args, **kwargs):
            computed.append(cue.rel_path)
            return real(cue, *args, **kwargs)

        return count

    # Counted where it is called: in this process (1 worker) or in the forked pool workers,
    # which report back through a pipe.
    reader, writer = os.pipe()

    def counting_in_pool(real):
        def count(cue, *args, **kwargs):
            os.write(writer, (cue.rel_path + "\n").encode())
            return real(cue, *args, **kwargs)

        return count

    # A cue is computed whole (process_cue) or stem by stem, then finished (finish_cue): once.
    for name in ("process_cue", "finish_cue"):
        wrap = counting if workers == 1 else counting_in_pool
        monkeypatch.setattr(compute, name, wrap(getattr(compute, name)))
    together = threading.Barrier(2)
    summaries = []

    def one_run() -> None:
        summaries.append(run(corpus, pg_url, workers=workers, on_start=lambda n: together.wait()))

    threads = [threading.Thread(target=one_run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    os.close(writer)
    with os.fdopen(reader) as pipe:
        computed += pipe.read().splitlines()
    assert len(summaries) == 2 and all(s.ok for s in summaries), [s.problems for s in summaries]
    assert len(computed) == len(set(computed)) == 6, computed  # no cue computed twice
    assert sum(s.cues_ingested for s in summaries) == 6
    assert sum(s.cues_elsewhere for s in summaries) == sum(s.cues_skipped for s in summaries)
    assert content(pg_url, CUE_TABLES) == content(clean, CUE_TABLES)


def test_claims_hold_across_sessions_and_vanish_with_them(pg_url, tmp_path):
    from kmidi_ingest.claims import CueClaims
    from kmidi_ingest.db import make_engine

    first, second = make_engine(pg_url), make_engine(pg_url)
    with CueClaims(first) as a, CueClaims(second) as b:
        assert a.shared and a.claim("Reel 1/1M01") and a.claim("Reel 1/1M01")  # re-entrant
        assert not b.claim("Reel 1/1M01") and b.claim("Reel 1/1M02")
        a.release("Reel 1/1M01")
        assert b.claim("Reel 1/1M01")
        assert not a.claim("Reel 1/1M02")
    with CueClaims(first) as a:  # b is closed: its claims went with its session
        assert a.claim("Reel 1/1M01") and a.claim("Reel 1/1M02")
    sqlite = make_engine(f"sqlite:///{tmp_path / 'c.sqlite'}")
    with CueClaims(sqlite) as c, CueClaims(sqlite) as d:  # one writer: nothing to claim
        assert not c.shared and c.claim("x") and d.claim("x")


def test_claims_in_batches_and_released_in_batches(pg_url):
    from kmidi_ingest import claims as claims_module
    from kmidi_ingest.claims import CueClaims
    from kmidi_ingest.db import make_engine

    first, second = make_engine(pg_url), make_engine(pg_url)
    paths = [f"Reel 9/9M{k:02d}" for k in range(40)]
    with CueClaims(first) as a, CueClaims(second) as b:
        assert b.claim(paths[3])
        granted = a.claim_many(paths + [paths[0]])  # a path twice: one lock, granted both times
        assert granted == [k != 3 for k in range(40)] + [True]
        assert b.claim_many(paths[:5]) == [False, False, False, True, False]
        batch = paths[5 : 5 + claims_module.RELEASE_BATCH]  # all of them a's
        for path in batch[:-1]:
            a.release_later(path)
        assert not b.claim(batch[0])  # released by the run, not yet on the server
        a.release_later(batch[-1])  # the 32nd: one round trip unlocks all of them
        assert b.claim_many(batch) == [True] * len(batch)
        assert not b.claim(paths[4]) and not b.claim(paths[-1])  # still a's
    with CueClaims(first) as a:  # both closed: every claim, released or pending, is gone
        assert all(a.claim_many(paths))


def test_claim_jobs_reads_what_is_stored_for_a_whole_batch(corpus, pg_url):
    from kmidi_ingest import discover
    from kmidi_ingest.batch.accounting import claim_jobs
    from kmidi_ingest.batch.compute import CueSpec
    from kmidi_ingest.claims import CueClaims
    from kmidi_ingest.db import make_engine

    summary = run(corpus, pg_url)
    assert summary.ok and summary.cues_ingested == 6
    engine = make_engine(pg_url)
    cues = discover.scan(corpus).cues
    spec = CueSpec(sample_rate_hz=SR)
    jobs = [(cue, "stale", None) for cue in cues]
    with CueClaims(engine) as claims:
        got = claim_jobs(claims, jobs, spec, force=False)
        # every cue is stored: each job comes back with its stored row, for a stale fingerprint
        assert [j is not None and j[2] is not None for j in got] == [True] * len(cues)
        assert {j[2].status for j in got if j is not None} == {"complete"}
        # with the fingerprints as stored, every cue is up to date: none is claimed
        fresh = [(cue, j[2].stat_fingerprint, None) for cue, j in zip(cues, got, strict=True)]
        assert claim_jobs(claims, fresh, spec, force=False) == [None] * len(cues)


def test_dask_local_cluster_gives_the_same_database(corpus, clean, pg_url):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(
        n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None
    ) as cluster:
        summary = run(corpus, pg_url, executor="dask", scheduler=cluster.scheduler_address)
    assert summary.ok, summary.problems
    assert (summary.executor, summary.cues_ingested) == ("dask", 6)
    assert content(pg_url, TABLES) == content(clean, TABLES)
    params = json.loads(scalar(pg_url, "SELECT parameters_json FROM ingest_runs"))
    assert params["scheduler"] == cluster.scheduler_address


def test_dask_refuses_sqlite_and_a_missing_scheduler(tmp_path, capsys):
    db = tmp_path / "d.sqlite"
    args = [str(tmp_path), "8000", "--database-url", f"sqlite:///{db}", "--executor", "dask"]
    assert main([*args, "--scheduler", "tcp://127.0.0.1:1"]) == 2
    err = capsys.readouterr().err
    assert "--executor dask needs a PostgreSQL database" in err and "SQLite" in err
    assert main(args) == 2
    assert "needs --scheduler tcp://HOST:PORT" in capsys.readouterr().err
    assert not db.exists()


def test_exit_codes_0_1_2(make_cue, tmp_path, capsys):
    cue = make_cue("1M01 Opening")
    url = f"sqlite:///{tmp_path / 'e.sqlite'}"
    root = str(tmp_path / "cues")
    assert main([root, "8000", "--database-url", url, "--quiet"]) == 0
    (cue / "MIDI" / "1M01 Opening.mid").write_bytes(b"MThd garbage")
    assert main([root, "8000", "--database-url", url, "--quiet"]) == 1
    assert main([root, "8000", "--database-url", url, "--workers", "0"]) == 2
    assert main([root, "8000", "--database-url", url, "--executor", "spark"]) == 2
    capsys.readouterr()


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("workers", [1, 2])
def test_audio_seconds_are_reported_block_by_block_from_every_worker(tmp_path, workers):
    root = tmp_path / "cues"
    for i in range(2):
        cue = root / f"1M0{i + 1} Long"
        notes = [(k * 480, k * 480 + 240, 60) for k in range(4)]
        write_midi(cue / "MIDI" / "x.mid", [note_track("Strings", notes)])
        for label in ("L", "R"):  # 20 s at 8 kHz: two read blocks of at most 131072 frames
            write_tone(cue / "Audio Files" / f"Strings.{label}.wav", seconds=20, sample_rate=8000)
        write_tone(cue / "Audio Files" / "Mix 6mx.wav", seconds=1, sample_rate=8000)
    reported: list[float] = []
    summary = run(
        root, f"sqlite:///{tmp_path / 'a.sqlite'}", workers=workers, audio_progress=reported.append
    )
    assert summary.ok and summary.cues_ingested == 2
    block, rest = 131072 / 8000, 20 - 131072 / 8000
    assert sorted(reported) == pytest.approx(sorted([block, rest, 1.0] * 2))
    assert sum(reported) == pytest.approx(summary.audio_s) == 42.0


def test_progress_bars_on_a_terminal_only_and_not_with_quiet(make_cue, tmp_path, monkeypatch):
    make_cue("1M01 Opening")
    root, url = str(tmp_path / "cues"), f"sqlite:///{tmp_path / 'p.sqlite'}"
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert main([root, "8000", "--database-url", url, "--workers", "1"]) == 0
    shown = terminal.getvalue()
    assert "cues: 100%" in shown and "1/1" in shown
    assert "audio: 3.00s" in shown  # Strings 1 s + Brass 1 s + 6mx 1 s
    quiet = _Terminal()
    monkeypatch.setattr(sys, "stderr", quiet)
    assert main([root, "8000", "--database-url", url, "--force", "--quiet"]) == 0
    assert quiet.getvalue() == ""


def test_every_ingest_option_is_documented_in_the_readme():
    from kmidi_ingest.cli import build_parser

    readme = (REPO / "README.md").read_text()
    options = [
        option
        for action in build_parser()._actions
        for option in action.option_strings
        if option.startswith("--") and option not in ("--help", "--version")
    ]
    assert {"--dry-run", "--executor", "--scheduler", "--workers"} <= set(options)
    assert [o for o in options if o not in readme] == []


def test_two_writer_threads_yield_the_outcomes_in_job_order(monkeypatch):
    from kmidi_ingest.batch import writer
    from kmidi_ingest.batch.reports import CueOutcome, Elsewhere

    class _Cue:
        def __init__(self, rel_path: str) -> None:
            self.rel_path = rel_path

    released: list[str] = []

    class _Claims:
        def release_later(self, rel_path: str) -> None:
            released.append(rel_path)

    gate = threading.Event()
    order: list[str] = []

    def write(engine, cue, known, computed, *, run_id, llm=None):
        if cue.rel_path == "a":
            gate.wait(5)  # the first cue's write finishes after the second's
        else:
            gate.set()
        order.append(cue.rel_path)
        return CueOutcome(rel_path=cue.rel_path, status="ingested")

    monkeypatch.setattr(writer, "write_outcome", write)
    jobs = [((_Cue(p), "fp", None), object()) for p in "abc"]
    jobs.insert(2, ((_Cue("x"), "fp", None), Elsewhere()))
    monkeypatch.setattr(writer, "writer_threads", lambda engine, llm: 2)
    got = list(writer.write_all(None, iter(jobs), _Claims(), run_id=1))  # type: ignore[arg-type]
    assert [o.rel_path for o in got] == ["a", "b", "x", "c"]
    assert [o.status for o in got] == ["ingested", "ingested", "elsewhere", "ingested"]
    assert order[:2] == ["b", "a"] and released == ["a", "b", "x", "c"]


_WARM_PROBE = """
import sys
from kmidi_ingest.batch import pool

def loaded():
    return sorted(name for name in pool._WARM_MODULES if name in sys.modules)

if __name__ == "__main__":
    p = pool.start_pool(1, audio={audio})
    try:
        here = loaded()  # loaded by this process before any worker is forked
        print(",".join(here) + ";" + ",".join(p._executor.submit(loaded).result(timeout=120)))
    finally:
        p.close()
"""


@pytest.mark.parametrize("audio", [True, False])
def test_a_midi_only_pool_does_not_load_the_audio_libraries(tmp_path, audio):
    # in a fresh interpreter (a forked worker would inherit what this test process loaded):
    # the warm-up loads scipy, soxr and blosc2 only when there is audio to compute, in this
    # process before the workers are forked, so they have them too
    script = tmp_path / "probe.py"
    script.write_text(_WARM_PROBE.format(audio=audio))
    out = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=180, check=True
    ).stdout.strip()
    from kmidi_ingest.batch.pool import _WARM_MODULES

    every = ",".join(sorted(_WARM_MODULES)) if audio else ""
    assert out == f"{every};{every}"


def test_staged_midi_only_cues_go_on_computing_behind_a_long_one(tmp_path, monkeypatch):
    # Results are written in job order; a long first cue used to leave both workers idle once
    # the three cues after it were done. Staged MIDI-only cues hold only a path while they wait,
    # so up to pool.STAGED_WINDOW per worker are computed meanwhile.
    from kmidi_ingest.batch import pool

    root = tmp_path / "lmd"
    for k in range(14):
        notes = [(i * 120, i * 120 + 100, 60 + (i + k) % 12) for i in range(20)]
        write_midi(root / "a" / f"{k:02d}.mid", [note_track(f"Piano {k}", notes)])
    finished = tmp_path / "finished"
    finished.mkdir()
    real = compute.process_cue

    def slow_first(cue, *args, **kwargs):  # runs in the forked pool workers
        if cue.rel_path.endswith("00.mid"):
            time.sleep(4)
        result = real(cue, *args, **kwargs)
        (finished / Path(cue.rel_path).name).write_text(repr(time.monotonic()))
        return result

    monkeypatch.setattr(compute, "process_cue", slow_first)
    summary = ingest(root, SR, database_url=f"sqlite:///{tmp_path / 'w.sqlite'}", workers=2)
    assert summary.ok and summary.cues_ingested == 14, summary.problems
    done = {p.name: float(p.read_text()) for p in finished.iterdir()}
    before_first = sorted(name for name, t in done.items() if t < done["00.mid"])
    assert len(before_first) == 13  # all the others: 13 ≤ 2 workers × STAGED_WINDOW - 1
    assert 2 * pool.STAGED_WINDOW - 1 >= 13
