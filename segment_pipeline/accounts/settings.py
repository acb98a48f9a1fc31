"""The settings of one Klaviyo account and the accounts of a deployment: typed, frozen, checked by pydantic.

These models are what the rest of the pipeline reads; `file.py` and `environment.py` build them from the
accounts file or from the single-account variables. No Dagster here.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ..config import DEFAULT_LOOKBACK_DAYS, MAX_LOOKBACK_DAYS
from ..klaviyo.limits import REPORTING_DATA_FLOOR, REPORTS_RATE_LIMIT

ACCOUNTS_FILE_ENV = "KLAVIYO_ACCOUNTS_FILE"
# the platforms an entry of the accounts file can name (`platform:`); Klaviyo when it names none
KLAVIYO = "klaviyo"
SEGMENTS_API = "segments_api"
PLATFORMS = (KLAVIYO, SEGMENTS_API)
# the fields that only mean something for a Klaviyo account (its report budget, partitions and segment filter)
KLAVIYO_ONLY_FIELDS = ("report_rate_per_minute", "report_daily_limit", "lookback_days", "history_start", "segments")
SINGLE_ACCOUNT_KEY_ENV = "KLAVIYO_API_KEY"

# Klaviyo's reporting quota per account: an account's budget is a share of it, never more.
REPORTS_DAILY_QUOTA: int = REPORTS_RATE_LIMIT.per_day  # type: ignore[assignment]
MAX_NAME_LENGTH = 32
# names become parts of Dagster asset keys and partition names, which accept only these characters
NAME_PATTERN = re.compile(rf"[a-z][a-z0-9_]{{0,{MAX_NAME_LENGTH - 1}}}")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Klaviyo private keys are "pk_" and a long run of letters and digits; a value of that shape is never echoed
KEY_SHAPE = re.compile(r"pk_[A-Za-z0-9]{16,}")
# keys someone might write to put the key itself in the file
KEY_HOLDER_NAMES = {"api_key", "key", "private_key", "klaviyo_api_key", "token", "secret", "password"}

FIELD_HINTS = {
    "accounts": "list the accounts under `accounts:`, one `- name: ...` entry each (see accounts.yaml.example)",
    "name": (
        f"use 1 to {MAX_NAME_LENGTH} lower-case letters, digits and underscores, starting with a letter and "
        "unique in the file (e.g. brand_a); it becomes part of asset keys and partition names"
    ),
    "platform": (
        "write klaviyo (the default) or segments_api (a workspace of the Segments API platform, "
        "docs/segments-api-platform.md)"
    ),
    "api_key_env": (
        "write the NAME of the environment variable that holds this account's private API key "
        "(e.g. KLAVIYO_API_KEY_BRAND_A) and export the key in that variable; the key never goes in this file"
    ),
    "timezone": (
        "write the account's IANA timezone as Klaviyo shows it under Settings > Account "
        "(e.g. US/Eastern or Australia/Sydney)"
    ),
    "report_rate_per_minute": (
        f"write a number above 0: report requests a minute for this account (Klaviyo allows "
        f"{REPORTS_RATE_LIMIT.per_minute}; more only makes sense against the simulator's --speed)"
    ),
    "report_daily_limit": (
        f"write a whole number from 1 to {REPORTS_DAILY_QUOTA}: this account's share of Klaviyo's "
        f"{REPORTS_DAILY_QUOTA} report requests a day"
    ),
    "lookback_days": f"write a whole number of days from 0 to {MAX_LOOKBACK_DAYS}",
    "history_start": (
        f"write a date such as 2025-12-01, on or after {REPORTING_DATA_FLOOR.isoformat()}: the account's first "
        "daily partition (leave it out to fix it at one year before the account is first loaded)"
    ),
    "segments": "write `all`, or a mapping with any of is_active, is_starred and name_matches",
    "is_active": "write true or false",
    "is_starred": "write true or false",
    "name_matches": "write a glob such as 'VIP*' (case-insensitive), or a list of globs",
}


def shown(value: Any) -> str:
    """A value for an error message, unless it could be a key."""
    if isinstance(value, str) and KEY_SHAPE.search(value):
        return "a value shaped like an API key (not shown)"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


class SegmentFilter(BaseModel):
    """Which of an account's segments to track. Every condition given must hold; none given tracks all.

    Attributes:
        is_active: Track only segments whose `is_active` is this value.
        is_starred: Track only segments whose `is_starred` is this value.
        name_matches: Track only segments whose name matches one of these shell-style globs (`*` any run
            of characters, `?` one character, `[abc]` one of a set), compared case-insensitively with the
            whole name. In the file: one glob or a list of them.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    is_active: Annotated[bool | None, Field(strict=True)] = None
    is_starred: Annotated[bool | None, Field(strict=True)] = None
    name_matches: tuple[str, ...] = ()

    @field_validator("is_active", "is_starred", mode="before")
    @classmethod
    def _given(cls, value: Any) -> Any:
        # `is_active:` with nothing after it is a slip, not "any": refuse it rather than track every segment
        if value is None:
            raise ValueError("it is empty")
        return value

    @field_validator("name_matches", mode="before")
    @classmethod
    def _globs(cls, value: Any) -> tuple[str, ...]:
        patterns = [value] if isinstance(value, str) else value
        if not isinstance(patterns, list | tuple) or not all(isinstance(p, str) for p in patterns):
            raise ValueError(f"{shown(value)} is not a glob or a list of globs")
        if not patterns:
            raise ValueError("it lists no glob, so no segment would be tracked")
        if not all(p.strip() for p in patterns):
            raise ValueError("it has an empty glob, which no segment name matches")
        return tuple(patterns)

    @property
    def tracks_all(self) -> bool:
        """Whether no condition is set, so every segment is tracked."""
        return self.is_active is None and self.is_starred is None and not self.name_matches

    def matches(self, row: Mapping[str, Any]) -> bool:
        """Whether a segment row (shaped like a row of `klaviyo.segments`) passes every condition.

        A row missing a value a condition needs (e.g. `is_starred` is None) does not pass that condition.
        """
        if self.is_active is not None and row.get("is_active") is not self.is_active:
            return False
        if self.is_starred is not None and row.get("is_starred") is not self.is_starred:
            return False
        if self.name_matches:
            name = row.get("name")
            if not isinstance(name, str):
                return False
            folded = name.casefold()
            return any(fnmatch.fnmatchcase(folded, pattern.casefold()) for pattern in self.name_matches)
        return True


def select_segments(rows: Iterable[Mapping[str, Any]], segment_filter: SegmentFilter) -> list[Mapping[str, Any]]:
    """The rows an account's filter tracks, in their order.

    Args:
        rows: Segment rows shaped like `klaviyo.segments` (`name`, `is_active`, `is_starred`, ...).
        segment_filter: The account's `segments` setting.

    Returns:
        The rows that pass the filter. Only `name`, `is_active` and `is_starred` are looked at: which rows are
        still live (`is_deleted`) stays the caller's decision.
    """
    return [row for row in rows if segment_filter.matches(row)]


class AccountSettings(BaseModel):
    """One Klaviyo account: everything the pipeline needs to pull it, except the key, which stays in the environment.

    Attributes:
        name: Short unique name ([a-z][a-z0-9_]*, at most 32 characters), for asset keys and partition names.
        platform: `klaviyo` (a Klaviyo account) or `segments_api` (a workspace of the Segments API platform,
            which takes only name, api_key_env and timezone: the other fields are Klaviyo's).
        api_key_env: Name of the environment variable holding the account's private API key.
        timezone: The account's IANA timezone; its days are the partitions of its series.
        report_rate_per_minute: Report requests a minute the client allows itself for this account.
        report_daily_limit: Report requests in any 24 hours, at most Klaviyo's daily quota.
        lookback_days: Days before the newest requested day a recent run pulls again.
        history_start: The first daily partition; unset, it is fixed when the account is first loaded
            (`history_start.fixed_history_start`).
        segments: Which segments to track (all by default).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: Annotated[str, Field(strict=True)]
    platform: Literal["klaviyo", "segments_api"] = KLAVIYO
    api_key_env: Annotated[str, Field(strict=True)]
    timezone: Annotated[str, Field(strict=True)]
    report_rate_per_minute: Annotated[float, Field(strict=True, gt=0)] = float(REPORTS_RATE_LIMIT.per_minute)
    report_daily_limit: Annotated[int, Field(strict=True, ge=1, le=REPORTS_DAILY_QUOTA)] = REPORTS_DAILY_QUOTA
    lookback_days: Annotated[int, Field(strict=True, ge=0, le=MAX_LOOKBACK_DAYS)] = DEFAULT_LOOKBACK_DAYS
    history_start: dt.date | None = None
    segments: SegmentFilter = SegmentFilter()

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not NAME_PATTERN.fullmatch(value):
            raise ValueError(f"{shown(value)} is not a short name of the form [a-z][a-z0-9_]*")
        return value

    @field_validator("api_key_env")
    @classmethod
    def _api_key_env(cls, value: str) -> str:
        # never echo this value: someone may have pasted the key itself here
        if KEY_SHAPE.search(value) or value.lower().startswith("pk_"):
            raise ValueError("this holds what looks like an API key itself (not shown), not a variable name")
        if not _ENV_NAME.fullmatch(value):
            raise ValueError("this is not an environment variable name (letters, digits and underscores)")
        return value

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{shown(value)} is not an IANA timezone name") from None
        return value

    @model_validator(mode="after")
    def _klaviyo_fields(self) -> AccountSettings:
        if self.platform != KLAVIYO:
            given = [name for name in KLAVIYO_ONLY_FIELDS if name in self.model_fields_set]
            if given:
                raise ValueError(
                    f"{', '.join(given)} {'applies' if len(given) == 1 else 'apply'} to Klaviyo accounts only, not to "
                    f"platform {self.platform}: remove {'it' if len(given) == 1 else 'them'}"
                )
        return self

    @property
    def is_klaviyo(self) -> bool:
        return self.platform == KLAVIYO

    @field_validator("segments", mode="before")
    @classmethod
    def _all_segments(cls, value: Any) -> Any:
        if value == "all":
            return {}
        if value is None:
            raise ValueError("it is empty")
        if not isinstance(value, dict | SegmentFilter):
            raise ValueError(f"it is {shown(value)}")
        return value

    @field_validator("history_start", mode="before")
    @classmethod
    def _history_start(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                value = dt.date.fromisoformat(value.strip())
            except ValueError:
                raise ValueError(f"{shown(value)} is not a date (YYYY-MM-DD)") from None
        if isinstance(value, dt.datetime) or (value is not None and not isinstance(value, dt.date)):
            raise ValueError(f"{shown(value)} is not a date (YYYY-MM-DD)")
        if value is not None and value < REPORTING_DATA_FLOOR:
            raise ValueError(f"{value} is before Klaviyo's first day of report data ({REPORTING_DATA_FLOOR})")
        return value

    @property
    def zone(self) -> ZoneInfo:
        """The account's timezone as a `ZoneInfo`."""
        return ZoneInfo(self.timezone)


class AccountsFileModel(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    accounts: Annotated[list[AccountSettings], Field(min_length=1)]


@dataclass(frozen=True)
class Accounts:
    """The accounts of a deployment, in the order they were written.

    Attributes:
        accounts: One settings object per account.
        source: The accounts file they came from, or `None` for the single-account variables.
    """

    accounts: tuple[AccountSettings, ...]
    source: Path | None = None

    def __iter__(self) -> Iterator[AccountSettings]:
        return iter(self.accounts)

    def __len__(self) -> int:
        return len(self.accounts)

    @property
    def names(self) -> tuple[str, ...]:
        """The accounts' names, in order."""
        return tuple(account.name for account in self.accounts)

    @property
    def listed(self) -> str:
        """The accounts' names for a message: "the only account is 'default'", "the accounts are 'a' and 'b'"."""
        quoted = [repr(name) for name in self.names]
        if len(quoted) == 1:
            return f"the only account is {quoted[0]}"
        return f"the accounts are {', '.join(quoted[:-1])} and {quoted[-1]}"

    def on(self, platform: str) -> Accounts:
        """The entries of one platform, in order, from the same source."""
        return Accounts(tuple(account for account in self.accounts if account.platform == platform), self.source)

    def __getitem__(self, name: str) -> AccountSettings:
        for account in self.accounts:
            if account.name == name:
                return account
        raise KeyError(f"no account named {name!r}; {self.listed}")
