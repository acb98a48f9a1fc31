"""Where the pipeline writes (`StorageSettings`), and the defaults every part shares.

No environment here: `settings.load_settings` reads the variables and builds these. Every relative path is
resolved against the working directory once, when the settings are made, and the absolute result is what
dlt, dbt (which runs with its own working directory) and the analyst copy all use.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .klaviyo.limits import MAX_DAYS_PER_DAILY_SERIES
from .lake.catalog import CatalogSettingError
from .lake.location import Lake

DEFAULT_WAREHOUSE_PATH = "data/warehouse.duckdb"
DEFAULT_ANALYTICS_PATH = "data/analytics.duckdb"
DEFAULT_STATE_DIR = "data/state"
DEFAULT_CHARTS_DIR = "data/charts"
# a warehouse setting that starts with this names a DuckLake instead of a DuckDB file
LAKE_SCHEME = "ducklake:"
# the variables of the warehouse setting, named in its messages
WAREHOUSE_ENV = "WAREHOUSE_PATH"
WAREHOUSE_DATA_PATH_ENV = "WAREHOUSE_DATA_PATH"
# DuckDB's extensions for a lake, placed from their packages (lake/extensions.py), under the state folder
EXTENSION_DIR_NAME = "duckdb_extensions"
DEFAULT_TIMEZONE = "UTC"
# the one account of a deployment without an accounts file
DEFAULT_ACCOUNT_NAME = "default"
# Klaviyo revises a day's report buckets for up to about 5 days after it ends; the daily run fetches each day a
# last time at age lookback + 1, so 5 covers that, and costs no request (one request spans 60 days)
DEFAULT_LOOKBACK_DAYS = 5
# the lookback rides along in the daily run's one request, which covers at most 60 days
MAX_LOOKBACK_DAYS = MAX_DAYS_PER_DAILY_SERIES - 1
# DuckDB's own default is 80 % of the machine's memory, and it keeps what it took: a year of 10,000 segments
# then held 1.5 GB in the load and again in dbt. Within this limit DuckDB spills to a temporary file instead.
# A process peaks at about this plus its own 200-300 MB (Dagster and the code, or dbt). At 128 MB every step of a
# year of 10,000 segments completes (docs/performance.md: dbt's process then peaks at about 360 MB, at 256 MB
# at about 530); dbt_project/profiles.yml repeats it for dbt run by hand, keep the two the same.
DEFAULT_DUCKDB_MEMORY_LIMIT = "128MB"
# dlt's loads stream rows into tables, and DuckDB fills whatever limit it has even then: at 128 MB the series merge
# of a year of 10,000 segments took 150 MB on top of the run's process, at 64 MB 50-75 MB, in about the same time
# (0.8 s against 1.1 s for 3.65 million rows; docs/performance.md). dbt's models need the larger limit above (at
# 64 MB two of them ran out of memory at that size), so loads have a limit of their own.
DEFAULT_DUCKDB_LOAD_MEMORY_LIMIT = "64MB"
# DuckDB keeps the rows of an insert or a copy in their order unless told not to, which holds them in memory
# beyond the limit above (DuckDB's own advice for large loads: turn it off). Nothing the pipeline writes depends
# on physical order: every read that needs one says ORDER BY. Given to the loads and the analyst copy; not to
# dbt, whose anomaly model of a year of 10,000 segments ran out of memory with it (docs/performance.md).
DUCKDB_WRITE_SETTINGS = {"preserve_insertion_order": False}
# a step waits this long for another step's warehouse lock (a long backfill's load, a dbt build)
DEFAULT_LOCK_TIMEOUT_SECONDS = 6 * 60 * 60
# and this long for a DuckDB session outside the pipeline (an analyst's) to let go of the file
DEFAULT_DUCKDB_WAIT_SECONDS = 60.0


class ConfigError(ValueError):
    """A setting has a value the pipeline cannot use; the message names the variable and the fix."""


@dataclass(frozen=True)
class StorageSettings:
    """Where things are written: the warehouse, the analyst copy, the report, and the pipeline's state.

    The warehouse is a DuckDB file (`warehouse_path`) or, when `lake` is set, a DuckLake; `warehouse_path` is
    then only where a file warehouse to move over would be (`segment-pipeline lake copy`).
    """

    warehouse_path: Path
    analytics_path: Path
    state_dir: Path
    charts_dir: Path
    # the memory each DuckDB connection of the pipeline (dbt, the copy, the steps' reads) may use
    duckdb_memory_limit: str = DEFAULT_DUCKDB_MEMORY_LIMIT
    # the same for dlt's loads (see DEFAULT_DUCKDB_LOAD_MEMORY_LIMIT)
    duckdb_load_memory_limit: str = DEFAULT_DUCKDB_LOAD_MEMORY_LIMIT
    lock_timeout_seconds: float = DEFAULT_LOCK_TIMEOUT_SECONDS
    duckdb_wait_seconds: float = DEFAULT_DUCKDB_WAIT_SECONDS
    lake: Lake | None = None

    @classmethod
    def resolved(
        cls,
        warehouse_path: str | Path | None = None,
        analytics_path: str | Path | None = None,
        state_dir: str | Path | None = None,
        charts_dir: str | Path | None = None,
        duckdb_memory_limit: str | None = None,
        duckdb_load_memory_limit: str | None = None,
        lock_timeout_seconds: float | None = None,
        duckdb_wait_seconds: float | None = None,
        warehouse_data_path: str | None = None,
        extension_dir: str | Path | None = None,
    ) -> StorageSettings:
        """The settings with defaults for what is not given, every path made absolute.

        `warehouse_path` is a file, or a lake `ducklake:postgres:<libpq connection string>` whose data go under
        `warehouse_data_path`; `extension_dir` is where DuckDB finds the lake's extensions.

        Raises:
            ConfigError: the lake setting cannot be used (the message names the variable and the fix).
        """

        def absolute(value: str | Path | None, default: str) -> Path:
            return Path(value or default).expanduser().resolve()

        state = absolute(state_dir, DEFAULT_STATE_DIR)
        lake = None
        if str(warehouse_path or "").startswith(LAKE_SCHEME):
            extensions = absolute(extension_dir, str(state / EXTENSION_DIR_NAME))
            lake = _lake(str(warehouse_path), warehouse_data_path, extensions)
            warehouse_path = None
        elif warehouse_data_path:
            raise ConfigError(
                f"{WAREHOUSE_DATA_PATH_ENV} is set but {WAREHOUSE_ENV} names a DuckDB file: a data path belongs to a "
                f"DuckLake warehouse ({WAREHOUSE_ENV}=ducklake:postgres:dbname=... host=... port=... user=...). "
                "Unset it, or set the lake."
            )
        return cls(
            warehouse_path=absolute(warehouse_path, DEFAULT_WAREHOUSE_PATH),
            analytics_path=absolute(analytics_path, DEFAULT_ANALYTICS_PATH),
            state_dir=state,
            charts_dir=absolute(charts_dir, DEFAULT_CHARTS_DIR),
            duckdb_memory_limit=duckdb_memory_limit or DEFAULT_DUCKDB_MEMORY_LIMIT,
            duckdb_load_memory_limit=duckdb_load_memory_limit or DEFAULT_DUCKDB_LOAD_MEMORY_LIMIT,
            lock_timeout_seconds=DEFAULT_LOCK_TIMEOUT_SECONDS if lock_timeout_seconds is None else lock_timeout_seconds,
            duckdb_wait_seconds=DEFAULT_DUCKDB_WAIT_SECONDS if duckdb_wait_seconds is None else duckdb_wait_seconds,
            lake=lake,
        )

    @property
    def warehouse_description(self) -> str:
        """The warehouse as messages name it: the file, or the lake's catalog and data path (never a password)."""
        if self.lake is None:
            return str(self.warehouse_path)
        return f"the DuckLake {self.lake.catalog.describe()} (data in {self.lake.data_path})"

    @property
    def dlt_pipelines_dir(self) -> Path:
        """dlt's working directory, kept under the project (not in the home directory)."""
        return self.state_dir / "dlt"

    @property
    def series_staging_dir(self) -> Path:
        """Report responses fetched but not yet loaded: `<state dir>/staging/series/<account id>/*.parquet`."""
        return self.state_dir / "staging" / "series"

    @property
    def series_quarantine_dir(self) -> Path:
        """Staged responses that could not be loaded, moved aside with a note: `<state dir>/quarantine/series/<id>/`."""
        return self.state_dir / "quarantine" / "series"

    def fetch_lock_path(self, account_name: str) -> Path:
        """The kernel lock one account's Klaviyo requests are made under (`locks/fetch_<name>.lock`)."""
        return self.state_dir / "locks" / f"fetch_{account_name}.lock"

    @property
    def history_start_dir(self) -> Path:
        """Each account's first daily partition, fixed when the account is first loaded (`<name>.date`)."""
        return self.state_dir / "history_start"

    @property
    def reconciliation_rotation_dir(self) -> Path:
        """Where each Klaviyo account's reconciliation rotation stands (`<account id>.json`: the last id compared)."""
        return self.state_dir / "reconciliation"

    @property
    def report_ledger_dir(self) -> Path:
        """The report ledgers (one `<account id>.json` per Klaviyo account), shared by every run."""
        return self.state_dir / "report_ledgers"

    @property
    def legacy_report_ledger_path(self) -> Path:
        """The single ledger file of versions before per-account ledgers; its counts are adopted, then retired."""
        return self.state_dir / "klaviyo_report_budget.json"


def _lake(setting: str, data_path: str | None, extension_dir: Path) -> Lake:
    """The lake the warehouse setting names, checked; ConfigError says what is wrong and what to write."""
    if not data_path:
        raise ConfigError(
            f"{WAREHOUSE_ENV} names a DuckLake but {WAREHOUSE_DATA_PATH_ENV} is not set: set it to the folder (or "
            "object storage URL, s3://bucket/prefix/) where the lake's Parquet files go, the same for every "
            "process that writes the lake."
        )
    try:
        return Lake.from_url(setting, data_path, extension_dir)
    except CatalogSettingError as exc:
        raise ConfigError(f"{WAREHOUSE_ENV}: {exc}") from None
