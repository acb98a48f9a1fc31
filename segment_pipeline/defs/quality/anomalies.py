"""The daily anomaly check: a warning listing the segments whose newest loaded day stands out.

The arithmetic lives in the dbt mart marts.segment_anomalies; this only reads the newest day of it, so the
daily run tells someone without them opening the report. A warning never stops the run.
"""

import dagster as dg

from ...tables import MARTS_SCHEMA
from ..ingest.assets import holder

ANOMALIES_KEY = dg.AssetKey([MARTS_SCHEMA, "segment_anomalies"])

_NEWEST_DAY_SQL = f"""
with newest as (
    select account_id, max(date) as date from {MARTS_SCHEMA}.segment_growth_daily group by account_id
)
select anomalies.account_id, anomalies.segment_id, anomalies.segment_name, anomalies.date, anomalies.metric,
       anomalies.value, anomalies.baseline_median, anomalies.robust_z, anomalies.reason, anomalies.is_anomaly
from {MARTS_SCHEMA}.segment_anomalies as anomalies
join newest using (account_id, date)
order by anomalies.is_anomaly desc, abs(anomalies.robust_z) desc, anomalies.segment_id, anomalies.metric
"""


@dg.asset_check(
    asset=ANOMALIES_KEY,
    required_resource_keys={"warehouse"},
    description=(
        "Warns when segments stand out on the newest loaded day (churn or net change with a robust z-score of "
        "at least 3.5 against their previous 28 days); days whose definition changed are listed, not counted."
    ),
)
def no_anomalies_on_the_newest_day(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
    with context.resources.warehouse.read(holder(context)) as connection:
        rows = connection.execute(_NEWEST_DAY_SQL).fetchall()
    anomalies = [row for row in rows if row[-1]]
    lines = ["| segment | day | metric | value | usual | robust z | reason |", "|---|---|---|---:|---:|---:|---|"]
    for _, segment_id, name, day, metric, value, median, z, reason, _ in rows:
        label = (name or "").replace("|", "\\|")
        lines.append(f"| {label} ({segment_id}) | {day} | {metric} | {value:,} | {median:,.0f} | {z:+.1f} | {reason} |")
    metadata = {"anomalies": len(anomalies), "definition_changes": len(rows) - len(anomalies)}
    if rows:
        metadata["days"] = dg.MetadataValue.md("\n".join(lines))
    names = sorted({f"{row[2] or row[1]} ({row[4]})" for row in anomalies})
    description = (
        f"{len(anomalies)} anomal{'y' if len(anomalies) == 1 else 'ies'} on the newest day: {', '.join(names[:10])}"
        if anomalies
        else "No segment stands out on the newest day."
    )
    return dg.AssetCheckResult(
        passed=not anomalies, severity=dg.AssetCheckSeverity.WARN, description=description, metadata=metadata
    )
