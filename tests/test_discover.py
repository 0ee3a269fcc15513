import hashlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kmidi_ingest.discover import (
    CHANNEL_LABELS,
    CHANNEL_ORDER,
    GroupingRules,
    canonical_name,
    group_channels,
    scan,
    sha256_file,
)


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


def test_cues_are_found_at_any_depth(make_cue, tmp_path):
    root = tmp_path / "cues"
    make_cue("1M01 Opening", root=root / "Reel 1")
    make_cue("2M03 Chase", root=root / "Reel 2" / "deeper")
    cues = scan(root).cues
    assert [c.rel_path for c in cues] == ["Reel 1/1M01 Opening", "Reel 2/deeper/2M03 Chase"]
    assert [len(c.midi_files) for c in cues] == [1, 1]
    assert [len(c.audio_files) for c in cues] == [9, 9]


def _layout(groups):
    return [(g.key, g.is_final_mix, [f.label for f in g.files]) for g in groups]


def test_numbered_multi_mono_takes_and_a_bare_take_are_separate_stems():
    groups = _group(
        ["1M01 Vln_02.R.wav", "1M01 Vln_02.L.wav", "1M01 Vln_02.wav", "1M01 Vln_03.L.wav"]
    )
    assert _layout(groups) == [
        ("1M01 Vln_02", False, ["L", "R"]),
        ("1M01 Vln_02", False, [None]),
        ("1M01 Vln_03", False, ["L"]),
    ]
    assert [g.name for g in groups] == ["Vln_02", "Vln_02", "Vln_03"]


def test_every_separator_and_the_7_1_4_suffix_set_in_any_case():
    names = [
        "Amb.L.wav", "Amb_r.wav", "Amb-C.wav", "Amb LFE.wav", "Amb.lss.wav", "Amb.RSS.wav",
        "Amb_Lsr.wav", "Amb_Rsr.wav", "Amb-ltf.wav", "Amb-Rtf.wav", "Amb Ltr.wav", "Amb Rtr.wav",
    ]  # fmt: skip
    (group,) = _group(names)
    assert group.key == "Amb"
    assert [f.label for f in group.files] == [
        "L", "R", "C", "LFE", "Lss", "Rss", "Lsr", "Rsr", "Ltf", "Rtf", "Ltr", "Rtr",
    ]  # fmt: skip


def test_aux_mid_side_and_centre_surround_suffixes():
    groups = _group(["FX.A1.wav", "FX.A2.wav", "FX.A16.wav", "Vox.M.wav", "Vox.S.wav", "S.Cs.wav"])
    assert _layout(groups) == [
        ("FX", False, ["A1", "A2", "A16"]),
        ("S", False, ["Cs"]),
        ("Vox", False, ["M", "S"]),
    ]


def test_same_name_in_other_folders_or_formats_is_another_stem():
    groups = group_channels(
        [
            (Path(n), n)
            for n in ("Audio Files/Brass.wav", "Bounces/Brass.wav", "Audio Files/Brass.aif")
        ]
    )
    assert [(g.name, g.files[0].rel_path) for g in groups] == [
        ("Brass", "Audio Files/Brass.aif"),
        ("Brass", "Audio Files/Brass.wav"),
        ("Brass", "Bounces/Brass.wav"),
    ]


def test_several_final_mixes_are_all_kept_and_never_instruments():
    names = [f"1M01 6mx.{x}.wav" for x in ("L", "R", "C", "LFE", "Ls", "Rs")]
    names += [f"1M01 6MX alt.{x}.wav" for x in ("L", "R")]
    names += ["1M01 Brass.wav", "1M01 Stereo 6mx.wav"]
    groups = _group(names)
    assert _layout(groups) == [
        ("1M01 Brass", False, [None]),
        ("1M01 6mx", True, ["L", "R", "C", "LFE", "Ls", "Rs"]),
        ("1M01 6MX alt", True, ["L", "R"]),
        ("1M01 Stereo 6mx", True, [None]),
    ]


def test_grouping_rules_are_configurable():
    rules = GroupingRules(
        channel_labels=("Lt", "Rt"), separators="~", final_mix_patterns=(r"printmaster",)
    )
    groups = group_channels(
        [(Path(n), n) for n in ("Mix~Lt.wav", "Mix~Rt.wav", "PRINTMASTER.wav", "Pad.L.wav")],
        rules,
    )
    assert _layout(groups) == [
        ("Mix", False, ["Lt", "Rt"]),
        ("Pad.L", False, [None]),
        ("PRINTMASTER", True, [None]),
    ]


@settings(max_examples=150, deadline=None)
@given(
    base=st.from_regex(r"[A-Za-z][A-Za-z0-9 _]{0,10}[A-Za-z0-9]", fullmatch=True),
    labels=st.lists(st.sampled_from(CHANNEL_LABELS), min_size=1, max_size=8, unique=True),
    data=st.data(),
)
def test_any_multi_mono_set_groups_into_one_stem_in_film_order(base, labels, data):
    names = []
    for label in labels:
        sep = data.draw(st.sampled_from("._- "))
        spelled = data.draw(st.sampled_from([label, label.upper(), label.lower()]))
        names.append(f"{base}{sep}{spelled}.wav")
    names = data.draw(st.permutations(names))
    (group,) = _group(names)
    assert group.key == base and not group.is_final_mix
    assert [f.label for f in group.files] == sorted(labels, key=lambda x: CHANNEL_ORDER[x.upper()])


@pytest.mark.parametrize("size", [0, 1, 4095, 4096, 3 * 4096 + 17])
def test_sha256_file_equals_hashlib_across_block_boundaries(tmp_path, size):
    data = np.random.default_rng(size).integers(0, 256, size, dtype=np.uint8).tobytes()
    path = tmp_path / "x.bin"
    path.write_bytes(data)
    assert sha256_file(path, block_size=4096) == hashlib.sha256(data).hexdigest()
