"""Per-cue compute: hash, read the MIDI, decode the stems, match — pure, no database."""

from __future__ import annotations

import dataclasses
import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from .. import discover, features, spill, staging
from ..audio import MelParams, StemData, process_group
from ..discover import CueSource, GroupingRules
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
    """
    started = time.perf_counter()
    problems: list[Problem] = list(cue.problems)
    # Hashing comes first: it decides whether there is anything to compute, and it leaves the
    # files in the page cache for decoding. It runs in this thread, not beside it, so that a
    # worker keeps exactly one core busy: --workers N means N cores.
    hashed = _hash_cue(cue)
    if stored_content_fingerprint is not None and hashed[2] == stored_content_fingerprint:
        return Unchanged(rel_path=cue.rel_path, stat_fingerprint=stat_fingerprint)
    return _compute_cue(cue, spec, stat_fingerprint, started, problems, hashed, progress)


_Hashed = tuple[dict[str, str], list[Problem], str]


def _hash_cue(cue: CueSource) -> _Hashed:
    """SHA-256 of every file of ``cue``: ``(hashes by cue-relative path, problems, content fp)``."""
    problems: list[Problem] = []
    hashes: dict[str, str] = {}
    for path in sorted(cue.midi_files + cue.audio_files):
        rel = path.relative_to(cue.path).as_posix()
        try:
            hashes[rel] = discover.sha256_file(path)
        except OSError as exc:
            hashes[rel] = "unreadable"
            problems.append(
                Problem(
                    stage="discover",
                    error_type="UnreadableFile",
                    message=f"cannot read file: {exc.strerror}",
                    path=discover.safe_text(str(path)),
                )
            )
    content_fp = hashlib.sha256(
        "".join(f"{rel}\0{digest}\n" for rel, digest in sorted(hashes.items())).encode(
            "utf-8", "surrogateescape"
        )
    ).hexdigest()
    return hashes, problems, content_fp


def _compute_cue(
    cue: CueSource,
    spec: CueSpec,
    stat_fingerprint: str,
    started: float,
    problems: list[Problem],
    hashed: _Hashed,
    progress: Callable[[float], None] | None = None,
) -> CueResult:
    """The computing part of :func:`process_cue`."""
    tree_problems = len(problems)
    midi: list[MidiData] = []
    for path in cue.midi_files:
        try:
            midi.append(read_midi(path))
        except KmidiError as exc:
            problems.append(_problem(exc, path))

    stems: list[StemData] = []
    mixes: list[StemData] = []
    for group in cue.groups:
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
            for err in getattr(exc, "errors", None) or (exc,):
                problems.append(_problem(err, err.path or group.key))
            continue
        problems.extend(
            Problem(
                stage="audio",
                error_type="AudioWarning",
                message=w,
                path=str(group.files[0].path),
                severity="warning",
            )
            for w in data.warnings
        )
        (mixes if data.is_final_mix else stems).append(_encode_feature(data))

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
    hashes, hash_problems, content_fp = hashed
    problems[tree_problems:tree_problems] = hash_problems  # in the order they always had
    return CueResult(
        source=cue,
        stat_fingerprint=stat_fingerprint,
        content_fingerprint=content_fp,
        sample_rate_hz=spec.sample_rate_hz,
        midi=tuple(midi),
        stems=tuple(stems),
        mixes=tuple(mixes),
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
