"""Client settings, read from the environment. The API key is wrapped so it never shows in a repr or log."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from .errors import KlaviyoConfigError
from .limits import (
    DEFAULT_BASE_URL,
    DEFAULT_MAX_RETRY_AFTER_SECONDS,
    REPORT_QUOTA_WINDOW_SECONDS,
    REPORTS_DAILY_LIMIT,
    REPORTS_RATE_LIMIT,
    STEADY_WINDOW_SECONDS,
)
from .origins import checked_base_url


class ApiKey:
    """A private API key that refuses to be printed."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The key itself: only for the Authorization header."""
        return self._value

    def __repr__(self) -> str:
        return "ApiKey('********')"

    __str__ = __repr__

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ApiKey) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("ApiKey", self._value))

    def __reduce__(self):  # pickling would write the key to disk; refuse
        raise TypeError("an ApiKey cannot be pickled")


def _number(env: dict, name: str, default: float, cast=float):
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = cast(raw)
    except ValueError as exc:
        raise KlaviyoConfigError(f"{name}={raw!r} is not a number") from exc
    if value <= 0:
        raise KlaviyoConfigError(f"{name} must be greater than 0, got {raw!r}")
    return value


@dataclass(frozen=True)
class KlaviyoSettings:
    """Everything the client needs. Use `from_env()` to read the documented environment variables."""

    api_key: ApiKey = field(repr=False)
    base_url: str = DEFAULT_BASE_URL
    report_rate_per_minute: float = REPORTS_RATE_LIMIT.per_minute
    report_daily_limit: int = REPORTS_DAILY_LIMIT
    # the rolling window the daily limit is counted over; only tests shorten it
    report_budget_window_seconds: float = REPORT_QUOTA_WINDOW_SECONDS
    # a 429 without Retry-After is waited out for this long; only a sped-up simulator shortens it
    steady_window_seconds: float = STEADY_WINDOW_SECONDS
    max_retry_after_seconds: float = DEFAULT_MAX_RETRY_AFTER_SECONDS
    max_attempts: int = 5
    timeout_seconds: float = 60.0
    # the directory of the report ledgers, one `<account id>.json` per account; None keeps them in memory
    ledger_dir: str | None = None
    # first backoff after a 5xx or a dropped connection; it doubles on each retry, with jitter
    backoff_base_seconds: float = 1.0
    # the environment variable the key came from: messages about a refused key name it (never the key)
    api_key_variable: str = "KLAVIYO_API_KEY"

    def __post_init__(self) -> None:
        # every way of making settings passes here: the key goes to no address that is not checked
        object.__setattr__(self, "base_url", checked_base_url(self.base_url))

    @classmethod
    def from_env(cls, env: dict | None = None, **overrides) -> KlaviyoSettings:
        """Read KLAVIYO_* variables (see the README's configuration table); keyword overrides win."""
        env = dict(os.environ if env is None else env)
        values = options_from_env(env)
        key = overrides.pop("api_key", None)
        values["api_key"] = checked_api_key(env.get("KLAVIYO_API_KEY", "") if key is None else key)
        values.update(overrides)
        return cls(**values)


def checked_api_key(key: str | ApiKey, variable: str = "KLAVIYO_API_KEY") -> ApiKey:
    """The key as an ApiKey; an empty one fails with what to do, naming the variable it should come from."""
    if isinstance(key, str):
        key = ApiKey(key.strip())
    if not key:
        raise KlaviyoConfigError(
            f"{variable} is not set: create a private API key in Klaviyo (Settings > API keys) with the "
            f"read scopes segments:read and accounts:read, and export it as {variable}"
        )
    return key


def options_from_env(env: dict | None = None) -> dict:
    """Every KlaviyoSettings field but the key, from the KLAVIYO_* variables (unset ones keep their defaults)."""
    env = dict(os.environ if env is None else env)
    if env.get("KLAVIYO_BUDGET_PATH"):
        # silently ignoring it would move the ledger and forget the requests it counted
        raise KlaviyoConfigError(
            "KLAVIYO_BUDGET_PATH is no longer read: the report ledger is now one file per Klaviyo account. "
            "Unset KLAVIYO_BUDGET_PATH (set KLAVIYO_REPORT_LEDGER_DIR if the ledgers must live elsewhere than "
            "$PIPELINE_STATE_DIR/report_ledgers) and, to keep the old counts, move the old file to "
            "$PIPELINE_STATE_DIR/klaviyo_report_budget.json: the next run adopts them into the account's ledger"
        )
    return dict(
        # checked when the code loads, and again for every client (settings made in code pass there too)
        base_url=checked_base_url(env.get("KLAVIYO_BASE_URL") or DEFAULT_BASE_URL),
        report_rate_per_minute=_number(env, "KLAVIYO_REPORT_RATE_PER_MINUTE", REPORTS_RATE_LIMIT.per_minute),
        report_daily_limit=_number(env, "KLAVIYO_REPORT_DAILY_LIMIT", REPORTS_DAILY_LIMIT, int),
        report_budget_window_seconds=_number(env, "KLAVIYO_REPORT_BUDGET_WINDOW_SECONDS", REPORT_QUOTA_WINDOW_SECONDS),
        steady_window_seconds=_number(env, "KLAVIYO_STEADY_WINDOW_SECONDS", STEADY_WINDOW_SECONDS),
        max_retry_after_seconds=_number(env, "KLAVIYO_MAX_RETRY_AFTER", DEFAULT_MAX_RETRY_AFTER_SECONDS),
        max_attempts=_number(env, "KLAVIYO_MAX_ATTEMPTS", KlaviyoSettings.max_attempts, int),
        timeout_seconds=_number(env, "KLAVIYO_TIMEOUT", KlaviyoSettings.timeout_seconds),
        ledger_dir=env.get("KLAVIYO_REPORT_LEDGER_DIR") or None,
    )
