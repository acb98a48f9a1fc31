"""The simulated account: its segments and their ground-truth daily series, all derived from the config's seed.

Everything a client can observe is generated here once, when the account is built, relative to the account's
"anchor" day (today at construction). Growth curves are pure functions of fixed day offsets, so the numbers
for a day never change afterwards, whichever window or "today" they are read through.
"""

from __future__ import annotations

import copy
import datetime as dt
import math
import random
import threading
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from .account_config import SimulatorConfig, derive_id
from .growth import GrowthModel, SegmentSeries, noise_table
from .names import segment_names
from .rules import REPORTING_DATA_FLOOR
from .segment_definitions import CONDITION_BUILDERS, build_definition, edited_definition
from .settling import Row, before_backfill, late_members, revised
from .tags import Tag, segment_tags

# Segment kinds, assigned round-robin so that even a small account covers each of them. Each kind exists
# because it breaks some naive assumption downstream (growth only, data from day one, no zero totals, ...).
KINDS = (
    "growing",  # steady growth since before the reporting floor
    "recent",  # created within the last 60 days: zeros before creation, one jump on the creation day
    "inactive",  # is_active false: flat total, zero flows
    "shrinking",  # loses members, levels off above zero
    "zero_start",  # exists but empty at the floor, starts growing later
    "small",  # a handful of members
    "huge",  # millions of members
    "volatile",  # big waves up and down
    "mid_history",  # created after the floor but before the last 60 days
    "imported",  # one-off jumps from list imports and cleanups
)


@dataclass
class Segment:
    """One segment as the API shows it, plus its hidden growth curve.

    Attributes:
        id: Six-character alphanumeric id.
        name: Display name (may contain quotes, accents and emoji).
        definition: Condition groups, shaped like the spec's `SegmentDefinition`.
        created: When the segment was created (tz-aware, account timezone).
        updated: When the segment was last changed (tz-aware, account timezone).
        is_active: Inactive segments keep a flat membership.
        is_processing: Whether Klaviyo is still computing membership (a created segment's turns false at
            `processing_until`).
        is_starred: Whether a user starred it.
        kind: Which of `KINDS` shaped its series (not part of the API).
        edits: How many times the definition was edited through the simulator.
        tags: The segment's tags (GET /api/segments?include=tags).
        processing_until: When a created segment stops processing (None: not processing by itself).
        backfill_done_at: When a created segment's past days stop answering zeros (None: backfilled already).
    """

    id: str
    name: str
    definition: dict[str, Any]
    created: dt.datetime
    updated: dt.datetime
    is_active: bool
    is_processing: bool
    is_starred: bool
    kind: str
    edits: int = 0
    tags: tuple[Tag, ...] = ()
    processing_until: dt.datetime | None = None
    backfill_done_at: dt.datetime | None = None
    series_data: SegmentSeries | None = field(default=None, repr=False, compare=False)


def _log_uniform(rng: random.Random, low: float, high: float) -> float:
    return math.exp(rng.uniform(math.log(low), math.log(high)))


class SimulatedAccount:
    """A Klaviyo account: id, timezone, segments and their daily membership history.

    Args:
        config: The simulator configuration.
    """

    def __init__(self, config: SimulatorConfig) -> None:
        self._config = config
        self._zone = ZoneInfo(config.timezone)
        self._lock = threading.RLock()
        self._noise = noise_table(config.seed)
        self._today_override: dt.date | None = None
        self._anchor = self.today()
        self._segments: dict[str, Segment] = {}
        self._deleted: dict[str, Segment] = {}
        for index, name in enumerate(segment_names(config.segment_count, config.seed)):
            segment = self._build_segment(index, name)
            self._segments[segment.id] = segment

    # -- account facts -------------------------------------------------------------------------------------

    @property
    def config(self) -> SimulatorConfig:
        """The configuration the account was built from."""
        return self._config

    @property
    def account_id(self) -> str:
        """The account id (also its public API key, as in Klaviyo)."""
        assert self._config.account_id is not None
        return self._config.account_id

    @property
    def timezone(self) -> str:
        """IANA name of the account timezone."""
        return self._config.timezone

    @property
    def zone(self) -> ZoneInfo:
        """The account timezone."""
        return self._zone

    def _fixed_today(self) -> dt.date | None:
        return self._today_override if self._today_override is not None else self._config.today

    def now(self) -> dt.datetime:
        """Current time in the account timezone; on the fixed `today` when one is configured."""
        now = dt.datetime.now(self._zone)
        fixed = self._fixed_today()
        if fixed is None:
            return now
        return dt.datetime.combine(fixed, now.timetz().replace(tzinfo=None), tzinfo=self._zone)

    def today(self) -> dt.date:
        """Today's date in the account timezone (the fixed `today` if one is set)."""
        fixed = self._fixed_today()
        return fixed if fixed is not None else dt.datetime.now(self._zone).date()

    def set_today(self, today: dt.date | None) -> None:
        """Move the account's "today", e.g. to run tomorrow's daily load; `None` returns to the configured day.

        Only what is visible moves (which days reports return, the one-year limit); no day's numbers change.

        Args:
            today: The new account-local today.
        """
        self._today_override = today

    def local_midnight(self, day: dt.date) -> dt.datetime:
        """Midnight at the start of `day` in the account timezone, with that day's UTC offset."""
        return dt.datetime.combine(day, dt.time(), tzinfo=self._zone)

    # -- segments ------------------------------------------------------------------------------------------

    @property
    def segments(self) -> list[Segment]:
        """Live (not deleted) segments in the API's default order: by creation time, then id."""
        with self._lock:
            self._end_processing()
            return sorted(self._segments.values(), key=lambda s: (s.created, s.id))

    def segment(self, segment_id: str) -> Segment:
        """Return a live segment.

        Args:
            segment_id: The segment id.

        Returns:
            The segment.

        Raises:
            KeyError: If no live segment has that id.
        """
        with self._lock:
            self._end_processing()
            return self._segments[segment_id]

    def has_segment(self, segment_id: str) -> bool:
        """Whether a live segment has this id."""
        with self._lock:
            return segment_id in self._segments

    def create_segment(
        self,
        name: str | None = None,
        *,
        created: dt.datetime | None = None,
        processing_hours: float | None = None,
        backfill_hours: float | None = None,
    ) -> Segment:
        """Create a segment as a user does in Klaviyo: it is processing, then its past days are backfilled.

        Its history is retroactive (it has members long before its creation), but until the backfill is done
        reports answer zeros for the days before its creation (see `settling.py`).

        Args:
            name: Its name (default: "New segment <n>").
            created: When it was created (default: now); an earlier moment makes a segment created hours ago.
            processing_hours: How long after creation it shows `is_processing` (default: the config's).
            backfill_hours: How long after creation its past days answer zeros (default: the config's).

        Returns:
            The new segment.

        Raises:
            ValueError: A negative duration, or a creation time later than now.
        """
        processing = self._config.processing_hours if processing_hours is None else processing_hours
        backfill = self._config.backfill_hours if backfill_hours is None else backfill_hours
        if processing < 0 or backfill < 0:
            raise ValueError("processing_hours and backfill_hours must be 0 or more")
        now = self.now().replace(microsecond=0)
        created = now if created is None else created.astimezone(self._zone).replace(microsecond=0)
        if created > now:
            raise ValueError(f"a segment cannot be created later than now ({now.isoformat()})")
        with self._lock:
            index = len(self._segments) + len(self._deleted)
            segment = self._build_segment(index, name or f"New segment {index + 1}", created=created)
            segment.is_processing = created + dt.timedelta(hours=processing) > now
            segment.processing_until = created + dt.timedelta(hours=processing)
            segment.backfill_done_at = created + dt.timedelta(hours=backfill)
            self._segments[segment.id] = segment
            return segment

    def finish_backfill(self, segment_id: str) -> None:
        """End a created segment's processing and backfill now: its reports answer its whole history.

        Raises:
            KeyError: If no live segment has that id.
        """
        with self._lock:
            segment = self._segments[segment_id]
            now = self.now()
            segment.processing_until = min(segment.processing_until or now, now)
            segment.backfill_done_at = min(segment.backfill_done_at or now, now)
            self._end_processing()

    def _end_processing(self) -> None:
        # a created segment's is_processing turns false by itself; called under the lock
        now = self.now()
        for segment in self._segments.values():
            if segment.is_processing and segment.processing_until is not None and segment.processing_until <= now:
                segment.is_processing = False

    def edit_definition(self, segment_id: str, at: dt.datetime | None = None) -> dict[str, Any]:
        """Change a segment's definition deterministically and bump `updated` to now (or to `at`).

        Past membership is not rewritten: the reporting history of a day never changes.

        Args:
            segment_id: The segment to edit.
            at: When the edit happened, for a scenario that stages an edit made days ago (e.g. the demo's, after
                the pipeline listed the segment as it was): after the segment's last change, not after now.

        Returns:
            A copy of the new definition.

        Raises:
            KeyError: If no live segment has that id.
            ValueError: If `at` is not after the segment's last change or is in the future.
        """
        with self._lock:
            segment = self._segments[segment_id]
            if at is not None and not segment.updated < at <= self.now():
                raise ValueError(
                    f"an edit of segment {segment_id} at {at.isoformat()} must come after its last change "
                    f"({segment.updated.isoformat()}) and not after now"
                )
            segment.edits += 1
            segment.definition = edited_definition(segment.definition, self._config.seed, segment.id, segment.edits)
            segment.updated = self._bumped(segment.updated) if at is None else at.replace(microsecond=0)
            return copy.deepcopy(segment.definition)

    def set_definition(self, segment_id: str, definition: dict[str, Any]) -> dict[str, Any]:
        """Give a segment exactly this definition (e.g. revert an edit) and bump `updated` to now.

        Args:
            segment_id: The segment to edit.
            definition: The new definition.

        Returns:
            A copy of the new definition.

        Raises:
            KeyError: If no live segment has that id.
        """
        with self._lock:
            segment = self._segments[segment_id]
            segment.edits += 1
            segment.definition = copy.deepcopy(definition)
            segment.updated = self._bumped(segment.updated)
            return copy.deepcopy(segment.definition)

    def rename(self, segment_id: str, new_name: str) -> None:
        """Rename a segment and bump `updated` to now.

        Args:
            segment_id: The segment to rename.
            new_name: The new name.

        Raises:
            KeyError: If no live segment has that id.
        """
        with self._lock:
            segment = self._segments[segment_id]
            segment.name = new_name
            segment.updated = self._bumped(segment.updated)

    def set_tags(self, segment_id: str, tags: tuple[Tag, ...]) -> None:
        """Replace a segment's tags (tags are not definition edits: `updated` does not move).

        Raises:
            KeyError: If no live segment has that id.
        """
        with self._lock:
            self._segments[segment_id].tags = tuple(tags)

    def delete(self, segment_id: str) -> None:
        """Delete a segment: it disappears from listings and reports.

        Args:
            segment_id: The segment to delete.

        Raises:
            KeyError: If no live segment has that id.
        """
        with self._lock:
            self._deleted[segment_id] = self._segments.pop(segment_id)

    def _bumped(self, previous: dt.datetime) -> dt.datetime:
        # keep `updated` strictly increasing even when two edits land in the same second
        now = self.now().replace(microsecond=0)
        return now if now > previous else previous + dt.timedelta(seconds=1)

    # -- series --------------------------------------------------------------------------------------------

    def series(self, segment_id: str, start: dt.date, end: dt.date) -> list[dict[str, Any]]:
        """Ground-truth daily rows of a segment, both ends included, never past today.

        Args:
            segment_id: A live or deleted segment id.
            start: First account-local day (not before the reporting floor).
            end: Last account-local day; clipped to today.

        Returns:
            Dicts with `date`, `total_members`, `members_added`, `members_removed`, `net_members_changed`.

        Raises:
            KeyError: If the id was never a segment of this account.
            ValueError: If `start` is before the reporting floor.
        """
        if start < REPORTING_DATA_FLOOR:
            raise ValueError(f"no segment data before {REPORTING_DATA_FLOOR.isoformat()}")
        end = min(end, self.today())
        rows = self.series_rows(segment_id, start, end)
        return [
            {
                "date": start + dt.timedelta(days=i),
                "total_members": total,
                "members_added": added,
                "members_removed": removed,
                "net_members_changed": added - removed,
            }
            for i, (total, added, removed) in enumerate(rows)
        ]

    def series_rows(self, segment_id: str, start: dt.date, end: dt.date) -> list[tuple[int, int, int]]:
        """`(total, added, removed)` per day from `start` to `end` inclusive, without clipping to today.

        Args:
            segment_id: A live or deleted segment id.
            start: First day (not before the reporting floor).
            end: Last day.

        Returns:
            One tuple per day.

        Raises:
            KeyError: If the id was never a segment of this account.
        """
        with self._lock:
            segment = self._segments.get(segment_id) or self._deleted[segment_id]
        assert segment.series_data is not None
        first = (start - REPORTING_DATA_FLOOR).days
        last = (end - REPORTING_DATA_FLOOR).days
        return segment.series_data.rows(first, last)

    def reported_rows(self, segment_id: str, start: dt.date, end: dt.date) -> list[Row]:
        """`(total, added, removed)` per day as a report answers now: `series_rows` before it settles.

        A created segment whose backfill is not done answers zeros before its creation day, and with
        `revision_days` the open buckets of the last days miss their late members (see `settling.py`).

        Raises:
            KeyError: If the id was never a segment of this account.
        """
        with self._lock:
            segment = self._segments.get(segment_id) or self._deleted[segment_id]
        now, today = self.now(), self.today()
        pending = segment.backfill_done_at is not None and now < segment.backfill_done_at
        created_day = segment.created.astimezone(self._zone).date()

        def answered(first: dt.date, last: dt.date) -> list[Row]:
            rows = self.series_rows(segment_id, first, last)
            return before_backfill(rows, first, created_day) if pending else rows

        rows = answered(start, end)
        window = self._config.revision_days
        if window:
            open_first = max(today - dt.timedelta(days=window - 1), REPORTING_DATA_FLOOR)
            late = late_members(answered(open_first, today), open_first, today, window)
            rows = revised(rows, start, late)
        return rows

    # -- generation ----------------------------------------------------------------------------------------

    def _build_segment(self, index: int, name: str, *, created: dt.datetime | None = None) -> Segment:
        seed = self._config.seed
        segment_id = derive_id("segment", seed, index)
        # one RNG per segment: adding segments to an account never changes the existing ones
        rng = random.Random(f"segment:{seed}:{index}")
        # a segment created through `create_segment` grows since long before its creation (its history is
        # retroactive); the account's starting segments have the shape of their kind
        kind = "growing" if created is not None else KINDS[index % len(KINDS)]
        created_day = self._created_day(kind, rng)
        drawn = dt.datetime.combine(
            created_day,
            dt.time(rng.randrange(24), rng.randrange(60), rng.randrange(60)),
            tzinfo=self._zone,
        )
        now = self.now().replace(microsecond=0)
        if created is None:
            created = drawn if drawn < now else now - dt.timedelta(minutes=5)  # "today" must not be later than now
        updated = created + (now - created) * rng.random() ** 3
        model = self._growth_model(kind, created_day, rng)
        definition = build_definition(rng, seed, first_builder=index % len(CONDITION_BUILDERS))
        if kind == "recent":
            # once drawn for a lasting is_processing; still drawn so that every value drawn after it stays the same
            rng.random()
        return Segment(
            id=segment_id,
            name=name,
            definition=definition,
            created=created,
            updated=updated.replace(microsecond=0),
            is_active=kind != "inactive",
            # the starting segments are settled (processed and backfilled); created ones process for a while
            is_processing=False,
            is_starred=rng.random() < 0.2,
            kind=kind,
            tags=segment_tags(seed, index),
            series_data=SegmentSeries(model, self._noise),
        )

    def _created_day(self, kind: str, rng: random.Random) -> dt.date:
        anchor, floor = self._anchor, REPORTING_DATA_FLOOR
        if kind == "recent":
            return anchor - dt.timedelta(days=rng.randint(1, 59))
        if kind == "mid_history":
            span = (anchor - dt.timedelta(days=60) - floor).days
            if span > 0:
                return floor + dt.timedelta(days=rng.randrange(span))
        return floor - dt.timedelta(days=rng.randint(1, 1200))

    def _growth_model(self, kind: str, created_day: dt.date, rng: random.Random) -> GrowthModel:
        start = (created_day - REPORTING_DATA_FLOOR).days
        anchor_offset = (self._anchor - REPORTING_DATA_FLOOR).days
        params: dict[str, Any] = {
            "start": start,
            "base": _log_uniform(rng, 200, 50_000),
            "slope": 0.0,
            "delay": 0,
            "min_level": 0.0,
            "wave_amplitude": rng.uniform(0.0, 0.04),
            "wave_period": rng.uniform(20.0, 120.0),
            "wave_phase": rng.uniform(0.0, 2 * math.pi),
            "weekly": tuple(rng.uniform(-0.004, 0.004) for _ in range(7)),
            "churn_rate": rng.uniform(0.002, 0.02),
            "steps": (),
            "noise_stride": rng.randrange(1, 4098),
            "noise_shift": rng.randrange(4099),
        }
        base = params["base"]
        if kind in ("growing", "mid_history", "recent"):
            params["slope"] = base * rng.uniform(0.0005, 0.004)
        elif kind == "inactive":
            params.update(active=False, base=float(round(_log_uniform(rng, 50, 20_000))))
        elif kind == "shrinking":
            params["slope"] = -base * rng.uniform(0.0008, 0.003)
            params["min_level"] = base * rng.uniform(0.05, 0.3)
        elif kind == "zero_start":
            params.update(base=0.0, slope=rng.uniform(0.5, 40.0))
            # empty at the floor; starts growing somewhere in the first months of reporting data
            params["delay"] = max(0, -start) + rng.randrange(30, 300)
        elif kind == "small":
            params.update(
                base=float(rng.randrange(0, 40)), slope=rng.uniform(0.0, 0.05), churn_rate=rng.uniform(0.0, 0.1)
            )
        elif kind == "huge":
            params["base"] = _log_uniform(rng, 500_000, 2_500_000)
            params["slope"] = params["base"] * rng.uniform(0.0002, 0.001)
        elif kind == "volatile":
            params.update(wave_amplitude=rng.uniform(0.2, 0.45), wave_period=rng.uniform(15.0, 60.0))
            params["slope"] = base * rng.uniform(-0.0005, 0.001)
        elif kind == "imported":
            params["slope"] = base * rng.uniform(0.0, 0.001)
            first_step = max(start, 0) + rng.randrange(1, max(2, anchor_offset - max(start, 0)))
            second_step = first_step + rng.randrange(10, 120)
            params["steps"] = (
                (first_step, int(base * rng.uniform(0.5, 2.0))),
                (second_step, -int(base * rng.uniform(0.1, 0.4))),
            )
        return GrowthModel(**params)
