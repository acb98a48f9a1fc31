"""The simulated platform: workspaces, their segments, a clock, recounts and faults. No HTTP here.

Everything is a function of the seed and of what the admin endpoints did, so two simulators given the same
calls answer the same. The clock stands still until a test moves it (`advance`): counts are not real time.

A segment's true member count drifts a little every day (`members_at`). The platform does not count it
continuously: it recounts each segment at irregular moments (gaps of 5 to 41 hours, so some local days have
two recounts and some none), and between recounts the API shows the count of the last recount with its
`lastCountedAt`. `truth()` gives every recount up to the clock: what a daily snapshot can at best observe.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import random
import threading
from dataclasses import dataclass, field
from typing import Any

# the platform's page size rules, as its document states them
DEFAULT_LIMIT = 50
MAX_LIMIT = 100
# recounts come this many hours apart, anywhere in between
RECOUNT_GAP_HOURS = (5.0, 41.0)
DEFAULT_START = dt.datetime(2026, 3, 2, 9, 17, tzinfo=dt.UTC)

_FILTER_CHOICES = (
    ("opens_count", "gte", 3),
    ("last_open_at", "within_days", 90),
    ("last_open_at", "not_exists", None),
    ("plan", "eq", "pro"),
    ("country", "neq", "US"),
    ("orders_count", "gt", 1),
    ("metadata.source", "contains", "webinar"),
    ("phone", "exists", None),
)
_NAMES = ("High-Engagement Users", "Churned Subscribers", "Pro plan", "Outside the US", "Repeat buyers", "Webinar")


def iso(moment: dt.datetime) -> str:
    """The platform's timestamps: ISO 8601 in UTC with a Z."""
    return moment.astimezone(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass
class Segment:
    """One segment of a workspace; its counts come from its own random stream (`seed_text`)."""

    id: str
    name: str
    description: str | None
    match_type: str
    filters: list[dict[str, Any]]
    created_at: dt.datetime
    seed_text: str
    base: int
    trend_per_day: float
    # (moment, count) of every recount so far, oldest first; extended lazily up to the clock
    recounts: list[tuple[dt.datetime, int]] = field(default_factory=list)
    # the next recount moment not yet reached, and the random stream that spaces them
    next_recount: dt.datetime | None = None
    rng: random.Random | None = None

    def members_at(self, moment: dt.datetime, epoch: dt.datetime) -> int:
        """The true member count at a moment: a daily drift, a weekly wave, and noise fixed by the moment."""
        days = (moment - epoch).total_seconds() / 86400
        noise = random.Random(f"{self.seed_text}:{int(moment.timestamp())}").randint(-3, 3)
        wave = 0.02 * self.base * math.sin(days * 2 * math.pi / 7)
        return max(0, round(self.base + self.trend_per_day * days + wave) + noise)

    def document(self) -> dict[str, Any]:
        counted_at, count = self.recounts[-1]
        return {
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "matchType": self.match_type,
            "filters": [dict(condition) for condition in self.filters],
            "cachedCount": count,
            "lastCountedAt": iso(counted_at),
            "createdAt": iso(self.created_at),
        }


@dataclass
class Workspace:
    name: str
    api_key: str
    segments: dict[str, Segment] = field(default_factory=dict)
    revoked: bool = False
    created: int = 0


@dataclass
class Fault:
    """A scripted misbehaviour for the next `times` matching API requests.

    kind: `429` (with `retry_after` seconds), `500`, `redirect` (a 302 to `location`), or `malformed` with a
    `variant`: `truncated_json` (a body
    cut short), `no_pagination`, `bad_segment` (a cachedCount that is text), `shifting_total` (the total
    changes mid-listing) or `no_data`. `page` limits it to one page number; `workspace` to one workspace.
    """

    kind: str
    times: int = 1
    page: int | None = None
    workspace: str | None = None
    retry_after: str | None = "1"
    variant: str = "truncated_json"
    location: str | None = None

    def matches(self, workspace: str | None, page: int) -> bool:
        return (self.workspace is None or self.workspace == workspace) and (self.page is None or self.page == page)


class World:
    """Every workspace, the clock and the scripted faults, behind one lock (the server is threaded)."""

    def __init__(self, seed: int = 1, start: dt.datetime = DEFAULT_START) -> None:
        self.seed = seed
        self.epoch = start.astimezone(dt.UTC)
        self.now = self.epoch
        self.workspaces: dict[str, Workspace] = {}
        self.faults: list[Fault] = []
        self.lock = threading.RLock()
        # how many API requests each workspace's key made (None: no or unknown key)
        self.requests: dict[str | None, int] = {}

    # -- setup -------------------------------------------------------------------------------------------

    def add_workspace(self, name: str, api_key: str, segments: int = 0) -> Workspace:
        with self.lock:
            if name in self.workspaces or any(w.api_key == api_key for w in self.workspaces.values()):
                raise ValueError(f"workspace {name!r} or its key already exists")
            workspace = Workspace(name, api_key)
            self.workspaces[name] = workspace
            for _ in range(segments):
                self.add_segment(name)
            return workspace

    def add_segment(self, workspace_name: str, name: str | None = None) -> Segment:
        with self.lock:
            workspace = self.workspaces[workspace_name]
            number = workspace.created
            workspace.created += 1
            seed_text = f"{self.seed}:{workspace_name}:{number}"
            rng = random.Random(seed_text)
            digest = hashlib.sha1(seed_text.encode()).hexdigest()
            conditions = rng.sample(_FILTER_CHOICES, rng.randint(1, 3))
            segment = Segment(
                id=f"cl{digest[:23]}",
                name=name or f"{_NAMES[number % len(_NAMES)]} #{number}",
                description=None if number % 4 == 3 else f"Simulated segment {number} of {workspace_name}",
                match_type=rng.choice(("all", "any")),
                filters=[{"field": f, "operator": o, "value": v} for f, o, v in conditions],
                # created some days before now, at the clock's second (a segment added later is created now)
                created_at=self.now - dt.timedelta(days=rng.randint(1, 400) if self.now == self.epoch else 0),
                seed_text=seed_text,
                base=rng.randint(50, 50_000),
                trend_per_day=rng.uniform(-0.01, 0.02) * 1000,
            )
            segment.rng = random.Random(f"{seed_text}:recounts")
            # counted once at creation, or some hours before the simulation starts
            first = max(segment.created_at, self.now - dt.timedelta(hours=segment.rng.uniform(1, 30)))
            first = first.replace(microsecond=0)
            segment.recounts.append((first, segment.members_at(first, self.epoch)))
            segment.next_recount = first + self._gap(segment.rng)
            workspace.segments[segment.id] = segment
            self._catch_up(segment)
            return segment

    def delete_segment(self, workspace_name: str, segment_id: str) -> None:
        with self.lock:
            del self.workspaces[workspace_name].segments[segment_id]

    def edit_segment(self, workspace_name: str, segment_id: str, changes: dict[str, Any]) -> Segment:
        """Change what the dashboard could: name, description, matchType, filters (not the counts)."""
        with self.lock:
            segment = self.workspaces[workspace_name].segments[segment_id]
            if "name" in changes:
                segment.name = str(changes["name"])
            if "description" in changes:
                segment.description = changes["description"]
            if "matchType" in changes:
                segment.match_type = str(changes["matchType"])
            if "filters" in changes:
                segment.filters = [dict(condition) for condition in changes["filters"]]
            return segment

    def revoke(self, workspace_name: str) -> None:
        with self.lock:
            self.workspaces[workspace_name].revoked = True

    # -- the clock ---------------------------------------------------------------------------------------

    def advance(self, seconds: float) -> dt.datetime:
        """Move the clock forward (never back: recounts already shown stay shown)."""
        if not 0 <= seconds <= 400 * 86400:
            raise ValueError("advance by 0 to 400 days")
        with self.lock:
            self.now = self.now + dt.timedelta(seconds=seconds)
            for workspace in self.workspaces.values():
                for segment in workspace.segments.values():
                    self._catch_up(segment)
            return self.now

    def _gap(self, rng: random.Random) -> dt.timedelta:
        return dt.timedelta(seconds=round(rng.uniform(*RECOUNT_GAP_HOURS) * 3600))

    def _catch_up(self, segment: Segment) -> None:
        assert segment.next_recount is not None and segment.rng is not None
        while segment.next_recount <= self.now:
            moment = segment.next_recount
            segment.recounts.append((moment, segment.members_at(moment, self.epoch)))
            segment.next_recount = moment + self._gap(segment.rng)

    # -- what the API and the admin endpoints read -------------------------------------------------------

    def workspace_for_key(self, api_key: str | None) -> Workspace | None:
        with self.lock:
            for workspace in self.workspaces.values():
                if api_key is not None and workspace.api_key == api_key:
                    return workspace
            return None

    def listing(self, workspace: Workspace) -> list[dict[str, Any]]:
        """Every segment as the API shows it now, oldest first (ties by id): a stable order for paging."""
        with self.lock:
            ordered = sorted(workspace.segments.values(), key=lambda s: (s.created_at, s.id))
            return [segment.document() for segment in ordered]

    def take_fault(self, workspace: str | None, page: int) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.times > 0 and fault.matches(workspace, page):
                    fault.times -= 1
                    return fault
            return None

    def truth(self, workspace_name: str) -> dict[str, Any]:
        """Every recount up to the clock, per segment, with the definition it has now."""
        with self.lock:
            workspace = self.workspaces[workspace_name]
            return {
                "now": iso(self.now),
                "segments": {
                    segment.id: {
                        "name": segment.name,
                        "matchType": segment.match_type,
                        "filters": segment.filters,
                        "recounts": [[iso(moment), count] for moment, count in segment.recounts],
                    }
                    for segment in workspace.segments.values()
                },
            }
