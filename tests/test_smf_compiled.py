"""The compiled track scan (numba, :mod:`kmidi_ingest.smf_scan`) against the Python reference.

Both must give the same tracks for every readable file and the same error message for every
unreadable one: on the real files in ``../shared/data/midi`` and on seeded damage of them
(truncation, overwritten, inserted and deleted bytes), which reaches every reason class.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from kmidi_ingest.smf import SmfError, parse_smf
from tests.conftest import SHARED_MIDI

Outcome = tuple[object, ...]


def _real_bytes() -> list[bytes]:
    files = sorted(
        p for p in SHARED_MIDI.rglob("*") if p.suffix.lower() in (".mid", ".midi", ".kar")
    )
    if not files:
        pytest.skip("../shared/data/midi is not present")
    return [p.read_bytes() for p in files]


def _outcome(raw: bytes, *, compiled: bool) -> Outcome:
    try:
        smf = parse_smf(raw, compiled=compiled)
    except SmfError as exc:
        return ("error", str(exc))
    return (
        "ok",
        smf.midi_format,
        smf.declared_tracks,
        smf.division,
        [
            (t.channel.tolist(), t.other, t.end_tick, t.clipped_data_bytes, t.has_end_of_track)
            for t in smf.tracks
        ],
    )


def _damage(raw: bytes, rng: random.Random) -> bytes:
    data = bytearray(raw)
    kind = rng.randrange(4)
    if kind == 0:
        return bytes(data[: rng.randrange(len(data))])
    if kind == 1:
        for _ in range(rng.randrange(1, 5)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        return bytes(data)
    at = rng.randrange(14, len(data))
    if kind == 2:
        return bytes(
            data[:at] + bytes(rng.randrange(256) for _ in range(rng.randrange(1, 6))) + data[at:]
        )
    return bytes(data[:at] + data[at + rng.randrange(1, 20) :])


def test_real_files_decode_identically() -> None:
    raws = _real_bytes()
    for raw in raws:
        compiled = _outcome(raw, compiled=True)
        assert compiled[0] == "ok"
        assert compiled == _outcome(raw, compiled=False)


def test_damaged_files_fail_with_the_same_reason() -> None:
    raws = _real_bytes()
    rng = random.Random(16)
    reasons: set[str] = set()
    for _ in range(1200):
        raw = _damage(rng.choice(raws), rng)
        compiled = _outcome(raw, compiled=True)
        assert compiled == _outcome(raw, compiled=False)
        if compiled[0] == "error":
            reasons.add(str(compiled[1]).split(" in track")[0].split(":")[0])
    # the damage reaches the scan's own reasons, not only the chunk-level ones
    assert {"wrong chunk length", "truncated", "running status without a status"} <= reasons
    assert any(r.startswith("undefined status byte") for r in reasons)


@pytest.mark.parametrize(
    ("track", "reason"),
    [
        (b"\x00\x90\x3c", "truncated: track 0 ends inside an event"),
        (b"\x00\x3c\x40", "running status without a status in track 0 at byte 23"),
        (b"\xff\xff\xff\xff\x00", "absurd delta time in track 0 at byte 22"),
        (b"\x00\xff\x01\xff\xff\xff\xff", "absurd length in track 0 at byte 25"),
        (b"\x00\xf4", "undefined status byte 0xF4 in track 0 at byte 23"),
        (b"\x00\xff\x2f\x00\x00", "wrong chunk length: track 0 declares 5 bytes but its End"),
    ],
)
def test_reasons_of_handmade_tracks(track: bytes, reason: str) -> None:
    raw = (
        b"MThd\x00\x00\x00\x06\x00\x00\x00\x01\x00\x60MTrk" + len(track).to_bytes(4, "big") + track
    )
    for compiled in (True, False):
        with pytest.raises(SmfError) as info:
            parse_smf(raw, compiled=compiled)
        assert str(info.value).startswith(reason)


def test_compiled_scan_returns_plain_python_values(tmp_path: Path) -> None:
    raw = b"MThd\x00\x00\x00\x06\x00\x00\x00\x01\x00\x60MTrk\x00\x00\x00\x0c\x00\x90\x3c\x40\x60\x80\x3c\x00\x00\xff\x2f\x00"
    (track,) = parse_smf(raw).tracks
    assert track.events == [
        (0, 0x90, 60, 64, None),
        (96, 0x80, 60, 0, None),
        (96, 0xFF, 0x2F, 0, b""),
    ]
    assert all(type(v) is int for e in track.events for v in e[:4])
    assert type(track.end_tick) is int and type(track.has_end_of_track) is bool


def test_auto_mode_rents_the_python_scan_then_buys_the_kernel(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import kmidi_ingest.kernels as kernels

    raw = _real_bytes()[0]
    reference = _outcome(raw, compiled=False)
    monkeypatch.setattr(kernels, "_python_s", 0.0)
    monkeypatch.setattr(kernels, "_loaded", False)
    monkeypatch.setattr(kernels, "COMPILE_AFTER_S", 1e9)
    assert _auto(raw) == reference
    assert kernels._python_s > 0.0  # the Python scan ran and was charged
    assert not kernels._loaded
    monkeypatch.setattr(kernels, "COMPILE_AFTER_S", 0.0)
    charged = kernels._python_s
    assert _auto(raw) == reference
    assert kernels._python_s == charged  # the kernel ran: nothing more charged
    assert kernels._loaded
    monkeypatch.setattr(kernels, "COMPILE_AFTER_S", 1e9)  # a kernel has run: it stays bought
    assert _auto(raw) == reference and kernels._python_s == charged


def _auto(raw: bytes) -> Outcome:
    smf = parse_smf(raw)
    return (
        "ok",
        smf.midi_format,
        smf.declared_tracks,
        smf.division,
        [
            (t.channel.tolist(), t.other, t.end_tick, t.clipped_data_bytes, t.has_end_of_track)
            for t in smf.tracks
        ],
    )
