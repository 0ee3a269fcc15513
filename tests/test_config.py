import pytest

from kmidi_ingest import config
from kmidi_ingest.config import Settings, load_settings, read_environment
from kmidi_ingest.errors import ConfigError
from kmidi_ingest.urls import mask_url, parse_url, sqlite_path
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
    assert load_settings({}, dotenv_path=dotenv, matcher="fuzzy").matcher == "fuzzy"


def test_bad_values_name_the_variable_and_where_it_was_set(tmp_path):
    with pytest.raises(ConfigError) as err:
        load_settings({"KMIDI_MATCHER": "best"}, dotenv_path="/nonexistent/.env")
    assert str(err.value) == (
        "KMIDI_MATCHER='best' in the environment: expected one of fuzzy, llm, auto"
    )
    dotenv = tmp_path / ".env"
    dotenv.write_text("KMIDI_WORKERS=abc\n")
    with pytest.raises(ConfigError) as err:
        load_settings({}, dotenv_path=dotenv)
    assert (
        str(err.value) == f"KMIDI_WORKERS='abc' in {dotenv}: expected a whole number of 1 or more"
    )
    with pytest.raises(ConfigError) as err:
        load_settings({"KMIDI_WORKERS": "0"}, dotenv_path="/nonexistent/.env")
    assert str(err.value) == (
        "KMIDI_WORKERS='0' in the environment: expected a whole number of 1 or more"
    )
    dotenv.write_text("KMIDI_WORKERS=abc\nKMIDI_LLM_TIMEOUT_S=-3\n")
    with pytest.raises(ConfigError) as err:
        load_settings({}, dotenv_path=dotenv, workers=2)  # the flag replaces KMIDI_WORKERS ...
    assert str(err.value) == (  # ... but the timeout is still read
        f"KMIDI_LLM_TIMEOUT_S='-3' in {dotenv}: expected a number of seconds above 0"
    )


def test_a_flag_wins_over_a_bad_variable_which_is_then_never_read(tmp_path):
    dotenv = tmp_path / ".env"
    dotenv.write_text("KMIDI_WORKERS=abc\n")
    assert load_settings({}, dotenv_path=dotenv, workers=2).workers == 2
    env = read_environment({}, dotenv_path=dotenv)
    assert config.database_url_setting(env) == config.DEFAULT_DATABASE_URL


def test_an_unreadable_dotenv_file_is_a_config_error(tmp_path):
    dotenv = tmp_path / ".env"
    dotenv.write_bytes(b"KMIDI_WORKERS=\xff\xfe\n")
    with pytest.raises(ConfigError) as err:
        read_environment({}, dotenv_path=dotenv)
    assert str(err.value) == f"{dotenv}: cannot read the settings file: not UTF-8 text"


def test_passwords_are_masked():
    assert mask_url("postgresql://kmidi:s3cret@db:5432/x") == "postgresql://kmidi:***@db:5432/x"
    assert mask_url("::nonsense") == "<unparseable database URL>"


def test_urls_are_parsed_in_one_place():
    with pytest.raises(ConfigError) as err:
        parse_url("mysql://u:secret@h/db")
    assert str(err.value) == (
        "unsupported database 'mysql://u:***@h/db': use sqlite:///FILE or postgresql://..."
    )
    with pytest.raises(ConfigError) as err:
        parse_url("not a url")
    assert str(err.value).startswith("'<unparseable database URL>' is not a valid database URL")
    assert parse_url("postgres://h/db").drivername == "postgresql+psycopg2"
    assert str(sqlite_path("sqlite:////tmp/x.sqlite")) == "/tmp/x.sqlite"
    assert sqlite_path("sqlite://") is None and sqlite_path("postgresql://h/db") is None


def test_config_and_db_do_not_import_each_other():
    import ast
    import inspect

    from kmidi_ingest import db

    for module, other in ((config, "db"), (db, "config")):
        tree = ast.parse(inspect.getsource(module))
        imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)} | {
            alias.name
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom)
            for alias in node.names
        }
        assert other not in imported, f"{module.__name__} imports {other}"
