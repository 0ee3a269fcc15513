"""A cue's stems as pool tasks: the same result as the whole cue, spread over the workers; the
schema check that skips Alembic at the head."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np

from kmidi_ingest import ingest, migrate
from kmidi_ingest.batch import compute
from kmidi_ingest.batch.compute import CueSpec
from kmidi_ingest.db import make_engine
from kmidi_ingest.discover import scan
from kmidi_ingest.schema_head import at_head, shipped_head
from tests.dbutil import CUE_TABLES, content, scalar

SR = 8000


def _one_cue(root: Path):
    (cue,) = scan(root).cues
    return cue


TIMINGS = {"elapsed_s", "compute_s", "compute_cpu_s"}  # seconds measured, not computed


def _same(a, b) -> None:
    """Two CueResults equal field by field (arrays by value), the times measured aside."""
    for f in dataclasses.fields(a):
        if f.name in TIMINGS:
            continue
        x, y = getattr(a, f.name), getattr(b, f.name)
        assert _plain(x) == _plain(y), f.name


def _plain(value):
    if isinstance(value, float):
        return value.hex()  # NaN equal to NaN, -0.0 unequal to 0.0
    if isinstance(value, np.ndarray):
        return (value.dtype.str, value.shape, value.tobytes())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = [f.name for f in dataclasses.fields(value) if f.name not in TIMINGS]
        return tuple((name, _plain(getattr(value, name))) for name in fields)
    if isinstance(value, list | tuple):
        return tuple(_plain(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _plain(v)) for k, v in value.items()))
    return value


def test_stem_by_stem_equals_the_whole_cue_bad_stem_included(make_cue, tmp_path):
    cue_dir = make_cue()
    # A cut-off brass file: that stem fails (its problem recorded), the others are stored.
    brass = cue_dir / "Audio Files" / "1M01 Brass.wav"
    brass.write_bytes(brass.read_bytes()[:2000])
    cue = _one_cue(tmp_path / "cues")
    spec = CueSpec(sample_rate_hz=SR)
    assert compute.splits_into_stems(cue, None) and len(cue.groups) == 3
    assert not compute.splits_into_stems(cue, "a stored fingerprint")

    whole = compute.process_cue(cue, spec, stat_fingerprint="s")
    stems = [compute.compute_stem(cue, k, spec) for k in range(len(cue.groups))]
    split = compute.finish_cue(cue, spec, stems, stat_fingerprint="s")

    _same(whole, split)
    assert [s.data is None for s in stems] == [g.name == "Brass" for g in cue.groups]
    assert any("Brass" in p.path and p.severity == "error" for p in split.problems)
    assert len(split.stems) == 1 and len(split.mixes) == 1
    assert split.elapsed_s >= sum(s.elapsed_s for s in stems) > 0


def test_files_gone_since_the_walk_are_reported_in_the_same_order(make_cue, tmp_path):
    cue_dir = make_cue()
    cue = _one_cue(tmp_path / "cues")
    for name in ("1M01 Strings.R.wav", "1M01 6mx.C.wav"):  # unreadable now: hashing fails
        (cue_dir / "Audio Files" / name).unlink()
    spec = CueSpec(sample_rate_hz=SR)
    whole = compute.process_cue(cue, spec, stat_fingerprint="s")
    stems = [compute.compute_stem(cue, k, spec) for k in range(len(cue.groups))]
    _same(whole, compute.finish_cue(cue, spec, stems, stat_fingerprint="s"))
    assert [p.error_type for p in whole.problems if p.error_type == "UnreadableFile"] == [
        "UnreadableFile"
    ] * 2


def test_one_cue_on_two_workers_spreads_its_stems_and_stores_the_same_rows(
    make_cue, tmp_path, monkeypatch
):
    make_cue()
    root = tmp_path / "cues"
    serial = f"sqlite:///{tmp_path / 'serial.sqlite'}"
    assert ingest(root, SR, database_url=serial, workers=1).ok

    reader, writer = os.pipe()
    real = compute.compute_stem

    def recording(cue, index, *args, **kwargs):  # runs in the forked pool workers
        import time

        time.sleep(0.5)  # long enough for the other worker to take the next stem
        os.write(writer, f"{os.getpid()} {index}\n".encode())
        return real(cue, index, *args, **kwargs)

    monkeypatch.setattr(compute, "compute_stem", recording)
    pooled = f"sqlite:///{tmp_path / 'pooled.sqlite'}"
    summary = ingest(root, SR, database_url=pooled, workers=2)
    os.close(writer)
    with os.fdopen(reader) as pipe:
        tasks = [line.split() for line in pipe.read().splitlines()]
    assert summary.ok and summary.cues_ingested == 1, summary.problems
    assert sorted(int(k) for _, k in tasks) == [0, 1, 2]  # each stem computed once
    assert len({pid for pid, _ in tasks}) == 2  # on both workers
    assert content(pooled, CUE_TABLES) == content(serial, CUE_TABLES)


def test_an_unchanged_cue_is_hashed_whole_not_computed_again(make_cue, tmp_path, monkeypatch):
    """A cue whose file was touched but not changed: the whole-cue task hashes first and finds
    it unchanged, so no stem task runs."""
    cue_dir = make_cue()
    root = tmp_path / "cues"
    url = f"sqlite:///{tmp_path / 'k.sqlite'}"
    assert ingest(root, SR, database_url=url, workers=2).cues_ingested == 1
    path = next(cue_dir.rglob("*.wav"))
    os.utime(path, (path.stat().st_atime, path.stat().st_mtime + 10))

    def no_stem(*_args, **_kwargs):  # would run in a forked pool worker and fail the cue
        raise AssertionError("an unchanged cue was decoded")

    monkeypatch.setattr(compute, "compute_stem", no_stem)
    again = ingest(root, SR, database_url=url, workers=2)
    assert again.ok and (again.cues_ingested, again.cues_skipped) == (0, 1), again.problems
    assert scalar(url, "SELECT COUNT(*) FROM cues") == 1


def test_the_head_is_read_from_the_scripts_as_alembic_reads_it(tmp_path):
    assert shipped_head() == migrate.head_revision()
    engine = make_engine(f"sqlite:///{tmp_path / 'h.sqlite'}")
    try:
        assert not at_head(engine)  # a new database: no version table
        migrate.upgrade(engine)
        assert at_head(engine)
        history = migrate.history()
        migrate.downgrade(engine, history[-2].revision)
        assert not at_head(engine)
    finally:
        engine.dispose()


def test_scripts_that_are_not_one_chain_have_no_head(tmp_path):
    def script(name: str, revision: str, down: str | None) -> None:
        down_text = "None" if down is None else f'"{down}"'
        (tmp_path / name).write_text(
            f'revision: str = "{revision}"\ndown_revision: str | None = {down_text}\n'
        )

    script("a.py", "a", None)
    script("b.py", "b", "a")
    assert shipped_head(tmp_path) == "b"
    script("c.py", "c", "a")  # a branch: two heads
    assert shipped_head(tmp_path) is None
    (tmp_path / "c.py").write_text('revision = "c"\ndown_revision = ("a", "b")\n')  # a merge
    assert shipped_head(tmp_path) is None
