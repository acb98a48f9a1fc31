"""Client settings, read from the environment. The API key is wrapped so it never shows in a repr or log."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from .errors import KlaviyoConfigError
from .limits import DEFAULT_BASE_URL, DEFAULT_MAX_RETRY_AFTER_SECONDS, REPORTS_RATE_LIMIT


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
    report_daily_limit: int = REPORTS_RATE_LIMIT.per_day or 225
    max_retry_after_seconds: float = DEFAULT_MAX_RETRY_AFTER_SECONDS
    max_attempts: int = 5
    timeout_seconds: float = 60.0
    budget_path: str | None = None
    # the ledger's window: 24 hours, like Klaviyo's daily quota; tests shorten it
    report_budget_window_seconds: float = 24 * 60 * 60
    # first backoff after a 5xx or a dropped connection; it doubles on each retry, with jitter
    backoff_base_seconds: float = 1.0

    @classmethod
    def from_env(cls, env: dict | None = None, **overrides) -> KlaviyoSettings:
        """Read KLAVIYO_* variables (see the README's configuration table); keyword overrides win."""
        env = dict(os.environ if env is None else env)
        key = overrides.pop("api_key", None)
        if key is None:
            key = env.get("KLAVIYO_API_KEY", "")
        if isinstance(key, str):
            key = ApiKey(key.strip())
        if not key:
            raise KlaviyoConfigError(
                "KLAVIYO_API_KEY is not set: create a private API key in Klaviyo (Settings > API keys) with the "
                "read scopes segments:read and accounts:read, and export it as KLAVIYO_API_KEY"
            )
        values = dict(
            api_key=key,
            base_url=(env.get("KLAVIYO_BASE_URL") or DEFAULT_BASE_URL).rstrip("/"),
            report_rate_per_minute=_number(env, "KLAVIYO_REPORT_RATE_PER_MINUTE", REPORTS_RATE_LIMIT.per_minute),
            report_daily_limit=_number(env, "KLAVIYO_REPORT_DAILY_LIMIT", REPORTS_RATE_LIMIT.per_day or 225, int),
            max_retry_after_seconds=_number(env, "KLAVIYO_MAX_RETRY_AFTER", DEFAULT_MAX_RETRY_AFTER_SECONDS),
            max_attempts=_number(env, "KLAVIYO_MAX_ATTEMPTS", 5, int),
            timeout_seconds=_number(env, "KLAVIYO_TIMEOUT", 60.0),
            budget_path=env.get("KLAVIYO_BUDGET_PATH") or None,
            report_budget_window_seconds=_number(env, "KLAVIYO_REPORT_BUDGET_WINDOW_SECONDS", 24 * 60 * 60),
        )
        values.update(overrides)
        return cls(**values)
