"""Facts about the Klaviyo API that the client, the request planner and the simulator all obey.

This is the one place for them: change a limit here and the client, the planner, the simulator and the
tests follow. Sources: the official OpenAPI document (revision 2026-07-15) and Klaviyo's rate-limit docs.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

API_REVISION = "2026-07-15"
DEFAULT_BASE_URL = "https://a.klaviyo.com"
JSON_API_MEDIA_TYPE = "application/vnd.api+json"

SEGMENTS_PATH = "/api/segments"
ACCOUNTS_PATH = "/api/accounts"
SEGMENT_SERIES_PATH = "/api/segment-series-reports"
SEGMENT_VALUES_PATH = "/api/segment-values-reports"

# GET /api/segments never returns more than 10 segments a page (page[size] max is 10).
SEGMENTS_PAGE_SIZE = 10

# The four statistics of the segment reports, in the order we store them.
SERIES_STATISTICS = ("total_members", "members_added", "members_removed", "net_members_changed")

# A daily series covers at most 60 days; one any(segment_id,[...]) filter holds at most 100 ids.
MAX_DAYS_PER_DAILY_SERIES = 60
MAX_SEGMENT_IDS_PER_REPORT = 100

# Klaviyo has no segment report data before this day, and reports reach back at most one year.
REPORTING_DATA_FLOOR = dt.date(2023, 6, 1)
MAX_HISTORY_DAYS = 365

# Scopes a private key needs, named in 401/403 errors so the user knows what to grant.
SCOPE_SEGMENTS = "segments:read"
SCOPE_ACCOUNTS = "accounts:read"
# `include=tags` on GET /api/segments needs this scope too; without it Klaviyo answers 403
SCOPE_TAGS = "tags:read"
SEGMENTS_INCLUDE_TAGS = "tags"


@dataclass(frozen=True)
class RateLimit:
    """A fixed-window rate limit, per account: burst (1 s window), steady (1 min window), optional daily."""

    per_second: int
    per_minute: int
    per_day: int | None = None


# Limits per endpoint family (spec `x-klaviyo-ratelimit` and operation descriptions).
SEGMENTS_RATE_LIMIT = RateLimit(per_second=75, per_minute=750)
ACCOUNTS_RATE_LIMIT = RateLimit(per_second=1, per_minute=15)
# A request with `include` also counts against a stricter limit of its own (rate-limit docs), whose numbers
# Klaviyo does not publish; we assume the tier of GET /api/segments/{id}/tags (S: 3/s, 60/m), the same data.
SEGMENTS_INCLUDE_RATE_LIMIT = RateLimit(per_second=3, per_minute=60)
# Both segment report endpoints share one budget; every private-key integration on the account shares it too.
REPORTS_DAILY_LIMIT = 225
REPORTS_RATE_LIMIT = RateLimit(per_second=1, per_minute=2, per_day=REPORTS_DAILY_LIMIT)

# Klaviyo's fixed windows: the burst window is 1 s, the steady window 1 min (every RateLimit.per_minute is
# counted over it). A 429 without Retry-After is waited out for one whole steady window.
BURST_WINDOW_SECONDS = 1
STEADY_WINDOW_SECONDS = 60
# The daily report quota is counted over a rolling day.
REPORT_QUOTA_WINDOW_SECONDS = 24 * 60 * 60

# A 429 that asks us to wait longer than this is the daily quota, not a busy minute: fail instead of sleeping.
DEFAULT_MAX_RETRY_AFTER_SECONDS = 600
