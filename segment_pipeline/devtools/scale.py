"""`segment-pipeline demo-scale` (`make demo-scale`): the demo on the scaled deployment of docs/deploying.md.

Everything lives under data/scale/: a PostgreSQL server of its own (`devtools.postgres`: Debian's package,
installed when missing, on a free port of 127.0.0.1) holding Dagster's storage (database `dagster`) and the
lake's catalog (database `lake`); the lake's Parquet files; a Dagster instance made from deploy/dagster.yaml
(runs queued, started by the daemon, at most one per account). The demo's backfill of 4 simulated accounts runs
through that daemon into the lake, exactly as `make demo` runs into a DuckDB file (`devtools.demo`).

It writes `connection.env` (the variables that point any command at this deployment) and `pgpass` (libpq's
password file: the passwords are never in a variable or a command line), prints the DuckDB line an analyst runs
and what that line reads from the lake, and stops the PostgreSQL server it started. Run again, it starts the
same server on the same data (or uses it, when it is running) and loads again: merges keep every row once.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import os
import secrets
import shlex
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ..charts import HTML_NAME
from ..lake import Lake, PostgresCatalog
from ..lake.command import analyst_command
from ..settings import child_environment
from . import demo, processes
from .postgres import LocalPostgres, PostgresError, PostgresServer, stop_when_gone

SCALE_DATA_DIR = "data/scale"
SCALE_ACCOUNTS = 4
# deploy/dagster.yaml: Dagster's storage in PostgreSQL, the queued run coordinator, one run per account
DEPLOY_INSTANCE_SETTINGS = processes.REPO / "deploy" / "dagster.yaml"
DAGSTER_DATABASE = DAGSTER_ROLE = "dagster"
LAKE_DATABASE = "lake"
LAKE_ROLE = "pipeline"
ANALYST_ROLE = "analyst"
CONNECTION_FILE = "connection.env"
PASSWORD_FILE = "pgpass"
# the variables connection.env sets, in its order (the rest of the pipeline's settings keep their defaults)
CONNECTION_VARIABLES = (
    "DAGSTER_HOME",
    "DAGSTER_POSTGRES_URL",
    "PGPASSFILE",
    "WAREHOUSE_PATH",
    "WAREHOUSE_DATA_PATH",
    "DUCKDB_EXTENSION_DIR",
    "PIPELINE_STATE_DIR",
    "CHARTS_DIR",
    "KLAVIYO_ACCOUNTS_FILE",
)


@dataclass(frozen=True)
class ScaledDeployment:
    """The deployment's PostgreSQL server and where everything of it is."""

    data_dir: Path
    server: PostgresServer

    @property
    def password_file(self) -> Path:
        return self.data_dir / PASSWORD_FILE

    @property
    def lake(self) -> Lake:
        return self.lake_for(LAKE_ROLE)

    def lake_for(self, user: str) -> Lake:
        catalog = PostgresCatalog(dbname=LAKE_DATABASE, host=self.server.host, user=user, port=self.server.port)
        return Lake(catalog=catalog, data_path=self.data_dir / "lake_data", extension_dir=self.extension_dir)

    @property
    def extension_dir(self) -> Path:
        return self.data_dir / "duckdb_extensions"

    @property
    def dagster_url(self) -> str:
        # no password: libpq (under psycopg2) reads it from PGPASSFILE
        return f"postgresql+psycopg2://{DAGSTER_ROLE}@{self.server.host}:{self.server.port}/{DAGSTER_DATABASE}"

    def variables(self) -> dict[str, str]:
        """What makes the pipeline's processes use this deployment (the demo's own variables do the rest)."""
        return {
            "DAGSTER_POSTGRES_URL": self.dagster_url,
            "PGPASSFILE": str(self.password_file),
            "WAREHOUSE_PATH": self.lake.catalog.url(),
            "WAREHOUSE_DATA_PATH": self.lake.data_path,
            "DUCKDB_EXTENSION_DIR": str(self.extension_dir),
        }

    def analyst_line(self) -> str:
        """The shell line that opens DuckDB's command line on the lake as the read-only analysts' role."""
        # the CLI of the DuckDB version the extensions were built for (the `lake` extra installs it here)
        cli = Path(sys.executable).parent / "duckdb"
        program = str(cli) if cli.exists() else "duckdb"
        line = analyst_command(self.lake_for(ANALYST_ROLE), program)
        return f"PGPASSFILE={shlex.quote(str(self.password_file))} {line}"


def scale_parser() -> argparse.ArgumentParser:
    return demo.demo_parser(
        prog="segment-pipeline demo-scale",
        description="The demo on the scaled deployment: Dagster on a local PostgreSQL (queued runs started by its "
        "daemon), the warehouse a DuckLake with its catalog in that PostgreSQL, 4 simulated accounts loading at "
        "once. Writes <data dir>/connection.env.",
        data_dir=SCALE_DATA_DIR,
        accounts=SCALE_ACCOUNTS,
        # the second platform's demo writes its snapshots from this process, which has no lake password
        segments_api=0,
    )


def set_up_databases(local: LocalPostgres, server: PostgresServer, password_file: Path) -> None:
    """Dagster's database and the lake's (each owned by its own login role), a read-only analysts' role on the
    lake, and the libpq password file that holds the three passwords (new ones on every run)."""
    passwords = {role: secrets.token_urlsafe(24) for role in (DAGSTER_ROLE, LAKE_ROLE, ANALYST_ROLE)}
    local.ensure_database(server, DAGSTER_DATABASE, DAGSTER_ROLE, passwords[DAGSTER_ROLE])
    local.ensure_database(server, LAKE_DATABASE, LAKE_ROLE, passwords[LAKE_ROLE])
    local.grant_read_only(server, LAKE_DATABASE, LAKE_ROLE, ANALYST_ROLE, passwords[ANALYST_ROLE])
    databases = {DAGSTER_ROLE: DAGSTER_DATABASE, LAKE_ROLE: LAKE_DATABASE, ANALYST_ROLE: LAKE_DATABASE}
    # host:port:database:user:password; libpq ignores a file others can read, so it is made 600 before writing
    lines = [f"{server.host}:{server.port}:{databases[role]}:{role}:{password}" for role, password in passwords.items()]
    password_file.unlink(missing_ok=True)
    password_file.touch(mode=0o600)
    password_file.write_text("\n".join(lines) + "\n", encoding="utf-8")


def write_connection_file(path: Path, env: dict[str, str], postgres_folder: Path) -> None:
    """connection.env: the variables to run any command (dagster, segment-pipeline, dbt) against the deployment."""
    header = [
        "# Written by `make demo-scale` (segment-pipeline demo-scale): the variables that point a command at the",
        "# scaled demo's deployment. Its PostgreSQL runs only while the demo does; start it again (same port) with",
        f"#   {start_command(postgres_folder)}",
        "# then, in a shell: set -a; . " + str(path) + "; set +a; .venv/bin/dagster run list",
        "# The passwords are in the libpq password file PGPASSFILE names, never here.",
    ]
    body = [f"{name}={shlex.quote(env[name])}" for name in CONNECTION_VARIABLES if env.get(name)]
    path.write_text("\n".join(header + body) + "\n", encoding="utf-8")


def migrate_dagster_storage(env: dict[str, str], log_path: Path) -> None:
    """Create (or upgrade) Dagster's tables once, before the webserver and the daemon start together."""
    result = subprocess.run(
        [sys.executable, "-m", "dagster", "instance", "migrate"], env=env, capture_output=True, text=True
    )
    log_path.write_text(result.stdout + result.stderr, encoding="utf-8")
    if result.returncode:
        raise PostgresError(f"`dagster instance migrate` failed; its output is in {log_path}")


@contextlib.contextmanager
def running_postgres(folder: Path) -> Iterator[tuple[PostgresServer, bool]]:
    """The deployment's PostgreSQL server and whether it is started here: then it is stopped at the end (and by
    a watcher if this process is killed); when it runs already, it is used and left running."""
    local = LocalPostgres(folder)
    if local.server() is not None:
        yield local.start(), False  # start() checks that it answers (and restarts it if not)
        return
    watcher = stop_when_gone(local.folder, os.getpid())
    try:
        yield local.start(), True
    finally:
        local.stop()
        # the server is stopped: the watcher would only stop a server started after this process ends. It holds
        # nothing to clean up, so SIGKILL: a SIGTERM can be ignored (SIG_IGN is inherited from whatever started us)
        watcher.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            watcher.wait(timeout=30)


def read_accounts(deployment: ScaledDeployment) -> tuple[dict[str, int], dict[str, tuple]]:
    """Each account's segments and series (rows, first day, last day), read through the analyst line."""

    def rows(sql: str) -> list[list[str]]:
        result = subprocess.run(
            ["bash", "-c", deployment.analyst_line() + " -csv -noheader"],
            input=sql + ";\n",
            capture_output=True,
            text=True,
            timeout=120,
            env=child_environment(),
        )
        if result.returncode or result.stderr.strip():
            raise RuntimeError(f"the analyst line failed: {(result.stderr or result.stdout).strip()[-2000:]}")
        return list(csv.reader(io.StringIO(result.stdout)))

    segments = {row[0]: int(row[1]) for row in rows(demo.ACCOUNT_SEGMENTS_SQL)}
    series = {row[0]: (int(row[1]), row[2], row[3]) for row in rows(demo.ACCOUNT_SERIES_SQL)}
    return segments, series


def run_demo_scale(argv: list[str] | None = None) -> int:
    args = scale_parser().parse_args(argv)
    if args.accounts < 1 or args.days < 1:
        print("segment-pipeline demo-scale: --accounts and --days must be at least 1", file=sys.stderr)
        return 2
    data_dir = Path(args.data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    postgres_folder = data_dir / "postgres"
    try:
        with running_postgres(postgres_folder) as (server, started_here):
            print(f"PostgreSQL on {server.host}:{server.port} (cluster {postgres_folder})")
            deployment = ScaledDeployment(data_dir, server)
            set_up_databases(LocalPostgres(postgres_folder), server, deployment.password_file)
            home = processes.prepare_dagster_home(data_dir / "dagster_home", DEPLOY_INSTANCE_SETTINGS)
            variables = deployment.variables()
            migrate_dagster_storage(
                child_environment(DAGSTER_HOME=str(home), **variables), data_dir / "dagster_migrate.log"
            )
            run = demo.backfill_on_simulator(
                args,
                data_dir,
                deployment=variables,
                instance_settings=DEPLOY_INSTANCE_SETTINGS,
                # the demo's in-process listing would need the lake's password in this process's environment
                edit_a_definition=False,
            )
            write_connection_file(data_dir / CONNECTION_FILE, run.env, postgres_folder)
            if run.code != 0:
                print(f"The demo failed: what failed is above; Dagster's log is in {data_dir / 'dagster.log'}.")
                return run.code
            segments, series = read_accounts(deployment)
            print_scale_summary(deployment, run, segments, series, postgres_folder)
    except PostgresError as exc:
        print(f"segment-pipeline demo-scale: {exc}", file=sys.stderr)
        return 1
    if started_here:
        print(f"PostgreSQL stopped; start it again with: {start_command(postgres_folder)}")
    return 0


def start_command(postgres_folder: Path) -> str:
    """The command that starts the deployment's PostgreSQL again, on the same data and (when free) port."""
    return shlex.join([sys.executable, "-m", "segment_pipeline.devtools.postgres", "start", str(postgres_folder)])


def print_scale_summary(
    deployment: ScaledDeployment,
    run: demo.DemoRun,
    segments: dict[str, int],
    series: dict[str, tuple],
    postgres_folder: Path,
) -> None:
    print()
    print("Demo on the scaled deployment finished.")
    print(f"  Dagster storage:        {deployment.dagster_url} (instance {run.env['DAGSTER_HOME']})")
    print(f"  lake catalog:           {deployment.lake.catalog.describe()}")
    print(f"  lake data:              {deployment.lake.data_path}")
    print(f"  growth report:          {run.settings.storage.charts_dir / HTML_NAME}")
    print(
        f"  connection variables:   {deployment.data_dir / CONNECTION_FILE} (passwords in {deployment.password_file})"
    )
    print("  read from the lake with the analysts' line below:")
    demo.print_accounts_table(run.simulator, run.stats, segments, series)
    print()
    print("Query the lake as an analyst (read-only), while its PostgreSQL runs:")
    print(f"  {deployment.analyst_line()}")
