"""One account's ingestion assets: its segments (unpartitioned) and its daily series (its own days).

The bodies are thin: they call the ingestion services (`segment_pipeline.ingest`) and turn what those return
into materializations, or into a Failure that says what to do. The series asset reports each day on its own:
a range run records one materialization per day, with that day's rows.
"""

import datetime as dt

import dagster as dg
from pydantic import Field

from ...deletions import CONFIRM_DELETIONS_HELP
from ...ingest.access import KlaviyoAccess
from ...reconciliation import CHECK_NAME
from ...tables import (
    ACCOUNTS_TABLE,
    SEGMENT_DEFINITIONS_TABLE,
    SEGMENT_SERIES_TABLE,
    SEGMENT_TAGS_TABLE,
    SEGMENTS_TABLE,
)
from ...warehouse import Holder
from ..account_names import ACCOUNT_TAG, REFETCH_TAG, asset_key, group_name, pool_name, resource_key, segments_op_name
from ..failures import explained_failures
from .series_results import series_failure, series_results


class SegmentsConfig(dg.Config):
    """Run options of the segments step (Launchpad: `ops: {klaviyo_<account>_segments: {config: ...}}`)."""

    confirm_deletions: bool = Field(default=False, description=CONFIRM_DELETIONS_HELP)
    refresh_tags: bool = Field(
        default=False,
        description=(
            "List the segments' tags now (include=tags, at Klaviyo's stricter limit for it). Off by default: the "
            "first run of each day of the account lists them, the others list the segments alone."
        ),
    )


class SeriesConfig(dg.Config):
    """Run options of the series asset (Launchpad: `ops: {klaviyo__<account>__segment_series_daily: {config: ...}}`)."""

    refetch: bool = Field(
        default=False,
        description=(
            "Ask Klaviyo again for every day of the selected partitions, even days already final. Off by "
            "default: a run asks only for the (segment, day) cells that are missing or not final yet."
        ),
    )


def holder(context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext) -> Holder:
    """Who this step is, for the lock files (a directly invoked asset in a test has no run)."""
    try:
        return Holder(run_id=context.run.run_id, step=context.op_def.name, log=context.log)
    except (AttributeError, dg.DagsterError):
        return Holder(log=context.log)


def _segment_specs(access: KlaviyoAccess) -> list[dg.AssetSpec]:
    name, group = access.name, group_name(access.name)
    label = access.label

    def spec(table: str, description: str) -> dg.AssetSpec:
        return dg.AssetSpec(asset_key(name, table), group_name=group, kinds={"dlt", "duckdb"}, description=description)

    return [
        spec(
            SEGMENTS_TABLE,
            f"Every Klaviyo segment of {label} with its whole definition (raw table klaviyo.segments, one row per "
            "segment). Refreshed in full on each run: renames, definition edits and deletions show.",
        ),
        spec(
            SEGMENT_DEFINITIONS_TABLE,
            f"Every version of each segment definition of {label} ever seen (raw table klaviyo.segment_definitions), "
            "with when it was first seen; versions are only ever added.",
        ),
        spec(
            ACCOUNTS_TABLE, f"The Klaviyo account of {label}, its timezone and short name (raw table klaviyo.accounts)."
        ),
        spec(
            SEGMENT_TAGS_TABLE,
            f"Each segment's Klaviyo tags, {label} (raw table klaviyo.segment_tags, one row per segment), listed by "
            "the first run of each of the account's days (run config refresh_tags: now). Needs the tags:read "
            "scope; KLAVIYO_TAGS says what happens without it.",
        ),
    ]


def build_account_assets(
    access: KlaviyoAccess, partitions: dg.DailyPartitionsDefinition
) -> tuple[dg.AssetsDefinition, dg.AssetsDefinition]:
    """The account's `segments` multi-asset and its `segment_series_daily` asset, partitioned by its own days."""
    return build_segments_asset(access), build_series_asset(access, partitions)


def segments_metadata(access: KlaviyoAccess, outcome) -> dict[dg.AssetKey, dict]:
    """What each of the four tables of one listing shows in the UI."""
    name = access.name
    tags = {
        "tags_loaded": outcome.tags_loaded,
        "tags": outcome.tags,
        "segments_without_tag_data": outcome.segments_without_tag_data,
        "tags_listed_at": outcome.tags_listed_at.isoformat(timespec="seconds") if outcome.tags_listed_at else None,
    }
    segments = {
        "account": name,
        "account_id": outcome.account.id,
        "segments": outcome.segments,
        "new_segments": outcome.new_segments,
        "deleted_segments": outcome.deleted_segments,
        "deletions_held_back": outcome.deletions_held_back,
        "inactive_segments": outcome.inactive_segments,
        "requests_sent": outcome.requests_sent,
        "dagster/row_count": outcome.segments,
    }
    return {
        asset_key(name, SEGMENTS_TABLE): {**segments, **tags},
        asset_key(name, SEGMENT_DEFINITIONS_TABLE): {"dagster/row_count": outcome.definition_versions},
        asset_key(name, ACCOUNTS_TABLE): {
            "account": name,
            "account_id": outcome.account.id,
            "timezone": outcome.account.timezone,
        },
        asset_key(name, SEGMENT_TAGS_TABLE): tags,
    }


def build_segments_asset(access: KlaviyoAccess) -> dg.AssetsDefinition:
    """The account's segments, definition history, tags and account: four tables from one listing."""
    klaviyo_key = resource_key(access.name)

    @dg.multi_asset(
        specs=_segment_specs(access),
        name=segments_op_name(access.name),
        # the four tables come from one listing and are always loaded together; selecting one is allowed
        can_subset=True,
        # one listing whatever range of days is selected with it
        backfill_policy=dg.BackfillPolicy.single_run(),
        pool=pool_name(access.name),
        op_tags={ACCOUNT_TAG: access.name},
        required_resource_keys={klaviyo_key, "warehouse"},
    )
    def account_segments(context: dg.AssetExecutionContext, config: SegmentsConfig):
        from ...ingest.segments import refresh_segments

        with explained_failures(access.label):
            outcome = refresh_segments(
                getattr(context.resources, klaviyo_key),
                context.resources.warehouse,
                holder(context),
                context.log,
                confirm_deletions=config.confirm_deletions,
                refresh_tags=config.refresh_tags,
            )
        for key, values in segments_metadata(access, outcome).items():
            if key in context.selected_asset_keys:
                yield dg.MaterializeResult(asset_key=key, metadata=values)

    return account_segments


def build_series_asset(access: KlaviyoAccess, partitions: dg.DailyPartitionsDefinition) -> dg.AssetsDefinition:
    """The account's daily series, partitioned by its own days; a range of days is one run."""
    name = access.name
    klaviyo_key = resource_key(name)
    series_key = asset_key(name, SEGMENT_SERIES_TABLE)
    reconciliation = dg.AssetCheckKey(series_key, CHECK_NAME)

    @dg.asset(
        key=series_key,
        group_name=group_name(name),
        partitions_def=partitions,
        # a range is one run: one request covers up to 60 days and 100 segments
        backfill_policy=dg.BackfillPolicy.single_run(),
        deps=[asset_key(name, SEGMENTS_TABLE)],
        kinds={"dlt", "duckdb"},
        pool=pool_name(name),
        op_tags={ACCOUNT_TAG: name},
        required_resource_keys={klaviyo_key, "warehouse"},
        description=(
            f"Klaviyo's daily segment series of {access.label} (raw table klaviyo.segment_series_daily), in its days "
            f"({access.account.timezone}): one row per tracked segment and day with total_members, members_added, "
            "members_removed and net_members_changed, fetched_on and fetched_at. A run asks only for the (segment, "
            "day) cells that are missing or not final yet, in the fewest requests, and keeps each response on disk "
            "before the next is sent. A range larger than the report budget materializes the days it completed; "
            "the resume sensor finishes the rest."
        ),
    )
    def account_series(context: dg.AssetExecutionContext, config: SeriesConfig):
        from ...ingest.series import load_series

        window = context.partition_time_window
        selected = context.run.asset_check_selection  # None: every check of the job
        in_job = reconciliation in context.job_def.asset_layer.asset_graph.asset_check_keys
        with explained_failures(access.label):
            outcome = load_series(
                getattr(context.resources, klaviyo_key),
                context.resources.warehouse,
                window.start.date(),
                (window.end - dt.timedelta(days=1)).date(),
                holder=holder(context),
                log=context.log,
                refetch=config.refetch or context.run.tags.get(REFETCH_TAG) == "true",
                reconciling=in_job and (selected is None or reconciliation in selected),
            )
        if outcome.unfinished is not None:
            raise series_failure(context, access, outcome, series_key)
        yield from series_results(context, access, outcome, series_key)

    return account_series
