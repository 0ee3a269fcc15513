from pathlib import Path

from kmidi_ingest.discover import canonical_name, find_cues, group_channels


def _group(names):
    return group_channels([(Path(n), n) for n in names])


def test_multi_mono_files_group_into_one_stem_in_film_order():
    groups = _group(["1M01 Strings.R.wav", "1M01 Strings.L.wav", "1M01 Brass.wav"])
    assert [(g.name, [f.label for f in g.files]) for g in groups] == [
        ("Brass", [None]),
        ("Strings", ["L", "R"]),
    ]


def test_final_mix_is_kept_apart_and_suffixes_are_case_insensitive():
    names = [f"1M01 6mx.{x}.wav" for x in ("Rs", "lfe", "L", "R", "C", "Ls")]
    groups = _group([*names, "1M01 Vln_02.L.wav", "1M01 Vln_02.R.wav"])
    mix = [g for g in groups if g.is_final_mix]
    stems = [g for g in groups if not g.is_final_mix]
    assert [f.label for f in mix[0].files] == ["L", "R", "C", "LFE", "Ls", "Rs"]
    assert [(g.name, len(g.files)) for g in stems] == [("Vln_02", 2)]


def test_canonical_name_strips_cue_code():
    assert canonical_name("2m03b Synth Pad") == "Synth Pad"
    assert canonical_name("Taiko") == "Taiko"


def test_find_cues_at_any_depth(make_cue, tmp_path):
    root = tmp_path / "cues"
    make_cue("1M01 Opening", root=root / "Reel 1")
    make_cue("2M03 Chase", root=root / "Reel 2" / "deeper")
    cues = find_cues(root)
    assert [c.rel_path for c in cues] == ["Reel 1/1M01 Opening", "Reel 2/deeper/2M03 Chase"]
    assert [len(c.midi_files) for c in cues] == [1, 1]
    assert [len(c.audio_files) for c in cues] == [9, 9]
