"""The rules of the Klaviyo API the simulator enforces, written down here from Klaviyo's OpenAPI document
(revision 2026-07-15: operation descriptions and `x-klaviyo-ratelimit`) and its rate-limit docs.

The simulator is the pipeline's test oracle, so it keeps its own copy of these facts and imports nothing from
the pipeline: a limit the pipeline got wrong then shows as a refused request in the tests, instead of being
shared by the code under test and the server that judges it. A test checks the two copies against the spec.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

JSON_API_MEDIA_TYPE = "application/vnd.api+json"

SEGMENTS_PATH = "/api/segments"
ACCOUNTS_PATH = "/api/accounts"
SEGMENT_SERIES_PATH = "/api/segment-series-reports"
SEGMENT_VALUES_PATH = "/api/segment-values-reports"

# GET /api/segments: page[size] "Default: 10. Min: 1. Max: 10."
SEGMENTS_PAGE_SIZE = 10
# the enum of `statistics` in SegmentSeriesRequestDTO / SegmentValuesRequestDTO
SERIES_STATISTICS = ("total_members", "members_added", "members_removed", "net_members_changed")
# `interval` description: "If daily is used, the timeframe cannot be longer than 60 days."
MAX_DAYS_PER_DAILY_SERIES = 60
# `filter` description: "Max of 100 ... per ANY filter."
MAX_SEGMENT_IDS_PER_REPORT = 100
# "Data is unavailable before June 1st, 2023."; "The time frame to pull data from (Max length: 1 year)"
REPORTING_DATA_FLOOR = dt.date(2023, 6, 1)
MAX_HISTORY_DAYS = 365

SCOPE_SEGMENTS = "segments:read"
SCOPE_ACCOUNTS = "accounts:read"
SCOPE_TAGS = "tags:read"

# Klaviyo's fixed windows: burst 1 s, steady 1 min; the daily report quota over a rolling day
BURST_WINDOW_SECONDS = 1
STEADY_WINDOW_SECONDS = 60
REPORT_QUOTA_WINDOW_SECONDS = 24 * 60 * 60


@dataclass(frozen=True)
class RateLimit:
    """A fixed-window limit per account: burst (1 s), steady (1 min), optional daily."""

    per_second: int
    per_minute: int
    per_day: int | None = None


SEGMENTS_RATE_LIMIT = RateLimit(per_second=75, per_minute=750)
ACCOUNTS_RATE_LIMIT = RateLimit(per_second=1, per_minute=15)
# `include` counts against a stricter limit of its own, whose numbers Klaviyo does not publish; served at the
# tier of GET /api/segments/{id}/tags (3/s, 60/m)
SEGMENTS_INCLUDE_RATE_LIMIT = RateLimit(per_second=3, per_minute=60)
REPORTS_RATE_LIMIT = RateLimit(per_second=1, per_minute=2, per_day=225)


@dataclass(frozen=True)
class DayWindow:
    """An inclusive range of account-local calendar days."""

    start: dt.date
    end: dt.date

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    def dates(self) -> list[dt.date]:
        return [self.start + dt.timedelta(days=i) for i in range(self.days)]
