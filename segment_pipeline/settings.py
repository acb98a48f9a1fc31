"""The deployment's settings, read once: the one module that reads the environment.

`load_settings()` reads the documented variables (and the accounts file `KLAVIYO_ACCOUNTS_FILE` names) and
returns frozen, typed `Settings`; everything else is handed them: the Dagster definitions
(`defs.build_definitions`), the command line and the devtools. Without an accounts file the single-account
variables become a one-account deployment through the same path: an account named `default`.

Every variable is listed once, in `VARIABLES`, with its default and what it does; `docs/configuration.md`
is checked against that list by the tests. An API key is never part of the settings: only the *name* of
the variable that holds it is, and `read_api_key` reads the key when a run needs it.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import ValidationError

from .accounts import AccountsFileError, read_accounts_file
from .accounts.settings import (
    ACCOUNTS_FILE_ENV,
    FIELD_HINTS,
    KLAVIYO,
    SEGMENTS_API,
    SINGLE_ACCOUNT_KEY_ENV,
    Accounts,
    AccountSettings,
)
from .config import (
    DEFAULT_ACCOUNT_NAME,
    DEFAULT_DUCKDB_LOAD_MEMORY_LIMIT,
    DEFAULT_DUCKDB_MEMORY_LIMIT,
    DEFAULT_LOOKBACK_DAYS,
    DEFAULT_TIMEZONE,
    ConfigError,
    StorageSettings,
)
from .klaviyo.errors import KlaviyoConfigError
from .klaviyo.settings import ApiKey, KlaviyoOptions, checked_api_key
from .segments_api.errors import SegmentsApiConfigError
from .segments_api.options import (
    BASE_URL_ENV,
    DEFAULT_MAX_RETRY_AFTER_SECONDS,
    DEFAULT_SCHEDULE_HOUR,
    KEY_ENV,
    MAX_RETRY_AFTER_ENV,
    SCHEDULE_HOUR_ENV,
    TIMEZONE_ENV,
    SegmentsApiOptions,
)

# Arrow's default allocator (mimalloc) keeps much of what a step frees; glibc's gives it back: an account's run of
# a year of 10,000 segments peaked 60-80 MB lower with it (docs/performance.md). Arrow reads this variable once,
# when pyarrow is imported, so it is set here: every process of the pipeline loads this module before a step
# imports pyarrow (`pyarrow.set_memory_pool` later is not the same: the run peaked higher). A value the
# environment already has wins.
os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")


@dataclass(frozen=True)
class Variable:
    """One documented environment variable: its name, its default as shown to users, and what it does."""

    name: str
    default: str
    meaning: str


# Every variable the pipeline reads, in the order docs/configuration.md lists them.
VARIABLES: tuple[Variable, ...] = (
    Variable("KLAVIYO_API_KEY", "(unset)", "the private key of the one account (without an accounts file)"),
    Variable("KLAVIYO_TIMEZONE", DEFAULT_TIMEZONE, "the one account's timezone as Klaviyo shows it"),
    Variable("KLAVIYO_REPORT_RATE_PER_MINUTE", "2", "the one account's report requests a minute"),
    Variable("KLAVIYO_REPORT_DAILY_LIMIT", "225", "the one account's share of Klaviyo's daily report quota"),
    Variable("SERIES_LOOKBACK_DAYS", str(DEFAULT_LOOKBACK_DAYS), "the one account's late-data lookback, in days"),
    Variable("KLAVIYO_HISTORY_START", "(first load - 1 year)", "the one account's first daily partition"),
    Variable(ACCOUNTS_FILE_ENV, "(unset)", "a YAML file of several accounts; the five above are then ignored"),
    Variable("KLAVIYO_BASE_URL", "https://a.klaviyo.com", "where Klaviyo is (the simulator's URL in the demo)"),
    Variable("KLAVIYO_TAGS", "auto", "segment tags: auto, required or off"),
    Variable("KLAVIYO_RECONCILE_DAYS", "7", "days compared with Klaviyo's values report; 0 turns it off"),
    Variable(
        "KLAVIYO_RECONCILE_SEGMENTS", "rotate", "segments compared each run: rotate (100 in turn, 1 request) or all"
    ),
    Variable("KLAVIYO_MAX_RETRY_AFTER", "600", "the longest Retry-After the client sleeps on, in seconds"),
    Variable("KLAVIYO_MAX_ATTEMPTS", "5", "attempts of one request (429s, 5xx, dropped connections)"),
    Variable("KLAVIYO_TIMEOUT", "60", "seconds a request may take"),
    Variable("KLAVIYO_REPORT_LEDGER_DIR", "$PIPELINE_STATE_DIR/report_ledgers", "where the report ledgers live"),
    Variable("KLAVIYO_REPORT_BUDGET_WINDOW_SECONDS", "86400", "the window the daily budget counts (tests only)"),
    Variable("KLAVIYO_STEADY_WINDOW_SECONDS", "60", "Klaviyo's steady window (a sped-up simulator only)"),
    Variable(
        "WAREHOUSE_PATH",
        "data/warehouse.duckdb",
        "the warehouse: a DuckDB file, or a DuckLake `ducklake:postgres:dbname=... host=... port=... user=...`",
    ),
    Variable("WAREHOUSE_DATA_PATH", "(unset)", "a DuckLake warehouse's Parquet files: a folder or s3://... URL"),
    Variable("DUCKDB_EXTENSION_DIR", "$PIPELINE_STATE_DIR/duckdb_extensions", "where DuckDB finds a lake's extensions"),
    Variable("ANALYTICS_PATH", "data/analytics.duckdb", "the analysts' copy, replaced after every build"),
    Variable("PIPELINE_STATE_DIR", "data/state", "staged responses, ledgers, locks, history starts"),
    Variable("CHARTS_DIR", "data/charts", "the growth report and its PNG"),
    Variable("DUCKDB_MEMORY_LIMIT", DEFAULT_DUCKDB_MEMORY_LIMIT, "memory each DuckDB connection may use"),
    Variable("DUCKDB_LOAD_MEMORY_LIMIT", DEFAULT_DUCKDB_LOAD_MEMORY_LIMIT, "the same for dlt's loads"),
    Variable("WAREHOUSE_LOCK_TIMEOUT_SECONDS", "21600", "how long a step waits for another step's warehouse lock"),
    Variable("WAREHOUSE_DUCKDB_WAIT_SECONDS", "60", "how long a step waits for a DuckDB session outside the pipeline"),
    Variable("SERIES_RESUME_INTERVAL_SECONDS", "300", "how often the resume sensor looks at unfinished ranges"),
    Variable(KEY_ENV, "(unset)", "the Segments API platform's key: set, the platform is on (without an accounts file)"),
    Variable(BASE_URL_ENV, "(unset)", "where the Segments API platform is; required when it is on"),
    Variable(TIMEZONE_ENV, DEFAULT_TIMEZONE, "the Segments API workspace's timezone (without an accounts file)"),
    Variable(SCHEDULE_HOUR_ENV, str(DEFAULT_SCHEDULE_HOUR), "the local hour of each workspace's daily snapshot"),
    Variable(
        MAX_RETRY_AFTER_ENV,
        f"{DEFAULT_MAX_RETRY_AFTER_SECONDS:g}",
        "the longest Retry-After of the Segments API waited",
    ),
)
_KNOWN = {variable.name for variable in VARIABLES}
# variables of earlier versions that must not be silently ignored
_RETIRED = {
    "KLAVIYO_BUDGET_PATH": (
        "KLAVIYO_BUDGET_PATH is no longer read: the report ledger is one file per Klaviyo account. Unset it (set "
        "KLAVIYO_REPORT_LEDGER_DIR if the ledgers must live elsewhere than $PIPELINE_STATE_DIR/report_ledgers) "
        "and, to keep the old counts, move the old file to $PIPELINE_STATE_DIR/klaviyo_report_budget.json: the "
        "next run adopts them into the account's ledger"
    ),
}
# the single-account variables an accounts file replaces: ignored with the file, whatever they hold
SINGLE_ACCOUNT_VARIABLES = (
    SINGLE_ACCOUNT_KEY_ENV,
    "KLAVIYO_TIMEZONE",
    "KLAVIYO_REPORT_RATE_PER_MINUTE",
    "KLAVIYO_REPORT_DAILY_LIMIT",
    "SERIES_LOOKBACK_DAYS",
    "KLAVIYO_HISTORY_START",
    KEY_ENV,
    TIMEZONE_ENV,
)
DEFAULT_RESUME_INTERVAL_SECONDS = 300


@dataclass(frozen=True)
class Settings:
    """Everything a deployment is configured with.

    Attributes:
        storage: Where the warehouse, the analyst copy, the report and the state live.
        klaviyo: What every account shares: where Klaviyo is, how the client retries, tags, reconciliation.
        accounts: The Klaviyo accounts (one, `default`, without an accounts file).
        resume_interval_seconds: How often the resume sensor looks at ranges the report budget cut short.
        segments_api: What the Segments API platform's workspaces share: its address, the snapshot hour.
        segments_api_workspaces: The Segments API workspaces (the accounts file's `platform: segments_api`
            entries, or `default` when SEGMENTS_API_KEY is set without a file); none: the platform is off.
    """

    storage: StorageSettings
    klaviyo: KlaviyoOptions = field(default_factory=KlaviyoOptions)
    accounts: Accounts = field(default_factory=lambda: Accounts((_default_account({}),)))
    resume_interval_seconds: int = DEFAULT_RESUME_INTERVAL_SECONDS
    segments_api: SegmentsApiOptions = field(default_factory=SegmentsApiOptions)
    segments_api_workspaces: Accounts = field(default_factory=lambda: Accounts(()))
    # where runs read the accounts' keys: the environment the settings were read from (never shown)
    key_source: Mapping[str, str] = field(default_factory=lambda: os.environ, repr=False, compare=False)

    @property
    def ledger_dir(self) -> Path:
        """The report ledgers, one `<account id>.json` per Klaviyo account, shared by every run."""
        return self.klaviyo.ledger_dir or self.storage.report_ledger_dir

    def where_configured(self, account: AccountSettings) -> str:
        """Where an account's settings are written, for messages that say what to change."""
        if self.accounts.source is not None:
            return f"account {account.name!r} in {self.accounts.source}"
        return "the KLAVIYO_* variables"

    def with_accounts(self, accounts: Accounts) -> Settings:
        return replace(self, accounts=accounts)


def load_settings(env: Mapping[str, str] | None = None, **storage_overrides: Any) -> Settings:
    """The deployment's settings from `env` (default: the process environment) and the accounts file it names.

    Args:
        env: The variables to read.
        storage_overrides: `StorageSettings` fields that win over the variables (tests, the demo).

    Raises:
        ConfigError: A variable holds a value the pipeline cannot use (the message names it and the fix).
        AccountsFileError: The accounts file has problems (one line each, with its line number and fix).
    """
    source = os.environ if env is None else env
    env = dict(source)
    for name, message in _RETIRED.items():
        if env.get(name):
            raise ConfigError(message)
    storage = StorageSettings.resolved(
        warehouse_path=_text(env, "WAREHOUSE_PATH"),
        analytics_path=_text(env, "ANALYTICS_PATH"),
        state_dir=_text(env, "PIPELINE_STATE_DIR"),
        charts_dir=_text(env, "CHARTS_DIR"),
        duckdb_memory_limit=_memory_limit(env, "DUCKDB_MEMORY_LIMIT"),
        duckdb_load_memory_limit=_memory_limit(env, "DUCKDB_LOAD_MEMORY_LIMIT"),
        lock_timeout_seconds=_number(env, "WAREHOUSE_LOCK_TIMEOUT_SECONDS", float),
        duckdb_wait_seconds=_number(env, "WAREHOUSE_DUCKDB_WAIT_SECONDS", float, minimum=0),
        warehouse_data_path=_text(env, "WAREHOUSE_DATA_PATH"),
        extension_dir=_text(env, "DUCKDB_EXTENSION_DIR"),
        **storage_overrides,
    )
    ledger_dir = _text(env, "KLAVIYO_REPORT_LEDGER_DIR")
    try:
        klaviyo = KlaviyoOptions.checked(
            base_url=_text(env, "KLAVIYO_BASE_URL"),
            tags=_text(env, "KLAVIYO_TAGS"),
            reconcile_days=_number(env, "KLAVIYO_RECONCILE_DAYS", int, minimum=0),
            reconcile_segments=_text(env, "KLAVIYO_RECONCILE_SEGMENTS"),
            max_retry_after_seconds=_number(env, "KLAVIYO_MAX_RETRY_AFTER", float),
            max_attempts=_number(env, "KLAVIYO_MAX_ATTEMPTS", int),
            timeout_seconds=_number(env, "KLAVIYO_TIMEOUT", float),
            report_budget_window_seconds=_number(env, "KLAVIYO_REPORT_BUDGET_WINDOW_SECONDS", float),
            steady_window_seconds=_number(env, "KLAVIYO_STEADY_WINDOW_SECONDS", float),
            ledger_dir=Path(ledger_dir).expanduser().resolve() if ledger_dir else None,
        )
    except KlaviyoConfigError as exc:
        raise ConfigError(str(exc)) from None
    accounts_file = (env.get(ACCOUNTS_FILE_ENV) or "").strip()
    if accounts_file:
        entries = read_accounts_file(Path(accounts_file).expanduser().resolve(), env)
        accounts, workspaces = entries.on(KLAVIYO), entries.on(SEGMENTS_API)
    else:
        accounts = Accounts((_default_account(env),), None)
        workspaces = Accounts(_default_workspace(env), None)
    segments_api = _segments_api_options(env, on=bool(len(workspaces)))
    return Settings(
        storage=storage,
        klaviyo=klaviyo,
        accounts=accounts,
        segments_api=segments_api,
        segments_api_workspaces=workspaces,
        resume_interval_seconds=_number(env, "SERIES_RESUME_INTERVAL_SECONDS", int) or DEFAULT_RESUME_INTERVAL_SECONDS,
        key_source=source,
    )


def child_environment(without: tuple[str, ...] = (), without_prefix: str = "", **changes: str) -> dict[str, str]:
    """The environment a process this one starts inherits (Dagster, the simulator): this one's, less the
    variables named in `without` (or starting with `without_prefix`), with `changes`. Here so that this module
    stays the one that reads it."""
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in without and not (without_prefix and name.startswith(without_prefix))
    }
    env.update(changes)
    return env


def devtool_variable(name: str) -> str | None:
    """A variable of the development tools, not of the pipeline (e.g. where PostgreSQL's programs are for the
    local server the tests start); None when unset or empty."""
    return _text(os.environ, name)


def read_api_key(account: AccountSettings, env: Mapping[str, str] | None = None) -> ApiKey:
    """The account's key, read from its variable when a run needs it (never kept in the settings).

    Raises:
        KlaviyoConfigError: The variable is unset or empty; the message names it and how to get a key.
    """
    env = os.environ if env is None else env
    return checked_api_key(env.get(account.api_key_env) or "", account.api_key_env, account_name=account.name)


def read_segments_api_key(workspace: AccountSettings, env: Mapping[str, str] | None = None) -> ApiKey:
    """A Segments API workspace's key, read from its variable when a run needs it (never kept in the settings).

    Raises:
        SegmentsApiConfigError: The variable is unset or empty; the message names it.
    """
    env = os.environ if env is None else env
    key = (env.get(workspace.api_key_env) or "").strip()
    if not key:
        raise SegmentsApiConfigError(
            f"{workspace.api_key_env} is not set, so Segments API workspace {workspace.name!r} has no key: create "
            f"a key in the platform's dashboard and export it as {workspace.api_key_env} where Dagster and its runs run"
        )
    return ApiKey(key)


def key_is_set(account: AccountSettings, env: Mapping[str, str] | None = None) -> bool:
    """Whether the account's key variable holds something (checked up front by commands that start runs)."""
    env = os.environ if env is None else env
    return bool((env.get(account.api_key_env) or "").strip())


def unknown_variables(
    env: Mapping[str, str] | None = None, prefixes: tuple[str, ...] = ("KLAVIYO_", "SEGMENTS_API_")
) -> list[str]:
    """Variables with the pipeline's prefixes that it does not read (a typo such as KLAVIYO_TIMEZNOE)."""
    env = os.environ if env is None else env
    # the keys of the accounts file's entries are named freely; these are the usual names for them
    accounts_keys = {name for name in env if name.startswith(("KLAVIYO_API_KEY", KEY_ENV))}
    return sorted(
        name
        for name in env
        if name.startswith(prefixes) and name not in _KNOWN and name not in _RETIRED and name not in accounts_keys
    )


def _default_account(env: Mapping[str, str]) -> AccountSettings:
    """The one account the single-account variables describe, named `default`."""
    values: dict[str, Any] = {
        "name": DEFAULT_ACCOUNT_NAME,
        "api_key_env": SINGLE_ACCOUNT_KEY_ENV,
        "timezone": _timezone(env),
    }
    optional: dict[str, tuple[str, Callable[[str], Any]]] = {
        "report_rate_per_minute": ("KLAVIYO_REPORT_RATE_PER_MINUTE", float),
        "report_daily_limit": ("KLAVIYO_REPORT_DAILY_LIMIT", int),
        "lookback_days": ("SERIES_LOOKBACK_DAYS", int),
        "history_start": ("KLAVIYO_HISTORY_START", dt.date.fromisoformat),
    }
    for name, (variable, cast) in optional.items():
        raw = (env.get(variable) or "").strip()
        if not raw:
            continue
        try:
            values[name] = cast(raw)
        except ValueError:
            raise ConfigError(f"{variable}={raw!r} cannot be read. Fix: {FIELD_HINTS[name]}") from None
    try:
        return AccountSettings.model_validate(values)
    except ValidationError as error:
        first = error.errors(include_url=False)[0]
        name = str(first["loc"][0])
        variable = optional[name][0] if name in optional else "KLAVIYO_TIMEZONE"
        raise ConfigError(f"{variable}={env.get(variable)!r}: {first['msg']}. Fix: {FIELD_HINTS[name]}") from None


def _default_workspace(env: Mapping[str, str]) -> tuple[AccountSettings, ...]:
    """The one Segments API workspace of SEGMENTS_API_KEY, named `default`; none when the key is unset."""
    if not _text(env, KEY_ENV):
        return ()
    timezone = _timezone(env, TIMEZONE_ENV)
    return (AccountSettings(name=DEFAULT_ACCOUNT_NAME, platform=SEGMENTS_API, api_key_env=KEY_ENV, timezone=timezone),)


def _segments_api_options(env: Mapping[str, str], on: bool) -> SegmentsApiOptions:
    """The platform's shared options; with a workspace configured its base URL is required."""
    try:
        options = SegmentsApiOptions.checked(
            base_url=_text(env, BASE_URL_ENV),
            schedule_hour=_number(env, SCHEDULE_HOUR_ENV, int, minimum=0),
            max_retry_after_seconds=_number(env, MAX_RETRY_AFTER_ENV, float),
        )
        if on:
            options.required_base_url()
    except SegmentsApiConfigError as exc:
        raise ConfigError(str(exc)) from None
    return options


def _timezone(env: Mapping[str, str], variable: str = "KLAVIYO_TIMEZONE") -> str:
    name = (env.get(variable) or "").strip() or DEFAULT_TIMEZONE
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"{variable}={name!r} is not an IANA timezone name. Fix: {FIELD_HINTS['timezone']}") from None
    return name


def _text(env: Mapping[str, str], name: str) -> str | None:
    value = (env.get(name) or "").strip()
    return value or None


_MEMORY_SIZE = re.compile(r"(?P<amount>\d+(?:\.\d+)?)\s*(?P<unit>[KMGT]i?B|B)", re.IGNORECASE)
_UNIT_BYTES = {
    "b": 1,
    "kb": 1e3,
    "mb": 1e6,
    "gb": 1e9,
    "tb": 1e12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}
# below this DuckDB cannot build the models nor load a response; a smaller value is a typo more often than a wish
_LEAST_MEMORY_BYTES = 16 * 2**20


def _memory_limit(env: Mapping[str, str], name: str) -> str | None:
    """A DuckDB memory limit as DuckDB takes it (`64MB`, `1.5GB`, `512MiB`), checked here rather than by the
    first connection of a run; None when unset."""
    raw = _text(env, name)
    if raw is None:
        return None
    matched = _MEMORY_SIZE.fullmatch(raw)
    if matched is None:
        raise ConfigError(f"{name}={raw!r} is not a memory size: give a number and a unit, such as 64MB or 1GB")
    if float(matched["amount"]) * _UNIT_BYTES[matched["unit"].lower()] < _LEAST_MEMORY_BYTES:
        raise ConfigError(f"{name}={raw!r} is too small for DuckDB to work in: give at least 16MB")
    return raw


def _number(env: Mapping[str, str], name: str, cast: Callable[[str], Any], minimum: float = 1e-9) -> Any:
    """A numeric variable (None when unset); `minimum` 0 allows zero, the default only positive values."""
    raw = _text(env, name)
    if raw is None:
        return None
    try:
        value = cast(raw)
    except ValueError:
        kind = "a whole number" if cast is int else "a number"
        raise ConfigError(f"{name}={raw!r} is not {kind}") from None
    if value != value or value < minimum:  # NaN, or below the least the setting allows
        least = "above 0" if 0 < minimum < 1e-6 else f"at least {minimum:g}"
        raise ConfigError(f"{name}={raw!r} must be {least}")
    return value


__all__ = [
    "ACCOUNTS_FILE_ENV",
    "SINGLE_ACCOUNT_VARIABLES",
    "VARIABLES",
    "AccountsFileError",
    "Settings",
    "key_is_set",
    "load_settings",
    "read_api_key",
    "read_segments_api_key",
    "unknown_variables",
]
