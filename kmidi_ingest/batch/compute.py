"""Per-cue compute: hash, read the MIDI, decode the stems, match — pure, no database.

A cue is computed whole (:func:`process_cue`) or stem by stem (:func:`compute_stem` for each
group, then :func:`finish_cue`), with the same result."""

from __future__ import annotations

import dataclasses
import hashlib
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .. import discover, features, spill, staging
from ..audio import MelParams, StemData, process_group
from ..discover import CueSource, GroupingRules, StemGroup
from ..errors import KmidiError
from ..midi import MidiData, read_midi
from ..pairing import match_offline
from ..results import CueResult, Problem
from .reports import Unchanged


@dataclass(frozen=True, kw_only=True)
class CueOptions:
    """How cues are computed, beside the sample rate (an argument of its own to ``ingest``).

    Parameters
    ----------
    mel : MelParams
        Log-mel analysis of every stem and final mix.
    rules : GroupingRules
        How channel files are grouped into stems (used by discover, see
        :func:`kmidi_ingest.discover.scan`).
    match_threshold : float
        Lowest fuzzy name score (0–100) that matches a track to a stem.
    """

    mel: MelParams = field(default_factory=MelParams)
    rules: GroupingRules = field(default_factory=GroupingRules)
    match_threshold: float = 60.0


@dataclass(frozen=True, kw_only=True)
class CueSpec:
    """Everything a worker needs to compute one cue (picklable): the run's rate and options."""

    sample_rate_hz: int
    options: CueOptions = field(default_factory=CueOptions)
    # A pool worker hands MIDI arrays larger than this to the writer through a temporary file
    # (kmidi_ingest.spill); None: never.
    spill_midi_bytes: int | None = None
    # A folder for staging files: the MIDI rows of each cue go to the writer as a SQLite file
    # in it (kmidi_ingest.staging; SQLite only); None: as data (or spilled, above).
    stage_dir: str | None = None


def process_cue(
    cue: CueSource,
    spec: CueSpec,
    *,
    stat_fingerprint: str,
    stored_content_fingerprint: str | None = None,
    progress: Callable[[float], None] | None = None,
) -> CueResult | Unchanged:
    """Compute everything for one cue (pure computation, no database).

    Returns :class:`Unchanged` when the content hash equals ``stored_content_fingerprint``.
    Per-file failures become :class:`~kmidi_ingest.results.Problem` entries, never exceptions.
    ``progress`` is called with seconds of audio as they are decoded.

    The same result comes from :func:`compute_stem` for each stem group and then
    :func:`finish_cue` (how a process pool spreads one cue's stems over its workers).
    """
    started = time.perf_counter()
    # Hashing comes first: it decides whether there is anything to compute, and it leaves the
    # files in the page cache for decoding. It runs in this thread, not beside it, so that a
    # worker keeps exactly one core busy: --workers N means N cores.
    hashes = _hash_files(cue, _cue_files(cue))
    hashed = _combine(cue, hashes)
    if stored_content_fingerprint is not None and hashed[2] == stored_content_fingerprint:
        return Unchanged(rel_path=cue.rel_path, stat_fingerprint=stat_fingerprint)
    stems = [_group_outcome(group, spec, progress) for group in cue.groups]
    return _assemble(cue, spec, stat_fingerprint, hashed, stems, started=started)


@dataclass(frozen=True, kw_only=True)
class FileHash:
    """The SHA-256 of one file of a cue, or the problem that kept it from being read."""

    path: Path
    rel: str  # relative to the cue's folder, POSIX separators
    digest: str  # "unreadable" when ``problem`` is set
    problem: Problem | None = None


@dataclass(frozen=True, kw_only=True)
class StemOutcome:
    """What :func:`compute_stem` returns for one stem group (picklable, no audio samples).

    ``data`` is the stem (its log-mel encoded for storage) or ``None`` when its audio is not
    sound; ``problems`` are its errors or warnings; ``hashes`` its files' hashes; ``elapsed_s``
    the seconds it took.
    """

    data: StemData | None
    problems: tuple[Problem, ...]
    hashes: tuple[FileHash, ...] = ()
    elapsed_s: float = 0.0


def splits_into_stems(cue: CueSource, stored_content_fingerprint: str | None) -> bool:
    """Whether ``cue`` can be computed as one task per stem group plus :func:`finish_cue`.

    Only a cue with two groups or more, and only when no stored content fingerprint could make
    it :class:`Unchanged` (that check hashes every file before anything is computed).
    """
    return stored_content_fingerprint is None and len(cue.groups) >= 2


def compute_stem(
    cue: CueSource,
    index: int,
    spec: CueSpec,
    *,
    progress: Callable[[float], None] | None = None,
) -> StemOutcome:
    """Hash the files of stem group ``cue.groups[index]`` and compute the stem (pure, no
    database); a stem whose audio is not sound comes back with ``data=None`` and its problems."""
    started = time.perf_counter()
    group = cue.groups[index]
    hashes = _hash_files(cue, [f.path for f in group.files])
    data, problems = _group_outcome(group, spec, progress)
    return StemOutcome(
        data=data,
        problems=problems,
        hashes=tuple(hashes),
        elapsed_s=time.perf_counter() - started,
    )


def finish_cue(
    cue: CueSource,
    spec: CueSpec,
    stems: Sequence[StemOutcome],
    *,
    stat_fingerprint: str,
) -> CueResult:
    """The cue from the :func:`compute_stem` outcome of each of its groups, in group order:
    the other files hashed, the MIDI read, tracks matched to stems (pure, no database).

    Equal to :func:`process_cue` without a stored fingerprint; ``elapsed_s`` is the seconds of
    the stems' tasks plus this one's.
    """
    started = time.perf_counter()
    if len(stems) != len(cue.groups):
        raise AssertionError(
            f"{len(stems)} stem outcomes for the {len(cue.groups)} groups of {cue.path}"
        )
    done = {h.path for s in stems for h in s.hashes}
    hashes = [h for s in stems for h in s.hashes]
    hashes += _hash_files(cue, [p for p in _cue_files(cue) if p not in done])
    hashed = _combine(cue, hashes)
    outcomes = [(s.data, s.problems) for s in stems]
    return _assemble(
        cue,
        spec,
        stat_fingerprint,
        hashed,
        outcomes,
        started=started - sum(s.elapsed_s for s in stems),
    )


_Hashed = tuple[dict[str, str], list[Problem], str]
_GroupOutcome = tuple[StemData | None, tuple[Problem, ...]]


def _cue_files(cue: CueSource) -> list[Path]:
    return sorted(cue.midi_files + cue.audio_files)


def _hash_files(cue: CueSource, paths: Iterable[Path]) -> list[FileHash]:
    """SHA-256 of each of ``paths`` (files of ``cue``), in order."""
    out: list[FileHash] = []
    for path in paths:
        rel = path.relative_to(cue.path).as_posix()
        try:
            out.append(FileHash(path=path, rel=rel, digest=discover.sha256_file(path)))
        except OSError as exc:
            problem = Problem(
                stage="discover",
                error_type="UnreadableFile",
                message=f"cannot read file: {exc.strerror}",
                path=discover.safe_text(str(path)),
            )
            out.append(FileHash(path=path, rel=rel, digest="unreadable", problem=problem))
    return out


def _combine(cue: CueSource, hashes: Iterable[FileHash]) -> _Hashed:
    """``(hashes by cue-relative path, problems, content fp)`` of the cue's files, from their
    :class:`FileHash` in any order (a file hashed twice counts once)."""
    wanted = set(_cue_files(cue))
    by_path = {h.path: h for h in hashes if h.path in wanted}
    ordered = [by_path[p] for p in sorted(by_path)]
    digests = {h.rel: h.digest for h in ordered}
    problems = [h.problem for h in ordered if h.problem is not None]
    content_fp = hashlib.sha256(
        "".join(f"{rel}\0{digest}\n" for rel, digest in sorted(digests.items())).encode(
            "utf-8", "surrogateescape"
        )
    ).hexdigest()
    return digests, problems, content_fp


def _group_outcome(
    group: StemGroup, spec: CueSpec, progress: Callable[[float], None] | None
) -> _GroupOutcome:
    """The stem of ``group`` (feature encoded) and its warnings, or ``None`` and its errors."""
    try:
        data = process_group(
            group,
            sample_rate_hz=spec.sample_rate_hz,
            params=spec.options.mel,
            rules=spec.options.rules,
            progress=progress,
        )
    except KmidiError as exc:
        # A stem with several bad files records one problem per file.
        return None, tuple(
            _problem(err, err.path or group.key) for err in getattr(exc, "errors", None) or (exc,)
        )
    warnings = tuple(
        Problem(
            stage="audio",
            error_type="AudioWarning",
            message=w,
            path=str(group.files[0].path),
            severity="warning",
        )
        for w in data.warnings
    )
    return _encode_feature(data), warnings


def _assemble(
    cue: CueSource,
    spec: CueSpec,
    stat_fingerprint: str,
    hashed: _Hashed,
    groups: Sequence[_GroupOutcome],
    *,
    started: float,
) -> CueResult:
    """Read the MIDI, match it to the stems and put the cue together (the computing part of
    :func:`process_cue`, after the stems)."""
    problems: list[Problem] = list(cue.problems)
    hashes, hash_problems, content_fp = hashed
    problems.extend(hash_problems)
    midi: list[MidiData] = []
    for path in cue.midi_files:
        try:
            midi.append(read_midi(path))
        except KmidiError as exc:
            problems.append(_problem(exc, path))

    stems: list[StemData] = []
    mixes: list[StemData] = []
    for data, group_problems in groups:
        problems.extend(group_problems)
        if data is not None:
            (mixes if data.is_final_mix else stems).append(data)

    for midi_data in midi:
        if midi_data.lenient:
            problems.append(
                Problem(
                    stage="midi",
                    error_type="LenientRead",
                    severity="warning",
                    path=str(midi_data.path),
                    message="data bytes above 127 were clipped to read this file",
                )
            )

    matching = match_offline(
        midi, stems, threshold=spec.options.match_threshold, cue_path=str(cue.path)
    )
    problems.extend(matching.problems)
    return CueResult(
        source=cue,
        stat_fingerprint=stat_fingerprint,
        content_fingerprint=content_fp,
        sample_rate_hz=spec.sample_rate_hz,
        midi=tuple(midi),
        # the pooled curves served the matching; the writer stores the values alone
        stems=tuple(_without_curve(s) for s in stems),
        mixes=tuple(_without_curve(s) for s in mixes),
        track_categories=matching.track_categories,
        stem_categories=matching.stem_categories,
        matches=matching.matches,
        file_hashes=hashes,
        problems=tuple(problems),
        midi_offset_s=matching.midi_offset_s,
        onset_evidence=matching.evidence,
        elapsed_s=time.perf_counter() - started,
    )


def hand_off(result: CueResult | Unchanged, spec: CueSpec) -> CueResult | Unchanged:
    """``result`` as the worker hands it to the writer: its MIDI rows staged in a SQLite file
    (with ``spec.stage_dir``), or its MIDI data spilled to a temporary file when larger than
    ``spec.spill_midi_bytes``, else as it is."""
    if not isinstance(result, CueResult):
        return result
    if spec.stage_dir is not None:
        return staging.stage(result, directory=spec.stage_dir)
    limit = spec.spill_midi_bytes
    if limit is not None and spill.midi_nbytes(result) > limit:
        return spill.spill(result)  # the writer reads it back file by file, then removes it
    return result


def _without_curve(stem: StemData) -> StemData:
    if stem.feature.curve is None:
        return stem
    return dataclasses.replace(stem, feature=dataclasses.replace(stem.feature, curve=None))


def _encode_feature(stem: StemData) -> StemData:
    """``stem`` with its feature encoded for storage here, in the worker: compressing is the
    writer's largest per-stem cost otherwise, and the writer is one process for all workers."""
    feature = dataclasses.replace(
        stem.feature, encoded=features.encoded(stem.feature.values, codec=features.DEFAULT_CODEC)
    )
    return dataclasses.replace(stem, feature=feature)


def _problem(exc: KmidiError, path: object) -> Problem:
    return Problem(
        stage=exc.stage,
        error_type=type(exc).__name__,
        message=exc.reason,
        path=str(exc.path or path),
    )
