"""The reconciliation check of one account: its loaded series against Klaviyo's segment values report.

Its request (one: it compares 100 segments in turn, unless KLAVIYO_RECONCILE_SEGMENTS=all) comes out of the
same daily report budget as the series; the series asset reserves it when the run includes this check.
KLAVIYO_RECONCILE_DAYS=0 turns it off (it then sends nothing and says so).
"""

import dagster as dg

from ... import reconciliation as rc
from ...ingest.access import KlaviyoAccess
from ...wording import plural
from ..account_names import ACCOUNT_TAG, pool_name, resource_key
from ..failures import explained_failures
from ..ingest.assets import holder

# how many mismatches the check's description lists (all of them are in the metadata table)
_NAMED_IN_DESCRIPTION = 10


def _mismatch_table(mismatches: tuple[rc.Mismatch, ...]) -> str:
    lines = ["| segment | statistic | loaded | Klaviyo | difference |", "|---|---|---:|---:|---:|"]
    for m in mismatches:
        name = (m.segment_name or "").replace("|", "\\|")
        difference = "" if m.loaded is None or m.klaviyo is None else f"{m.loaded - m.klaviyo:+,}"
        lines.append(f"| {name} ({m.segment_id}) | {m.statistic} | {m.loaded} | {m.klaviyo} | {difference} |")
    return "\n".join(lines)


def check_result(result: rc.Reconciliation) -> dg.AssetCheckResult:
    """The check's verdict and metadata from what the reconciliation found."""
    if not result.enabled:
        return dg.AssetCheckResult(
            passed=True,
            description="Reconciliation is off (KLAVIYO_RECONCILE_DAYS=0); nothing was compared or sent.",
            metadata={"enabled": False, "report_requests_sent": 0},
        )
    if result.window is None:
        return dg.AssetCheckResult(
            passed=True, description="No series is loaded yet; nothing to compare.", metadata={"enabled": True}
        )
    window, mismatches = result.window, result.mismatches
    metadata = {
        "enabled": True,
        "first_day": window.start.isoformat(),
        "last_day": window.end.isoformat(),
        "segments_compared": result.segments_compared,
        "segments_disagreeing": result.segments_disagreeing,
        "segments_tracked": result.segments_tracked,
        "segments_mode": result.segments,
        "checks_to_compare_all": result.checks_to_compare_all,
        "report_requests_planned": result.requests_planned,
        "report_requests_sent": result.requests_sent,
        "report_requests_left_today": result.requests_left_today,
    }
    if not mismatches:
        description = f"All {result.segments_compared} segments agree with Klaviyo for {window.start} to {window.end}"
        if result.segments_compared < result.segments_tracked:
            description += (
                f" ({result.segments_compared} of {result.segments_tracked} tracked, in turn: every segment is "
                f"compared once every {result.checks_to_compare_all} checks)"
            )
        description += "."
        return dg.AssetCheckResult(passed=True, description=description, metadata=metadata)
    metadata["mismatches"] = dg.MetadataValue.md(_mismatch_table(mismatches))
    named = "; ".join(m.describe() for m in mismatches[:_NAMED_IN_DESCRIPTION])
    more = len(mismatches) - _NAMED_IN_DESCRIPTION
    segments = result.segments_disagreeing
    description = (
        f"{plural(segments, 'segment')} disagree{'s' * (segments == 1)} with Klaviyo's values report "
        f"for {window.start} to {window.end}: {named}{f'; and {more} more' if more > 0 else ''}. Re-run the "
        "series for those days to reload them."
    )
    return dg.AssetCheckResult(passed=False, description=description, metadata=metadata)


def build_reconciliation_check(access: KlaviyoAccess, series_key: dg.AssetKey) -> dg.AssetChecksDefinition:
    """The account's reconciliation check, on its series asset."""
    klaviyo_key = resource_key(access.name)

    @dg.asset_check(
        asset=series_key,
        name=rc.CHECK_NAME,
        required_resource_keys={klaviyo_key, "warehouse"},
        pool=pool_name(access.name),
        op_tags={ACCOUNT_TAG: access.name},
        description=(
            "The loaded series agrees with Klaviyo's segment values report over the last KLAVIYO_RECONCILE_DAYS "
            "loaded days (members added and removed summed, total members on the last day), segment by segment. "
            "Each check compares the next 100 segments in turn, one report request from the account's daily "
            "budget (KLAVIYO_RECONCILE_SEGMENTS=all: every segment, ceil(segments / 100) requests); "
            "KLAVIYO_RECONCILE_DAYS=0 turns it off."
        ),
    )
    def series_reconciles_with_klaviyo(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
        with explained_failures(access.label):
            result = rc.reconcile_account(
                getattr(context.resources, klaviyo_key), context.resources.warehouse, holder(context)
            )
        return check_result(result)

    return series_reconciles_with_klaviyo
