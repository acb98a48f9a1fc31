"""Configuration of one simulated Klaviyo account."""

from __future__ import annotations

import datetime as dt
import hashlib
import string
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_ID_ALPHABET = string.ascii_letters + string.digits


def derive_id(*parts: object, length: int = 6) -> str:
    """Derive a stable Klaviyo-style alphanumeric id from arbitrary parts.

    Klaviyo's account, segment and list ids are short mixed-case alphanumeric strings ("UUvyMc"). Hashing
    the parts (instead of drawing from a shared RNG) keeps each id independent of how many others exist.

    Args:
        *parts: Values that together identify the object, e.g. ("account", seed).
        length: Number of characters.

    Returns:
        A string of `length` letters and digits.
    """
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode("utf-8")).digest()
    number = int.from_bytes(digest, "big")
    chars = []
    for _ in range(length):
        number, index = divmod(number, len(_ID_ALPHABET))
        chars.append(_ID_ALPHABET[index])
    return "".join(chars)


@dataclass(frozen=True)
class SimulatorConfig:
    """Everything that defines a simulated account; the same config always yields the same data.

    Attributes:
        api_key: The private key that requests must present as `Authorization: Klaviyo-API-Key <key>`.
        segment_count: How many segments the account starts with.
        seed: Seed for every generated value (ids, names, definitions, growth curves).
        speed: Divides every rate-limit window (1 s, 60 s, 1 day) so tests can burn a minute's budget
            in a fraction of a second. `Retry-After` is still reported in real seconds. The daily report quota
            window is 86,400 / speed real seconds (24 minutes at speed 60) unless `quota_day_seconds` is set.
        quota_day_seconds: Length in real seconds of the daily quota window (the report endpoints' 225 a
            day), independent of `speed`, so a test can let the quota come back after, say, 20 s while the
            1 s and 60 s windows keep their `speed`-scaled lengths. `None`: 86,400 / speed.
        timezone: IANA name of the account timezone; report days are calendar days in this zone.
        account_id: The account id; derived from `seed` when not given.
        today: A fixed account-local "today"; `None` follows the real clock.
        missing_scopes: Scopes the key lacks, e.g. ("accounts:read",): requests needing them get a 403.
        processing_hours: How long a segment made by `SimulatedAccount.create_segment` shows `is_processing`.
        backfill_hours: How long after its creation such a segment answers zeros for the days before it.
        revision_days: How many days a day's report bucket stays open to late members (0: never revised);
            Klaviyo's are reported to stay open about 5 days. See `settling.py`.
    """

    api_key: str = "sim-key"
    segment_count: int = 35
    seed: int = 7
    speed: float = 1.0
    quota_day_seconds: float | None = None
    timezone: str = "US/Eastern"
    account_id: str | None = None
    today: dt.date | None = None
    missing_scopes: tuple[str, ...] = field(default=())
    processing_hours: float = 1.0
    backfill_hours: float = 6.0
    revision_days: int = 0

    def __post_init__(self) -> None:
        if not self.api_key:
            raise ValueError("api_key must be a non-empty string")
        if self.segment_count < 0:
            raise ValueError("segment_count must be >= 0")
        if not self.speed > 0:
            raise ValueError("speed must be > 0")
        if self.quota_day_seconds is not None and not self.quota_day_seconds * self.speed > 60:
            raise ValueError(
                f"quota_day_seconds must be longer than the steady window (60 / speed = {60 / self.speed:g} s)"
            )
        if not 0 <= self.processing_hours <= self.backfill_hours:
            raise ValueError("processing_hours must be from 0 to backfill_hours (membership is done first)")
        if not 0 <= self.revision_days <= 60:
            raise ValueError("revision_days must be from 0 to 60")
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown timezone {self.timezone!r}") from exc
        if self.today is not None and isinstance(self.today, dt.datetime):
            # a datetime is a date subclass; keep only the calendar day so comparisons stay date-only
            object.__setattr__(self, "today", self.today.date())
        if self.account_id is None:
            object.__setattr__(self, "account_id", derive_id("account", self.seed))
        object.__setattr__(self, "missing_scopes", tuple(self.missing_scopes))

    @property
    def zone(self) -> ZoneInfo:
        """The account timezone as a `ZoneInfo`."""
        return ZoneInfo(self.timezone)
