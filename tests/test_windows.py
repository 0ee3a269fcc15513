"""Training windows: mel slices bit-exact, piano rolls against an independent frame computation,
splits per cue, edges and filters, the shard export and the torch wrapper."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import create_engine, select

from kmidi_ingest import models as m
from kmidi_ingest.store import read_feature
from kmidi_ingest.window_export import export_windows
from kmidi_ingest.windowing import (
    ONSET,
    SUSTAIN,
    VELOCITY,
    WindowError,
    assign_split,
    note_frames,
    windows,
)
from tests.synth import SR, render, rhythm, write_stem, write_track_midi

SECONDS = 4.0


def _cue(root: Path, name: str, seed: int) -> Path:
    """A cue whose ``Piano`` and ``Bass`` tracks were rendered into same-named stems, plus a mix."""
    piano, bass = rhythm(seed, seconds=SECONDS), rhythm(seed + 100, seconds=SECONDS)
    bass = [(s, p - 24) for s, p in bass]
    cue = root / name
    write_track_midi(cue / "MIDI" / f"{name}.mid", {"Piano": piano, "Bass": bass})
    audio = cue / "Audio Files"
    a, b = render(piano, seconds=SECONDS), render(bass, seconds=SECONDS)
    write_stem(audio / "Piano.wav", a)
    write_stem(audio / "Bass.wav", b)
    write_stem(audio / "Cue 6mx.wav", 0.5 * (a + b))
    return cue


def _ingest(root: Path, url: str) -> None:
    from kmidi_ingest import ingest

    summary = ingest(root, SR, database_url=url, workers=1)
    assert summary.ok, summary.problems


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> str:
    root = tmp_path_factory.mktemp("cues")
    for i in range(4):
        _cue(root, f"1M0{i} Take", seed=i)
    url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'w.sqlite'}"
    _ingest(root, url)
    return url


def _expected_roll(notes: list[tuple[int, int, float, float]], start: int, size: int, rate: float):
    """The roll of ``notes`` (pitch, velocity, start_s, end_s) on frames start..start+size,
    computed note by note from the frame rule in plain Python."""
    roll = np.zeros((3, 128, size), dtype=np.uint8)
    for pitch, velocity, start_s, end_s in notes:
        onset = math.floor(start_s * rate + 0.5)
        end = max(math.floor(end_s * rate + 0.5), onset + 1)
        for k in range(onset, end):
            if start <= k < start + size:
                roll[SUSTAIN, pitch, k - start] = 1
                roll[VELOCITY, pitch, k - start] = max(roll[VELOCITY, pitch, k - start], velocity)
        if start <= onset < start + size:
            roll[ONSET, pitch, onset - start] = 1
    return roll


def test_every_window_matches_the_stored_features_and_the_notes(db: str) -> None:
    engine = create_engine(db)
    seen = 0
    with engine.connect() as conn:
        for w in windows(db, window_s=1.0, hop_s=0.5):
            assert w.kind == "stem"
            stored = read_feature(conn, w.feature_id)
            rate = w.sample_rate_hz / w.hop_length
            assert w.frame_rate_hz == rate == SR / 512
            size = w.mask.shape[0]
            assert size == round(1.0 * rate)
            valid = w.valid_frames
            assert w.log_mel.dtype == np.float16
            expected = stored[:, w.start_frame : w.start_frame + valid]
            assert np.array_equal(w.log_mel[:, :valid].view(np.uint16), expected.view(np.uint16))
            notes = conn.execute(
                select(
                    m.MidiNote.pitch, m.MidiNote.velocity, m.MidiNote.start_s, m.MidiNote.end_s
                ).where(m.MidiNote.track_id == w.part["track_id"])
            ).all()
            want = _expected_roll([tuple(n) for n in notes], w.start_frame, size, rate)
            want[:, :, valid:] = 0
            assert np.array_equal(w.roll, want)
            assert w.note_count == int(want[ONSET].sum())
            assert w.part["name"] == w.stem_name  # Piano ↔ Piano, Bass ↔ Bass
            seen += 1
    # 4 cues x 2 stems; 4.0 s at 31.25 frames/s = 125 frames; windows of 31 frames every 16.
    n_frames = math.ceil(SECONDS * SR / 512) + 1
    per_stem = len(range(0, n_frames - 31 + 1, 16)) + (1 if (n_frames - 31) % 16 else 0)
    assert seen == 4 * 2 * per_stem


def test_a_note_halfway_between_two_frame_centres_falls_in_the_later_frame() -> None:
    rate = 32.0  # frame centres at k / 32 s: every value below is exact in binary
    halfway, before, after = 3.5 / rate, 3.49 / rate, 3.51 / rate
    onset, end = note_frames(
        np.array([halfway, before, after, 1.0]), np.array([halfway, 0.5, 0.5, 1.0]),
        frame_rate_hz=rate,
    )  # fmt: skip
    assert onset.tolist() == [4, 3, 4, 32]
    assert end.tolist() == [5, 16, 16, 33]  # a zero-length note sounds in its onset frame


def test_the_last_partial_window_is_padded_with_a_mask_or_dropped(db: str) -> None:
    padded = [w for w in windows(db, window_s=3.0, hop_s=3.0, cues=["1M00 Take"])]
    assert [w.start_frame for w in padded] == [0, 94] * 2
    last = padded[1]
    n_frames = math.ceil(SECONDS * SR / 512) + 1
    assert last.valid_frames == n_frames - 94
    assert last.mask.tolist() == [True] * last.valid_frames + [False] * (94 - last.valid_frames)
    floor = np.float16(10 * math.log10(1e-10))
    assert np.all(last.log_mel[:, last.valid_frames :] == floor)
    assert not last.roll[:, :, last.valid_frames :].any()
    dropped = [w.start_frame for w in windows(db, window_s=3.0, cues=["1M00 Take"], last="drop")]
    assert dropped == [0, 0]
    whole = list(windows(db, window_s=60.0, cues=["1m00 take"]))  # names: case-insensitive
    assert [w.valid_frames for w in whole] == [n_frames, n_frames]


def test_splits_are_per_cue_reproducible_and_stable_when_cues_are_added(
    tmp_path: Path,
) -> None:
    keys = [f"Reel {i // 10}/{i}M01" for i in range(2000)]
    split = {k: assign_split(k, seed=7) for k in keys}
    share = {s: sum(1 for v in split.values() if v == s) / len(keys) for s in set(split.values())}
    assert abs(share["train"] - 0.8) < 0.03 and abs(share["test"] - 0.1) < 0.03
    assert {k: assign_split(k, seed=7) for k in keys[:50]} == {k: split[k] for k in keys[:50]}
    assert [assign_split(k, seed=8) for k in keys] != list(split.values())
    assert {assign_split(k, splits=(0, 0, 1)) for k in keys[:20]} == {"test"}

    root = tmp_path / "cues"
    for i in range(5):
        _cue(root, f"2M0{i} Take", seed=10 + i)
    url = f"sqlite:///{tmp_path / 's.sqlite'}"
    _ingest(root, url)
    args = {"window_s": 1.0, "splits": (0.4, 0.3, 0.3), "seed": 3}
    first = [(w.window_id, w.cue_path, w.split) for w in windows(url, **args)]
    assert first == [(w.window_id, w.cue_path, w.split) for w in windows(url, **args)]
    assert len({w for w, _, _ in first}) == len(first)
    per_cue: dict[str, set[str]] = {}
    for _, cue, s in first:
        per_cue.setdefault(cue, set()).add(s)
    assert all(len(s) == 1 for s in per_cue.values())
    for i in range(5, 8):
        _cue(root, f"2M0{i} Take", seed=10 + i)
    _ingest(root, url)
    after = {(w.window_id, w.cue_path, w.split) for w in windows(url, **args)}
    assert set(first) <= after  # no old window moved or changed
    only = [w.split for w in windows(url, **args, split="validation")]
    assert set(only) <= {"validation"}


def test_mix_windows_hold_the_roll_of_every_part(db: str) -> None:
    mixes = list(windows(db, window_s=1.0, mixes=True, stems=False, cues=["1M01 Take"]))
    assert mixes and {w.kind for w in mixes} == {"mix"}
    stems = list(windows(db, window_s=1.0, cues=["1M01 Take"]))
    for w in mixes:
        assert w.part is None and len(w.mix_parts) == 2
        parts = [s for s in stems if s.start_frame == w.start_frame]
        union = np.maximum(parts[0].roll, parts[1].roll)
        assert np.array_equal(w.roll, union)


def test_filters_frame_rate_and_parameters(db: str) -> None:
    assert {w.stem_name for w in windows(db, window_s=1.0, categories=["bass"])} == {"Bass"}
    all_windows = list(windows(db, window_s=1.0))
    dense = list(windows(db, window_s=1.0, min_notes=3))
    assert dense and all(w.note_count >= 3 for w in dense)
    assert len(dense) == sum(1 for w in all_windows if w.note_count >= 3)
    with pytest.raises(WindowError) as err:
        next(windows(db, window_s=1.0, frame_rate_hz=100.0))
    assert str(err.value) == (
        "stem 'Bass' has features at 31.25 frames/s (16000 Hz / hop 512), not the 100 frames/s "
        "of this iteration; pass cues= or frame_rate_hz= to choose, or re-ingest at one sample rate"
    )
    for bad, message in (
        ({"window_s": 0}, "window_s must be a positive number of seconds, got 0"),
        ({"window_s": 1, "hop_s": -1}, "hop_s must be a positive number of seconds, got -1"),
        ({"window_s": 1, "splits": (0.5, 0.5, 0.5)}, "splits must add up to 1, got (0.5, 0.5, 0.5) (sum 1.5)"),
        ({"window_s": 1, "split": "dev"}, "split 'dev' is not one of train, validation, test"),
    ):  # fmt: skip
        with pytest.raises(WindowError) as err:
            next(windows(db, **bad))
        assert str(err.value) == message


def test_export_writes_shards_readable_with_numpy_alone(db: str, tmp_path: Path) -> None:
    out = tmp_path / "win"
    summary = export_windows(
        db, out, window_s=1.0, hop_s=0.5, splits=(0.5, 0.25, 0.25), seed=1, shard_mb=0.2,
        command=["kmidi-ingest", "export", str(out)],
    )  # fmt: skip
    manifest = json.loads((out / "manifest.json").read_text())
    expected = list(windows(db, window_s=1.0, hop_s=0.5, splits=(0.5, 0.25, 0.25), seed=1))
    assert summary.windows == len(expected) == sum(s["windows"] for s in manifest["shards"])
    assert summary.shards > 3  # 0.2 MB shards
    assert manifest["feature"]["frame_rate_hz"] == SR / 512
    assert manifest["command"] == ["kmidi-ingest", "export", str(out)]
    assert manifest["cue_splits"] == {w.cue_path: w.split for w in expected}
    by_id = {w.window_id: w for w in expected}
    read = 0
    for shard in manifest["shards"]:
        with np.load(out / shard["path"]) as data:
            assert data["log_mel"].dtype == np.float16
            for i, wid in enumerate(data["window_id"]):
                w = by_id[str(wid)]
                assert shard["path"].startswith(w.split + "/")
                assert np.array_equal(data["log_mel"][i].view(np.uint16), w.log_mel.view(np.uint16))
                assert np.array_equal(data["roll"][i], w.roll)
                assert data["part_name"][i] == w.part["name"]
                read += 1
    assert read == len(expected)
    with pytest.raises(WindowError):
        export_windows(db, out, window_s=1.0)


TORCH_SNIPPET = """
import torch
from kmidi_ingest import windows

class Windows(torch.utils.data.IterableDataset):
    def __init__(self, url, **kw):
        self.url, self.kw = url, kw

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        n, i = (1, 0) if info is None else (info.num_workers, info.id)
        for k, w in enumerate(windows(self.url, **self.kw)):
            if k % n == i:
                yield torch.from_numpy(w.log_mel.astype("float32")), torch.from_numpy(w.roll)
"""


def test_the_readme_torch_snippet_shards_across_workers_without_duplicates(db: str) -> None:
    torch = pytest.importorskip("torch", reason="torch is not installed (optional)")
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert TORCH_SNIPPET.strip() in readme
    scope: dict = {}
    exec(TORCH_SNIPPET, scope)
    dataset = scope["Windows"](db, window_s=1.0)
    loader = torch.utils.data.DataLoader(dataset, batch_size=None, num_workers=2)
    got = sorted(tuple(mel.flatten()[:8].tolist()) + (roll.sum().item(),) for mel, roll in loader)
    want = sorted(
        tuple(w.log_mel.astype("float32").flatten()[:8].tolist()) + (int(w.roll.sum()),)
        for w in windows(db, window_s=1.0)
    )
    assert got == want


def test_the_export_command_writes_the_windows_and_records_itself(db: str, tmp_path: Path, capsys):
    from kmidi_ingest import cli

    out = tmp_path / "cli-win"
    argv = ["export", str(out), "--format", "windows", "--window", "1.0", "--hop", "0.5",
            "--split", "0.5,0.25,0.25", "--seed", "1", "--database-url", db]  # fmt: skip
    assert cli.main(argv) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["command"] == ["kmidi-ingest", *argv]
    expected = list(windows(db, window_s=1.0, hop_s=0.5, splits=(0.5, 0.25, 0.25), seed=1))
    assert sum(s["windows"] for s in manifest["shards"]) == len(expected)
    assert capsys.readouterr().out.startswith(f"wrote {len(expected)} windows (")
    assert (
        cli.main(["export", str(tmp_path / "x"), "--format", "windows", "--database-url", db]) == 2
    )
    assert capsys.readouterr().err == (
        "kmidi-ingest export: --format windows needs --window SECONDS\n"
    )
    assert cli.main([*argv[:1], str(tmp_path / "y"), *argv[2:6], "--split", "0.5,0.6,0.1"]) == 2
    assert "expected three fractions adding up to 1, e.g. 0.8,0.1,0.1, got '0.5,0.6,0.1'" in (
        capsys.readouterr().err
    )
