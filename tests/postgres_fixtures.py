"""A real PostgreSQL for the tests that need one: one server per test run, shared by every pytest-xdist worker.

The controlling pytest process picks the server's folder (under the system's temporary directory, which the
`postgres` account can reach when the tests run as root) and passes it to its workers in the environment. The
first test that asks for the server creates and starts it (`LocalPostgres.start` takes turns on a lock file,
so workers starting together share one), the others reuse it, and the controlling process stops it and removes
the folder when the run ends. A watcher stops it too if the run is killed before it can.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from segment_pipeline.devtools.postgres import LocalPostgres, PostgresServer, file_lock, stop_when_gone
from segment_pipeline.lake import Lake, PostgresCatalog

FOLDER_ENV = "SEGMENT_PIPELINE_TEST_POSTGRES_DIR"
OWNER_ENV = "SEGMENT_PIPELINE_TEST_POSTGRES_OWNER"


def pytest_configure(config: pytest.Config) -> None:
    if hasattr(config, "workerinput"):
        return  # a worker: the controlling process has chosen, and its environment came along
    os.environ[FOLDER_ENV] = str(Path(tempfile.gettempdir()) / f"segment-pipeline-test-postgres-{os.getpid()}")
    os.environ[OWNER_ENV] = str(os.getpid())


def pytest_unconfigure(config: pytest.Config) -> None:
    if hasattr(config, "workerinput") or not os.environ.get(FOLDER_ENV):
        return
    folder = Path(os.environ[FOLDER_ENV])
    if folder.exists():
        LocalPostgres(folder, log=lambda _: None).stop()
        shutil.rmtree(folder, ignore_errors=True)


@dataclass(frozen=True)
class PostgresForTests:
    local: LocalPostgres
    server: PostgresServer

    def new_database(self, prefix: str) -> tuple[PostgresCatalog, str]:
        """A fresh database owned by a fresh login role; returns its catalog and the role's password."""
        name = f"{prefix}_{secrets.token_hex(4)}"
        password = secrets.token_urlsafe(16)
        self.local.ensure_database(self.server, name, name, password)
        # a throwaway database: commits need not wait for the disk (every DuckLake statement commits to it)
        with self.server.admin() as connection, connection.cursor() as cursor:
            cursor.execute(f"alter database {name} set synchronous_commit = off")
        return PostgresCatalog(dbname=name, host=self.server.host, user=name, port=self.server.port), password


@pytest.fixture(scope="session")
def postgres() -> PostgresForTests:
    """The run's PostgreSQL server (started on first use)."""
    folder = Path(os.environ[FOLDER_ENV])
    folder.mkdir(parents=True, exist_ok=True)
    # the watcher first: a run killed even while the cluster is being created leaves nothing behind
    with file_lock(folder / "watcher.lock"):
        marker = folder / "watched"
        if not marker.exists():
            stop_when_gone(folder, int(os.environ[OWNER_ENV]), remove=True)
            marker.touch()
    local = LocalPostgres(folder)
    server = local.start()
    return PostgresForTests(local, server)


@pytest.fixture
def server_dir() -> Iterator[Path]:
    """An empty folder the `postgres` account can reach (pytest's own tmp_path is closed to other users)."""
    folder = Path(tempfile.mkdtemp(prefix="segment-pipeline-pg-"))
    folder.chmod(0o755)
    yield folder / "cluster"
    cluster = LocalPostgres(folder / "cluster", log=lambda _: None)
    if cluster.server() is not None:
        cluster.stop()
    shutil.rmtree(folder, ignore_errors=True)


def make_lake(catalog: PostgresCatalog, tmp_path: Path, extension_dir: Path) -> Lake:
    return Lake(catalog=catalog, data_path=tmp_path / "lake_data", extension_dir=extension_dir)


@pytest.fixture(scope="session")
def extension_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One DuckDB extension directory per worker, filled from the extension packages."""
    from segment_pipeline.lake import place_extensions

    directory = tmp_path_factory.mktemp("duckdb_extensions")
    place_extensions(directory)
    return directory


@dataclass(frozen=True)
class WarehouseUnderTest:
    """The warehouse a parametrized pipeline test runs on: what to read (`query(target, ...)`) and the
    variables that select it (`materialize(..., env=env)`)."""

    kind: str
    target: Path | Lake
    env: dict[str, str]


@pytest.fixture(params=["file", "lake"])
def warehouse_kind(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The test once on a DuckDB file and once on a DuckLake of its own (a fresh PostgreSQL database)."""
    from .pipeline_helpers import lake_env  # Dagster: only for the tests that run the pipeline

    if request.param == "file":
        return WarehouseUnderTest("file", tmp_path / "warehouse.duckdb", {})
    catalog, password = request.getfixturevalue("postgres").new_database("pipeline")
    # libpq reads the password from the environment, in this process and in dbt's
    monkeypatch.setenv("PGPASSWORD", password)
    lake = make_lake(catalog, tmp_path, request.getfixturevalue("extension_dir"))
    return WarehouseUnderTest("lake", lake, lake_env(lake))
