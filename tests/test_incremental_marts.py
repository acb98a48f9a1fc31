"""The incremental marts equal a full rebuild, whatever order the days arrive in, and follow definition history.

One module-scoped simulator account (a few segments) is loaded through the real Dagster assets (segments,
series, dbt models) in the orders a user produces: the daily schedule's recent days first, then a backfill
of older days whose first response carries numbers Klaviyo later revises, the re-run of that old partition
with the revised numbers, overlapping re-runs, a single missing day in the middle, and a rename. After each
step every column of every mart equals `dbt run --full-refresh` on a copy of the same warehouse; at the
end (every day loaded) the daily and roll-up marts also equal values computed from the simulator's truth.
The last test takes one segment's definition A -> B -> A through the real dlt load and dbt.
"""

from __future__ import annotations

import copy
import datetime as dt
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from klaviyo_simulator import KlaviyoSimulator, SimulatorConfig
from segment_pipeline.klaviyo.limits import SEGMENT_SERIES_PATH

from .pipeline_helpers import API_KEY, FAST, MODELS, SEGMENTS, SERIES, definitions, keys, range_tags
from .test_dbt_models import run_dbt
from .test_full_pipeline import (
    DAILY_COLUMNS,
    ROLLUP_COLUMNS,
    assert_rows_match,
    expected_daily,
    expected_rollup,
    models_with_their_tests,
)

pytestmark = pytest.mark.timeout(600)

SERIES_NODE = "klaviyo__default__segment_series_daily"

SEGMENT_COUNT = 5
SEED = 23
DAYS = 120  # the backfill's first 60-day response reaches day 120 back

# every mart, with the columns that identify a row
MARTS = {
    "segment_growth_daily": ("account_id", "segment_id", "date"),
    "segment_growth_weekly": ("account_id", "segment_id", "week_start"),
    "segment_growth_monthly": ("account_id", "segment_id", "month_start"),
    "segments": ("account_id", "segment_id"),
    "segment_definition_history": ("account_id", "segment_id", "version_number"),
}


@dataclass
class Account:
    """The shared state: the simulator, the work directory, and what the expectations need to know."""

    sim: KlaviyoSimulator
    work: Path
    last: dt.date  # yesterday in the account's timezone
    first: dt.date = field(init=False)  # the first loaded day, once everything is loaded
    definition_changes: set[tuple[str, dt.date]] = field(default_factory=set)
    steps: int = 0
    defs: dg.Definitions = field(init=False)

    def __post_init__(self) -> None:
        self.first = self.last - dt.timedelta(days=DAYS - 1)
        self.defs = definitions(self.sim, self.work)

    @property
    def account_id(self) -> str:
        return self.sim.account.account_id

    @property
    def warehouse(self) -> Path:
        return self.work / "warehouse.duckdb"

    def day(self, days_back: int) -> dt.date:
        return self.last - dt.timedelta(days=days_back)

    def run(self, names: list[str], *, dbt_tests: bool = True, **kwargs) -> None:
        """Materialize the named assets, with the dbt tests of the models among them (`dbt_tests`)."""
        if dbt_tests:
            selection = models_with_their_tests(self.defs, names)
        else:
            selection = dg.AssetSelection.assets(*keys(names, self.defs)).without_checks()
        assets = [*self.defs.assets, *(self.defs.asset_checks or [])]
        result = dg.materialize(assets, selection=selection, resources=self.defs.resources, **kwargs)
        assert result.success

    def load(self, first_back: int, last_back: int) -> None:
        """Series for [last - first_back, last - last_back], then the models, as a range run does. dbt's own
        tests run on the last step only: in between, each step is compared with a full rebuild instead, which
        is what this module is about (and a build of the models alone takes half the time)."""
        tags = range_tags(self.day(first_back), self.day(last_back))
        self.run([SERIES, MODELS], dbt_tests=False, tags=tags)


def mart_rows(warehouse: Path, mart: str) -> list[tuple]:
    keys = ", ".join(MARTS[mart])
    with duckdb.connect(str(warehouse), read_only=True) as connection:
        return connection.execute(f"select * from marts.{mart} order by {keys}").fetchall()


def assert_equals_a_full_rebuild(account: Account) -> None:
    """Every column of every mart equals what `dbt run --full-refresh` builds from the same raw tables."""
    account.steps += 1
    work = account.work / f"rebuild_{account.steps}"
    work.mkdir()
    copy_path = work / "warehouse.duckdb"
    shutil.copyfile(account.warehouse, copy_path)
    run_dbt(["run", "--full-refresh"], copy_path, work)
    for mart in MARTS:
        incremental, rebuilt = mart_rows(account.warehouse, mart), mart_rows(copy_path, mart)
        assert rebuilt, mart
        differing = [pair for pair in zip(incremental, rebuilt) if pair[0] != pair[1]]
        assert len(incremental) == len(rebuilt) and not differing, (
            f"marts.{mart} after step {account.steps}: {len(incremental)} rows vs {len(rebuilt)} in a full "
            f"rebuild; first differences: {differing[:3]}"
        )


def rows(account: Account, sql: str, params: list | None = None) -> list[dict]:
    with duckdb.connect(str(account.warehouse), read_only=True) as connection:
        cursor = connection.execute(sql, params or [])
        names = [column[0] for column in cursor.description]
        return [dict(zip(names, row)) for row in cursor.fetchall()]


def revise_day(day: dt.date):
    """A fault that reports `day` with 2 members added too many, as Klaviyo does before it settles a day."""

    def early_numbers(body):
        stamps = body["data"]["attributes"]["date_times"]
        hits = [i for i, stamp in enumerate(stamps) if stamp.startswith(day.isoformat())]
        for index in hits:
            for result in body["data"]["attributes"]["results"]:
                stats = result["statistics"]
                for name in ("members_added", "net_members_changed", "total_members"):
                    stats[name][index] += 2
        return body

    return early_numbers


@pytest.fixture(scope="module")
def account(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Account]:
    work = tmp_path_factory.mktemp("incremental")
    config = SimulatorConfig(api_key=API_KEY, segment_count=SEGMENT_COUNT, speed=FAST, seed=SEED)
    with KlaviyoSimulator(config) as sim:
        shared = Account(sim=sim, work=work, last=sim.account.today() - dt.timedelta(days=1))
        shared.run([SEGMENTS])
        yield shared


def test_loads_in_any_order_give_the_marts_of_a_full_rebuild(account: Account) -> None:
    sim = account.sim
    revised = account.day(100)  # inside the backfill's first (oldest) 60-day response

    # the daily schedule has been loading recent days (a first build is a full build)
    account.load(19, 0)

    # then a backfill of the older days (leaving day 20 out), whose numbers for `revised` are early ones
    sim.faults.add(path=SEGMENT_SERIES_PATH, mutate=revise_day(revised), times=1)
    account.load(DAYS - 1, 21)
    stored = rows(
        account, "select segment_id, members_added from klaviyo.segment_series_daily where date = ?", [revised]
    )
    truth = {s.id: sim.account.series(s.id, revised, revised)[0]["members_added"] for s in sim.account.segments}
    assert {r["segment_id"]: r["members_added"] - 2 for r in stored} == truth, "the early numbers were not loaded"
    assert_equals_a_full_rebuild(account)

    # the old partition re-run picks up Klaviyo's revised numbers; the next 29 days' windows follow. The day
    # was fetched when already old, so it counts as final: only a forced refetch asks Klaviyo again
    account.run(
        [SERIES, MODELS],
        partition_key=revised.isoformat(),
        run_config={"ops": {SERIES_NODE: {"config": {"refetch": True}}}},
        dbt_tests=False,
    )
    assert_equals_a_full_rebuild(account)

    # overlapping re-runs, the second reaching into the recent days; a rename; then the single day missing
    # in the middle arrives last
    account.load(70, 50)
    account.load(55, 10)
    renamed = sim.account.segments[0]
    sim.account.rename(renamed.id, 'Renamed: VIP "gold" ✨')
    account.run([SEGMENTS, SERIES, MODELS], partition_key=account.day(20).isoformat())
    assert_equals_a_full_rebuild(account)

    # every day is loaded now: the marts are also the simulator's truth, computed independently
    expected = expected_daily(account)
    assert_rows_match(
        rows(account, f"select {', '.join(DAILY_COLUMNS)} from marts.segment_growth_daily"),
        expected,
        ("account_id", "segment_id", "date"),
        "marts.segment_growth_daily",
    )
    assert len(expected) == SEGMENT_COUNT * DAYS
    for table, period in (("segment_growth_weekly", "week_start"), ("segment_growth_monthly", "month_start")):
        assert_rows_match(
            rows(account, f"select {', '.join([*ROLLUP_COLUMNS, period])} from marts.{table}"),
            expected_rollup(account, period),
            ("account_id", "segment_id", period),
            f"marts.{table}",
        )


def test_a_return_to_an_earlier_definition_is_a_third_version(account: Account) -> None:
    sim = account.sim
    # a segment last updated before the edits, so each edit moves `updated` on to its own day
    three_days_ago = sim.account.now() - dt.timedelta(days=3)
    segment = next(s for s in sim.account.segments if s.updated < three_days_ago and s.edits == 0)
    definition_a = copy.deepcopy(segment.definition)
    if not rows(account, "select 1 from marts.segment_growth_daily limit 1"):
        account.load(DAYS - 1, 0)  # this test alone: load the days first

    # A -> B on the day before yesterday, loaded by that day's run; B -> A yesterday, loaded by today's
    changed = []
    for day, edit in ((account.day(1), sim.account.edit_definition), (account.day(0), None)):
        sim.account.set_today(day)
        try:
            definition = edit(segment.id) if edit else sim.account.set_definition(segment.id, definition_a)
        finally:
            sim.account.set_today(None)
        changed.append((day, definition, sim.account.segment(segment.id).updated))
        account.definition_changes.add((segment.id, day))
        account.run([SEGMENTS, MODELS])
    (b_day, definition_b, b_updated), (a_day, definition_back, a_updated) = changed
    assert definition_b != definition_a and definition_back == definition_a

    history = rows(
        account,
        "select version_number, definition_hash, valid_from, valid_to, is_current "
        "from marts.segment_definition_history where segment_id = ? order by version_number",
        [segment.id],
    )
    assert [r["version_number"] for r in history] == [1, 2, 3]
    first, second, third = history
    assert first["definition_hash"] == third["definition_hash"] != second["definition_hash"]
    assert (first["valid_from"], first["valid_to"]) == (segment.created, b_updated)
    assert (second["valid_from"], second["valid_to"]) == (b_updated, a_updated)
    assert (third["valid_from"], third["valid_to"]) == (a_updated, None)
    assert [r["is_current"] for r in history] == [False, False, True]

    # the raw table keeps every observed state, the revert included
    assert [
        r["n"]
        for r in rows(
            account, "select count(*) as n from klaviyo.segment_definitions where segment_id = ?", [segment.id]
        )
    ] == [3]
    summary = rows(account, "select * from marts.segments where segment_id = ?", [segment.id])[0]
    assert summary["definition_version_count"] == 3
    flagged = rows(
        account, "select date from marts.segment_growth_daily where segment_id = ? and definition_changed", [segment.id]
    )
    assert [r["date"] for r in flagged] == [b_day, a_day]
    # the rest of the daily mart is untouched truth, and everything equals a full rebuild
    assert_rows_match(
        rows(account, f"select {', '.join(DAILY_COLUMNS)} from marts.segment_growth_daily"),
        expected_daily(account),
        ("account_id", "segment_id", "date"),
        "marts.segment_growth_daily",
    )
    assert_equals_a_full_rebuild(account)
