"""The client's settings, and the options every account of a deployment shares. No environment here.

`segment_pipeline.settings` reads the variables and builds `KlaviyoOptions`; each account's client gets a
`KlaviyoSettings` from them (`KlaviyoOptions.for_account`). The API key is wrapped so it never shows in a
repr, a log or a pickle.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .errors import KlaviyoConfigError
from .limits import (
    DEFAULT_BASE_URL,
    DEFAULT_MAX_RETRY_AFTER_SECONDS,
    MAX_HISTORY_DAYS,
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


@dataclass(frozen=True)
class KlaviyoSettings:
    """Everything one account's client needs (see `KlaviyoOptions.for_account`)."""

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


def checked_api_key(key: str | ApiKey, variable: str = "KLAVIYO_API_KEY", account_name: str | None = None) -> ApiKey:
    """The key as an ApiKey; an empty one fails with what to do, naming the variable it should come from."""
    if isinstance(key, str):
        key = ApiKey(key.strip())
    if not key:
        whose = f", so account {account_name!r} has no API key" if account_name else ""
        raise KlaviyoConfigError(
            f"{variable} is not set{whose}: create a private API key in Klaviyo (Settings > API keys) with the "
            f"read scopes segments:read and accounts:read, and export it as {variable}"
        )
    return key


TAG_MODES = ("auto", "required", "off")
DEFAULT_RECONCILE_DAYS = 7
# which segments a reconciliation compares: the next 100 in turn (one report request), or all of them
RECONCILE_SEGMENT_MODES = ("rotate", "all")


@dataclass(frozen=True)
class KlaviyoOptions:
    """What every account of a deployment shares: where Klaviyo is, how the client waits and retries, and what
    the pipeline asks of Klaviyo besides the series (tags, reconciliation).

    Attributes:
        base_url: Klaviyo's address (the simulator's in the demo and the tests). Keys go to this host only.
        tags: Segment tags: `auto` (loaded when the key has tags:read), `required`, or `off`.
        reconcile_days: Days the reconciliation check compares with Klaviyo's values report; 0 is off.
        reconcile_segments: `rotate` (the next 100 segments in turn each run: one report request) or `all`.
        ledger_dir: Where the report ledgers live; None: the storage settings' default.
    """

    base_url: str = DEFAULT_BASE_URL
    tags: str = "auto"
    reconcile_days: int = DEFAULT_RECONCILE_DAYS
    reconcile_segments: str = "rotate"
    max_retry_after_seconds: float = DEFAULT_MAX_RETRY_AFTER_SECONDS
    max_attempts: int = 5
    timeout_seconds: float = 60.0
    # the rolling window the daily limit is counted over; only tests shorten it
    report_budget_window_seconds: float = REPORT_QUOTA_WINDOW_SECONDS
    # a 429 without Retry-After is waited out for this long; only a sped-up simulator shortens it
    steady_window_seconds: float = STEADY_WINDOW_SECONDS
    ledger_dir: Path | None = None

    @classmethod
    def checked(cls, **values) -> KlaviyoOptions:
        """The options from the values given (None: the default), each checked.

        Raises:
            KlaviyoConfigError: A value the client cannot use; the message names its variable.
        """
        given = {name: value for name, value in values.items() if value is not None}
        for name in ("tags", "reconcile_segments"):
            if name in given:
                given[name] = given[name].strip().lower()
        if "base_url" in given:
            # checked when the code loads, and again for every client (settings made in code pass there too)
            given["base_url"] = checked_base_url(given["base_url"])
        options = cls(**given)
        if options.tags not in TAG_MODES:
            raise KlaviyoConfigError(f"KLAVIYO_TAGS={options.tags!r} must be one of {', '.join(TAG_MODES)}")
        if options.reconcile_segments not in RECONCILE_SEGMENT_MODES:
            raise KlaviyoConfigError(
                f"KLAVIYO_RECONCILE_SEGMENTS={options.reconcile_segments!r} must be one of "
                f"{', '.join(RECONCILE_SEGMENT_MODES)}"
            )
        if not 0 <= options.reconcile_days <= MAX_HISTORY_DAYS:
            raise KlaviyoConfigError(f"KLAVIYO_RECONCILE_DAYS must be between 0 (off) and {MAX_HISTORY_DAYS}")
        return options

    def for_account(
        self,
        api_key: ApiKey,
        api_key_variable: str,
        report_rate_per_minute: float,
        report_daily_limit: int,
        ledger_dir: Path,
    ) -> KlaviyoSettings:
        """One account's client settings: these options, its key, pace and share of the daily quota."""
        return KlaviyoSettings(
            api_key=api_key,
            api_key_variable=api_key_variable,
            base_url=self.base_url,
            report_rate_per_minute=report_rate_per_minute,
            report_daily_limit=report_daily_limit,
            report_budget_window_seconds=self.report_budget_window_seconds,
            steady_window_seconds=self.steady_window_seconds,
            max_retry_after_seconds=self.max_retry_after_seconds,
            max_attempts=self.max_attempts,
            timeout_seconds=self.timeout_seconds,
            ledger_dir=str(ledger_dir),
        )
