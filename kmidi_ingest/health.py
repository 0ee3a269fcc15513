"""Health check of a cue tree, without a database: open and fully decode every MIDI and audio file.

:func:`check_tree` walks a tree and returns every broken file with the reason it failed;
:func:`quarantine` moves broken files aside, keeping their paths relative to the root, never
deleting or overwriting anything, and writes a manifest of what moved where.
"""

from __future__ import annotations

import csv
import errno
import json
import os
import shutil
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from .discover import file_kind, unreadable_audio_message
from .errors import DiscoverError, KmidiError
from .midi import read_midi

AUDIO_BLOCK_FRAMES = 1 << 16


class QuarantineError(KmidiError):
    """Broken files cannot be moved to the quarantine folder."""

    stage = "check"


@dataclass(frozen=True, kw_only=True)
class BrokenFile:
    """A MIDI or audio file that cannot be read in full."""

    rel_path: str  # relative to the checked root, POSIX separators
    kind: str  # "midi", "audio", or "folder" (a folder that cannot be listed)
    reason: str
    size_bytes: int | None


@dataclass(frozen=True, kw_only=True)
class HealthReport:
    """What :func:`check_tree` found below ``root``."""

    root: Path
    midi_checked: int
    audio_checked: int
    broken: tuple[BrokenFile, ...]
    # Audio files of a type this machine cannot read: named, not broken (ingest skips them too).
    skipped: tuple[BrokenFile, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.broken

    def to_dict(self) -> dict[str, object]:
        return {
            "root": str(self.root),
            "midi_checked": self.midi_checked,
            "audio_checked": self.audio_checked,
            "broken_count": len(self.broken),
            "broken": [asdict(b) for b in self.broken],
            "skipped": [asdict(b) for b in self.skipped],
        }


@dataclass(frozen=True, kw_only=True)
class QuarantineMove:
    """One file moved by :func:`quarantine` (absolute paths)."""

    source: Path
    destination: Path
    kind: str
    reason: str


@dataclass(frozen=True, kw_only=True)
class QuarantineResult:
    moves: tuple[QuarantineMove, ...]
    manifest_json: Path
    manifest_csv: Path


def check_tree(root: str | Path, *, exclude: Path | None = None) -> HealthReport:
    """Open and decode every MIDI and audio file below ``root``.

    Parameters
    ----------
    root : path
        Folder to walk (any depth; symlinked folders are not followed).
    exclude : path, optional
        A folder below ``root`` to skip (e.g. the quarantine folder itself).

    Returns
    -------
    HealthReport
        Counts of checked files and the broken ones, sorted by relative path.

    Raises
    ------
    DiscoverError
        When ``root`` is not a readable folder.
    """
    root = Path(root)
    if not root.is_dir():
        raise DiscoverError("root folder does not exist or is not a folder", path=root)
    excluded = exclude.resolve() if exclude is not None else None
    broken: list[BrokenFile] = []
    skipped: list[BrokenFile] = []
    counts = {"midi": 0, "audio": 0}

    def on_error(exc: OSError) -> None:
        rel = Path(str(exc.filename)).relative_to(root).as_posix()
        broken.append(
            BrokenFile(
                rel_path=rel,
                kind="folder",
                reason=f"cannot read folder: {exc.strerror}",
                size_bytes=None,
            )
        )

    for dirpath, dirnames, filenames in os.walk(root, onerror=on_error, followlinks=False):
        if excluded is not None:
            dirnames[:] = [d for d in dirnames if (Path(dirpath) / d).resolve() != excluded]
        dirnames.sort()
        for name in sorted(filenames):
            kind = file_kind(name)
            if kind is None:
                continue
            path = Path(dirpath) / name
            if kind == "unreadable-audio":
                skipped.append(
                    BrokenFile(
                        rel_path=path.relative_to(root).as_posix(),
                        kind="audio",
                        reason=unreadable_audio_message(name),
                        size_bytes=_size(path),
                    )
                )
                continue
            counts[kind] += 1
            reason = check_midi(path) if kind == "midi" else check_audio(path)
            if reason is not None:
                broken.append(
                    BrokenFile(
                        rel_path=path.relative_to(root).as_posix(),
                        kind=kind,
                        reason=reason,
                        size_bytes=_size(path),
                    )
                )
    broken.sort(key=lambda b: b.rel_path)
    return HealthReport(
        root=root,
        midi_checked=counts["midi"],
        audio_checked=counts["audio"],
        broken=tuple(broken),
        skipped=tuple(sorted(skipped, key=lambda b: b.rel_path)),
    )


def _size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except OSError:
        return None


def check_midi(path: Path) -> str | None:
    """Return why ``path`` is not a readable MIDI file, or ``None`` when it reads in full."""
    try:
        read_midi(path)
    except KmidiError as exc:
        return exc.reason
    except Exception as exc:  # a converter bug must not stop the check of the other files
        return f"{type(exc).__name__}: {exc}"
    return None


def check_audio(path: Path, *, block_frames: int = AUDIO_BLOCK_FRAMES) -> str | None:
    """Return why ``path`` is not a sound audio file, or ``None`` when every frame decodes.

    The rule ingest applies to a channel file (:func:`kmidi_ingest.audio.check_file`): the
    whole file is read in blocks (memory stays flat), so damage after the header is found too.
    """
    from .audio import check_file

    return check_file(path, block_frames=block_frames)


def quarantine(report: HealthReport, destination: str | Path) -> QuarantineResult:
    """Move every broken file of ``report`` below ``destination``, keeping its relative path.

    Nothing is deleted or overwritten: when a file of that name already exists in the quarantine,
    the moved file gets a new name (``name (1).wav``, ``name (2).wav``, ...). A manifest of what
    moved where is written as ``quarantine-<UTC time>.json`` and ``.csv`` in ``destination``.

    Raises
    ------
    QuarantineError
        When a file cannot be moved (files moved before it stay moved and are in the manifest).
    """
    destination = Path(destination)
    moves: list[QuarantineMove] = []
    failure: QuarantineError | None = None
    for item in report.broken:
        if item.kind == "folder":
            continue
        source = report.root / item.rel_path
        try:
            target = _move_no_clobber(source, destination / item.rel_path)
        except OSError as exc:
            failure = QuarantineError(f"cannot move to quarantine: {exc}", path=source)
            break
        moves.append(
            QuarantineMove(source=source, destination=target, kind=item.kind, reason=item.reason)
        )
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    manifest_json = _reserve(destination / f"quarantine-{stamp}.json")
    manifest_csv = _reserve(destination / f"quarantine-{stamp}.csv")
    rows = [
        {
            "source": str(move.source),
            "destination": str(move.destination),
            "kind": move.kind,
            "reason": move.reason,
        }
        for move in moves
    ]
    manifest_json.write_text(
        json.dumps({"root": str(report.root), "created_at": stamp, "moved": rows}, indent=2),
        encoding="utf-8",
    )
    with manifest_csv.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=["source", "destination", "kind", "reason"])
        writer.writeheader()
        writer.writerows(rows)
    if failure is not None:
        raise failure
    return QuarantineResult(
        moves=tuple(moves), manifest_json=manifest_json, manifest_csv=manifest_csv
    )


def _reserve(wanted: Path) -> Path:
    """Create an empty file at ``wanted`` or at the first free ``wanted (n)`` name; return it.

    ``O_EXCL`` makes the claim atomic, so two runs never pick the same name.
    """
    wanted.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    while True:
        candidate = wanted if n == 0 else wanted.with_name(f"{wanted.stem} ({n}){wanted.suffix}")
        try:
            os.close(os.open(candidate, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
        except FileExistsError:
            n += 1
            continue
        return candidate


def _move_no_clobber(source: Path, wanted: Path) -> Path:
    target = _reserve(wanted)
    try:
        os.replace(source, target)  # replaces only the empty placeholder we just created
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            target.unlink()
            raise
        try:
            shutil.copy2(source, target)
        except OSError:
            target.unlink()
            raise
        os.unlink(source)
    return target
