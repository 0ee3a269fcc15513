"""Large results between the pool's processes through shared-memory files."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from kmidi_ingest import ingest
from kmidi_ingest.batch import pool, shipping
from kmidi_ingest.batch.shipping import Shipped
from tests.dbutil import CUE_TABLES, content


@dataclasses.dataclass(frozen=True)
class _Outcome:
    name: str
    values: np.ndarray
    curve: np.ndarray | None
    chunks: tuple[bytes, ...]


def _outcome() -> _Outcome:
    rng = np.random.default_rng(5)
    return _Outcome(
        name="Strings",
        values=rng.normal(size=(128, 900)).astype(np.float16),
        curve=np.asfortranarray(rng.normal(size=(16, 40)).astype(np.float32)),
        chunks=(b"\x00" * 1000, bytes(range(256))),
    )


def test_an_object_comes_back_equal_with_writable_arrays(tmp_path):
    sent = _outcome()
    shipped = shipping.ship(sent, str(tmp_path))
    assert isinstance(shipped, Shipped) and Path(shipped.path).parent == tmp_path
    assert os.path.getsize(shipped.path) == shipped.nbytes > sent.values.nbytes
    got = shipping.received(shipped)
    assert not Path(shipped.path).exists()  # removed once loaded; the arrays stay valid
    assert got.name == sent.name and got.chunks == sent.chunks
    assert got.values.dtype == np.float16 and np.array_equal(got.values, sent.values)
    assert got.curve is not None and np.array_equal(got.curve, sent.curve)
    assert got.curve.flags.f_contiguous
    got.values[0, 0] = 7.0  # a private copy-on-write mapping: writable, nothing written back
    assert got.values[0, 0] == 7.0 and sent.values[0, 0] != 7.0


def test_a_file_can_be_loaded_again_until_it_is_discarded(tmp_path):
    shipped = shipping.ship(_outcome(), str(tmp_path))
    first, second = shipping.unship(shipped), shipping.unship(shipped)
    assert np.array_equal(first.values, second.values)
    shipping.discard(shipped)
    shipping.discard(shipped)  # twice: nothing to do
    shipping.discard("not shipped")
    assert list(tmp_path.iterdir()) == []


def test_an_unwritable_folder_sends_the_object_itself(tmp_path):
    sent = _outcome()
    assert shipping.ship(sent, str(tmp_path / "missing")) is sent
    assert shipping.received(sent) is sent


def test_a_truncated_file_is_an_error_naming_it(tmp_path):
    shipped = shipping.ship(_outcome(), str(tmp_path))
    with open(shipped.path, "r+b") as handle:
        handle.truncate(shipped.nbytes - 10)
    with pytest.raises(OSError, match=f"{shipped.path}: {shipped.nbytes - 10} bytes"):
        shipping.received(shipped)
    assert not Path(shipped.path).exists()


def test_the_folders_of_processes_that_are_gone_are_removed(tmp_path):
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    gone = tmp_path / f"{shipping.PREFIX}{done.stdout.strip()}-abc"
    (gone / "sub").mkdir(parents=True)
    (gone / "x.pickle").write_bytes(b"x")
    alive = tmp_path / f"{shipping.PREFIX}{os.getpid()}-def"
    alive.mkdir()
    other = tmp_path / "kmidi-something-else"
    other.mkdir()
    mine = Path(shipping.ship_folder(tmp_path))
    assert not gone.exists() and alive.is_dir() and other.is_dir() and mine.is_dir()
    assert mine.name.startswith(f"{shipping.PREFIX}{os.getpid()}-")


class _Pool:
    def release(self, slot, future):
        pass


class _Group:
    files = ("x.wav",)


class _Source:
    groups = (_Group(), _Group())


def test_a_cue_removes_its_stems_files_once_done(tmp_path):
    files = [shipping.ship(_outcome(), str(tmp_path)) for _ in range(2)]
    cue = pool._Cue((_Source(), "fp", None), _Pool(), stems=2)  # type: ignore[arg-type]
    for key, shipped in enumerate(files):
        cue.futures[key] = (key, None)
        cue.done(key, shipped)
    assert all(Path(f.path).exists() for f in files)  # the finish still needs them
    whole = shipping.ship(_outcome(), str(tmp_path))
    cue.futures[pool._WHOLE] = (9, None)
    cue.done(pool._WHOLE, whole)
    assert isinstance(cue.result, _Outcome) and cue.result.name == "Strings"
    assert list(tmp_path.iterdir()) == []


def test_a_two_worker_ingest_ships_its_stems_and_leaves_no_file(make_cue, tmp_path, monkeypatch):
    make_cue()
    root = tmp_path / "cues"
    serial = f"sqlite:///{tmp_path / 'serial.sqlite'}"
    assert ingest(root, 8000, database_url=serial, workers=1).ok
    base = tmp_path / "shm"
    base.mkdir()
    monkeypatch.setattr(shipping, "SHARED_MEMORY", base)
    reader, writer = os.pipe()
    ship = shipping.ship

    def recording(value, folder):  # runs in the forked pool workers
        out = ship(value, folder)
        assert isinstance(out, Shipped) and Path(folder).parent == base
        os.write(writer, f"{type(value).__name__}\n".encode())
        return out

    monkeypatch.setattr(shipping, "ship", recording)
    pooled = f"sqlite:///{tmp_path / 'pooled.sqlite'}"
    summary = ingest(root, 8000, database_url=pooled, workers=2)
    os.close(writer)
    with os.fdopen(reader) as pipe:
        kinds = sorted(pipe.read().split())
    assert summary.ok and summary.cues_ingested == 1, summary.problems
    assert kinds == ["CueResult", "StemOutcome", "StemOutcome", "StemOutcome"]
    assert content(pooled, CUE_TABLES) == content(serial, CUE_TABLES)
    assert list(base.iterdir()) == []  # every file and the folder removed with the pool


def test_a_failed_cue_removes_its_stems_files(tmp_path):
    cue = pool._Cue((_Source(), "fp", None), _Pool(), stems=2)  # type: ignore[arg-type]
    cue.futures[0] = (0, None)
    cue.done(0, shipping.ship(_outcome(), str(tmp_path)))
    assert len(list(tmp_path.iterdir())) == 1
    cue.fail(RuntimeError("the other stem's worker failed"))
    assert list(tmp_path.iterdir()) == [] and isinstance(cue.result, RuntimeError)
