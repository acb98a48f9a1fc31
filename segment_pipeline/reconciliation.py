"""Reconciliation of the loaded series with Klaviyo's own segment values report. No Dagster here.

For a recent window of days (the last KLAVIYO_RECONCILE_DAYS loaded days, 7 by default), Klaviyo's
POST /api/segment-values-reports gives per segment the members added and removed summed over the window
and the total members on its last day; both ends of the window are included, exactly as in the series
requests. The same three numbers are computed from `klaviyo.segment_series_daily`; any difference (or a
day missing from the loaded series) is a mismatch naming the segment.

One request covers up to 100 segments. By default (KLAVIYO_RECONCILE_SEGMENTS=rotate) a check compares the
next 100 tracked segments in id order, wrapping around, so it costs one report request from the same daily
budget as the series and every segment is compared within ceil(segments / 100) checks; where the rotation
stands is `<PIPELINE_STATE_DIR>/reconciliation/<account id>.json` (the last id compared). `all` compares
every segment: ceil(segments / 100) requests.
"""

from __future__ import annotations

import bisect
import dataclasses
import datetime as dt
import json
import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from . import state_files
from . import warehouse as wh
from .klaviyo import DayWindow, KlaviyoClient, KlaviyoResponseError, ReportBudgetError
from .klaviyo.limits import MAX_SEGMENT_IDS_PER_REPORT
from .tables import RAW_DATASET, SEGMENT_SERIES_TABLE, SEGMENTS_TABLE

# the Dagster check's name, here so the series asset can see whether its run includes the check
CHECK_NAME = "series_reconciles_with_klaviyo"
# how a budget too small for the check names it: the series the run loaded before it is kept
BUDGET_PURPOSE = "the reconciliation check (the series is loaded; only its comparison with Klaviyo is not done)"
# the values report's statistics we compare; net follows from added and removed
COMPARED = ("total_members", "members_added", "members_removed")


ROTATE = "rotate"


def request_count(segment_count: int, days: int, segments: str = ROTATE) -> int:
    """Report requests one reconciliation sends: one per 100 segments compared (a values report has no 60-day
    cap), so at most one when it rotates."""
    if days == 0 or segment_count == 0:
        return 0
    return 1 if segments == ROTATE else math.ceil(segment_count / MAX_SEGMENT_IDS_PER_REPORT)


def rotation_batch(segment_ids: Iterable[str], after: str | None) -> list[str]:
    """The next MAX_SEGMENT_IDS_PER_REPORT ids in id order after `after`, wrapping around (all when fewer).

    Consecutive batches are consecutive stretches of the circle of ids, so ceil(n / 100) of them cover all n;
    an `after` no longer among the ids (its segment deleted) still marks the place."""
    ids = sorted(set(segment_ids))
    if len(ids) <= MAX_SEGMENT_IDS_PER_REPORT:
        return ids
    start = bisect.bisect_right(ids, after) if after is not None else 0
    return [ids[(start + i) % len(ids)] for i in range(MAX_SEGMENT_IDS_PER_REPORT)]


def rotation_file(state: Path, account_id: str) -> Path:
    """The account's rotation file, named like its report ledger."""
    # account ids are short alphanumerics; anything else must not escape the folder
    if not account_id or not all(c.isalnum() or c in "-_" for c in account_id):
        raise KlaviyoResponseError(f"GET /api/accounts gave the account id {account_id!r}, which cannot name a file")
    return state / f"{account_id}.json"


def read_rotation(path: Path, log: logging.Logger | logging.LoggerAdapter) -> str | None:
    """The last segment id compared, or None (start from the first); an unreadable file is logged and restarts
    the rotation: at worst some segments are compared a turn early."""
    try:
        after = json.loads(path.read_text(encoding="utf-8")).get("after")
    except FileNotFoundError:
        return None
    except (OSError, ValueError, AttributeError) as exc:
        log.warning(
            "the reconciliation rotation %s cannot be read (%s); it starts again from the first segment", path, exc
        )
        return None
    return after if isinstance(after, str) else None


def write_rotation(path: Path, after: str) -> None:
    state_files.write_atomically(path, json.dumps({"after": after}).encode("utf-8"), what="the reconciliation rotation")


@dataclass(frozen=True)
class Mismatch:
    segment_id: str
    segment_name: str | None
    statistic: str
    loaded: int | None
    klaviyo: int | None

    def describe(self) -> str:
        name = f"{self.segment_name!r} ({self.segment_id})" if self.segment_name else self.segment_id
        if self.loaded is None or self.klaviyo is None:
            return f"{name}: {self.statistic} loaded {self.loaded}, Klaviyo {self.klaviyo}"
        return (
            f"{name}: {self.statistic} loaded {self.loaded:,}, Klaviyo {self.klaviyo:,} "
            f"(difference {self.loaded - self.klaviyo:+,})"
        )


@dataclass(frozen=True)
class LoadedValues:
    segment_name: str | None
    days_present: int
    total_members: int | None
    members_added: int
    members_removed: int


def latest_window(warehouse: wh.Source, account_id: str, days: int, last_day: dt.date) -> DayWindow | None:
    """The `days` days ending on the newest loaded day not after `last_day`, never before the first loaded day
    (a young warehouse is compared over what it has); None when nothing is loaded."""
    with wh.reading(warehouse) as connection:
        if connection is None:
            return None
        oldest, newest = connection.execute(
            f"select min(date), max(date) from {RAW_DATASET}.{SEGMENT_SERIES_TABLE} where account_id = ? and date <= ?",
            [account_id, last_day],
        ).fetchone()
    if newest is None:
        return None
    return DayWindow(max(oldest, newest - dt.timedelta(days=days - 1)), newest)


def loaded_values(warehouse: wh.Source, account_id: str, window: DayWindow) -> dict[str, LoadedValues]:
    """Per live segment: the loaded series summed over the window, and its total on the window's last day."""
    sql = f"""
        select
            segments.id,
            segments.name,
            count(series.date),
            max(case when series.date = ? then series.total_members end),
            coalesce(sum(series.members_added), 0),
            coalesce(sum(series.members_removed), 0)
        from {RAW_DATASET}.{SEGMENTS_TABLE} as segments
        left join {RAW_DATASET}.{SEGMENT_SERIES_TABLE} as series
            on series.account_id = segments.account_id
            and series.segment_id = segments.id
            and series.date between ? and ?
        where segments.account_id = ? and not coalesce(segments.is_deleted, false)
        group by segments.id, segments.name
    """
    with wh.reading(warehouse) as connection:
        if connection is None:
            return {}
        rows = connection.execute(sql, [window.end, window.start, window.end, account_id]).fetchall()
    return {
        segment_id: LoadedValues(name, days, total, int(added), int(removed))
        for segment_id, name, days, total, added, removed in rows
    }


def _batches(ids: list[str]) -> Iterable[tuple[str, ...]]:
    for start in range(0, len(ids), MAX_SEGMENT_IDS_PER_REPORT):
        yield tuple(ids[start : start + MAX_SEGMENT_IDS_PER_REPORT])


def klaviyo_values(
    client: KlaviyoClient, segment_ids: list[str], window: DayWindow, timezone: str
) -> dict[str, dict[str, int]]:
    """Klaviyo's values report for the segments over the window: segment id -> statistic -> value."""
    values: dict[str, dict[str, int]] = {}
    for batch in _batches(segment_ids):
        body = client.query_segment_values(batch, window, timezone, statistics=COMPARED)
        try:
            results = body["data"]["attributes"]["results"]
        except (KeyError, TypeError) as exc:
            raise KlaviyoResponseError("POST /api/segment-values-reports returned no data.attributes.results") from exc
        for result in results:
            segment_id = str((result.get("groupings") or {}).get("segment_id"))
            statistics = result.get("statistics") or {}
            for name in COMPARED:
                if not isinstance(statistics.get(name), (int, float)) or isinstance(statistics.get(name), bool):
                    raise KlaviyoResponseError(
                        f"the values report for segment {segment_id} has {name}={statistics.get(name)!r}, not a number"
                    )
            values[segment_id] = {name: int(statistics[name]) for name in COMPARED}
    return values


def compare(loaded: dict[str, LoadedValues], klaviyo: dict[str, dict[str, int]], window: DayWindow) -> list[Mismatch]:
    """Every way the loaded numbers disagree with Klaviyo's, segment by segment (sorted by segment id)."""
    mismatches = []
    for segment_id in sorted(loaded):
        mine = loaded[segment_id]
        theirs = klaviyo.get(segment_id)
        if theirs is None:
            continue  # Klaviyo no longer reports it (deleted since the last segments load)
        if mine.days_present != window.days:
            mismatches.append(Mismatch(segment_id, mine.segment_name, "days loaded", mine.days_present, window.days))
        for name in COMPARED:
            value = getattr(mine, name)
            if value != theirs[name]:
                mismatches.append(Mismatch(segment_id, mine.segment_name, name, value, theirs[name]))
    return mismatches


@dataclass(frozen=True)
class Reconciliation:
    """What one reconciliation of an account compared and found."""

    enabled: bool
    window: DayWindow | None = None
    segments_compared: int = 0
    # the tracked segments the rotation goes through, and how many checks it takes to compare them all
    segments_tracked: int = 0
    segments: str = ROTATE
    mismatches: tuple[Mismatch, ...] = ()
    requests_planned: int = 0
    requests_sent: int = 0
    requests_left_today: int | None = None

    @property
    def segments_disagreeing(self) -> int:
        return len({m.segment_id for m in self.mismatches})

    @property
    def checks_to_compare_all(self) -> int:
        """How many checks compare every tracked segment once (1 with `all`)."""
        if self.segments != ROTATE:
            return 1
        return max(1, math.ceil(self.segments_tracked / MAX_SEGMENT_IDS_PER_REPORT))


def reconcile_account(access, warehouse, holder, today: dt.date | None = None) -> Reconciliation:
    """Compare the account's last loaded days with Klaviyo's values report (`KlaviyoAccess`, `Warehouse`)."""
    from .accounts import select_segments

    days = access.settings.klaviyo.reconcile_days
    if days == 0:
        return Reconciliation(enabled=False)
    today = today or dt.datetime.now(access.account.zone).date()
    yesterday = today - dt.timedelta(days=1)
    with access.fetch_lock(holder), access.client(holder.log) as client:
        account = client.get_account()
        access.check_timezone(account)
        # the warehouse lock only while reading the warehouse, not while Klaviyo answers
        with warehouse.lock(holder):
            window = latest_window(warehouse.location, account.id, days, yesterday)
            loaded = loaded_values(warehouse.location, account.id, window) if window is not None else {}
            if not access.segment_filter.tracks_all:
                # only the segments the account tracks now (the series step reserved requests for those)
                live = wh.live_segments(warehouse.location, account.id)
                tracked = {row["id"] for row in select_segments(live, access.segment_filter)}
                loaded = {segment_id: values for segment_id, values in loaded.items() if segment_id in tracked}
        if window is None:
            return Reconciliation(enabled=True)
        mode = access.settings.klaviyo.reconcile_segments
        tracked = len(loaded)
        rotation = rotation_file(access.settings.storage.reconciliation_rotation_dir, account.id)
        batch = rotation_batch(loaded, read_rotation(rotation, holder.log)) if mode == ROTATE else sorted(loaded)
        loaded = {segment_id: loaded[segment_id] for segment_id in batch}
        planned = request_count(len(loaded), days, mode)
        try:
            client.budget.ensure_available(planned)
        except ReportBudgetError as exc:
            # whatever the run loaded before this check stays loaded: the message must not say "nothing"
            raise dataclasses.replace(exc, purpose=BUDGET_PURPOSE) from None
        reported = klaviyo_values(client, sorted(loaded), window, access.account.timezone)
        sent = client.stats.sent_for("reports")
        left = client.budget.remaining()
        if mode == ROTATE and tracked > MAX_SEGMENT_IDS_PER_REPORT:
            # moved on only once Klaviyo answered: a failed check compares the same segments next time
            write_rotation(rotation, batch[-1])
    return Reconciliation(
        enabled=True,
        window=window,
        segments_compared=len(set(loaded) & set(reported)),
        segments_tracked=tracked,
        segments=mode,
        mismatches=tuple(compare(loaded, reported, window)),
        requests_planned=planned,
        requests_sent=sent,
        requests_left_today=left,
    )
