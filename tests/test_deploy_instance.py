"""deploy/dagster.yaml, the deployment's Dagster instance: runs and events in a real PostgreSQL, the run queue."""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import psycopg2
from dagster._core.run_coordinator import QueuedRunCoordinator

from segment_pipeline.defs.account_names import ACCOUNT_TAG

REPO = Path(__file__).resolve().parents[1]
INSTANCE_FILE = REPO / "deploy" / "dagster.yaml"


@dg.asset
def one_number() -> int:
    return 1


def test_the_deployment_instance_keeps_runs_in_postgres_and_queues_one_run_per_account(postgres, tmp_path, monkeypatch):
    catalog, password = postgres.new_database("dagster")
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(INSTANCE_FILE, home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    url = f"postgresql+psycopg2://{catalog.user}:{password}@{catalog.host}:{catalog.port}/{catalog.dbname}"
    monkeypatch.setenv("DAGSTER_POSTGRES_URL", url)

    with dg.DagsterInstance.get() as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        assert isinstance(instance.run_coordinator, QueuedRunCoordinator)
        queue = instance.get_concurrency_config().run_queue_config
        assert queue.max_concurrent_runs == 8
        # one step per account pool at a time, backfill runs included (their runs carry no account tag)
        assert instance.get_concurrency_config().pool_config.default_pool_limit == 1
        # and one scheduled run per account: the tag its job's runs carry
        assert [(limit["key"], limit["value"], limit["limit"]) for limit in queue.tag_concurrency_limits] == [
            (ACCOUNT_TAG, {"applyLimitPerUniqueValue": True}, 1)
        ]
        result = dg.materialize([one_number], instance=instance, tags={ACCOUNT_TAG: "acme"})
        assert result.success

    # the run and its events are in PostgreSQL, for every other process of the deployment to see
    with (
        psycopg2.connect(
            host=catalog.host, port=catalog.port, dbname=catalog.dbname, user=catalog.user, password=password
        ) as connection,
        connection.cursor() as cursor,
    ):
        cursor.execute("select status from runs where run_id = %s", [result.run_id])
        assert cursor.fetchall() == [("SUCCESS",)]
        cursor.execute("select count(*) from event_logs where run_id = %s", [result.run_id])
        assert cursor.fetchone()[0] > 0
