"""The Segments API platform's settings every workspace shares, and the platform's own facts. No environment
here: `segment_pipeline.settings` reads the variables."""

from __future__ import annotations

from dataclasses import dataclass

from ..klaviyo.errors import KlaviyoConfigError
from ..klaviyo.origins import checked_base_url
from .errors import SegmentsApiConfigError

# the name of the platform in asset keys, the accounts file (`platform: segments_api`) and the warehouse schema
PLATFORM = "segments_api"
# the single-workspace variables (without an accounts file) and the shared ones
KEY_ENV = "SEGMENTS_API_KEY"
BASE_URL_ENV = "SEGMENTS_API_BASE_URL"
TIMEZONE_ENV = "SEGMENTS_API_TIMEZONE"
SCHEDULE_HOUR_ENV = "SEGMENTS_API_SCHEDULE_HOUR"
MAX_RETRY_AFTER_ENV = "SEGMENTS_API_MAX_RETRY_AFTER"

# the platform's document: at most 100 segments a page
MAX_PAGE_SIZE = 100
# bounds of what a listing may hold: beyond them the answer is taken as broken, not stored
MAX_SEGMENTS = 200_000
MAX_PAGES = MAX_SEGMENTS // MAX_PAGE_SIZE
DEFAULT_SCHEDULE_HOUR = 6
DEFAULT_MAX_RETRY_AFTER_SECONDS = 300.0
DEFAULT_MAX_ATTEMPTS = 5
DEFAULT_TIMEOUT_SECONDS = 60.0


@dataclass(frozen=True)
class SegmentsApiOptions:
    """What every Segments API workspace of a deployment shares.

    Attributes:
        base_url: The platform's API address, without `/api/v1` (no default: the document names none). Keys
            go to this host only.
        schedule_hour: The local hour (in each workspace's timezone) of the daily snapshot.
        max_retry_after_seconds: The longest `Retry-After` waited out; a longer one fails the run.
        max_attempts: Attempts of one page (429s, 5xx, timeouts, dropped connections).
        timeout_seconds: Seconds one request may take.
    """

    base_url: str | None = None
    schedule_hour: int = DEFAULT_SCHEDULE_HOUR
    max_retry_after_seconds: float = DEFAULT_MAX_RETRY_AFTER_SECONDS
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS
    # the first wait after a 5xx or a 429 without Retry-After; it doubles each time
    backoff_base_seconds: float = 1.0

    @classmethod
    def checked(cls, **values) -> SegmentsApiOptions:
        """The options from the values given (None: the default), each checked.

        Raises:
            SegmentsApiConfigError: A value that cannot be used, naming its variable.
        """
        given = {name: value for name, value in values.items() if value is not None}
        if "base_url" in given:
            try:
                given["base_url"] = checked_base_url(
                    given["base_url"], BASE_URL_ENV, suggestion="the Segments API platform's API address"
                )
            except KlaviyoConfigError as exc:
                raise SegmentsApiConfigError(str(exc)) from None
        options = cls(**given)
        if not 0 <= options.schedule_hour <= 23:
            raise SegmentsApiConfigError(f"{SCHEDULE_HOUR_ENV}={options.schedule_hour} must be an hour from 0 to 23")
        if not 1 <= options.max_attempts <= 20:
            raise SegmentsApiConfigError("the Segments API client's attempts must be from 1 to 20")
        return options

    def required_base_url(self) -> str:
        """The base URL, or what to set when there is none."""
        if not self.base_url:
            raise SegmentsApiConfigError(
                f"{BASE_URL_ENV} is not set: export the Segments API platform's API address (the part before "
                "/api/v1/segments, e.g. https://api.example.com) where Dagster and its runs run"
            )
        return self.base_url
