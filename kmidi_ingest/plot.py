"""One picture per cue: each matched track's piano roll over its stem's log-mel, on one time axis.

Bar lines come from the MIDI file's time-signature and tempo maps, so a person sees at a glance
whether the MIDI and the printed audio line up. :func:`load_cue_plot` reads plain data from the
database; :func:`render` draws it with matplotlib's Agg canvas (no pyplot, no global backend).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import Engine, or_, select

from . import models as m
from .audio import hz_to_mel
from .errors import KmidiError
from .store import read_feature
from .timing import MeterMap, TempoMap

WIDTH_PX = 1600
HEADER_PX = 80  # title
FOOTER_PX = 60  # time axis labels
TRACK_PX = 330  # one piano roll + one log-mel
DPI = 100
DB_RANGE = 80.0  # dB below the stem's peak shown in the log-mel
NOTE_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")


class PlotError(KmidiError):
    """A cue cannot be plotted (unknown cue, nothing matched, matplotlib missing, ...)."""

    stage = "plot"


@dataclass(frozen=True, kw_only=True)
class TrackPlot:
    """One matched track and its stem, ready to draw (times in seconds from MIDI tick 0)."""

    track_name: str
    category: str | None
    midi_file_name: str
    stem_name: str
    method: str
    score: float
    verified: bool | None
    pitch: np.ndarray  # int, shape (n_notes,)
    velocity: np.ndarray  # int, shape (n_notes,)
    start_s: np.ndarray  # float64, shape (n_notes,)
    end_s: np.ndarray  # float64, shape (n_notes,)
    log_mel: np.ndarray  # dB, shape (n_mels, n_frames)
    frame_s: float  # hop_length / sample_rate_hz
    centered: bool
    fmin_hz: float
    fmax_hz: float
    bar_s: np.ndarray  # bar start times, float64
    first_bar: int  # number of the bar at bar_s[0]


@dataclass(frozen=True, kw_only=True)
class CuePlot:
    cue_name: str
    cue_path: str
    tracks: tuple[TrackPlot, ...]


@dataclass(frozen=True, kw_only=True)
class PlotResult:
    out: Path
    width_px: int
    height_px: int
    tracks: tuple[str, ...]


def figure_size_px(n_tracks: int, *, width_px: int = WIDTH_PX) -> tuple[int, int]:
    """Pixel size of the picture of a cue with ``n_tracks`` matched tracks."""
    return width_px, HEADER_PX + FOOTER_PX + n_tracks * TRACK_PX


def load_cue_plot(engine: Engine, cue: str) -> CuePlot:
    """Read what :func:`render` needs for the cue named ``cue`` (a name or a relative path).

    Raises
    ------
    PlotError
        When no complete cue, or more than one, has that name, or none of its tracks is matched.
    """
    with engine.connect() as conn:
        found = conn.execute(
            select(m.Cue.id, m.Cue.name, m.Cue.rel_path)
            .where(m.Cue.status == "complete", or_(m.Cue.name == cue, m.Cue.rel_path == cue))
            .order_by(m.Cue.rel_path)
        ).all()
        if not found:
            raise PlotError(f"no cue named {cue!r} in the database (see kmidi-ingest stats)")
        if len(found) > 1:
            paths = ", ".join(repr(r.rel_path) for r in found)
            raise PlotError(f"{len(found)} cues are named {cue!r}; give its path: {paths}")
        cue_id, cue_name, cue_path = found[0]
        pairs = conn.execute(
            select(
                m.MidiTrack.id.label("track_id"),
                m.MidiTrack.part_name.label("track_name"),
                m.MidiTrack.category,
                m.MidiFile.id.label("midi_file_id"),
                m.MidiFile.file_name,
                m.AudioFile.name.label("stem_name"),
                m.AudioFeature.id.label("feature_id"),
                m.AudioFeature.sample_rate_hz,
                m.AudioFeature.hop_length,
                m.AudioFeature.centered,
                m.AudioFeature.fmin_hz,
                m.AudioFeature.fmax_hz,
                m.TrackMatch.method,
                m.TrackMatch.score,
                m.TrackMatch.verified,
            )
            .join(m.MidiFile, m.MidiFile.id == m.MidiTrack.midi_file_id)
            .join(m.TrackMatch, m.TrackMatch.track_id == m.MidiTrack.id)
            .join(m.AudioFile, m.AudioFile.id == m.TrackMatch.audio_file_id)
            .join(m.AudioFeature, m.AudioFeature.audio_file_id == m.AudioFile.id)
            .where(m.MidiFile.cue_id == cue_id, m.AudioFeature.kind == "log_mel")
            .order_by(m.MidiFile.rel_path, m.MidiTrack.part_index, m.TrackMatch.stem_rank)
        ).all()
        if not pairs:
            raise PlotError(f"cue {cue_path!r} has no track matched to a stem with a log-mel")
        bars = {fid: _bar_lines(conn, fid) for fid in {p.midi_file_id for p in pairs}}
        tracks = []
        for p in pairs:
            notes = conn.execute(
                select(m.MidiNote.pitch, m.MidiNote.velocity, m.MidiNote.start_s, m.MidiNote.end_s)
                .where(m.MidiNote.track_id == p.track_id)
                .order_by(m.MidiNote.id)
            ).all()
            columns = np.array(notes, dtype=np.float64).reshape(-1, 4)
            bar_s, first_bar = bars[p.midi_file_id]
            tracks.append(
                TrackPlot(
                    track_name=p.track_name,
                    category=p.category,
                    midi_file_name=p.file_name,
                    stem_name=p.stem_name,
                    method=p.method,
                    score=p.score,
                    verified=p.verified,
                    pitch=columns[:, 0].astype(np.int64),
                    velocity=columns[:, 1].astype(np.int64),
                    start_s=columns[:, 2],
                    end_s=columns[:, 3],
                    log_mel=read_feature(conn, p.feature_id),
                    frame_s=p.hop_length / p.sample_rate_hz,
                    centered=bool(p.centered),
                    fmin_hz=p.fmin_hz,
                    fmax_hz=p.fmax_hz,
                    bar_s=bar_s,
                    first_bar=first_bar,
                )
            )
    return CuePlot(cue_name=cue_name, cue_path=cue_path, tracks=tuple(tracks))


def _bar_lines(conn: Any, midi_file_id: int) -> tuple[np.ndarray, int]:
    """Bar start times (s) of a MIDI file from its stored tempo and meter maps (none for SMPTE)."""
    f = conn.execute(
        select(m.MidiFile.timing, m.MidiFile.ticks_per_beat, m.MidiFile.length_tick).where(
            m.MidiFile.id == midi_file_id
        )
    ).one()
    if f.timing != "ppq" or not f.ticks_per_beat:
        return np.zeros(0), 1
    tempos = conn.execute(
        select(m.TempoChange.tick, m.TempoChange.tempo_us)
        .where(m.TempoChange.midi_file_id == midi_file_id)
        .order_by(m.TempoChange.tick)
    ).all()
    meters = conn.execute(
        select(m.TimeSignature.tick, m.TimeSignature.numerator, m.TimeSignature.denominator)
        .where(m.TimeSignature.midi_file_id == midi_file_id)
        .order_by(m.TimeSignature.tick)
    ).all()
    tempo_map = TempoMap.from_events(f.ticks_per_beat, [(t.tick, t.tempo_us) for t in tempos])
    meter_map = MeterMap.from_events(
        f.ticks_per_beat, [(t.tick, (t.numerator, t.denominator)) for t in meters]
    )
    ticks = meter_map.bar_start_ticks(int(f.length_tick))
    return tempo_map.seconds(np.round(ticks).astype(np.int64)), 1


def plot_cue(engine: Engine, cue: str, out: str | Path, *, width_px: int = WIDTH_PX) -> PlotResult:
    """Write the picture of ``cue`` to ``out`` (PNG); see :func:`load_cue_plot` for errors."""
    return render(load_cue_plot(engine, cue), out, width_px=width_px)


def render(data: CuePlot, out: str | Path, *, width_px: int = WIDTH_PX) -> PlotResult:
    """Draw ``data`` into a PNG of :func:`figure_size_px` pixels.

    Raises
    ------
    PlotError
        When matplotlib is not installed, or the file cannot be written.
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.collections import PolyCollection
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise PlotError("plotting needs matplotlib: pip install 'kmidi-ingest[plot]'") from exc

    out = Path(out)
    n = len(data.tracks)
    width, height = figure_size_px(n, width_px=width_px)
    fig = Figure(figsize=(width / DPI, height / DPI), dpi=DPI, facecolor="white")
    FigureCanvasAgg(fig)
    end_s = max(
        max(_feature_end_s(t) for t in data.tracks),
        max((float(t.end_s.max()) for t in data.tracks if len(t.end_s)), default=0.0),
    )
    outer = fig.add_gridspec(
        n,
        1,
        left=110 / width,
        right=1 - 90 / width,
        top=1 - HEADER_PX / height,
        bottom=FOOTER_PX / height,
        hspace=0.13,  # room for each track's title
    )
    fig.text(
        110 / width,
        1 - 10 / height,
        f"{data.cue_name}    ({data.cue_path})",
        ha="left",
        va="top",
        fontsize=15,
        fontweight="bold",
    )
    fig.text(
        110 / width,
        1 - 38 / height,
        "each matched MIDI track (notes coloured by velocity, dark = soft) over its stem's "
        "log-mel; bar lines and numbers from the MIDI time-signature and tempo maps",
        ha="left",
        va="top",
        fontsize=10,
        color="#444444",
    )
    axes_list: list[Any] = []
    image: Any = None
    for i, track in enumerate(data.tracks):
        pair = outer[i].subgridspec(2, 1, height_ratios=[1.0, 1.15], hspace=0.0)
        roll = fig.add_subplot(pair[0], sharex=axes_list[0] if axes_list else None)
        mel = fig.add_subplot(pair[1], sharex=roll)
        axes_list += [roll, mel]

        low, high = _pitch_range(track.pitch)
        boxes = [
            [(s, p - 0.4), (max(e, s + 0.01), p - 0.4), (max(e, s + 0.01), p + 0.4), (s, p + 0.4)]
            for s, e, p in zip(track.start_s, track.end_s, track.pitch, strict=True)
        ]
        notes = PolyCollection(
            boxes,
            array=track.velocity.astype(np.float64),
            cmap="viridis",
            clim=(0, 127),
            edgecolors="black",
            linewidths=0.4,
        )
        roll.add_collection(notes)
        roll.set_ylim(low - 0.5, high + 0.5)
        roll.set_facecolor("#f4f4f4")
        roll.set_yticks(_pitch_ticks(low, high))
        roll.set_yticklabels([_note_name(p) for p in _pitch_ticks(low, high)], fontsize=8)
        verified = {True: "verified", False: "REJECTED by onsets", None: "unverified"}[
            track.verified
        ]
        roll.set_title(
            f"{track.track_name}  [{track.category or 'no category'}]   →   stem "
            f"“{track.stem_name}”   ({track.method} {track.score:.0f}, {verified})   "
            f"·   {track.midi_file_name}",
            loc="left",
            fontsize=10,
            pad=3,
        )
        roll.set_ylabel("pitch", fontsize=9)
        roll.grid(axis="y", color="#d0d0d0", linewidth=0.6)
        roll.set_axisbelow(True)

        values = track.log_mel.astype(np.float32)
        top = float(values.max()) if values.size else 0.0
        half = track.frame_s / 2 if track.centered else 0.0
        image = mel.imshow(
            values,
            origin="lower",
            aspect="auto",
            cmap="magma",
            vmin=top - DB_RANGE,
            vmax=top,
            extent=(
                -half,
                values.shape[1] * track.frame_s - half,
                0,
                values.shape[0],
            ),
            interpolation="nearest",
        )
        hz_ticks, hz_labels = _mel_ticks(values.shape[0], track.fmin_hz, track.fmax_hz)
        mel.set_yticks(hz_ticks)
        mel.set_yticklabels(hz_labels, fontsize=8)
        mel.set_ylabel("Hz (mel)", fontsize=9)

        for ax, color in ((roll, "#555555"), (mel, "white")):
            ax.vlines(
                track.bar_s, 0, 1, transform=ax.get_xaxis_transform(), colors=color,
                linewidths=0.8, alpha=0.7, zorder=3,
            )  # fmt: skip
            ax.tick_params(axis="x", labelbottom=False, length=0)
        for k, bar in enumerate(track.bar_s):
            if bar <= end_s:
                roll.text(
                    bar, 1.0, f" {track.first_bar + k}", transform=roll.get_xaxis_transform(),
                    fontsize=8, va="top", ha="left", color="#222222", fontweight="bold",
                )  # fmt: skip

    last = axes_list[-1]
    last.tick_params(axis="x", labelbottom=True, length=4, labelsize=9)
    last.set_xlabel("time (s) from MIDI tick 0 = audio sample 0", fontsize=10)
    axes_list[0].set_xlim(0, end_s)
    if image is not None:
        bar_ax = fig.add_axes(
            (1 - 75 / width, FOOTER_PX / height, 12 / width, 1 - (HEADER_PX + FOOTER_PX) / height)
        )
        colorbar = fig.colorbar(image, cax=bar_ax)
        colorbar.set_label(f"dB (top {DB_RANGE:.0f} dB of each stem)", fontsize=9)
        colorbar.set_ticks([])
    try:
        fig.savefig(out, dpi=DPI, format="png")
    except OSError as exc:
        raise PlotError(f"cannot write the picture: {exc.strerror or exc}", path=out) from exc
    return PlotResult(
        out=out,
        width_px=width,
        height_px=height,
        tracks=tuple(t.track_name for t in data.tracks),
    )


def _feature_end_s(track: TrackPlot) -> float:
    half = track.frame_s / 2 if track.centered else 0.0
    return track.log_mel.shape[1] * track.frame_s - half


def _pitch_range(pitch: np.ndarray) -> tuple[int, int]:
    if not len(pitch):
        return 60, 72
    low, high = int(pitch.min()), int(pitch.max())
    pad = max(0, 12 - (high - low)) // 2  # at least an octave, so single notes stay readable
    return low - pad - 1, high + pad + 1


def _pitch_ticks(low: int, high: int) -> list[int]:
    step = 12 if high - low > 24 else (6 if high - low > 12 else 3)
    return [p for p in range(low, high + 1) if p % step == 0]


def _note_name(pitch: int) -> str:
    return f"{NOTE_NAMES[pitch % 12]}{pitch // 12 - 1}"


def _mel_ticks(n_mels: int, fmin_hz: float, fmax_hz: float) -> tuple[list[float], list[str]]:
    """Positions (in mel bins) and labels of round frequencies on the Slaney mel scale.

    librosa's mel filters (``htk=False``) centre band ``k`` on the ``k+1``-th of ``n_mels + 2``
    points evenly spaced in Slaney mels between ``fmin`` and ``fmax``.
    """
    edges = hz_to_mel(np.array([fmin_hz, fmax_hz]))
    points = np.linspace(edges[0], edges[1], n_mels + 2)[1:-1]
    ticks: list[float] = []
    labels: list[str] = []
    for hz in (100, 250, 500, 1000, 2000, 4000, 8000, 16000):
        mel = float(hz_to_mel(np.array([hz]))[0])
        position = float(np.interp(mel, points, np.arange(n_mels))) + 0.5
        # Low frequencies crowd together on the mel scale: keep labels apart.
        if points[0] <= mel <= points[-1] and (not ticks or position - ticks[-1] >= n_mels / 12):
            ticks.append(position)
            labels.append(f"{hz // 1000}k" if hz >= 1000 else str(hz))
    return ticks, labels
