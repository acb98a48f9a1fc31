"""A PostgreSQL server of the project's own, for the tests, demos and development; never a system service.

`LocalPostgres(folder).start()` installs Debian's `postgresql` package when its programs are missing (as root,
with apt, like `make browser` installs chromium), creates a cluster under `folder` the first time, starts it on
a free port of 127.0.0.1 and returns how to reach it; `stop()` shuts it down. Run twice, `start` finds its
server running and reuses it (or, if it no longer answers, stops it and starts it again); a server killed with
kill -9 starts again on the same data. Calls from several processes at once take turns on a lock file.

PostgreSQL refuses to run as root. As root, the server runs as the `postgres` account Debian's package
creates, and the folder is handed to that account (every folder above it must let other users through: a
folder under a home directory with mode 700 does not). Otherwise it runs as the current user.

The cluster listens on 127.0.0.1 only (no Unix socket) and asks every client for a password (scram-sha-256).
The superuser is `postgres`, with a random password kept in `<folder>/superuser.password` (mode 600).

    python -m segment_pipeline.devtools.postgres install | start FOLDER | stop FOLDER | status FOLDER
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import pwd
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ..settings import child_environment, devtool_variable

DEBIAN_PACKAGE = "postgresql"
# where the server programs are when they are not Debian's (/usr/lib/postgresql/<version>/bin)
BIN_DIR_ENV = "POSTGRES_BIN_DIR"
# the account that runs the server when we are root: Debian's package creates it
ROOT_SERVER_ACCOUNT = "postgres"
SUPERUSER = "postgres"
HOST = "127.0.0.1"
START_TIMEOUT_SECONDS = 60
_PORT_ATTEMPTS = 5
_CONFIG = """
# written by segment_pipeline.devtools.postgres: loopback TCP only, no Unix socket
listen_addresses = '127.0.0.1'
unix_socket_directories = ''
max_connections = 200
"""
_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


class PostgresError(RuntimeError):
    """The local PostgreSQL could not be installed, started or used; the message says what to do."""


@dataclass(frozen=True)
class PostgresServer:
    """A running server: where it listens and its superuser's login."""

    host: str
    port: int
    superuser: str
    password: str = field(repr=False)

    def dsn(self, dbname: str, user: str) -> str:
        """A libpq connection string without a password (give it through PGPASSWORD)."""
        return f"dbname={dbname} host={self.host} port={self.port} user={user}"

    @contextlib.contextmanager
    def admin(self, dbname: str = "postgres") -> Iterator:
        """An autocommit psycopg2 connection as the superuser."""
        import psycopg2

        connection = psycopg2.connect(
            host=self.host,
            port=self.port,
            user=self.superuser,
            password=self.password,
            dbname=dbname,
            connect_timeout=10,
        )
        connection.autocommit = True
        try:
            yield connection
        finally:
            connection.close()


def find_bin_dir() -> Path | None:
    """The folder holding initdb and pg_ctl: POSTGRES_BIN_DIR, else Debian's newest, else the PATH's."""
    candidates: list[Path] = []
    if devtool_variable(BIN_DIR_ENV):
        candidates.append(Path(devtool_variable(BIN_DIR_ENV)))
    debian = Path("/usr/lib/postgresql")
    if debian.is_dir():
        versions = sorted(
            (path for path in debian.iterdir() if path.name.isdigit()), key=lambda p: int(p.name), reverse=True
        )
        candidates.extend(path / "bin" for path in versions)
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    for candidate in candidates:
        if (candidate / "initdb").is_file() and (candidate / "pg_ctl").is_file():
            return candidate
    return None


def ensure_installed(log: Callable[[str], None] = print) -> Path:
    """The server programs' folder, installing Debian's `postgresql` package first when they are missing."""
    found = find_bin_dir()
    if found:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise PostgresError(
            "PostgreSQL's server programs (initdb, pg_ctl) are not installed. On Debian or Ubuntu run "
            f"`sudo apt-get install {DEBIAN_PACKAGE}`; elsewhere install PostgreSQL 15 or newer and set "
            f"{BIN_DIR_ENV} to the folder holding initdb and pg_ctl."
        )
    # one installer at a time (test workers may get here together); apt waits for dpkg's own lock as well
    with file_lock(Path("/tmp/segment-pipeline-postgres-install.lock")):
        found = find_bin_dir()
        if found:
            return found
        log(f"installing PostgreSQL (Debian package {DEBIAN_PACKAGE}) with apt-get")
        env = child_environment(DEBIAN_FRONTEND="noninteractive")
        for command in (
            ["apt-get", "update", "-qq"],
            [
                "apt-get",
                "install",
                "-y",
                "-qq",
                "-o",
                "DPkg::Lock::Timeout=300",
                "--no-install-recommends",
                DEBIAN_PACKAGE,
            ],
        ):
            result = subprocess.run(command, env=env, capture_output=True, text=True)
            if result.returncode:
                raise PostgresError(f"`{' '.join(command)}` failed:\n{result.stderr.strip()[-2000:]}")
    found = find_bin_dir()
    if not found:
        raise PostgresError(f"the {DEBIAN_PACKAGE} package is installed but initdb and pg_ctl were not found")
    return found


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive kernel lock on `path` (released by the kernel if the holder dies)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nobody listens on now (another process may take it before us: we retry)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # as PostgreSQL binds: connections of an earlier server still in TIME_WAIT do not take the port
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((HOST, port))
        except OSError:
            return False
    return True


def _alive(pid: int) -> bool:
    """Whether process `pid` runs (a zombie, ended but not yet reaped, does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return not Path("/proc").is_dir()
    return state != "Z"


def _processes_in(directory: Path) -> list[int]:
    """Live processes whose working directory is `directory` (a PostgreSQL server's processes work in its data dir)."""
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            if Path(os.readlink(entry / "cwd")) == directory and _alive(int(entry.name)):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def _check_name(kind: str, name: str) -> str:
    if not _NAME.fullmatch(name):
        raise PostgresError(f"{kind} {name!r} must be lower-case letters, digits and _ (at most 63)")
    return name


class LocalPostgres:
    """A PostgreSQL cluster living in one folder: `data/`, `postgres.log`, `server.json`, `superuser.password`."""

    def __init__(
        self,
        folder: Path,
        *,
        account: str | None = None,
        bin_dir: Path | None = None,
        log: Callable[[str], None] = print,
    ) -> None:
        self.folder = Path(folder).expanduser().resolve()
        # None: the server runs as this process's own user
        self.account = account or (ROOT_SERVER_ACCOUNT if os.geteuid() == 0 else None)
        self._bin_dir = Path(bin_dir) if bin_dir else None
        self.log = log

    # --- files ---------------------------------------------------------------------------------------
    @property
    def data_dir(self) -> Path:
        return self.folder / "data"

    @property
    def log_file(self) -> Path:
        return self.folder / "postgres.log"

    @property
    def _state_file(self) -> Path:
        return self.folder / "server.json"

    @property
    def _password_file(self) -> Path:
        return self.folder / "superuser.password"

    @property
    def _initialized_marker(self) -> Path:
        # written once initdb and the configuration are complete: a data dir without it is a broken first try
        return self.folder / "initialized"

    @property
    def bin_dir(self) -> Path:
        if self._bin_dir is None:
            self._bin_dir = ensure_installed(self.log)
        return self._bin_dir

    # --- running programs as the server's account -----------------------------------------------------
    def _as_server_account(self) -> dict:
        if self.account is None:
            return {}
        try:
            entry = pwd.getpwnam(self.account)
        except KeyError as exc:
            raise PostgresError(
                f"PostgreSQL cannot run as root and the account {self.account!r} to run it does not exist; "
                f"installing Debian's {DEBIAN_PACKAGE} package creates it (or pass another account)"
            ) from exc
        return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}

    def _run(self, program: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        # PG* variables of the caller (a lake's PGPASSWORD, PGHOST ...) must not steer the server's tools
        env = child_environment(without_prefix="PG", LC_ALL="C")
        result = subprocess.run(
            [str(self.bin_dir / program), *args],
            cwd=self.folder,
            env=env,
            capture_output=True,
            text=True,
            **self._as_server_account(),
        )
        if check and result.returncode:
            raise PostgresError(f"{program} {' '.join(args)} failed:\n{(result.stderr or result.stdout).strip()}")
        return result

    def _hand_over(self, path: Path) -> None:
        """Give `path` to the server's account (when we are root)."""
        if self.account is not None:
            entry = pwd.getpwnam(self.account)
            os.chown(path, entry.pw_uid, entry.pw_gid)

    # --- lifecycle -------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.folder.mkdir(parents=True, exist_ok=True)
        with file_lock(self.folder / "lifecycle.lock"):
            yield

    def _prepare_folder(self) -> None:
        self.folder.chmod(0o700)
        self._hand_over(self.folder)
        if self.account is not None:
            reachable = subprocess.run(["test", "-w", str(self.folder)], **self._as_server_account())
            if reachable.returncode:
                raise PostgresError(
                    f"the account {self.account!r} that runs PostgreSQL cannot reach {self.folder}: a folder above "
                    "it is closed to other users (a home folder with mode 700, say). Choose a folder under /tmp, "
                    "/srv or /var/lib, or let other users through the folders on the way (chmod o+x)."
                )

    def _initialize(self) -> None:
        if self.data_dir.exists():
            # initdb never finished here (the marker is written last): nothing in it can be anyone's data
            shutil.rmtree(self.data_dir)
        self._password_file.write_text(secrets.token_urlsafe(24) + "\n")
        self._password_file.chmod(0o600)
        self._hand_over(self._password_file)
        self.log(f"creating a PostgreSQL cluster in {self.data_dir}")
        self._run(
            "initdb",
            "--pgdata",
            str(self.data_dir),
            "--username",
            SUPERUSER,
            "--pwfile",
            str(self._password_file),
            "--auth",
            "scram-sha-256",
            "--encoding",
            "UTF8",
            "--no-locale",
            "--no-instructions",
            # a cluster for tests and demos: skip initdb's final fsync of the template files (seconds on a busy disk)
            "--no-sync",
        )
        with open(self.data_dir / "postgresql.conf", "a", encoding="utf-8") as config:
            config.write(_CONFIG)
        self._initialized_marker.write_text(self._run("initdb", "--version").stdout)

    def _server(self, port: int) -> PostgresServer:
        return PostgresServer(HOST, port, SUPERUSER, self._password_file.read_text().strip())

    def _postmaster(self) -> tuple[int, int] | None:
        """(pid, port) from the data dir's postmaster.pid, or None when there is none."""
        try:
            # postmaster.pid: pid, data dir, start time, port, ...
            lines = (self.data_dir / "postmaster.pid").read_text().splitlines()
            return int(lines[0]), int(lines[3])
        except (OSError, IndexError, ValueError):
            return None

    def _running_port(self) -> int | None:
        """The port of the server running on this data dir, or None (a pid file left by a killed server too)."""
        postmaster = self._postmaster()
        return postmaster[1] if postmaster and _alive(postmaster[0]) else None

    def _wait_for_leftovers(self) -> None:
        """Wait until no process of an earlier server of this cluster runs; then drop its stale pid file.

        After a kill -9 of the server, its helper processes notice and exit within a moment. Until they have,
        a new server must not start on the same files. A pid file whose process is gone (or a zombie nobody
        reaped, which PostgreSQL would take for a live server) is then removed.
        """
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while leftovers := _processes_in(self.data_dir):
            if time.monotonic() > deadline:
                raise PostgresError(
                    f"processes of an earlier PostgreSQL server on {self.data_dir} still run (PIDs "
                    f"{', '.join(map(str, leftovers))}); stop them and run again"
                )
            time.sleep(0.2)
        with contextlib.suppress(FileNotFoundError):
            (self.data_dir / "postmaster.pid").unlink()

    def _answers(self, server: PostgresServer) -> bool:
        import psycopg2

        try:
            with server.admin() as connection, connection.cursor() as cursor:
                cursor.execute("select 1")
                return True
        except psycopg2.Error:
            return False

    def _read_port(self) -> int | None:
        try:
            return int(json.loads(self._state_file.read_text())["port"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _start_on(self, port: int) -> bool:
        """Start the server on `port`; False when the port was taken meanwhile."""
        result = self._run(
            "pg_ctl",
            "start",
            "--pgdata",
            str(self.data_dir),
            "--log",
            str(self.log_file),
            "--wait",
            "--timeout",
            str(START_TIMEOUT_SECONDS),
            "-o",
            f"-p {port}",
            check=False,
        )
        if result.returncode == 0:
            return True
        tail = self.log_file.read_text(errors="replace")[-3000:] if self.log_file.exists() else ""
        if "could not bind" in tail or "Address already in use" in tail:
            return False
        said = (result.stderr or result.stdout).strip()
        raise PostgresError(f"PostgreSQL did not start ({said}); the end of {self.log_file}:\n{tail}")

    def start(self) -> PostgresServer:
        """Install, initialise and start as needed; reuse the server when it runs and answers already."""
        with self._locked():
            self._prepare_folder()
            if not self._initialized_marker.exists():
                self._initialize()
            running = self._running_port()
            if running is not None:
                server = self._server(running)
                if self._answers(server):
                    return server
                self.log(f"the PostgreSQL server in {self.data_dir} does not answer; restarting it")
                self._stop()
            self._wait_for_leftovers()
            port = self._read_port()
            for _ in range(_PORT_ATTEMPTS):
                if port is None or not _port_is_free(port):
                    port = free_port()
                if self._start_on(port):
                    break
                port = None
            else:
                raise PostgresError(f"PostgreSQL found no free port on {HOST} after {_PORT_ATTEMPTS} tries")
            self._state_file.write_text(json.dumps({"port": port, "superuser": SUPERUSER}))
            server = self._server(port)
            if not self._answers(server):
                raise PostgresError(f"PostgreSQL started on port {port} but does not accept its superuser's login")
            return server

    def _stop(self) -> bool:
        if self._running_port() is None:
            return False
        args = ("stop", "--pgdata", str(self.data_dir), "--wait", "--timeout", str(START_TIMEOUT_SECONDS))
        for mode in ("fast", "immediate"):
            if self._run("pg_ctl", *args, "--mode", mode, check=False).returncode == 0:
                return True
            if self._running_port() is None:  # it ended meanwhile
                return True
        raise PostgresError(f"PostgreSQL on {self.data_dir} did not stop; see {self.log_file}")

    def stop(self) -> bool:
        """Shut the server down (fast: open sessions are ended, committed data is kept); False if none ran."""
        if not self._initialized_marker.exists():
            return False
        with self._locked():
            return self._stop()

    def server(self) -> PostgresServer | None:
        """The running server, or None."""
        if not self._initialized_marker.exists():
            return None
        port = self._running_port()
        return self._server(port) if port is not None else None

    # --- databases and roles ---------------------------------------------------------------------------
    def ensure_database(self, server: PostgresServer, dbname: str, owner: str, password: str) -> None:
        """A login role `owner` with `password` (set again if it exists) owning database `dbname`."""
        from psycopg2 import sql

        _check_name("database", dbname)
        _check_name("role", owner)
        with server.admin() as connection, connection.cursor() as cursor:
            cursor.execute("select 1 from pg_roles where rolname = %s", [owner])
            verb = "alter" if cursor.fetchone() else "create"
            cursor.execute(sql.SQL(verb + " role {} with login password %s").format(sql.Identifier(owner)), [password])
            cursor.execute("select 1 from pg_database where datname = %s", [dbname])
            if not cursor.fetchone():
                cursor.execute(
                    sql.SQL("create database {} owner {}").format(sql.Identifier(dbname), sql.Identifier(owner))
                )

    def grant_read_only(self, server: PostgresServer, dbname: str, owner: str, reader: str, password: str) -> None:
        """A login role `reader` that may read, never write, everything `owner` has and will have in `dbname`.

        For an analysts' role: DuckDB attaches the lake READ_ONLY, and PostgreSQL refuses a write all the same.
        """
        from psycopg2 import sql

        _check_name("role", reader)
        with server.admin() as connection, connection.cursor() as cursor:
            cursor.execute("select 1 from pg_roles where rolname = %s", [reader])
            verb = "alter" if cursor.fetchone() else "create"
            cursor.execute(sql.SQL(verb + " role {} with login password %s").format(sql.Identifier(reader)), [password])
            cursor.execute(sql.SQL("grant connect on database {} to {}").format(*map(sql.Identifier, (dbname, reader))))
        with server.admin(dbname) as connection, connection.cursor() as cursor:
            names = {"owner": sql.Identifier(owner), "reader": sql.Identifier(reader)}
            # schemas and tables the owner creates later (DuckLake creates its metadata schema on first attach)
            cursor.execute(
                sql.SQL("alter default privileges for role {owner} grant usage on schemas to {reader}").format(**names)
            )
            cursor.execute(
                sql.SQL("alter default privileges for role {owner} grant select on tables to {reader}").format(**names)
            )
            cursor.execute(
                "select nspname from pg_namespace n join pg_roles r on r.oid = n.nspowner where r.rolname = %s",
                [owner],
            )
            for (schema,) in cursor.fetchall():
                target = sql.Identifier(schema)
                cursor.execute(sql.SQL("grant usage on schema {} to {reader}").format(target, **names))
                cursor.execute(sql.SQL("grant select on all tables in schema {} to {reader}").format(target, **names))


def _watch(folder: Path, pid: int, remove: bool) -> None:
    """Stop the server once process `pid` has ended, however it ended; then remove `folder` if asked."""
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        except PermissionError:
            pass
        time.sleep(1)
    if folder.exists():
        cluster = LocalPostgres(folder, log=lambda _: None)
        cluster.stop()
        if remove:
            # an initdb whose starter died may still be writing: let it finish before deleting under it
            deadline = time.monotonic() + START_TIMEOUT_SECONDS
            while (_processes_in(cluster.data_dir) or _processes_in(cluster.folder)) and time.monotonic() < deadline:
                time.sleep(0.5)
            shutil.rmtree(folder, ignore_errors=True)


def stop_when_gone(folder: Path, pid: int, *, remove: bool = False) -> subprocess.Popen:
    """Start a small detached watcher that stops the server in `folder` when process `pid` ends.

    A test run or demo killed with kill -9 runs no clean-up code; the watcher still stops what it started
    (and, with `remove`, deletes the folder: a test run's throwaway cluster).
    """
    command = [sys.executable, "-m", "segment_pipeline.devtools.postgres", "watch", str(folder), "--pid", str(pid)]
    return subprocess.Popen(
        [*command, "--remove"] if remove else command,
        start_new_session=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m segment_pipeline.devtools.postgres", description=__doc__.split("\n")[0]
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("install", help="install Debian's postgresql package when initdb and pg_ctl are missing")
    for name, text in (
        ("start", "start (creating it first if needed)"),
        ("stop", "stop"),
        ("status", "say if it runs"),
    ):
        commands.add_parser(name, help=f"{text} the server in FOLDER").add_argument("folder", type=Path)
    watch = commands.add_parser("watch", help="stop the server in FOLDER once process PID has ended")
    watch.add_argument("folder", type=Path)
    watch.add_argument("--pid", type=int, required=True)
    watch.add_argument("--remove", action="store_true", help="then delete FOLDER")
    args = parser.parse_args(argv)
    try:
        if args.command == "install":
            print(f"PostgreSQL server programs: {ensure_installed()}")
        elif args.command == "start":
            server = LocalPostgres(args.folder).start()
            print(f"PostgreSQL runs on {server.host}:{server.port} (superuser {server.superuser})")
        elif args.command == "stop":
            print("stopped" if LocalPostgres(args.folder).stop() else "not running")
        elif args.command == "status":
            server = LocalPostgres(args.folder, log=lambda _: None).server()
            print(f"running on {server.host}:{server.port}" if server else "not running")
            return 0 if server else 3
        else:
            _watch(args.folder, args.pid, args.remove)
    except PostgresError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
