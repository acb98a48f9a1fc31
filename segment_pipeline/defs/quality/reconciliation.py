"""The daily reconciliation check: the loaded series against Klaviyo's segment values report.

Its requests come out of the same daily report budget (the client's ledger) as the series; the series
asset reserves them in its up-front budget check, and the check's metadata counts what it planned and
sent. KLAVIYO_RECONCILE_DAYS=0 turns it off (it then sends nothing and says so).
"""

import dataclasses
import datetime as dt
from zoneinfo import ZoneInfo

import dagster as dg

from ... import reconciliation as rc
from ... import warehouse as wh
from ...accounts import select_segments
from ...config import DEFAULT_ACCOUNT_NAME
from ...klaviyo import ReportBudgetError
from ...wording import plural
from ..account_names import resource_key
from ..ingest.assets import SERIES_KEY, account_label, check_account_timezone, explained_failures
from ..partitions import daily_partitions
from ..resources import KlaviyoResource, WarehouseResource

# how many mismatches the check's description lists (all of them are in the metadata table)
_NAMED_IN_DESCRIPTION = 10


def _mismatch_table(mismatches: list[rc.Mismatch]) -> str:
    lines = ["| segment | statistic | loaded | Klaviyo | difference |", "|---|---|---:|---:|---:|"]
    for m in mismatches:
        name = (m.segment_name or "").replace("|", "\\|")
        difference = "" if m.loaded is None or m.klaviyo is None else f"{m.loaded - m.klaviyo:+,}"
        lines.append(f"| {name} ({m.segment_id}) | {m.statistic} | {m.loaded} | {m.klaviyo} | {difference} |")
    return "\n".join(lines)


def build_reconciliation_check(account_name: str, series_key: dg.AssetKey, timezone: str) -> dg.AssetChecksDefinition:
    """The account's reconciliation check, on its series asset, with its Klaviyo resource."""
    klaviyo_key = resource_key(account_name)

    @dg.asset_check(
        asset=series_key,
        name=rc.CHECK_NAME,
        required_resource_keys={klaviyo_key, "warehouse"},
        description=(
            "The loaded series agrees with Klaviyo's segment values report over the last KLAVIYO_RECONCILE_DAYS "
            "loaded days (members added and removed summed, total members on the last day), segment by segment. "
            "Costs ceil(segments / 100) report requests from the account's daily budget; KLAVIYO_RECONCILE_DAYS=0 "
            "turns it off."
        ),
    )
    def series_reconciles_with_klaviyo(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
        resources = context.resources
        return reconcile(context, getattr(resources, klaviyo_key), resources.warehouse, timezone)

    return series_reconciles_with_klaviyo


def reconcile(
    context: dg.AssetCheckExecutionContext, klaviyo: KlaviyoResource, warehouse: WarehouseResource, timezone: str
) -> dg.AssetCheckResult:
    """Compare the account's last loaded days with Klaviyo's values report; a check result either way."""
    days = klaviyo.reconcile_days
    if days == 0:
        return dg.AssetCheckResult(
            passed=True,
            description=f"Reconciliation is off ({rc.RECONCILE_DAYS_SETTING}=0); nothing was compared or sent.",
            metadata={"enabled": False, "report_requests_sent": 0},
        )
    settings = warehouse.settings
    yesterday = dt.datetime.now(ZoneInfo(timezone)).date() - dt.timedelta(days=1)
    with explained_failures(account_label(klaviyo)), klaviyo.fetch_lock(context), klaviyo.client(context.log) as client:
        account = client.get_account()
        check_account_timezone(account, timezone, klaviyo)
        # the warehouse lock only while reading the warehouse, not while Klaviyo answers
        with warehouse.lock(context):
            window = rc.latest_window(settings.warehouse_path, account.id, days, yesterday)
            loaded = rc.loaded_values(settings.warehouse_path, account.id, window) if window is not None else {}
            if not klaviyo.segment_filter.tracks_all:
                # only the segments the account tracks now (the series asset reserved requests for those)
                live = wh.live_segments(settings.warehouse_path, account.id)
                tracked = {row["id"] for row in select_segments(live, klaviyo.segment_filter)}
                loaded = {segment_id: values for segment_id, values in loaded.items() if segment_id in tracked}
        if window is None:
            return dg.AssetCheckResult(
                passed=True, description="No series is loaded yet; nothing to compare.", metadata={"enabled": True}
            )
        planned = rc.request_count(len(loaded), days)
        try:
            client.budget.ensure_available(planned)
        except ReportBudgetError as exc:
            # whatever the run loaded before this check stays loaded: the message must not say "nothing"
            raise dataclasses.replace(exc, purpose=rc.BUDGET_PURPOSE) from None
        reported = rc.klaviyo_values(client, sorted(loaded), window, timezone)
        sent = client.stats.sent_for("reports")
        left = client.budget.remaining()
    mismatches = rc.compare(loaded, reported, window)
    bad_segments = sorted({m.segment_id for m in mismatches})
    metadata = {
        "enabled": True,
        "first_day": window.start.isoformat(),
        "last_day": window.end.isoformat(),
        "segments_compared": len(set(loaded) & set(reported)),
        "segments_disagreeing": len(bad_segments),
        "report_requests_planned": planned,
        "report_requests_sent": sent,
        "report_requests_left_today": left,
    }
    if mismatches:
        metadata["mismatches"] = dg.MetadataValue.md(_mismatch_table(mismatches))
        named = "; ".join(m.describe() for m in mismatches[:_NAMED_IN_DESCRIPTION])
        more = (
            f"; and {len(mismatches) - _NAMED_IN_DESCRIPTION} more" if len(mismatches) > _NAMED_IN_DESCRIPTION else ""
        )
        description = (
            f"{plural(len(bad_segments), 'segment')} {'disagrees' if len(bad_segments) == 1 else 'disagree'} with "
            f"Klaviyo's values report for {window.start} to "
            f"{window.end}: {named}{more}. Re-run the series for those days to reload them."
        )
    else:
        description = (
            f"All {metadata['segments_compared']} segments agree with Klaviyo for {window.start} to {window.end}."
        )
    return dg.AssetCheckResult(passed=not mismatches, description=description, metadata=metadata)


# the single account's (a deployment without an accounts file)
series_reconciles_with_klaviyo = build_reconciliation_check(DEFAULT_ACCOUNT_NAME, SERIES_KEY, daily_partitions.timezone)
