"""IAM authentication: a fresh boto3 token per new connection, against the local PostgreSQL.

boto3 signs tokens locally from (dummy) credentials, without any network call; the local server
trusts every connection, so the generated token is accepted as the password.
"""

from __future__ import annotations

from urllib.parse import unquote

import pytest
from sqlalchemy import event, text
from sqlalchemy.engine import make_url

from kmidi_ingest.config import load_settings
from kmidi_ingest.db import IAM_POOL_RECYCLE_S, make_engine
from kmidi_ingest.errors import ConfigError

LOCAL = "aws_region=eu-west-1&sslmode=disable&aws_iam_allow_plaintext=1"


@pytest.fixture(autouse=True)
def dummy_aws(monkeypatch, tmp_path):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDKMIDITEST")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-a-secret")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    for name in ("AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name, raising=False)


def passwords_sent(engine) -> list[str]:
    """Record the password of every new DB-API connection (listener runs after the IAM hook)."""
    seen: list[str] = []

    @event.listens_for(engine, "do_connect")
    def record(_dialect, _record, _cargs, cparams):
        seen.append(cparams.get("password"))

    return seen


@pytest.mark.parametrize(
    ("mode", "action"),
    [
        ("rds", "Action=connect&DBUser=kmidi"),
        ("dsql-admin", "Action=DbConnectAdmin"),
        ("dsql", "Action=DbConnect&"),
    ],
)
def test_each_new_connection_gets_a_fresh_token(pg_url, mode, action):
    url = make_url(pg_url)
    engine = make_engine(f"{pg_url}?aws_iam={mode}&{LOCAL}")
    seen = passwords_sent(engine)
    try:
        assert engine.pool._recycle == IAM_POOL_RECYCLE_S < 900
        assert engine.url.query["sslmode"] == "disable" and "aws_iam" not in engine.url.query
        with engine.connect() as a, engine.connect() as b:
            assert a.execute(text("SELECT current_user")).scalar_one() == "kmidi"
            assert b.execute(text("SELECT 1")).scalar_one() == 1
        assert len(seen) == 2  # two connections, two tokens
        with engine.connect() as c:  # reused from the pool: no new token
            c.execute(text("SELECT 1"))
        assert len(seen) == 2
        engine.dispose()
        with engine.connect() as c:  # a new connection: a new token
            c.execute(text("SELECT 1"))
        assert len(seen) == 3
    finally:
        engine.dispose()
    port = "" if mode != "rds" else f":{url.port}"
    for token in seen:
        assert token.startswith(f"{url.host}{port}/?{action}")
        assert "X-Amz-Algorithm=AWS4-HMAC-SHA256" in token and "X-Amz-Signature=" in token
        service = "rds-db" if mode == "rds" else "dsql"
        assert "AKIDKMIDITEST/" in unquote(token) and f"/eu-west-1/{service}/" in unquote(token)


def test_sslmode_is_required_unless_plaintext_is_allowed_explicitly(pg_url):
    engine = make_engine(f"{pg_url}?aws_iam=rds&aws_region=eu-west-1")
    assert engine.url.query["sslmode"] == "require"
    engine.dispose()
    with pytest.raises(ConfigError, match="sslmode='disable' would send the IAM token unencrypted"):
        make_engine(f"{pg_url}?aws_iam=rds&aws_region=eu-west-1&sslmode=disable")
    engine = make_engine(f"{pg_url}?aws_iam=rds&aws_region=eu-west-1&sslmode=verify-full")
    assert engine.url.query["sslmode"] == "verify-full"
    engine.dispose()


def test_bad_iam_settings_are_configuration_errors():
    base = "postgresql://u@db.example:5432/x"
    with pytest.raises(ConfigError, match="aws_iam='kerberos' is not one of rds, dsql-admin, dsql"):
        make_engine(f"{base}?aws_iam=kerberos&aws_region=eu-west-1")
    with pytest.raises(ConfigError, match="no AWS region"):
        make_engine(f"{base}?aws_iam=rds")
    with pytest.raises(ConfigError, match="remove it from") as err:
        make_engine("postgresql://u:hunter2@db.example/x?aws_iam=rds&aws_region=eu-west-1")
    assert "hunter2" not in str(err.value)
    with pytest.raises(ConfigError, match="needs a postgresql:// URL"):
        make_engine("sqlite:///x.sqlite?aws_iam=rds")


def test_kmidi_db_iam_setting_selects_iam_in_the_url(tmp_path):
    env = {
        "DATABASE_URL": "postgresql://app@db.example:5432/cues",
        "KMIDI_DB_IAM": "dsql-admin",
        "AWS_REGION": "us-east-2",
    }
    url = make_url(load_settings(env, dotenv_path=tmp_path / "none").database_url)
    assert url.query == {"aws_iam": "dsql-admin", "aws_region": "us-east-2"}
    env["DATABASE_URL"] += "?aws_iam=rds"  # the URL wins over the setting
    url = make_url(load_settings(env, dotenv_path=tmp_path / "none").database_url)
    assert url.query["aws_iam"] == "rds"
    with pytest.raises(ConfigError, match="KMIDI_DB_IAM='iam'"):
        load_settings({**env, "KMIDI_DB_IAM": "iam"}, dotenv_path=tmp_path / "none")
