"""Each Segments API workspace's definitions: its snapshot asset, its checks, its job and its daily schedule.

The asset `segments_api/<workspace>/snapshots` is not partitioned, on purpose: the platform keeps no past
counts, so a day that was not snapshotted can never be loaded, and daily partitions would show the past as
missing-but-loadable. Its history starts at its first materialization. The schedule runs every day at
SEGMENTS_API_SCHEDULE_HOUR in the workspace's timezone and is on by default: a day missed is a day lost.
The body calls the plain service (`segment_pipeline.segments_api.snapshot`).
"""

from typing import TYPE_CHECKING

import dagster as dg
from pydantic import Field

from ..deletions import CONFIRM_DELETIONS_HELP
from ..segments_api.access import SegmentsApiWorkspace
from ..tables import (
    SEGMENTS_API_DATASET,
    SEGMENTS_API_DEFINITIONS_TABLE,
    SEGMENTS_API_SEGMENTS_TABLE,
    SEGMENTS_API_SNAPSHOTS_TABLE,
)
from .failures import explained_failures
from .ingest.assets import holder

if TYPE_CHECKING:
    from ..segments_api.snapshot import SnapshotOutcome

PLATFORM = SEGMENTS_API_DATASET
SNAPSHOTS = "snapshots"
WORKSPACE_TAG = "segment_pipeline/segments_api_workspace"
# each table's natural key: the check finds any key stored twice
_KEYS = {
    SEGMENTS_API_SEGMENTS_TABLE: "workspace_name, segment_id",
    SEGMENTS_API_DEFINITIONS_TABLE: "workspace_name, segment_id, definition_hash, first_seen_at",
    SEGMENTS_API_SNAPSHOTS_TABLE: "workspace_name, segment_id, counted_date",
}

_TABLES_OF_SCHEMA = (
    "select table_name from information_schema.tables where table_catalog = current_database() and table_schema = ?"
)


def snapshot_key(workspace_name: str) -> dg.AssetKey:
    """`segments_api/<workspace>/snapshots`: the one asset of a workspace (the dbt models follow it)."""
    return dg.AssetKey([PLATFORM, workspace_name, SNAPSHOTS])


def workspace_resource_key(workspace_name: str) -> str:
    return f"segments_api_{workspace_name}"


def snapshot_job_name(workspace_name: str) -> str:
    return f"snapshot_segments_api_{workspace_name}_job"


def snapshot_schedule_name(workspace_name: str) -> str:
    return f"snapshot_segments_api_{workspace_name}_daily"


def snapshot_metadata(outcome: "SnapshotOutcome") -> dict:
    return {
        "workspace": outcome.workspace,
        "segments": outcome.segments,
        "new_segments": outcome.new_segments,
        "deleted_segments": outcome.deleted_segments,
        "deletions_held_back": outcome.deletions_held_back,
        "new_definition_versions": outcome.new_definition_versions,
        "new_counts": outcome.new_counts,
        "counts_not_recalculated": outcome.unchanged_counts,
        "segments_never_counted": outcome.uncounted,
        "counted_dates": ", ".join(day.isoformat() for day in outcome.counted_dates) or "(none new)",
        "history_starts_at": dg.MetadataValue.timestamp(outcome.history_starts_at),
        "pages": outcome.pages,
        "requests_sent": outcome.requests,
        "dagster/row_count": outcome.segments,
    }


class SnapshotConfig(dg.Config):
    """Run options of a workspace's snapshot (Launchpad: `ops: {segments_api__<ws>__snapshots: {config: ...}}`)."""

    confirm_deletions: bool = Field(default=False, description=CONFIRM_DELETIONS_HELP)


def build_snapshot_asset(access: SegmentsApiWorkspace) -> dg.AssetsDefinition:
    name, resource = access.name, workspace_resource_key(access.name)

    @dg.asset(
        key=snapshot_key(name),
        group_name=f"{PLATFORM}_{name}",
        kinds={"dlt", "duckdb"},
        op_tags={WORKSPACE_TAG: name},
        required_resource_keys={resource, "warehouse"},
        description=(
            f"A snapshot of every segment of {access.label} ({access.workspace.timezone}): definitions, and each "
            "cachedCount as a data point of the local day of its lastCountedAt, into the raw tables "
            f"{PLATFORM}.workspaces, .segments, .segment_definitions and .segment_count_snapshots. The platform "
            "keeps no past counts, so history starts at the first snapshot and cannot be backfilled: there are no "
            "partitions to fill. A count not recalculated since the last snapshot adds nothing; a re-run changes "
            "nothing. Taken daily by its schedule."
        ),
    )
    def workspace_snapshot(context: dg.AssetExecutionContext, config: SnapshotConfig) -> dg.MaterializeResult:
        from ..segments_api.snapshot import take_snapshot

        with explained_failures(access.label):
            outcome = take_snapshot(
                getattr(context.resources, resource),
                context.resources.warehouse,
                holder(context),
                context.log,
                confirm_deletions=config.confirm_deletions,
            )
        return dg.MaterializeResult(metadata=snapshot_metadata(outcome))

    return workspace_snapshot


def build_snapshot_check(workspace_name: str) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=snapshot_key(workspace_name),
        name="snapshots_have_one_row_per_key",
        description="No segment, definition version or (segment, local day) count is stored twice.",
        required_resource_keys={"warehouse"},
    )
    def snapshots_have_one_row_per_key(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
        duplicates = {}
        with context.resources.warehouse.read(holder(context)) as connection:
            stored = {row[0] for row in connection.execute(_TABLES_OF_SCHEMA, [PLATFORM]).fetchall()}
            for table, key in _KEYS.items():
                if table not in stored:  # no snapshot yet: nothing can be duplicated
                    continue
                duplicates[f"duplicated_keys_{table}"] = connection.execute(
                    f"select count(*) from (select 1 from {PLATFORM}.{table} where workspace_name = ? "
                    f"group by {key} having count(*) > 1)",
                    [workspace_name],
                ).fetchone()[0]
        return dg.AssetCheckResult(passed=not any(duplicates.values()), metadata=duplicates)

    return snapshots_have_one_row_per_key


def build_workspace(access: SegmentsApiWorkspace, hour: int):
    """The workspace's asset, check, job and schedule (every day at `hour` in its own timezone)."""
    asset, check = build_snapshot_asset(access), build_snapshot_check(access.name)
    job = dg.define_asset_job(
        snapshot_job_name(access.name),
        selection=dg.AssetSelection.assets(asset),
        tags={WORKSPACE_TAG: access.name},
        description=f"Snapshot {access.label}: its segments, definitions and current counts.",
    )
    schedule = dg.ScheduleDefinition(
        name=snapshot_schedule_name(access.name),
        job=job,
        cron_schedule=f"0 {hour} * * *",
        execution_timezone=access.workspace.timezone,
        # on by default: a day without a snapshot is lost for good, the platform cannot be asked later
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description=f"The daily snapshot of {access.label} at {hour:02d}:00 {access.workspace.timezone}.",
    )
    return asset, check, job, schedule
