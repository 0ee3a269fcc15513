"""Final-mix names (issue 14.2): film/TV deliveries and datasets are mixes; instrument names are not."""

from __future__ import annotations

import pytest

from kmidi_ingest.config import ConfigError, load_settings, mix_patterns_from
from kmidi_ingest.discover import DEFAULT_FINAL_MIX_PATTERNS, GroupingRules, group_channels, scan
from tests.conftest import SHARED_REAL, write_tone

MIXES = (
    "mix",  # Slakh, CocoChorales: mix.wav / mix.flac
    "Mix",
    "1M01 6mx",  # Pro Tools 5.1 print
    "1M01_6MX",
    "4M01 Trio 6mx",
    "1M01 Opening_2mx",  # film stereo fold-down
    "3M10 8mx",  # 7.1
    "1M01 Full Mix",
    "1M01 Opening Final Mix",
    "Stereo Mix",
    "Main_Mix",
    "1M01 mixdown",
    "Mix Down",
    "1M01 PrintMaster",
    "1M01 Print Master",
    "PRINT_MASTER",
    "Stereo Master",
    "1M01 LtRt",
    "1M01 Lt-Rt",
    "LoRo",
    "1M01 Downmix",
    "Stereo Fold-down",
    "mixture",  # MUSDB18 / DSD100 / MoisesDB
    "AClassicEducation_NightOwl_MIX",  # MedleyDB
    "AuMix_01_Jupiter_vn_vc",  # URMP
)

# Real instrument and stem names that contain the letters of a mix word and must stay stems.
NEVER_MIXES = (
    "Remix FX",  # a sound-design layer
    "Remixed Pads",
    "Re-mix Perc",
    "Mixolydian Lead",
    "Mixed Choir",
    "Mixed Chorus",
    "Mx Perc",  # film: "Mx" is music; a music percussion stem
    "MX Strings",
    "1M01 Mx Synths",
    "Drum Premix",  # a premix or submix is one stem's own mix
    "Strings Pre-Mix",
    "Perc Sub Mix",
    "Drum Submix",
    "Organ Mixture",  # an organ stop
    "Mixture IV",
    "Master Keys",  # a controller keyboard track
    "Lo Strings",
    "Lo Brass",
    "Lo-Fi Piano",
    "Lt Perc",
    "Horns 6",
    "Tpt 2 Mute",
    "Maximus Taiko",
    "Mixing Bowl Perc",
    "Strings",
    "1M01 Brass",
)


@pytest.mark.parametrize("name", MIXES)
def test_default_patterns_find_the_final_mixes(name):
    assert GroupingRules().is_final_mix(name)


@pytest.mark.parametrize("name", NEVER_MIXES)
def test_default_patterns_never_match_an_instrument(name):
    assert not GroupingRules().is_final_mix(name)


def test_mix_files_group_as_final_mixes(tmp_path):
    files = [
        write_tone(tmp_path / name, seconds=0.1)
        for name in ("mix.wav", "S00.wav", "1M01 2mx.L.wav", "1M01 2mx.R.wav", "Mixed Choir.wav")
    ]
    groups = group_channels([(p, p.name) for p in files])
    assert {g.key: g.is_final_mix for g in groups} == {
        "mix": True,
        "1M01 2mx": True,
        "S00": False,
        "Mixed Choir": False,
    }


def test_patterns_are_settable(tmp_path):
    rules = GroupingRules(final_mix_patterns=(r"(?<![a-z])bounce$",))
    assert rules.is_final_mix("1M01 Stereo Bounce") and not rules.is_final_mix("1M01 6mx")


def test_mix_patterns_from_expands_default():
    assert mix_patterns_from(["default", "Bounce"]) == (*DEFAULT_FINAL_MIX_PATTERNS, "Bounce")
    assert mix_patterns_from(["Bounce"]) == ("Bounce",)


def test_environment_sets_the_patterns(tmp_path):
    settings = load_settings({"KMIDI_MIX_PATTERNS": "default; stereo bounce"}, dotenv_path=tmp_path)
    assert settings.mix_patterns == (*DEFAULT_FINAL_MIX_PATTERNS, "stereo bounce")
    assert load_settings({}, dotenv_path=tmp_path).mix_patterns == DEFAULT_FINAL_MIX_PATTERNS


def test_a_bad_pattern_is_a_config_error_naming_it(tmp_path):
    with pytest.raises(ConfigError) as err:
        load_settings({"KMIDI_MIX_PATTERNS": "6mx("}, dotenv_path=tmp_path)
    assert str(err.value) == (
        "KMIDI_MIX_PATTERNS='6mx(' in the environment: '6mx(' is not a valid regular expression "
        "(missing ), unterminated subpattern at position 3)"
    )
    with pytest.raises(ConfigError) as err:
        load_settings({}, dotenv_path=tmp_path, mix_patterns=("ok", "[x"))
    assert str(err.value) == (
        "mix pattern '[x' is not a valid regular expression "
        "(unterminated character set at position 0)"
    )


@pytest.mark.parametrize("folder", ["babyslakh_16k", "slakh2100_flac_redux/train"])
def test_slakh_mix_is_the_final_mix(folder):
    track = SHARED_REAL / "slakh" / folder / "Track00001"
    if not track.is_dir():
        pytest.skip(f"{track} is not present")
    (cue,) = scan(track).cues
    groups = group_channels([(p, p.relative_to(cue.path).as_posix()) for p in cue.audio_files])
    assert [g.key for g in groups if g.is_final_mix] == ["mix"]
    assert sorted(g.key for g in groups if not g.is_final_mix) == [
        f"S{i:02d}" for i in range(11) if i != 6
    ]


def _plan(capsys, args):
    import json

    from kmidi_ingest.cli import main

    assert main(args) == 0
    (cue,) = json.loads(capsys.readouterr().out)["cues"]
    return sorted(g["name"] for g in cue["final_mixes"]), sorted(g["name"] for g in cue["stems"])


def test_cli_flag_and_environment_choose_the_mix_patterns(tmp_path, capsys, monkeypatch):
    cue = tmp_path / "cues" / "1M01"
    write_tone(cue / "Audio Files" / "1M01 Stereo Bounce.wav", seconds=0.1)
    write_tone(cue / "Audio Files" / "1M01 Full Mix.wav", seconds=0.1)
    write_tone(cue / "Audio Files" / "1M01 Harp.wav", seconds=0.1)
    base = [str(cue.parent), "8000", "--database-url", f"sqlite:///{tmp_path}/x.db"]
    base += ["--dry-run", "--json"]
    monkeypatch.delenv("KMIDI_MIX_PATTERNS", raising=False)
    assert _plan(capsys, base) == (["Full Mix"], ["Harp", "Stereo Bounce"])
    flags = ["--mix-pattern", "default", "--mix-pattern", "bounce$"]
    assert _plan(capsys, [*base, *flags]) == (["Full Mix", "Stereo Bounce"], ["Harp"])
    assert _plan(capsys, [*base, "--mix-pattern", "bounce$"]) == (
        ["Stereo Bounce"],
        ["Full Mix", "Harp"],
    )
    monkeypatch.setenv("KMIDI_MIX_PATTERNS", "harp")
    assert _plan(capsys, base) == (["Harp"], ["Full Mix", "Stereo Bounce"])
    assert _plan(capsys, [*base, "--mix-pattern", "bounce$"])[0] == ["Stereo Bounce"]  # flag wins
