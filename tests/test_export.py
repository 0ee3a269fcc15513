"""``export``: JSONL and Parquet read back equal the database contents of a cue."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from sqlalchemy import text

from kmidi_ingest import ingest
from kmidi_ingest.cli import main
from kmidi_ingest.db import make_engine
from kmidi_ingest.export import ExportError, ExportOptions, export
from kmidi_ingest.migrate import head_revision
from kmidi_ingest.store import read_feature
from tests.conftest import EXAMPLES

CUE = "1M01 Opening"


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    url = f"sqlite:///{tmp_path_factory.mktemp('export')}/db.sqlite"
    assert ingest(EXAMPLES, 16000, database_url=url).ok
    return url


def expected_cue(url: str, name: str) -> dict:
    """The cue as the database holds it, read with plain SQL."""
    engine = make_engine(url)
    with engine.connect() as conn:

        def rows(sql, **params):
            return [dict(r._mapping) for r in conn.execute(text(sql), params)]

        cue = rows("SELECT id, rel_path FROM cues WHERE name = :n", n=name)[0]
        files = rows(
            "SELECT id, file_name FROM midi_files WHERE cue_id = :c ORDER BY rel_path", c=cue["id"]
        )
        out = {"cue_path": cue["rel_path"], "files": {}, "tracks": {}, "stems": {}}
        for f in files:
            out["files"][f["file_name"]] = {
                "tempo": [
                    tuple(r.values())
                    for r in rows(
                        "SELECT tick, time_s, tempo_us, bpm FROM tempo_changes "
                        "WHERE midi_file_id = :f ORDER BY tick",
                        f=f["id"],
                    )
                ],
                "meter": [
                    tuple(r.values())
                    for r in rows(
                        "SELECT tick, bar, numerator, denominator FROM time_signatures "
                        "WHERE midi_file_id = :f ORDER BY tick",
                        f=f["id"],
                    )
                ],
            }
        for t in rows(
            "SELECT t.id, t.name, t.category, a.name AS stem FROM midi_tracks t "
            "JOIN midi_files f ON f.id = t.midi_file_id "
            "LEFT JOIN track_matches m ON m.track_id = t.id "
            "LEFT JOIN audio_files a ON a.id = m.audio_file_id "
            "WHERE f.cue_id = :c AND NOT t.is_conductor",
            c=cue["id"],
        ):
            notes = rows(
                "SELECT pitch, velocity, start_tick, end_tick, "
                "CAST(start_us AS DOUBLE PRECISION) / 1000000 AS start_s, "
                "CAST(end_us AS DOUBLE PRECISION) / 1000000 AS end_s, start_bar, start_beat"
                " FROM midi_notes WHERE track_id = :t ORDER BY id",
                t=t["id"],
            )
            out["tracks"][t["name"]] = {
                "category": t["category"],
                "stem": t["stem"],
                "notes": [tuple(n.values()) for n in notes],
            }
        for s in rows(
            "SELECT a.name, a.category, x.id AS feature_id FROM audio_files a "
            "JOIN audio_features x ON x.audio_file_id = a.id WHERE a.cue_id = :c",
            c=cue["id"],
        ):
            out["stems"][s["name"]] = (s["category"], read_feature(conn, s["feature_id"]))
    engine.dispose()
    return out


def as_comparable(record: dict, feature_base=None) -> dict:
    """An exported cue record in the shape of :func:`expected_cue`."""
    stems = {s["stem_id"]: s["name"] for s in record["stems"]}
    out = {"cue_path": record["cue_path"], "files": {}, "tracks": {}, "stems": {}}
    for f in record["midi_files"]:
        out["files"][f["file_name"]] = {
            "tempo": [(t["tick"], t["time_s"], t["tempo_us"], t["bpm"]) for t in f["tempo_map"]],
            "meter": [
                (t["tick"], t["bar"], t["numerator"], t["denominator"])
                for t in f["time_signatures"]
            ],
        }
    for t in record["tracks"]:
        n = t["notes"]
        keys = ("pitch", "velocity", "start_tick", "end_tick", "start_s", "end_s")
        out["tracks"][t["name"]] = {
            "category": t["category"],
            "stem": None if t["match"] is None else stems[t["match"]["stem_id"]],
            "notes": list(zip(*(n[k] for k in keys), n["start_bar"], n["start_beat"], strict=True)),
        }
    for s in record["stems"]:
        feature = s["feature"]
        if feature["path"] is not None:
            values = np.load(feature_base / feature["path"])
        else:
            values = np.asarray(feature["values"], dtype=np.float32).astype(np.float16)
        out["stems"][s["name"]] = (s["category"], values)
    return out


def assert_same(got: dict, want: dict) -> None:
    assert got["cue_path"] == want["cue_path"]
    assert got["files"] == want["files"]
    assert got["tracks"] == want["tracks"]
    assert got["stems"].keys() == want["stems"].keys()
    for name, (category, values) in want["stems"].items():
        assert got["stems"][name][0] == category
        assert got["stems"][name][1].dtype == values.dtype
        np.testing.assert_array_equal(got["stems"][name][1], values)


def test_jsonl_and_parquet_read_back_equal_the_database(url, tmp_path, capsys):
    want = expected_cue(url, CUE)
    assert len(want["tracks"]) == 4 and sum(len(t["notes"]) for t in want["tracks"].values()) > 50

    jsonl = tmp_path / "corpus.jsonl"
    assert (
        main(["export", str(jsonl), "--format", "jsonl", "--cue", CUE, "--database-url", url]) == 0
    )
    assert "wrote 1 records" in capsys.readouterr().out
    records = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert len(records) == 1
    assert_same(as_comparable(records[0]), want)
    assert [m["name"] for m in records[0]["final_mixes"]] == ["6mx"]

    parquet = tmp_path / "corpus.parquet"
    assert (
        main(["export", str(parquet), "--format", "parquet", "--cue", CUE, "--database-url", url])
        == 0
    )
    rows = pq.read_table(parquet).to_pylist()
    assert len(rows) == 1
    assert_same(as_comparable(rows[0]), want)

    manifest = json.loads((tmp_path / "corpus.parquet.manifest.json").read_text())
    assert manifest["schema_version"] == manifest["source_database_revision"] == head_revision()
    assert manifest["parameters"]["cue"] == [CUE] and manifest["parameters"]["format"] == "parquet"
    assert manifest["counts"]["records"] == 1 and manifest["counts"]["notes"] == sum(
        len(t["notes"]) for t in want["tracks"].values()
    )


def test_per_track_with_feature_files_and_filters(url, tmp_path):
    want = expected_cue(url, CUE)
    out = tmp_path / "strings.jsonl"
    summary = export(
        make_engine(url),
        out,
        ExportOptions(per="track", features="files", categories=("strings",), min_notes=1),
    )
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert summary.records == len(records) == 2  # one Strings track in 1M01, one in 2M03
    mine = next(r for r in records if r["cue_name"] == CUE)
    track = mine["track"]
    assert (
        track["category"] == "Strings"
        and mine["stem"]["name"] == want["tracks"][track["name"]]["stem"]
    )
    stored = want["stems"][mine["stem"]["name"]][1]
    np.testing.assert_array_equal(np.load(tmp_path / mine["stem"]["feature"]["path"]), stored)
    assert mine["stem"]["feature"]["values"] is None
    assert (mine["midi_file"]["tempo_map"][0]["tempo_us"], len(track["notes"]["pitch"])) == (
        want["files"][mine["midi_file"]["file_name"]]["tempo"][0][2],
        len(want["tracks"][track["name"]]["notes"]),
    )

    # --verified-only keeps exactly the pairs whose audio follows the MIDI.
    verified = export(
        make_engine(url), tmp_path / "v.jsonl", ExportOptions(per="track", verified_only=True)
    )
    with make_engine(url).connect() as conn:
        n_verified = conn.execute(
            text("SELECT COUNT(*) FROM track_matches WHERE verified AND audio_file_id IS NOT NULL")
        ).scalar_one()
    lines = [json.loads(line) for line in (tmp_path / "v.jsonl").read_text().splitlines()]
    assert n_verified > 0 and verified.records == len(lines) == n_verified
    assert all(r["track"]["match"]["verified"] is True for r in lines)
    with pytest.raises(ExportError, match="already exists"):
        export(make_engine(url), out, ExportOptions())
    # Overwriting replaces the feature files too: none of the Strings export is left behind.
    brass = ExportOptions(per="track", features="files", categories=("brass",), overwrite=True)
    again = export(make_engine(url), out, brass)
    names = sorted(p.name for p in (tmp_path / "strings.jsonl.features").iterdir())
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert names == sorted({Path(r["stem"]["feature"]["path"]).name for r in records})
    # Brass in 1M01 and Hns a4 in 2M03 (the alternate file's horn line is left unmatched, since
    # the audio follows the main file's).
    assert (len(records), again.feature_files, len(names)) == (2, 2, 2)


def test_export_usage_errors(url, tmp_path, capsys, monkeypatch):
    assert main(["export", str(tmp_path / "x.csv"), "--format", "csv", "--database-url", url]) == 2
    import builtins

    real_import = builtins.__import__

    def no_pyarrow(name, *args, **kwargs):
        if name.startswith("pyarrow"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pyarrow)
    code = main(
        ["export", str(tmp_path / "x.parquet"), "--format", "parquet", "--database-url", url]
    )
    assert code == 2
    assert "pip install 'kmidi-ingest[parquet]'" in capsys.readouterr().err
    assert not (tmp_path / "x.parquet").exists()


def test_export_from_postgresql_equals_the_database(pg_url, tmp_path):
    ingest(EXAMPLES / "Reel 1" / "1M01 Opening", 16000, database_url=pg_url)
    want = expected_cue(pg_url, CUE)
    out = tmp_path / "pg.parquet"
    engine = make_engine(pg_url)
    try:
        summary = export(engine, out, ExportOptions(format="parquet"))
        lines = tmp_path / "pg.jsonl"
        export(engine, lines, ExportOptions(features="files"))
    finally:
        engine.dispose()
    assert summary.records == 1
    assert_same(as_comparable(pq.read_table(out).to_pylist()[0]), want)
    assert_same(as_comparable(json.loads(lines.read_text()), feature_base=tmp_path), want)


def test_memory_is_that_of_one_cue_not_of_the_database(url, tmp_path):
    """Streamed: exporting all cues peaks near the largest single cue, not near their sum."""
    import tracemalloc

    engine = make_engine(url)

    def peak(name: str, cues: tuple[str, ...] = ()) -> int:
        tracemalloc.start()
        try:
            options = ExportOptions(format="parquet", cues=cues, overwrite=True)
            export(engine, tmp_path / f"{name}.parquet", options)
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    peak("warm-up")
    overhead = peak("none", ("no such cue",))  # schema revisions, manifest, connection
    singles = [peak(c, (c,)) - overhead for c in (CUE, "1M02 Tension", "2M03 Chase")]
    everything = peak("all") - overhead
    engine.dispose()
    assert min(singles) > 0
    assert everything < 1.5 * max(singles) < sum(singles)


def test_selectors_ignore_case_and_a_selector_matching_nothing_exits_1(url, tmp_path, capsys):
    out = tmp_path / "upper.jsonl"
    args = ["export", str(out), "--format", "jsonl", "--database-url", url]
    assert main([*args, "--cue", CUE.upper(), "--category", "STRINGS"]) == 0
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["cue_name"] for r in records] == [CUE]
    assert {t["category"] for r in records for t in r["tracks"]} == {"Strings"}
    capsys.readouterr()
    nothing = tmp_path / "nothing.jsonl"
    code = main(
        ["export", str(nothing), "--format", "jsonl", "--database-url", url, "--cue", "9M99"]
    )
    assert code == 1
    assert capsys.readouterr().err == (
        "kmidi-ingest export: no cue matches --cue '9M99' (matched ignoring case); nothing written\n"
    )
    assert not nothing.exists()
    code = main(
        ["export", str(nothing), "--format", "jsonl", "--database-url", url, "--category", "kazoo"]
    )
    assert code == 1
    assert capsys.readouterr().err == (
        "kmidi-ingest export: no track or stem matches --category 'kazoo' (matched ignoring "
        "case); nothing written\n"
    )
