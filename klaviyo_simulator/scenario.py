"""The demo's scenario on top of a simulated account: a segment whose definition was edited inside the range
the demo loads, so the growth report's change markers and the analysts' definition-change query have a change
to show.

A definition change exists for the pipeline only between two listings of the segments (it stores each state
it sees), so the demo lists the segments once as they are, then stages the edit here, dated on a day inside
the range, and then backfills: what a daily schedule would have seen over those days, in one go.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from .account import Segment, SimulatedAccount
from .rules import MAX_HISTORY_DAYS

# the edit happens at noon, account-local: well inside its day whatever the timezone's offset
EDIT_TIME = dt.time(12, 0)


@dataclass(frozen=True)
class DefinitionChange:
    """The staged edit: which segment, and when (account-local)."""

    segment_id: str
    segment_name: str
    at: dt.datetime

    @property
    def day(self) -> dt.date:
        return self.at.date()


def change_day(first: dt.date, last: dt.date) -> dt.date:
    """The day of the edit: the middle of the range, so a week before and after it is loaded when the range
    has two weeks (what the analysts' guide's before/after query compares)."""
    return first + (last - first) // 2


def segment_to_edit(account: SimulatedAccount) -> Segment | None:
    """The segment the scenario edits: the first live, active segment (in listing order) created and last
    changed more than a year ago, before any range the pipeline may load, so any day of a range is after its
    last change. None when the account has no such segment."""
    before_any_range = account.now() - dt.timedelta(days=MAX_HISTORY_DAYS + 1)
    for segment in account.segments:
        if segment.is_active and segment.updated < before_any_range:
            return segment
    return None


def stage_definition_change(account: SimulatedAccount, first: dt.date, last: dt.date) -> DefinitionChange | None:
    """Edit one segment's definition as of noon on the middle day of `first`..`last` (account-local days).

    The edit is deterministic (`segment_definitions.edited_definition`): the same account gets the same new
    definition whenever it is staged, so the demo's warehouse and a later `dev` on it agree.

    Returns:
        The change, or None when the account has no segment to edit.
    """
    segment = segment_to_edit(account)
    if segment is None:
        return None
    at = dt.datetime.combine(change_day(first, last), EDIT_TIME, tzinfo=account.zone)
    account.edit_definition(segment.id, at=at)
    return DefinitionChange(segment.id, segment.name, at)
