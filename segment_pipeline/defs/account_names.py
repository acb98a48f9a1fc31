"""The Dagster names of an account's definitions: one place, so the UI, the sensors, the CLI and the docs agree.

Every account, the one `default` of a deployment without an accounts file included, gets the same shape of
names: asset keys `klaviyo/<account>/<table>`, group `klaviyo_<account>`, resource `klaviyo_<account>`, job
`ingest_<account>_job` and schedule `ingest_<account>_daily`.
"""

from __future__ import annotations

import dagster as dg

GROUP = "klaviyo"
# the tag that names the account on every run of its assets (its job's, its backfills', the resume sensor's)
ACCOUNT_TAG = "segment_pipeline/account"


# a run tag the series asset reads: ask Klaviyo again for every day, even days already final
REFETCH_TAG = "segment_pipeline/refetch"
# the groups of the assets every account shares: the dbt layers (dbt_staging, ...) and the analyst copy and report
SHARED_GROUP_PREFIX = "dbt_"
PUBLISHING_GROUP = "analytics"


def is_shared_group(group: str) -> bool:
    """Whether an asset group holds assets built once for every account (not one account's own)."""
    return group.startswith(SHARED_GROUP_PREFIX) or group == PUBLISHING_GROUP


def asset_key(account_name: str, table: str) -> dg.AssetKey:
    """`klaviyo/<account>/<table>`: one key per account and raw table."""
    return dg.AssetKey([GROUP, account_name, table])


def account_of(key_path: tuple[str, ...] | list[str]) -> str | None:
    """The account an asset key belongs to (`klaviyo/<account>/<table>`), None for a shared asset."""
    return key_path[1] if len(key_path) == 3 and key_path[0] == GROUP else None


def group_name(account_name: str) -> str:
    """One asset group per account, so the UI shows each account's status and failures apart."""
    return f"{GROUP}_{account_name}"


def resource_key(account_name: str) -> str:
    """The account's Klaviyo resource (`ingest.access.KlaviyoAccess`)."""
    return f"klaviyo_{account_name}"


def job_name(account_name: str) -> str:
    """The account's job: its segments and series for a range of its own days."""
    return f"ingest_{account_name}_job"


def schedule_name(account_name: str) -> str:
    return f"ingest_{account_name}_daily"


def pool_name(account_name: str) -> str:
    """The Dagster pool of the account's Klaviyo steps: one step of an account talks to Klaviyo at a time."""
    return f"klaviyo_{account_name}"


def segments_op_name(account_name: str) -> str:
    """The segments step's name, as run config addresses it (`ops: {<name>: {config: {confirm_deletions: true}}}`)."""
    return f"klaviyo_{account_name}_segments"


def series_op_name(account_name: str) -> str:
    """The series step's name, as run config addresses it (`ops: {<name>: {config: {refetch: true}}}`)."""
    return "__".join(asset_key(account_name, "segment_series_daily").path)
