"""How a report's numbers move before they settle: a new segment's backfill and the revision of recent days.

Practitioners report two ways Klaviyo's series report changes its answer for a day after a first one:

- **A new segment's past.** A segment created in Klaviyo answers zeros for the days before its creation until
  Klaviyo's asynchronous growth backfill is done (hours, up to about 48 h). Its `is_processing` is true while
  its membership is computed, which ends first. Segments made by `SimulatedAccount.create_segment` do this:
  processing for `SimulatorConfig.processing_hours`, backfilled after `SimulatorConfig.backfill_hours` (or the
  values given to `create_segment`). Until then a report answers zeros before the creation day and counts
  every member as added on the creation day (`before_backfill`). The account's starting segments are settled.
- **Recent buckets.** A day's bucket is revised for a few days after it ends (`SimulatorConfig.revision_days`,
  0 = never): members who joined that day are counted late, so a recent day answers fewer members added, and
  every total from it on fewer members, by a share that shrinks as the day ages (`revised`).

Both keep each answer self-consistent (net = added - removed, total = previous total + net, nothing below
zero). The ground truth (`SimulatedAccount.series`) is always the settled numbers; the reports answer
`SimulatedAccount.reported_rows`, which applies these.
"""

from __future__ import annotations

import datetime as dt

Row = tuple[int, int, int]  # total, added, removed


def before_backfill(rows: list[Row], first_day: dt.date, created_day: dt.date) -> list[Row]:
    """A segment's rows while its backfill is not done: zeros before `created_day`, all members added on it.

    Args:
        rows: The settled rows, one per day from `first_day`.
        first_day: The day of `rows[0]`.
        created_day: The account-local day the segment was created.

    Returns:
        The rows a report answers meanwhile.
    """
    answered: list[Row] = []
    for offset, row in enumerate(rows):
        day = first_day + dt.timedelta(days=offset)
        if day < created_day:
            answered.append((0, 0, 0))
        elif day == created_day:
            answered.append((row[0], row[0], 0))
        else:
            answered.append(row)
    return answered


def late_members(open_rows: list[Row], open_first: dt.date, today: dt.date, revision_days: int) -> dict[dt.date, int]:
    """Members added on each still-open day that Klaviyo has not counted yet.

    A day of age a (today is 0) misses (revision_days - a) / revision_days of its share; a share is at most
    the day's members added and at most 1/revision_days of the smallest total from that day to today, so the
    late members of all open days together never exceed any later total.

    Args:
        open_rows: Rows (already as answered, e.g. `before_backfill`) for the days from `open_first` to today.
        open_first: The oldest day still open: today - (revision_days - 1), or later.
        today: The account-local today.
        revision_days: How many days a bucket stays open.

    Returns:
        day -> members counted late (days with none left out).
    """
    late: dict[dt.date, int] = {}
    lowest: int | None = None
    for offset in range(len(open_rows) - 1, -1, -1):
        total, added, _ = open_rows[offset]
        lowest = total if lowest is None else min(lowest, total)
        day = open_first + dt.timedelta(days=offset)
        age = (today - day).days
        if 0 <= age < revision_days:
            share = min(added, lowest // revision_days) * (revision_days - age) // revision_days
            if share:
                late[day] = share
    return late


def revised(rows: list[Row], first_day: dt.date, late: dict[dt.date, int]) -> list[Row]:
    """Rows as answered while some of their members are still counted late (see `late_members`).

    A late member is missing from its day's members added and from every total from that day on.
    """
    carried = sum(count for day, count in late.items() if day < first_day)
    answered: list[Row] = []
    for offset, (total, added, removed) in enumerate(rows):
        missing = late.get(first_day + dt.timedelta(days=offset), 0)
        carried += missing
        answered.append((total - carried, added - missing, removed))
    return answered
