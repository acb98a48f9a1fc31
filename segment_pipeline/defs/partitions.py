"""Daily partitions in a Klaviyo account's own days, from the account's fixed history start.

The start is the account's `history_start` (set in the accounts file, or fixed the day the account is first
loaded: `segment_pipeline.history_start`), never recomputed from "today" at each load. With the default end
offset the last partition is yesterday: today is not finished. Days that fall out of Klaviyo's one-year window
as time passes stay listed (they were loadable, and are loaded, when they were in it); a run for one of them is
refused before any request.
"""

from __future__ import annotations

import dagster as dg

from ..history_start import fixed_history_start
from ..ingest.access import KlaviyoAccess


def account_partitions(access: KlaviyoAccess) -> dg.DailyPartitionsDefinition:
    """The account's days, in its timezone, from its history start."""
    start = fixed_history_start(access.account, access.settings.storage.history_start_dir)
    return dg.DailyPartitionsDefinition(start_date=start.isoformat(), timezone=access.account.timezone)
