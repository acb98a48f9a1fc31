"""Checks on the raw series of one account, next to the asset they check. dbt's tests check the models."""

import dagster as dg

from ...tables import ACCOUNTS_TABLE, RAW_DATASET, SEGMENT_SERIES_TABLE
from .assets import holder

_SERIES = f"{RAW_DATASET}.{SEGMENT_SERIES_TABLE}"


def _account_rows(account_name: str) -> tuple[str, list]:
    """The rows of one account: those of the Klaviyo account stored under its name."""
    return f"account_id in (select account_id from {RAW_DATASET}.{ACCOUNTS_TABLE} where account_name = ?)", [
        account_name
    ]


def _count(context: dg.AssetCheckExecutionContext, sql: str, params: list) -> int:
    with context.resources.warehouse.read(holder(context)) as connection:
        return connection.execute(sql, params).fetchone()[0]


def build_series_checks(account_name: str, series_key: dg.AssetKey) -> list[dg.AssetChecksDefinition]:
    """The account's series checks: one row per (segment, day), and net = added - removed."""
    rows, params = _account_rows(account_name)

    @dg.asset_check(
        asset=series_key,
        name="series_has_one_row_per_segment_day",
        description="No (segment, day) is stored twice.",
        required_resource_keys={"warehouse"},
    )
    def series_has_one_row_per_segment_day(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
        duplicates = _count(
            context,
            f"select count(*) from (select 1 from {_SERIES} where {rows} "
            "group by account_id, segment_id, date having count(*) > 1)",
            params,
        )
        return dg.AssetCheckResult(passed=duplicates == 0, metadata={"duplicated_keys": duplicates})

    @dg.asset_check(
        asset=series_key,
        name="series_net_equals_added_minus_removed",
        description="Klaviyo's numbers agree with themselves: net = added - removed (a warning, not an error).",
        required_resource_keys={"warehouse"},
    )
    def series_net_equals_added_minus_removed(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
        mismatches = _count(
            context,
            f"select count(*) from {_SERIES} where {rows} and net_members_changed <> members_added - members_removed",
            params,
        )
        return dg.AssetCheckResult(
            passed=mismatches == 0, severity=dg.AssetCheckSeverity.WARN, metadata={"rows_disagreeing": mismatches}
        )

    return [series_has_one_row_per_segment_day, series_net_equals_added_minus_removed]
