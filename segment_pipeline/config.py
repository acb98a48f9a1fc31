"""Pipeline settings: where the warehouse lives, the account timezone, the lookback, DuckDB's memory.

`PipelineSettings.from_env` is the one reader of these variables; the Dagster resource
(`defs/resources.WarehouseResource`) takes its field defaults from it when the definitions load, and the demo
reads the same object. Every relative path is resolved against the working directory once, here, and the
absolute result is what dlt, dbt (which runs with its own working directory) and the analyst copy all use.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .klaviyo.limits import MAX_DAYS_PER_DAILY_SERIES

DEFAULT_WAREHOUSE_PATH = "data/warehouse.duckdb"
DEFAULT_ANALYTICS_PATH = "data/analytics.duckdb"
DEFAULT_STATE_DIR = "data/state"
DEFAULT_CHARTS_DIR = "data/charts"
DEFAULT_TIMEZONE = "UTC"
# the one account of a deployment without an accounts file (see segment_pipeline.accounts)
DEFAULT_ACCOUNT_NAME = "default"
# Klaviyo revises a day's report buckets for up to about 5 days after it ends; the daily run fetches each day a
# last time at age lookback + 1, so 5 covers that, and costs no request (one request spans 60 days)
DEFAULT_LOOKBACK_DAYS = 5
# the lookback rides along in the daily run's one request, which covers at most 60 days
MAX_LOOKBACK_DAYS = MAX_DAYS_PER_DAILY_SERIES - 1


class ConfigError(ValueError):
    """A setting has a value the pipeline cannot use; the message names the variable."""


def _path(env: dict, name: str, default: str) -> Path:
    return Path(env.get(name) or default).expanduser().resolve()


# DuckDB's own default is 80 % of the machine's memory, and it keeps what it took: a year of 10,000 segments
# then held 1.5 GB in the load and again in dbt. Within this limit DuckDB spills to a temporary file instead.
DEFAULT_DUCKDB_MEMORY_LIMIT = "256MB"


def configured_timezone(env: dict | None = None) -> str:
    """KLAVIYO_TIMEZONE, checked to be a real IANA name (the account's timezone in Klaviyo)."""
    env = os.environ if env is None else env
    name = env.get("KLAVIYO_TIMEZONE") or DEFAULT_TIMEZONE
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(f"KLAVIYO_TIMEZONE={name!r} is not an IANA timezone name such as 'US/Eastern'") from exc
    return name


@dataclass(frozen=True)
class PipelineSettings:
    """Where things are written, and how the series is pulled."""

    warehouse_path: Path
    analytics_path: Path
    state_dir: Path
    charts_dir: Path
    lookback_days: int = DEFAULT_LOOKBACK_DAYS
    # DUCKDB_MEMORY_LIMIT: the memory each DuckDB connection of the pipeline (dlt's load, dbt, the copy) may use
    duckdb_memory_limit: str = DEFAULT_DUCKDB_MEMORY_LIMIT

    def __post_init__(self) -> None:
        check_lookback_days(self.lookback_days)

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

    @property
    def series_pending_path(self) -> Path:
        """The record of backfills left unfinished by the report budget, read by the resume sensor."""
        return self.state_dir / "series_pending.json"

    def series_pending_path_for(self, account_name: str) -> Path:
        """An account's record of unfinished backfills: the single account keeps `series_pending.json`, a named
        account has `series_pending/<name>.json` (one file each, so accounts fetching at once never race)."""
        if account_name == DEFAULT_ACCOUNT_NAME:
            return self.series_pending_path
        return self.series_pending_dir / f"{account_name}.json"

    @property
    def series_pending_dir(self) -> Path:
        return self.state_dir / "series_pending"

    def fetch_lock_path(self, account_name: str) -> Path:
        """The kernel lock one account's Klaviyo requests are made under (`locks/fetch_<name>.lock`)."""
        return self.state_dir / "locks" / f"fetch_{account_name}.lock"

    @property
    def report_ledger_dir(self) -> Path:
        """The report ledgers (one `<account id>.json` per Klaviyo account), shared by every run."""
        return self.state_dir / "report_ledgers"

    @property
    def legacy_report_ledger_path(self) -> Path:
        """The single ledger file of versions before per-account ledgers; its counts are adopted, then retired."""
        return self.state_dir / "klaviyo_report_budget.json"

    @classmethod
    def from_env(cls, env: dict | None = None) -> PipelineSettings:
        env = dict(os.environ if env is None else env)
        raw_lookback = env.get("SERIES_LOOKBACK_DAYS") or str(DEFAULT_LOOKBACK_DAYS)
        try:
            lookback = int(raw_lookback)
        except ValueError as exc:
            raise ConfigError(f"SERIES_LOOKBACK_DAYS={raw_lookback!r} is not a whole number of days") from exc
        return cls(
            warehouse_path=_path(env, "WAREHOUSE_PATH", DEFAULT_WAREHOUSE_PATH),
            analytics_path=_path(env, "ANALYTICS_PATH", DEFAULT_ANALYTICS_PATH),
            state_dir=_path(env, "PIPELINE_STATE_DIR", DEFAULT_STATE_DIR),
            charts_dir=_path(env, "CHARTS_DIR", DEFAULT_CHARTS_DIR),
            lookback_days=lookback,
            duckdb_memory_limit=env.get("DUCKDB_MEMORY_LIMIT") or DEFAULT_DUCKDB_MEMORY_LIMIT,
        )


def check_lookback_days(days: int) -> int:
    """SERIES_LOOKBACK_DAYS, checked: the lookback rides along in the daily run's one request."""
    if not 0 <= days <= MAX_LOOKBACK_DAYS:
        raise ConfigError(
            f"SERIES_LOOKBACK_DAYS must be between 0 and {MAX_LOOKBACK_DAYS} so a daily run stays one request"
        )
    return days
