"""Where the pipeline writes (`StorageSettings`), and the defaults every part shares.

No environment here: `settings.load_settings` reads the variables and builds these. Every relative path is
resolved against the working directory once, when the settings are made, and the absolute result is what
dlt, dbt (which runs with its own working directory) and the analyst copy all use.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .klaviyo.limits import MAX_DAYS_PER_DAILY_SERIES

DEFAULT_WAREHOUSE_PATH = "data/warehouse.duckdb"
DEFAULT_ANALYTICS_PATH = "data/analytics.duckdb"
DEFAULT_STATE_DIR = "data/state"
DEFAULT_CHARTS_DIR = "data/charts"
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
DEFAULT_DUCKDB_MEMORY_LIMIT = "256MB"
# a step waits this long for another step's warehouse lock (a long backfill's load, a dbt build)
DEFAULT_LOCK_TIMEOUT_SECONDS = 6 * 60 * 60
# and this long for a DuckDB session outside the pipeline (an analyst's) to let go of the file
DEFAULT_DUCKDB_WAIT_SECONDS = 60.0


class ConfigError(ValueError):
    """A setting has a value the pipeline cannot use; the message names the variable and the fix."""


@dataclass(frozen=True)
class StorageSettings:
    """Where things are written: the warehouse, the analyst copy, the report, and the pipeline's state."""

    warehouse_path: Path
    analytics_path: Path
    state_dir: Path
    charts_dir: Path
    # the memory each DuckDB connection of the pipeline (dlt's load, dbt, the copy) may use
    duckdb_memory_limit: str = DEFAULT_DUCKDB_MEMORY_LIMIT
    lock_timeout_seconds: float = DEFAULT_LOCK_TIMEOUT_SECONDS
    duckdb_wait_seconds: float = DEFAULT_DUCKDB_WAIT_SECONDS

    @classmethod
    def resolved(
        cls,
        warehouse_path: str | Path | None = None,
        analytics_path: str | Path | None = None,
        state_dir: str | Path | None = None,
        charts_dir: str | Path | None = None,
        duckdb_memory_limit: str | None = None,
        lock_timeout_seconds: float | None = None,
        duckdb_wait_seconds: float | None = None,
    ) -> StorageSettings:
        """The settings with defaults for what is not given, every path made absolute."""

        def absolute(value: str | Path | None, default: str) -> Path:
            return Path(value or default).expanduser().resolve()

        return cls(
            warehouse_path=absolute(warehouse_path, DEFAULT_WAREHOUSE_PATH),
            analytics_path=absolute(analytics_path, DEFAULT_ANALYTICS_PATH),
            state_dir=absolute(state_dir, DEFAULT_STATE_DIR),
            charts_dir=absolute(charts_dir, DEFAULT_CHARTS_DIR),
            duckdb_memory_limit=duckdb_memory_limit or DEFAULT_DUCKDB_MEMORY_LIMIT,
            lock_timeout_seconds=DEFAULT_LOCK_TIMEOUT_SECONDS if lock_timeout_seconds is None else lock_timeout_seconds,
            duckdb_wait_seconds=DEFAULT_DUCKDB_WAIT_SECONDS if duckdb_wait_seconds is None else duckdb_wait_seconds,
        )

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
    def report_ledger_dir(self) -> Path:
        """The report ledgers (one `<account id>.json` per Klaviyo account), shared by every run."""
        return self.state_dir / "report_ledgers"

    @property
    def legacy_report_ledger_path(self) -> Path:
        """The single ledger file of versions before per-account ledgers; its counts are adopted, then retired."""
        return self.state_dir / "klaviyo_report_budget.json"
