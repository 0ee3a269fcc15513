import pytest

from kmidi_ingest.config import Settings, load_settings, mask_url
from kmidi_ingest.errors import ConfigError
from tests.conftest import REPO


def test_env_example_gives_the_documented_defaults():
    settings = load_settings({}, dotenv_path=REPO / ".env.example")
    assert settings == Settings()
    assert settings.database_url == "sqlite:///kmidi.sqlite" and settings.matcher == "fuzzy"


def test_environment_wins_over_dotenv_and_flags_win_over_both(tmp_path):
    dotenv = tmp_path / ".env"
    dotenv.write_text("DATABASE_URL=sqlite:///from-file.sqlite\nKMIDI_MATCHER=llm\n")
    settings = load_settings({"KMIDI_MATCHER": "auto"}, dotenv_path=dotenv)
    assert (settings.database_url, settings.matcher) == ("sqlite:///from-file.sqlite", "auto")
    assert settings.with_overrides(matcher="fuzzy", workers=None).matcher == "fuzzy"


def test_bad_values_are_config_errors_naming_the_variable():
    with pytest.raises(ConfigError, match="KMIDI_MATCHER='best'"):
        load_settings({"KMIDI_MATCHER": "best"}, dotenv_path="/nonexistent/.env")
    with pytest.raises(ConfigError, match="invalid number"):
        load_settings({"KMIDI_WORKERS": "two"}, dotenv_path="/nonexistent/.env")


def test_passwords_are_masked():
    assert mask_url("postgresql://kmidi:s3cret@db:5432/x") == "postgresql://kmidi:***@db:5432/x"
