"""The daily snapshot of one Segments API workspace: its segments, their definition versions and their counts,
merged into the `segments_api` schema. No Dagster here.

The platform keeps no history: each segment has one `cachedCount`, recalculated now and then
(`lastCountedAt`). History is what successive snapshots saw, so it starts at the first snapshot. A count is
a data point of the local day of its `lastCountedAt` in the workspace's timezone, not of the day it was
fetched. A count not recalculated since the stored one (the same `lastCountedAt`, or an older one) is not a
new data point and is not loaded; of several recounts of one day the latest is kept (merged on
(workspace_name, segment_id, counted_date)). A re-run therefore adds nothing, and never puts an older count
over a newer one.

Only a complete listing is loaded (the client checks that its pages add up); a segment it lacks gets
`deleted_at`. The listing is read outside the warehouse lock, under the workspace's own fetch lock, so a
second run of the same workspace waits and then compares with what the first one stored.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import pyarrow as pa

from ..accounts import AccountSettings
from ..deletions import Deletions, plan_deletions
from ..tables import (
    SEGMENTS_API_DATASET,
    SEGMENTS_API_DEFINITIONS_TABLE,
    SEGMENTS_API_SEGMENTS_TABLE,
    SEGMENTS_API_SNAPSHOTS_TABLE,
    SEGMENTS_API_WORKSPACES_TABLE,
)
from ..warehouse import Holder, Source, Warehouse, reading
from .access import SegmentsApiWorkspace
from .client import Listing
from .records import Segment

PIPELINE_NAME = "segments_api_snapshot"
_TS = pa.timestamp("us", tz="UTC")

WORKSPACES_SCHEMA = pa.schema(
    [pa.field("workspace_name", pa.string(), nullable=False), ("timezone", pa.string()), ("_loaded_at", _TS)]
)
SEGMENTS_SCHEMA = pa.schema(
    [
        pa.field("workspace_name", pa.string(), nullable=False),
        pa.field("segment_id", pa.string(), nullable=False),
        ("name", pa.string()),
        ("description", pa.string()),
        ("created_at", _TS),
        ("first_seen_at", _TS),
        ("last_seen_at", _TS),
        # set when a complete listing no longer has the segment; back to null if it returns
        ("deleted_at", _TS),
        ("_loaded_at", _TS),
    ]
)
DEFINITIONS_SCHEMA = pa.schema(
    [
        pa.field("workspace_name", pa.string(), nullable=False),
        pa.field("segment_id", pa.string(), nullable=False),
        pa.field("definition_hash", pa.string(), nullable=False),
        ("match_type", pa.string()),
        ("filters", pa.string()),
        ("name", pa.string()),
        ("description", pa.string()),
        ("first_seen_at", _TS),
        ("_loaded_at", _TS),
    ]
)
SNAPSHOTS_SCHEMA = pa.schema(
    [
        pa.field("workspace_name", pa.string(), nullable=False),
        pa.field("segment_id", pa.string(), nullable=False),
        pa.field("counted_date", pa.date32(), nullable=False),
        ("last_counted_at", _TS),
        ("cached_count", pa.int64()),
        ("fetched_at", _TS),
        ("_loaded_at", _TS),
    ]
)
_DLT_TYPES = {pa.string(): "text", pa.date32(): "date", pa.int64(): "bigint", _TS: "timestamp"}


def dlt_columns(schema: pa.Schema) -> dict[str, dict]:
    """dlt's column hints from an Arrow schema: the declared types, so a stray type fails the load."""
    return {
        field.name: {"data_type": _DLT_TYPES[field.type], **({} if field.nullable else {"nullable": False})}
        for field in schema
    }


@dataclass(frozen=True)
class SnapshotOutcome:
    """What one snapshot saw and loaded."""

    workspace: str
    segments: int
    new_segments: int
    deleted_segments: int
    new_definition_versions: int
    # counts recalculated since the stored ones: the new data points
    new_counts: int
    # counts with the lastCountedAt already stored: no new data point
    unchanged_counts: int
    # segments the platform has not counted yet (no cachedCount)
    uncounted: int
    pages: int
    requests: int
    fetched_at: dt.datetime
    # the first snapshot of the workspace: where its history starts
    history_starts_at: dt.datetime
    # the local days the new data points fall on
    counted_dates: tuple[dt.date, ...] = ()
    # live segments the listing lacks but were not marked deleted: it shrank too sharply (`deletions`)
    deletions_held_back: int = 0


def take_snapshot(
    access: SegmentsApiWorkspace,
    warehouse: Warehouse,
    holder: Holder,
    log: logging.Logger,
    *,
    confirm_deletions: bool = False,
) -> SnapshotOutcome:
    """List the workspace's segments (completely, or raise and store nothing) and merge what is new.

    Segments the listing lacks are marked deleted, unless it lacks more than half of the live ones and
    `confirm_deletions` is off: those are held back with a warning (`deletions.plan_deletions`).
    """
    from .source import segments_api_source  # dlt: imported by runs, not by loading the code

    with access.fetch_lock(holder):
        with access.client(log) as client:
            listing = client.list_segments()
        loaded_at = dt.datetime.now(dt.UTC)
        with warehouse.lock(holder):
            stored = read_stored(warehouse.location, access.name)
            deletions = plan_deletions(
                (sid for sid, row in stored.segments.items() if row["deleted_at"] is None),
                {segment.id for segment in listing.segments},
                confirmed=confirm_deletions,
            )
            if deletions.held_back:
                rerun = "take a snapshot again with the run config `confirm_deletions: true`"
                log.warning("%s: %s", access.label, deletions.warning(rerun))
            tables = snapshot_tables(access.workspace, listing, stored, loaded_at, deletions)
            pipeline = warehouse.pipeline(PIPELINE_NAME, access.name, dataset=SEGMENTS_API_DATASET)
            # a package left by a failed run would be loaded in place of this run's data: drop it
            pipeline.abort_packages()
            warehouse.load(pipeline, segments_api_source(tables), holder)
    outcome = summarize(access.name, listing, stored, tables, deletions)
    log.info(
        "%s: %d segments listed in %d pages, %d new counts, %d not recounted since the last snapshot",
        access.label,
        outcome.segments,
        outcome.pages,
        outcome.new_counts,
        outcome.unchanged_counts,
    )
    return outcome


@dataclass(frozen=True)
class Stored:
    """What the warehouse holds of a workspace, as the next snapshot needs it."""

    # segment_id -> (first_seen_at, deleted_at, row of the segments table as a dict)
    segments: dict[str, dict]
    # segment_id -> the hash of its newest stored definition (a return to an older one is a new version)
    definitions: dict[str, str]
    # segment_id -> the newest last_counted_at stored
    newest_counts: dict[str, dt.datetime]


def read_stored(source: Source, workspace_name: str) -> Stored:
    """The workspace's stored segments, definition versions and newest counts (nothing before the first load)."""
    with reading(source) as connection:
        if connection is None:
            return Stored({}, {}, {})
        tables = {
            row[0]
            for row in connection.execute(
                "select table_name from information_schema.tables "
                "where table_catalog = current_database() and table_schema = ?",
                [SEGMENTS_API_DATASET],
            ).fetchall()
        }
        segments: dict[str, dict] = {}
        if SEGMENTS_API_SEGMENTS_TABLE in tables:
            names = [field.name for field in SEGMENTS_SCHEMA]
            for values in connection.execute(
                f"select {', '.join(names)} from {SEGMENTS_API_DATASET}.{SEGMENTS_API_SEGMENTS_TABLE} "
                "where workspace_name = ?",
                [workspace_name],
            ).fetchall():
                row = dict(zip(names, values))
                segments[row["segment_id"]] = row
        definitions: dict[str, str] = {}
        if SEGMENTS_API_DEFINITIONS_TABLE in tables:
            definitions = dict(
                connection.execute(
                    "select segment_id, arg_max(definition_hash, first_seen_at) "
                    f"from {SEGMENTS_API_DATASET}.{SEGMENTS_API_DEFINITIONS_TABLE} "
                    "where workspace_name = ? group by segment_id",
                    [workspace_name],
                ).fetchall()
            )
        newest: dict[str, dt.datetime] = {}
        if SEGMENTS_API_SNAPSHOTS_TABLE in tables:
            newest = dict(
                connection.execute(
                    "select segment_id, max(last_counted_at) "
                    f"from {SEGMENTS_API_DATASET}.{SEGMENTS_API_SNAPSHOTS_TABLE} "
                    "where workspace_name = ? group by segment_id",
                    [workspace_name],
                ).fetchall()
            )
    return Stored(segments, definitions, newest)


def counted_date(moment: dt.datetime, zone: ZoneInfo) -> dt.date:
    """The local day a count belongs to: the day of its lastCountedAt in the workspace's timezone."""
    return moment.astimezone(zone).date()


def snapshot_tables(
    workspace: AccountSettings, listing: Listing, stored: Stored, loaded_at: dt.datetime, deletions: Deletions
) -> dict[str, pa.Table]:
    """The rows this snapshot loads, table by table (only what is new or changed)."""
    name, fetched_at, zone = workspace.name, listing.fetched_at, ZoneInfo(workspace.timezone)
    listed = {segment.id: segment for segment in listing.segments}
    segment_rows = [_segment_row(name, s, stored.segments.get(s.id), fetched_at, loaded_at) for s in listed.values()]
    # a complete listing without a stored live segment: it was deleted, unless held back (rows of ones deleted
    # before stay as they are)
    segment_rows += [
        {**stored.segments[segment_id], "deleted_at": fetched_at, "_loaded_at": loaded_at}
        for segment_id in deletions.marked
    ]
    definition_rows = [
        {
            "workspace_name": name,
            "segment_id": s.id,
            "definition_hash": s.definition_hash,
            "match_type": s.match_type,
            "filters": s.filters,
            "name": s.name,
            "description": s.description,
            "first_seen_at": fetched_at,
            "_loaded_at": loaded_at,
        }
        for s in listed.values()
        # a definition other than the segment's newest stored one, even one it had before (A -> B -> A)
        if stored.definitions.get(s.id) != s.definition_hash
    ]
    snapshot_rows = [
        {
            "workspace_name": name,
            "segment_id": s.id,
            "counted_date": counted_date(s.last_counted_at, zone),
            "last_counted_at": s.last_counted_at,
            "cached_count": s.cached_count,
            "fetched_at": fetched_at,
            "_loaded_at": loaded_at,
        }
        for s in listed.values()
        if s.last_counted_at is not None
        and (s.id not in stored.newest_counts or s.last_counted_at > stored.newest_counts[s.id])
    ]
    return {
        SEGMENTS_API_WORKSPACES_TABLE: pa.Table.from_pylist(
            [{"workspace_name": name, "timezone": workspace.timezone, "_loaded_at": loaded_at}], WORKSPACES_SCHEMA
        ),
        SEGMENTS_API_SEGMENTS_TABLE: pa.Table.from_pylist(segment_rows, SEGMENTS_SCHEMA),
        SEGMENTS_API_DEFINITIONS_TABLE: pa.Table.from_pylist(definition_rows, DEFINITIONS_SCHEMA),
        SEGMENTS_API_SNAPSHOTS_TABLE: pa.Table.from_pylist(snapshot_rows, SNAPSHOTS_SCHEMA),
    }


def _segment_row(
    workspace_name: str, segment: Segment, stored: dict | None, fetched_at: dt.datetime, loaded_at: dt.datetime
) -> dict:
    return {
        "workspace_name": workspace_name,
        "segment_id": segment.id,
        "name": segment.name,
        "description": segment.description,
        "created_at": segment.created_at,
        # the first snapshot that saw it: where its history starts
        "first_seen_at": stored["first_seen_at"] if stored else fetched_at,
        "last_seen_at": fetched_at,
        "deleted_at": None,
        "_loaded_at": loaded_at,
    }


def summarize(
    workspace_name: str, listing: Listing, stored: Stored, tables: dict[str, pa.Table], deletions: Deletions
) -> SnapshotOutcome:
    snapshots = tables[SEGMENTS_API_SNAPSHOTS_TABLE]
    counted = [s for s in listing.segments if s.last_counted_at is not None]
    listed_ids = {s.id for s in listing.segments}
    return SnapshotOutcome(
        workspace=workspace_name,
        segments=len(listing.segments),
        new_segments=len(listed_ids - set(stored.segments)),
        deleted_segments=len(deletions.marked),
        deletions_held_back=len(deletions.held),
        new_definition_versions=tables[SEGMENTS_API_DEFINITIONS_TABLE].num_rows,
        new_counts=snapshots.num_rows,
        unchanged_counts=len(counted) - snapshots.num_rows,
        uncounted=len(listing.segments) - len(counted),
        pages=listing.pages,
        requests=listing.requests,
        fetched_at=listing.fetched_at,
        history_starts_at=min([listing.fetched_at, *(row["first_seen_at"] for row in stored.segments.values())]),
        counted_dates=tuple(sorted(set(snapshots.column("counted_date").to_pylist()))),
    )
