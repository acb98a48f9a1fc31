"""Dagster resources: the pipeline's configuration as typed fields, shown in the UI (Deployment > Resources).

`definitions.py` builds them with `from_env()`: the documented variables are read there once, when the code
loads, by the same readers the demo uses (`config.PipelineSettings.from_env`, `klaviyo.settings.options_from_env`).
The API key is Dagster's `EnvVar`: the UI and the run config hold only the variable's name, and the value is
read when a run starts, goes straight into the client, and never into logs or metadata.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from functools import cached_property
from pathlib import Path

import dagster as dg
from pydantic import Field

from .. import config
from ..accounts import Accounts, AccountSettings, SegmentFilter
from ..accounts.settings import PER_ACCOUNT_VARIABLES
from ..config import DEFAULT_ACCOUNT_NAME, PipelineSettings
from ..klaviyo import KlaviyoClient, KlaviyoSettings, ReportBudget, ReportLedgers
from ..klaviyo.limits import REPORTS_RATE_LIMIT
from ..klaviyo.pacing import min_interval
from ..klaviyo.settings import checked_api_key, options_from_env
from ..reconciliation import DEFAULT_RECONCILE_DAYS, RECONCILE_DAYS_SETTING, reconcile_days
from ..warehouse import account_fetch_lock, dlt_pipeline, read_connection, warehouse_lock
from .ingest.tags import TAGS_SETTING, tags_mode

API_KEY_ENV = "KLAVIYO_API_KEY"


def api_key_variable(env: Mapping[str, str] | None = None, name: str = API_KEY_ENV) -> str:
    """`dg.EnvVar(name)` (default KLAVIYO_API_KEY) when the variable is set, else "" (the code loads without a key).

    An unset `EnvVar` would stop a run with Dagster's "environment variable ... is not set", which does not
    say how to get a key; an empty key lets the client stop it with its own message (KlaviyoConfigError).
    """
    env = os.environ if env is None else env
    return dg.EnvVar(name) if env.get(name) else ""


class WarehouseResource(dg.ConfigurableResource):
    """Where the warehouse, the analyst copy, the charts and the pipeline's state live; lookback and memory."""

    warehouse_path: str = Field(default=config.DEFAULT_WAREHOUSE_PATH, description="WAREHOUSE_PATH")
    analytics_path: str = Field(default=config.DEFAULT_ANALYTICS_PATH, description="ANALYTICS_PATH")
    state_dir: str = Field(default=config.DEFAULT_STATE_DIR, description="PIPELINE_STATE_DIR")
    charts_dir: str = Field(default=config.DEFAULT_CHARTS_DIR, description="CHARTS_DIR")
    lookback_days: int = Field(default=config.DEFAULT_LOOKBACK_DAYS, description="SERIES_LOOKBACK_DAYS")
    duckdb_memory_limit: str = Field(default=config.DEFAULT_DUCKDB_MEMORY_LIMIT, description="DUCKDB_MEMORY_LIMIT")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **fields) -> WarehouseResource:
        """The resource the documented variables describe (absolute paths); keyword fields win."""
        settings = PipelineSettings.from_env(env)
        values = {
            "warehouse_path": str(settings.warehouse_path),
            "analytics_path": str(settings.analytics_path),
            "state_dir": str(settings.state_dir),
            "charts_dir": str(settings.charts_dir),
            "lookback_days": settings.lookback_days,
            "duckdb_memory_limit": settings.duckdb_memory_limit,
        }
        return cls(**{**values, **fields})

    @cached_property
    def settings(self) -> PipelineSettings:
        """The fields as checked, absolute settings (worked out once per run)."""

        def resolved(path: str) -> Path:
            return Path(path).expanduser().resolve()

        return PipelineSettings(
            warehouse_path=resolved(self.warehouse_path),
            analytics_path=resolved(self.analytics_path),
            state_dir=resolved(self.state_dir),
            charts_dir=resolved(self.charts_dir),
            lookback_days=self.lookback_days,
            duckdb_memory_limit=self.duckdb_memory_limit,
        )

    def pipeline(self, name: str):
        settings = self.settings
        return dlt_pipeline(name, settings.warehouse_path, settings.dlt_pipelines_dir, settings.duckdb_memory_limit)

    @contextlib.contextmanager
    def lock(self, context: dg.OpExecutionContext | dg.AssetExecutionContext) -> Iterator[None]:
        """Hold the warehouse file for this step (see `warehouse.warehouse_lock`); logs whom it waits for.

        Every step that opens the DuckDB file runs inside this. The lock is the kernel's: it dies with its
        process, so a killed run never blocks the next one.
        """
        with warehouse_lock(
            self.settings.warehouse_path,
            run_id=_context_property(context, lambda c: c.run.run_id),
            step=_context_property(context, lambda c: c.op_def.name),
            log=context.log.info,
        ):
            yield

    @contextlib.contextmanager
    def read(self, context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext) -> Iterator:
        """A short read-only connection to the warehouse, under the lock (for the checks)."""
        with self.lock(context), read_connection(self.settings.warehouse_path) as connection:
            yield connection


def _shared_options(env: Mapping[str, str]) -> dict:
    """The client settings every account shares, from the KLAVIYO_* variables."""
    return {
        **options_from_env(dict(env)),
        "tags": tags_mode(env.get(TAGS_SETTING)),
        "reconcile_days": reconcile_days(env.get(RECONCILE_DAYS_SETTING)),
    }


def _context_property(context, read):
    """A run id or step name for the lock file; a directly invoked asset or check (tests) has neither."""
    try:
        return read(context)
    except (AttributeError, dg.DagsterError):
        return None


class KlaviyoResource(dg.ConfigurableResource):
    """One Klaviyo account: its key's variable, pace, budget, timezone and segment filter, and the client's settings.

    A deployment without an accounts file has one, `klaviyo`, from the KLAVIYO_* variables (`from_env`); with
    the file, each account has its own, `klaviyo_<name>` (`for_account`). The report ledgers live in the
    warehouse resource's state directory, one per Klaviyo account id.
    """

    warehouse: WarehouseResource
    account_name: str = Field(
        default=DEFAULT_ACCOUNT_NAME, description="accounts file: name (`default` without the file)"
    )
    timezone: str = Field(default=config.DEFAULT_TIMEZONE, description="KLAVIYO_TIMEZONE, or accounts file: timezone")
    accounts_file: str | None = Field(default=None, description="KLAVIYO_ACCOUNTS_FILE (unset: one account)")
    # the deployment's other accounts: a second name for the same Klaviyo account is refused, not merged
    other_account_names: list[str] = Field(
        default_factory=list, description="accounts file: name, of the other accounts"
    )
    lookback_days: int | None = Field(default=None, description="SERIES_LOOKBACK_DAYS, or accounts file: lookback_days")
    track_is_active: bool | None = Field(default=None, description="accounts file: segments.is_active (unset: any)")
    track_is_starred: bool | None = Field(default=None, description="accounts file: segments.is_starred (unset: any)")
    track_name_matches: list[str] = Field(
        default_factory=list, description="accounts file: segments.name_matches (empty: any)"
    )
    api_key: str = Field(default="", description=API_KEY_ENV)
    api_key_env: str = Field(
        default=API_KEY_ENV, description="accounts file: api_key_env (KLAVIYO_API_KEY without the file)"
    )
    base_url: str = Field(default=KlaviyoSettings.base_url, description="KLAVIYO_BASE_URL")
    report_rate_per_minute: float = Field(
        default=KlaviyoSettings.report_rate_per_minute, description="KLAVIYO_REPORT_RATE_PER_MINUTE"
    )
    report_daily_limit: int = Field(
        default=KlaviyoSettings.report_daily_limit, description="KLAVIYO_REPORT_DAILY_LIMIT"
    )
    report_budget_window_seconds: float = Field(
        default=KlaviyoSettings.report_budget_window_seconds, description="KLAVIYO_REPORT_BUDGET_WINDOW_SECONDS"
    )
    steady_window_seconds: float = Field(
        default=KlaviyoSettings.steady_window_seconds, description="KLAVIYO_STEADY_WINDOW_SECONDS"
    )
    max_retry_after_seconds: float = Field(
        default=KlaviyoSettings.max_retry_after_seconds, description="KLAVIYO_MAX_RETRY_AFTER"
    )
    max_attempts: int = Field(default=KlaviyoSettings.max_attempts, description="KLAVIYO_MAX_ATTEMPTS")
    timeout_seconds: float = Field(default=KlaviyoSettings.timeout_seconds, description="KLAVIYO_TIMEOUT")
    ledger_dir: str | None = Field(
        default=None, description="KLAVIYO_REPORT_LEDGER_DIR (unset: PIPELINE_STATE_DIR/report_ledgers)"
    )
    tags: str = Field(default="auto", description=TAGS_SETTING)
    reconcile_days: int = Field(default=DEFAULT_RECONCILE_DAYS, description=RECONCILE_DAYS_SETTING)

    @classmethod
    def from_env(cls, warehouse: WarehouseResource, env: Mapping[str, str] | None = None, **fields) -> KlaviyoResource:
        """The resource the KLAVIYO_* variables describe, the key as `EnvVar`; keyword fields win."""
        env = os.environ if env is None else env
        values = {
            **_shared_options(env),
            "api_key": api_key_variable(env),
            "timezone": config.configured_timezone(dict(env)),
        }
        return cls(warehouse=warehouse, **{**values, **fields})

    @classmethod
    def for_account(
        cls,
        account: AccountSettings,
        warehouse: WarehouseResource,
        accounts: Accounts,
        env: Mapping[str, str] | None = None,
        **fields,
    ) -> KlaviyoResource:
        """One account of the accounts file: its own key variable, pace, budget, lookback, timezone and filter;
        the rest (base URL, windows, retries, tags, reconciliation) from the shared KLAVIYO_* variables."""
        env = os.environ if env is None else env
        # the account's own rate and budget win: the single-account variables may hold anything meanwhile
        shared = {name: value for name, value in env.items() if name not in PER_ACCOUNT_VARIABLES}
        values = {
            **_shared_options(shared),
            "account_name": account.name,
            "timezone": account.timezone,
            "accounts_file": str(accounts.source) if accounts.source else None,
            "other_account_names": [name for name in accounts.names if name != account.name],
            "api_key": api_key_variable(env, account.api_key_env),
            "api_key_env": account.api_key_env,
            "report_rate_per_minute": account.report_rate_per_minute,
            "report_daily_limit": account.report_daily_limit,
            "lookback_days": account.lookback_days,
            "track_is_active": account.segments.is_active,
            "track_is_starred": account.segments.is_starred,
            "track_name_matches": list(account.segments.name_matches),
        }
        return cls(warehouse=warehouse, **{**values, **fields})

    @property
    def segment_filter(self) -> SegmentFilter:
        """Which of the account's segments get series (all unless the accounts file says otherwise)."""
        # only the conditions that are set: the model refuses an empty one, as the file's loader wants
        given = {
            "is_active": self.track_is_active,
            "is_starred": self.track_is_starred,
            "name_matches": tuple(self.track_name_matches) or None,
        }
        return SegmentFilter.model_validate({key: value for key, value in given.items() if value is not None})

    @property
    def lookback(self) -> int:
        """Days before the newest requested day a recent run pulls again: the account's, else SERIES_LOOKBACK_DAYS."""
        return self.warehouse.settings.lookback_days if self.lookback_days is None else self.lookback_days

    @property
    def where_configured(self) -> str:
        """Where this account's settings are written, for messages that say what to change."""
        if self.accounts_file:
            return f"account {self.account_name!r} in {self.accounts_file}"
        return "the KLAVIYO_* variables"

    @contextlib.contextmanager
    def fetch_lock(self, context) -> Iterator[None]:
        """Hold this account's Klaviyo requests for a step: runs of other accounts fetch meanwhile, the warehouse
        lock is taken only to read and to load (see `warehouse.account_fetch_lock`)."""
        with account_fetch_lock(
            self.warehouse.settings.fetch_lock_path(self.account_name),
            self.account_name,
            run_id=_context_property(context, lambda c: c.run.run_id),
            step=_context_property(context, lambda c: c.op_def.name),
            log=context.log.info,
        ):
            yield

    @property
    def pending_path(self) -> Path:
        """This account's record of backfills the report budget cut short (read by the resume sensor)."""
        return self.warehouse.settings.series_pending_path_for(self.account_name)

    @cached_property
    def ledger_directory(self) -> str:
        return self.ledger_dir or str(self.warehouse.settings.report_ledger_dir)

    def ledgers(self, log=None) -> ReportLedgers:
        """The report ledgers, one per Klaviyo account; reading them needs no key (the resume sensor has none)."""
        return ReportLedgers(
            self.report_daily_limit,
            self.ledger_directory,
            window_seconds=self.report_budget_window_seconds,
            legacy_file=self.warehouse.settings.legacy_report_ledger_path,
            log=log,
        )

    def budget(self, account_id: str) -> ReportBudget:
        """One account's report budget, read without a key (for the resume sensor)."""
        return self.ledgers().for_account(account_id)

    def report_interval_seconds(self) -> float:
        """Seconds between report requests at the configured pace (for finish-time estimates)."""
        return min_interval(REPORTS_RATE_LIMIT, self.report_rate_per_minute)

    def client(self, log=None) -> KlaviyoClient:
        """A client for this run; without a key it fails with what to do (KlaviyoConfigError).

        `log` (a step's `context.log`) gets its waits, retries and bounded values, so the run's log shows them.
        """
        settings = KlaviyoSettings(
            api_key=checked_api_key(self.api_key, self.api_key_env),
            api_key_variable=self.api_key_env,
            base_url=self.base_url.rstrip("/"),
            report_rate_per_minute=self.report_rate_per_minute,
            report_daily_limit=self.report_daily_limit,
            report_budget_window_seconds=self.report_budget_window_seconds,
            steady_window_seconds=self.steady_window_seconds,
            max_retry_after_seconds=self.max_retry_after_seconds,
            max_attempts=self.max_attempts,
            timeout_seconds=self.timeout_seconds,
            ledger_dir=self.ledger_directory,
        )
        return KlaviyoClient(settings, ledgers=self.ledgers(log), log=log)
