"""Throwaway PostgreSQL servers for the test suite.

``PostgresServer`` runs a private cluster (``initdb`` + ``pg_ctl``) in a
temporary directory, listening only on 127.0.0.1 on a free TCP port, tuned for
speed rather than durability (``fsync=off`` ...).  It is a context manager:
leaving the ``with`` block stops the server (``pg_ctl stop -m immediate``) and
deletes the directory.  PostgreSQL refuses to run as root, so when the tests run
as root every server command goes through ``runuser -u USER --`` as the
``postgres`` user, or as a system user ``kmidi-pg`` created on demand.

``ExistingServer`` offers the same interface (``url``, ``create_database``,
``drop_database``) for a server that is already running, e.g. one given by
``KMIDI_TEST_PG_URL``.

Database superuser is ``kmidi`` with ``trust`` authentication, so URLs look like
``postgresql+psycopg2://kmidi@127.0.0.1:PORT/DBNAME``.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Any

from sqlalchemy.engine import URL, make_url

SUPERUSER = "kmidi"
FALLBACK_OS_USER = "kmidi-pg"
REQUIRED_BINARIES = ("postgres", "initdb", "pg_ctl")
SERVER_SETTINGS = {
    "listen_addresses": "127.0.0.1",
    "max_connections": "200",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
}


class PostgresServerError(RuntimeError):
    """The throwaway server could not be set up, started or used."""


def _is_bindir(path: Path) -> bool:
    return all(
        os.access(path / name, os.X_OK) and (path / name).is_file() for name in REQUIRED_BINARIES
    )


def _version_key(bindir: Path) -> tuple[int, ...]:
    """Sort key for ``/usr/lib/postgresql/<version>/bin``."""
    return tuple(int(n) for n in re.findall(r"\d+", bindir.parent.name))


def find_pg_bindir() -> Path | None:
    """Return a directory holding ``postgres``, ``initdb`` and ``pg_ctl`` together.

    Searched in order: ``$KMIDI_PG_BINDIR``, ``pg_config --bindir``,
    ``/usr/lib/postgresql/*/bin`` (highest version first), then ``$PATH``.
    Returns ``None`` when no directory has all three.
    """
    candidates: list[Path] = []
    if env_dir := os.environ.get("KMIDI_PG_BINDIR"):
        candidates.append(Path(env_dir))
    if pg_config := shutil.which("pg_config"):
        try:
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, timeout=30
            )
            if out.returncode == 0 and out.stdout.strip():
                candidates.append(Path(out.stdout.strip()))
        except (OSError, subprocess.SubprocessError):
            pass
    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=_version_key, reverse=True)
    candidates += [Path(p) for p in os.environ.get("PATH", "").split(os.pathsep) if p]
    return next((c for c in candidates if _is_bindir(c)), None)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _server_os_user() -> str:
    """Unprivileged OS user to run the server as (only used when we are root)."""
    for name in ("postgres", FALLBACK_OS_USER):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            pass
    useradd = shutil.which("useradd") or "/usr/sbin/useradd"
    cmd = [
        useradd,
        "--system",
        "--no-create-home",
        "--shell",
        "/usr/sbin/nologin",
        FALLBACK_OS_USER,
    ]
    try:
        result = subprocess.run(cmd, capture_output=True, text=True)
    except OSError as exc:
        raise PostgresServerError(f"cannot create OS user {FALLBACK_OS_USER!r}: {exc}") from exc
    if result.returncode not in (0, 9):  # 9: already exists (created concurrently)
        raise PostgresServerError(f"{' '.join(cmd)} failed: {result.stderr.strip()}")
    return FALLBACK_OS_USER


class _DatabaseAdmin:
    """``create_database`` / ``drop_database`` on top of ``url()``."""

    def url(self, dbname: str = "postgres") -> str:
        raise NotImplementedError

    def _connect_admin(self) -> Any:
        import psycopg2  # deferred: SQLite-only runs need not have it

        args = make_url(self.url()).translate_connect_args(username="user", database="dbname")
        conn = psycopg2.connect(**args)
        conn.autocommit = True
        return conn

    def _execute(self, statement: str, name: str) -> None:
        from psycopg2 import sql

        conn = self._connect_admin()
        try:
            with conn.cursor() as cur:
                cur.execute(sql.SQL(statement).format(sql.Identifier(name)))
        finally:
            conn.close()

    def create_database(self, name: str) -> str:
        """Create an empty database and return its SQLAlchemy URL."""
        self._execute("CREATE DATABASE {}", name)
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """Drop a database, terminating any connection still open to it."""
        self._execute("DROP DATABASE IF EXISTS {} WITH (FORCE)", name)


class ExistingServer(_DatabaseAdmin):
    """An already running server, addressed by any database URL on it."""

    def __init__(self, url: str) -> None:
        parsed: URL = make_url(url)
        if parsed.drivername in ("postgresql", "postgres"):
            parsed = parsed.set(drivername="postgresql+psycopg2")
        self._url = parsed

    def url(self, dbname: str = "postgres") -> str:
        return self._url.set(database=dbname).render_as_string(hide_password=False)


class PostgresServer(_DatabaseAdmin):
    """A private PostgreSQL cluster living in a temporary directory.

    >>> with PostgresServer() as server:          # doctest: +SKIP
    ...     url = server.create_database("demo")
    """

    def __init__(self, bindir: Path | None = None) -> None:
        found = bindir or find_pg_bindir()
        if found is None:
            raise PostgresServerError(
                "PostgreSQL server binaries (postgres, initdb, pg_ctl) not found"
            )
        self.bindir = found
        self.port = 0
        self.os_user: str | None = None  # set when running as root
        self.tmpdir: Path | None = None

    # -- paths -------------------------------------------------------------
    @property
    def datadir(self) -> Path:
        assert self.tmpdir is not None
        return self.tmpdir / "data"

    @property
    def logfile(self) -> Path:
        assert self.tmpdir is not None
        return self.tmpdir / "server.log"

    # -- lifecycle ---------------------------------------------------------
    def __enter__(self) -> PostgresServer:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        if os.geteuid() == 0:
            self.os_user = _server_os_user()
            # /tmp is traversable by everyone, unlike e.g. /root or a private $TMPDIR.
            self.tmpdir = Path(tempfile.mkdtemp(prefix="kmidi-pg-", dir="/tmp"))
            shutil.chown(self.tmpdir, user=self.os_user, group=pwd.getpwnam(self.os_user).pw_gid)
        else:
            self.tmpdir = Path(tempfile.mkdtemp(prefix="kmidi-pg-"))
        (self.tmpdir / "socket").mkdir()
        if self.os_user:
            shutil.chown(self.tmpdir / "socket", user=self.os_user)

        self._run(
            "initdb", "-D", str(self.datadir), "-A", "trust", "-U", SUPERUSER,
            "--encoding", "UTF8", "--locale", "C", "--no-sync",
        )  # fmt: skip
        settings = {**SERVER_SETTINGS, "unix_socket_directories": str(self.tmpdir / "socket")}
        with open(self.datadir / "postgresql.conf", "a", encoding="utf-8") as conf:
            conf.write("\n# kmidi test server\n")
            for key, value in settings.items():
                conf.write(f"{key} = '{value.replace(chr(39), chr(39) * 2)}'\n")

        for attempt in range(3):  # retry if another process grabbed the port meanwhile
            self.port = _free_port()
            try:
                self._run(
                    "pg_ctl", "start", "-w", "-t", "60", "-D", str(self.datadir),
                    "-l", str(self.logfile), "-o", f"-p {self.port}",
                )  # fmt: skip
                return
            except PostgresServerError:
                if attempt == 2 or "already in use" not in self._log_tail():
                    raise

    def stop(self) -> None:
        """Stop the server (if running) and delete the temporary directory."""
        if self.tmpdir is None:
            return
        pidfile = self.datadir / "postmaster.pid"
        if pidfile.exists():
            with contextlib.suppress(PostgresServerError):
                self._run("pg_ctl", "stop", "-m", "immediate", "-w", "-D", str(self.datadir))
            if pidfile.exists():  # pg_ctl failed: kill the postmaster ourselves
                with contextlib.suppress(OSError, ValueError, IndexError):
                    os.kill(int(pidfile.read_text().split()[0]), signal.SIGKILL)
        shutil.rmtree(self.tmpdir, ignore_errors=True)
        self.tmpdir = None

    # -- helpers -----------------------------------------------------------
    def url(self, dbname: str = "postgres") -> str:
        if not self.port:
            raise PostgresServerError("server not started")
        return URL.create(
            "postgresql+psycopg2",
            username=SUPERUSER,
            host="127.0.0.1",
            port=self.port,
            database=dbname,
        ).render_as_string(hide_password=False)

    def _log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.logfile.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no server log)"

    def _run(self, program: str, *args: str) -> None:
        cmd = [str(self.bindir / program), *args]
        if self.os_user:
            runuser = shutil.which("runuser") or "/usr/sbin/runuser"
            cmd = [runuser, "-u", self.os_user, "--", *cmd]
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env.update(LC_ALL="C", LANG="C")
        try:
            result = subprocess.run(
                cmd, cwd=self.tmpdir, env=env, stdin=subprocess.DEVNULL,
                capture_output=True, text=True, timeout=120,
            )  # fmt: skip
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise PostgresServerError(
                f"{' '.join(cmd)}: {exc}\n--- server log tail ---\n{self._log_tail()}"
            ) from exc
        if result.returncode != 0:
            raise PostgresServerError(
                f"{' '.join(cmd)} exited with {result.returncode}\n"
                f"--- output ---\n{result.stdout}{result.stderr}\n"
                f"--- server log tail ---\n{self._log_tail()}"
            )
