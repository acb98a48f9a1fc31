"""The Dagster names of an account's definitions: one place, so the UI, the sensor, the demo and the docs agree.

A deployment without an accounts file has one account named `default`; its definitions keep the names they
had before accounts existed (`klaviyo/segments`, `segment_growth_job`, resource `klaviyo`), so existing
instances, run history and scripts stay valid. Every other account's names carry its short name.
"""

from __future__ import annotations

import dagster as dg

from ..accounts import DEFAULT_ACCOUNT_NAME

GROUP = "klaviyo"


def _named(account_name: str) -> bool:
    return account_name != DEFAULT_ACCOUNT_NAME


def asset_key(account_name: str, table: str) -> dg.AssetKey:
    """`klaviyo/<table>` for the default account, `klaviyo/<account>/<table>` for a named one."""
    if _named(account_name):
        return dg.AssetKey([GROUP, account_name, table])
    return dg.AssetKey([GROUP, table])


def group_name(account_name: str) -> str:
    """One asset group per account, so the UI shows each account's status and failures apart."""
    return f"{GROUP}_{account_name}" if _named(account_name) else GROUP


def resource_key(account_name: str) -> str:
    """The account's Klaviyo resource (its key's variable, pace, budget, timezone, segment filter)."""
    return f"klaviyo_{account_name}" if _named(account_name) else "klaviyo"


def job_name(account_name: str) -> str:
    """The account's job: its segments and series for a range of its own days, then the models and publishing."""
    return f"segment_growth_{account_name}_job" if _named(account_name) else "segment_growth_job"


def schedule_name(account_name: str) -> str:
    return f"segment_growth_{account_name}_daily_schedule" if _named(account_name) else "segment_growth_daily_schedule"


def series_op_name(account_name: str) -> str:
    """The series step's name, as run config addresses it (`ops: {<name>: {config: {refetch: true}}}`)."""
    return "__".join(asset_key(account_name, "segment_series_daily").path)
