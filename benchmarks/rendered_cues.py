"""Rendered cues with ground truth: real MIDI files printed to stems with fluidsynth.

For each usable file of ``../shared/data/midi`` (at least two instrument families with notes in
the first :data:`AUDIO_S` seconds): the file is rewritten as format 1 with one track per channel,
named ``Track N`` (uninformative); its channels are grouped by GM family (keys, guitar, bass,
strings, brass, winds, synth, other, drums); the families are dealt at random into 2–4 stems
(several families per stem), each stem rendered with Debian's ``fluidsynth`` and
``fluid-soundfont-gm``, cut to :data:`AUDIO_S` s and shifted by a random constant offset
(−0.3…+0.3 s). Half of the files get an extra tempo change (×0.8…1.25) before rendering, so the
tempo map matters. The truth: each track's notes are in the stem its family went to.

Files are split into ``dev`` and ``held_out`` by a fixed hash of their path (one in three held
out). Renders are cached under ``<tmp>/kmidi-bench-rendered`` (keyed by file, seed and settings).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SOUNDFONT = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")
SHARED_MIDI = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "midi"
SAMPLE_RATE_HZ = 22050
AUDIO_S = 25.0
VERSION = 3  # bump when the rendering changes (cache key)
FAMILIES = {
    "keys": range(0, 24),
    "guitar": range(24, 32),
    "bass": range(32, 40),
    "strings": range(40, 56),
    "brass": range(56, 64),
    "winds": range(64, 80),
    "synth": range(80, 104),
    "other": range(104, 128),
}


def shared_midi_dir() -> Path | None:
    for base in (Path(__file__).resolve().parents[1].parent, Path("/work")):
        path = base / "shared" / "data" / "midi"
        if path.is_dir():
            return path
    return None


@dataclass(frozen=True, kw_only=True)
class RenderedCue:
    name: str
    cue_dir: Path
    split: str  # dev | held_out
    truth: dict[int, str]  # track order among instrument tracks (file order) → stem name


def family(program: int, channel: int) -> str:
    if channel == 9:
        return "drums"
    return next(name for name, programs in FAMILIES.items() if program in programs)


def _split(path: Path) -> str:
    digest = hashlib.sha256(path.name.encode()).digest()
    return "held_out" if digest[0] % 3 == 0 else "dev"


def _absolute(mid) -> tuple[list, dict[int, list]]:
    """Meta events (abs tick) and channel events per channel (abs tick), over all tracks."""
    meta, channels = [], {}
    for track in mid.tracks:
        tick = 0
        for msg in track:
            tick += msg.time
            if msg.is_meta:
                if msg.type in ("set_tempo", "time_signature", "key_signature"):
                    meta.append((tick, msg))
            elif hasattr(msg, "channel"):
                channels.setdefault(msg.channel, []).append((tick, msg))
    meta.sort(key=lambda e: e[0])
    for events in channels.values():
        events.sort(key=lambda e: e[0])
    return meta, channels


def _seconds_of(meta: list, ticks_per_beat: int):
    tempos = [(0, 500_000)] + [(t, m.tempo) for t, m in meta if m.type == "set_tempo"]
    tempos.sort(key=lambda e: e[0])

    def to_s(tick: int) -> float:
        s, last_tick, tempo = 0.0, 0, 500_000
        for t, new in tempos:
            if t > tick:
                break
            s += (t - last_tick) * tempo / 1e6 / ticks_per_beat
            last_tick, tempo = t, new
        return s + (tick - last_tick) * tempo / 1e6 / ticks_per_beat

    return to_s


def _track(name: str, events: list, *, end_tick: int | None = None):
    import mido

    track = mido.MidiTrack()
    track.append(mido.MetaMessage("track_name", name=name, time=0))
    last = 0
    for tick, msg in events:
        if end_tick is not None and tick > end_tick and msg.type == "note_on" and msg.velocity:
            continue
        track.append(msg.copy(time=tick - last))
        last = tick
    return track


def _plan(path: Path, rng: np.random.Generator):
    """Channels with notes in the audio span, their families, and the stems (or None)."""
    import mido

    try:
        mid = mido.MidiFile(str(path), clip=True)
    except Exception:  # noqa: BLE001 - a file mido refuses is simply not used
        return None
    if mid.type == 2 or mid.ticks_per_beat <= 0:
        return None
    meta, channels = _absolute(mid)
    if rng.random() < 0.5 and channels:
        last = max(e[-1][0] for e in channels.values())
        tick = int(rng.integers(mid.ticks_per_beat * 4, max(mid.ticks_per_beat * 5, last // 2)))
        tempo_before = 500_000
        for t, m in meta:
            if m.type == "set_tempo" and t <= tick:
                tempo_before = m.tempo
        factor = float(rng.uniform(0.8, 1.25))
        meta.append((tick, mido.MetaMessage("set_tempo", tempo=int(tempo_before * factor))))
        meta.sort(key=lambda e: e[0])
    to_s = _seconds_of(meta, mid.ticks_per_beat)
    used: dict[int, str] = {}
    for channel, events in sorted(channels.items()):
        program = 0
        starts = 0
        for tick, msg in events:
            if msg.type == "program_change" and starts == 0:
                program = msg.program
            if msg.type == "note_on" and msg.velocity and to_s(tick) < AUDIO_S - 1.0:
                starts += 1
        if starts >= 8:
            used[channel] = family(program, channel)
    families = sorted(set(used.values()))
    if len(families) < 2:
        return None
    n_stems = int(rng.integers(2, min(4, len(families)) + 1))
    order = list(rng.permutation(families))
    stems: dict[str, list[str]] = {f"Stem {k + 1}": [] for k in range(n_stems)}
    for k, fam in enumerate(order):
        key = f"Stem {k + 1}" if k < n_stems else f"Stem {int(rng.integers(n_stems)) + 1}"
        stems[key].append(str(fam))
    return mid, meta, channels, used, stems, to_s


def _render(midi_path: Path, wav_path: Path) -> np.ndarray:
    import soundfile as sf

    subprocess.run(
        [
            "fluidsynth", "-ni", "-q", "-g", "0.6", "-r", str(SAMPLE_RATE_HZ),
            "-F", str(wav_path), str(SOUNDFONT), str(midi_path),
        ],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    samples, _ = sf.read(str(wav_path), dtype="float32")
    return samples


def build_cue(path: Path, out_root: Path, *, seed: int = 15) -> RenderedCue | None:
    """Render one file into a cue folder under ``out_root`` (cached); ``None`` if unusable."""
    import mido
    import soundfile as sf

    key = hashlib.sha256(f"{path.name}|{seed}|{VERSION}|{AUDIO_S}".encode()).hexdigest()[:12]
    name = f"{path.stem}-{key}"
    cue_dir = out_root / name
    truth_file = cue_dir / "truth.json"
    if truth_file.exists():
        data = json.loads(truth_file.read_text())
        if data is None:
            return None
        return RenderedCue(
            name=name, cue_dir=cue_dir, split=_split(path),
            truth={int(k): v for k, v in data.items()},
        )  # fmt: skip
    rng = np.random.default_rng(int(key, 16) % 2**32)
    plan = _plan(path, rng)
    cue_dir.mkdir(parents=True, exist_ok=True)
    if plan is None:
        truth_file.write_text("null")
        return None
    mid, meta, channels, used, stems, to_s = plan
    tpb = mid.ticks_per_beat
    conductor_events = list(meta)
    order = sorted(used)
    midi_dir, audio_dir = cue_dir / "MIDI", cue_dir / "Audio Files"
    midi_dir.mkdir(exist_ok=True)
    audio_dir.mkdir(exist_ok=True)
    whole = mido.MidiFile(type=1, ticks_per_beat=tpb)
    whole.tracks.append(_track("conductor", conductor_events))
    for n, channel in enumerate(order, start=1):
        whole.tracks.append(_track(f"Track {n}", channels[channel]))
    whole.save(str(midi_dir / f"{name}.mid"))
    # the last tick inside the audio (+2 s), so fluidsynth renders only what is kept
    end_tick = 0
    while to_s(end_tick) < AUDIO_S + 2.0 and end_tick < 10**8:
        end_tick += tpb
    offset_s = float(rng.uniform(-0.3, 0.3))
    truth: dict[int, str] = {}
    scratch = Path(tempfile.mkdtemp(prefix="render-"))
    try:
        for stem, fams in stems.items():
            chosen = [c for c in order if used[c] in fams]
            for c in chosen:
                truth[order.index(c)] = stem
            part = mido.MidiFile(type=1, ticks_per_beat=tpb)
            part.tracks.append(_track("conductor", conductor_events))
            for c in chosen:
                part.tracks.append(_track(f"ch{c}", channels[c], end_tick=end_tick))
            part.save(str(scratch / "part.mid"))
            audio = _render(scratch / "part.mid", scratch / "part.wav")
            shift = int(round(abs(offset_s) * SAMPLE_RATE_HZ))
            if offset_s >= 0:  # the audio comes later: silence in front
                audio = np.concatenate([np.zeros((shift, audio.shape[1]), audio.dtype), audio])
            else:
                audio = audio[shift:]
            audio = audio[: int(AUDIO_S * SAMPLE_RATE_HZ)]
            sf.write(str(audio_dir / f"{stem}.wav"), audio, SAMPLE_RATE_HZ, subtype="PCM_16")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    (cue_dir / "offset.txt").write_text(f"{offset_s:.4f}\n")
    truth_file.write_text(json.dumps(truth))
    return RenderedCue(name=name, cue_dir=cue_dir, split=_split(path), truth=truth)


def build_all(
    *, limit: int | None = None, seed: int = 15, split: str | None = None
) -> list[RenderedCue]:
    """Every usable rendered cue (cached), in a fixed order; ``[]`` without the shared data.

    ``split`` (``dev`` or ``held_out``) renders only that split's files.
    """
    source = shared_midi_dir()
    if source is None or shutil.which("fluidsynth") is None or not SOUNDFONT.exists():
        return []
    out_root = Path(tempfile.gettempdir()) / "kmidi-bench-rendered"
    out_root.mkdir(exist_ok=True)
    files = sorted(p for p in source.rglob("*") if p.suffix.lower() in (".mid", ".midi"))
    cues = []
    for path in files:
        if split is not None and _split(path) != split:
            continue
        cue = build_cue(path, out_root, seed=seed)
        if cue is not None:
            cues.append(cue)
        if limit is not None and len(cues) >= limit:
            break
    return cues
