"""Checks on the raw series, next to the asset they check. dbt's tests check the models."""

import dagster as dg

from ...tables import RAW_DATASET, SEGMENT_SERIES_TABLE
from ..resources import WarehouseResource
from .assets import SERIES_KEY

_SERIES = f"{RAW_DATASET}.{SEGMENT_SERIES_TABLE}"


@dg.asset_check(asset=SERIES_KEY, description="No (account, segment, day) is stored twice.")
def series_has_one_row_per_segment_day(
    context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource
) -> dg.AssetCheckResult:
    with warehouse.read(context) as connection:
        duplicates = connection.execute(
            f"select count(*) from (select 1 from {_SERIES} group by account_id, segment_id, date having count(*) > 1)"
        ).fetchone()[0]
    return dg.AssetCheckResult(passed=duplicates == 0, metadata={"duplicated_keys": duplicates})


@dg.asset_check(
    asset=SERIES_KEY,
    description="Klaviyo's numbers agree with themselves: net = added - removed (a warning, not an error).",
)
def series_net_equals_added_minus_removed(
    context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource
) -> dg.AssetCheckResult:
    with warehouse.read(context) as connection:
        mismatches = connection.execute(
            f"select count(*) from {_SERIES} where net_members_changed <> members_added - members_removed"
        ).fetchone()[0]
    return dg.AssetCheckResult(
        passed=mismatches == 0, severity=dg.AssetCheckSeverity.WARN, metadata={"rows_disagreeing": mismatches}
    )


series_checks = [series_has_one_row_per_segment_day, series_net_equals_added_minus_removed]
