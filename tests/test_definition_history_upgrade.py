"""A warehouse made before `segment_updated` joined the key of klaviyo.segment_definitions keeps loading.

The old resource (keyed on the definition hash, insert-only) is declared here as it was; its table is then
loaded by today's source through the same dlt pipeline, as the first run after an upgrade does.
"""

import datetime as dt

import dlt
import duckdb

from segment_pipeline.klaviyo import Account
from segment_pipeline.klaviyo.segment_listing import definition_hash
from segment_pipeline.sources.segments import DEFINITION_COLUMNS, klaviyo_segments_source
from segment_pipeline.tables import SEGMENT_DEFINITIONS_TABLE
from segment_pipeline.warehouse import dlt_pipeline

ACCOUNT = Account(id="A1", timezone="UTC")
A = {"condition_groups": [{"conditions": [{"type": "profile-region", "in_region": True, "region": "eu"}]}]}
B = {"condition_groups": [{"conditions": [{"type": "profile-region", "in_region": False, "region": "eu"}]}]}
T0 = dt.datetime(2024, 2, 1, tzinfo=dt.UTC)


def resource(definition: dict, updated: str) -> dict:
    attributes = {"name": "EU", "definition": definition, "created": "2024-01-01T00:00:00+00:00", "updated": updated}
    return {"id": "s1", "attributes": {**attributes, "is_active": True, "is_processing": False, "is_starred": False}}


@dlt.source(name="klaviyo_segments", max_table_nesting=0)
def old_source(definition: dict, updated: dt.datetime, seen: dt.datetime):
    old_columns = {**DEFINITION_COLUMNS, "segment_updated": {"data_type": "timestamp"}}

    @dlt.resource(
        name=SEGMENT_DEFINITIONS_TABLE,
        primary_key=["account_id", "segment_id", "definition_hash"],
        write_disposition={"disposition": "merge", "strategy": "insert-only"},
        columns=old_columns,
    )
    def segment_definitions():
        yield {
            "account_id": ACCOUNT.id,
            "segment_id": "s1",
            "definition_hash": definition_hash(definition),
            "definition": definition,
            "segment_updated": updated,
            "first_seen_at": seen,
        }

    return (segment_definitions,)


def test_an_old_definitions_table_loads_and_recovers_a_revert(tmp_path):
    warehouse = tmp_path / "warehouse.duckdb"
    pipeline = dlt_pipeline("klaviyo_segments", warehouse, tmp_path / "dlt")
    # the old key dropped the return to A
    for definition, day in ((A, 1), (B, 10), (A, 20)):
        updated = dt.datetime(2024, 1, day, tzinfo=dt.UTC)
        pipeline.run(old_source(definition, updated, T0 + dt.timedelta(days=day)))
    sql = "select definition_hash, segment_updated, first_seen_at from klaviyo.segment_definitions order by 2"
    with duckdb.connect(str(warehouse), read_only=True) as connection:
        assert len(connection.execute(sql).fetchall()) == 2

    # the upgraded code loads into the same table: the current state (A again) becomes a row of its own, once
    for day in (30, 31):
        upgraded = dlt_pipeline("klaviyo_segments", warehouse, tmp_path / "dlt", dlt_columns=True)
        resources = [resource(A, "2024-01-20T00:00:00+00:00")]
        upgraded.run(klaviyo_segments_source(ACCOUNT, resources, [], T0 + dt.timedelta(days=day)))
    with duckdb.connect(str(warehouse), read_only=True) as connection:
        rows = connection.execute(sql).fetchall()
    assert [(h, u.day) for h, u, _ in rows] == [
        (definition_hash(A), 1),
        (definition_hash(B), 10),
        (definition_hash(A), 20),
    ]
    assert rows[2][2] == T0 + dt.timedelta(days=30)  # first seen by the first upgraded run, kept by the next
