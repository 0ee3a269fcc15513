"""``export --format windows``: the windows of :func:`kmidi_ingest.windowing.windows` as ``.npz``
shards with a manifest, readable with numpy alone.

Layout of ``OUT/``::

    manifest.json                    parameters, frame rate, split of every cue, counts, shards
    train/shard-00000.npz ...        one folder per split; a shard holds at most ``shard_mb`` MB
    validation/...  test/...

Each shard holds, for its ``N`` windows (arrays stacked on the first axis):
``log_mel float16[N, n_mels, frames]`` (bit-exact stored values), ``roll uint8[N, 3, 128,
frames]`` (onset, sustain, velocity planes), ``mask bool[N, frames]``, and per window
``window_id``, ``kind``, ``cue_path``, ``stem_name``, ``part_name`` (``""`` for mixes),
``category``, ``program`` (``-1``: none), ``is_drum``, ``verified`` (``-1`` unknown, ``0``,
``1``), ``track_id`` (``-1`` for mixes), ``start_frame``, ``start_s``, ``note_count``.

Memory holds at most ``shard_mb`` of windows (all splits together) and one stem at a time,
whatever the size of the database. The folder is
written as ``.OUT.partial`` and renamed when complete.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import Engine

from .windowing import SPLIT_NAMES, Window, WindowError, windows

DEFAULT_SHARD_MB = 256.0
WINDOWS_FORMAT_VERSION = 1


@dataclass(frozen=True, kw_only=True)
class WindowExportSummary:
    out: Path
    manifest: Path
    windows: int
    shards: int
    counts: dict[str, dict[str, int]] = field(default_factory=dict)


def export_windows(
    database: str | Engine,
    out: str | Path,
    *,
    window_s: float,
    hop_s: float | None = None,
    splits: Sequence[float] = (0.8, 0.1, 0.1),
    seed: int = 0,
    shard_mb: float = DEFAULT_SHARD_MB,
    overwrite: bool = False,
    command: Sequence[str] = (),
    progress: Callable[[int], None] | None = None,
    **options: Any,
) -> WindowExportSummary:
    """Write the windows of ``database`` to the folder ``out``; see the module docstring.

    ``options`` are passed to :func:`~kmidi_ingest.windowing.windows` (``categories``, ``cues``,
    ``verified_only``, ``min_notes``, ``mixes``, ``last``, ``skip_silent``, ...). ``progress`` is
    called with the number of windows written since its last call. ``command`` is recorded in
    the manifest (the CLI passes its argv).
    """
    from .db import make_engine
    from .migrate import current_revision
    from .version import __version__

    if not shard_mb > 0:
        raise WindowError(f"shard_mb must be a positive number of megabytes, got {shard_mb!r}")
    out = Path(out)
    if out.exists() and not overwrite:
        raise WindowError("already exists; choose another name or overwrite", path=out)
    if not out.parent.is_dir():
        raise WindowError("output folder does not exist", path=out.parent)
    engine = database if isinstance(database, Engine) else make_engine(database)
    partial = out.with_name(f".{out.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    writers = {name: _ShardWriter(partial / name, shard_mb) for name in SPLIT_NAMES}
    cue_splits: dict[str, str] = {}
    feature: dict[str, Any] | None = None
    try:
        revision = current_revision(engine)
        for window in windows(
            engine, window_s=window_s, hop_s=hop_s, splits=splits, seed=seed, **options
        ):
            if feature is None:
                feature = _feature_parameters(engine, window)
            cue_splits[window.cue_path] = window.split
            writers[window.split].add(window)
            # One budget for all splits: the windows held in memory never pass shard_mb.
            if sum(w.size for w in writers.values()) > writers[window.split].limit:
                max(writers.values(), key=lambda w: w.size).flush()
            if progress is not None:
                progress(1)
        for writer in writers.values():
            writer.flush()
        counts = {
            name: {
                "windows": w.total,
                "cues": sum(1 for s in cue_splits.values() if s == name),
                "shards": len(w.shards),
            }
            for name, w in writers.items()
        }
        manifest = {
            "windows_format_version": WINDOWS_FORMAT_VERSION,
            "kmidi_ingest_version": __version__,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "command": list(command),
            "source_database_revision": revision,
            "feature": feature,
            "window": {"window_s": window_s, "hop_s": window_s if hop_s is None else hop_s},
            "splits": dict(zip(SPLIT_NAMES, (float(s) for s in splits), strict=True)),
            "seed": seed,
            "options": {k: list(v) if isinstance(v, tuple) else v for k, v in options.items()},
            "cue_splits": dict(sorted(cue_splits.items())),
            "counts": counts,
            "shards": [s for w in writers.values() for s in w.shards],
            "arrays": {
                "log_mel": "float16[N, n_mels, frames], dB as stored",
                "roll": "uint8[N, 3, 128, frames]: 0 onset, 1 sustain, 2 velocity",
                "mask": "bool[N, frames]: false on padding",
            },
        }
        (partial / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", "utf-8")
        if out.exists():
            shutil.rmtree(out)
        os.replace(partial, out)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    finally:
        if engine is not database:
            engine.dispose()
    return WindowExportSummary(
        out=out,
        manifest=out / "manifest.json",
        windows=sum(w.total for w in writers.values()),
        shards=sum(len(w.shards) for w in writers.values()),
        counts=counts,
    )


def _feature_parameters(engine: Engine, window: Window) -> dict[str, Any]:
    from sqlalchemy import select

    from . import models as m

    with engine.connect() as conn:
        row = conn.execute(
            select(m.AudioFeature.__table__).where(m.AudioFeature.id == window.feature_id)
        ).one()
    return {
        "kind": row.kind,
        "sample_rate_hz": row.sample_rate_hz,
        "n_fft": row.n_fft,
        "hop_length": row.hop_length,
        "n_mels": row.n_mels,
        "fmin_hz": row.fmin_hz,
        "fmax_hz": row.fmax_hz,
        "db_ref": row.db_ref,
        "db_amin": row.db_amin,
        "centered": row.centered,
        "frame_rate_hz": window.frame_rate_hz,
        "frames_per_window": int(window.mask.shape[0]),
    }


class _ShardWriter:
    """Buffers one split's windows and writes a shard when ``shard_mb`` is reached."""

    def __init__(self, folder: Path, shard_mb: float) -> None:
        self.folder = folder
        self.limit = int(shard_mb * 1_000_000)
        self.buffer: list[Window] = []
        self.size = 0
        self.total = 0
        self.shards: list[dict[str, Any]] = []

    def add(self, window: Window) -> None:
        size = window.log_mel.nbytes + window.roll.nbytes + window.mask.nbytes
        if self.buffer and self.size + size > self.limit:
            self.flush()
        self.buffer.append(window)
        self.size += size

    def flush(self) -> None:
        if not self.buffer:
            return
        self.folder.mkdir(exist_ok=True)
        name = f"shard-{len(self.shards):05d}.npz"
        ws = self.buffer
        np.savez(
            self.folder / name,
            log_mel=np.stack([w.log_mel for w in ws]),
            roll=np.stack([w.roll for w in ws]),
            mask=np.stack([w.mask for w in ws]),
            window_id=np.array([w.window_id for w in ws]),
            kind=np.array([w.kind for w in ws]),
            cue_path=np.array([w.cue_path for w in ws]),
            stem_name=np.array([w.stem_name for w in ws]),
            part_name=np.array([(w.part or {}).get("name") or "" for w in ws]),
            category=np.array(
                [((w.part or {}).get("category") or w.stem_category or "") for w in ws]
            ),
            program=np.array(
                [-1 if (w.part or {}).get("program") is None else w.part["program"] for w in ws],  # type: ignore[index]
                dtype=np.int16,
            ),
            is_drum=np.array([bool((w.part or {}).get("is_drum")) for w in ws]),
            verified=np.array(
                [
                    -1 if (w.pair or {}).get("verified") is None else int(w.pair["verified"])  # type: ignore[index]
                    for w in ws
                ],
                dtype=np.int8,
            ),
            track_id=np.array([(w.part or {}).get("track_id", -1) for w in ws], dtype=np.int64),
            start_frame=np.array([w.start_frame for w in ws], dtype=np.int64),
            start_s=np.array([w.start_s for w in ws], dtype=np.float64),
            note_count=np.array([w.note_count for w in ws], dtype=np.int32),
        )
        self.shards.append(
            {"path": f"{self.folder.name}/{name}", "windows": len(ws), "bytes": self.size}
        )
        self.total += len(ws)
        self.buffer = []
        self.size = 0
