"""Several accounts in one set of marts: each row names its account, upgrades and renames included.

Two simulated accounts (Sydney and US/Pacific, a few segments, 45 days) are loaded over real HTTP through
the real dlt sources (`klaviyo_segments_source` with each account's `account_name`, `klaviyo_series_source`)
into one DuckDB file, and the real `dbt build` makes the marts. The story is an agency upgrading:

1. the warehouse as the previous release left it: one account, loaded when `klaviyo.accounts` had no
   `account_name` column (the old accounts resource is declared here as it was), and marts without the
   column (the new build, with `account_name` dropped from the marts, which is the old schema);
2. a build before any new load (e.g. a series-only run comes first) still works and says `default`;
3. the upgraded pipeline loads both accounts under their names from the accounts file; the next normal
   build (no --full-refresh) names every row, and equals a full rebuild;
4. the analysts' guide's cross-account queries, taken from docs/for-sql-analysts.md, give what pandas
   computes from the raw tables;
5. an account renamed in the accounts file shows its new name on every row of every mart after the next
   build, with no row keeping the old one.
"""

from __future__ import annotations

import datetime as dt
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import dlt
import duckdb
import pandas as pd
import pyarrow.parquet as pq
import pytest

from klaviyo_simulator import KlaviyoSimulator, SimulatorConfig
from segment_pipeline.config import DEFAULT_ACCOUNT_NAME
from segment_pipeline.klaviyo import Account, ApiKey, DayWindow, KlaviyoClient, KlaviyoSettings, SeriesRequest
from segment_pipeline.klaviyo.limits import SEGMENT_SERIES_PATH
from segment_pipeline.sources.segments import ACCOUNT_COLUMNS, klaviyo_segments_source
from segment_pipeline.sources.series import fetch_series_table, klaviyo_series_source
from segment_pipeline.tables import ACCOUNTS_TABLE, SEGMENT_DEFINITIONS_TABLE, SEGMENT_TAGS_TABLE, SEGMENTS_TABLE
from segment_pipeline.warehouse import dlt_pipeline, stored_segments

from .test_dbt_models import ANALYST_DOCS, run_dbt

pytestmark = pytest.mark.timeout(600)

TODAY = dt.date(2025, 6, 15)
DAYS = 45
SENTINEL = 123.25  # a growth_rate no real row has, within the column's accepted range
FAST = 1_000_000.0
# the simulator's accounts; the names in the accounts file are the pipeline's, chosen apart from these
SIMULATED = {
    "sydney": {"api_key": "key-sydney", "seed": 41, "timezone": "Australia/Sydney"},
    "pacific": {"api_key": "key-pacific", "seed": 42, "timezone": "US/Pacific"},
}
MARTS = {
    "segment_growth_daily": ("account_id", "segment_id", "date"),
    "segment_growth_weekly": ("account_id", "segment_id", "week_start"),
    "segment_growth_monthly": ("account_id", "segment_id", "month_start"),
    "segments": ("account_id", "segment_id"),
    "segment_definition_history": ("account_id", "segment_id", "version_number"),
    "segment_anomalies": ("account_id", "segment_id", "date", "metric"),
    "segment_growth_by_tag_daily": ("account_id", "tag_id", "date"),
    "segment_growth_by_tag_weekly": ("account_id", "tag_id", "week_start"),
}


@dataclass
class Agency:
    """The simulator, the warehouse, and what the steps observed on the way."""

    sim: KlaviyoSimulator
    work: Path
    account_ids: dict[str, str] = field(default_factory=dict)  # simulated account -> Klaviyo account id
    before_upgrade: dict[str, set] = field(default_factory=dict)  # mart -> account_name values
    builds: int = 0

    @property
    def warehouse(self) -> Path:
        return self.work / "warehouse.duckdb"

    def client(self, simulated: str) -> KlaviyoClient:
        settings = KlaviyoSettings(
            api_key=ApiKey(SIMULATED[simulated]["api_key"]), base_url=self.sim.base_url, timeout_seconds=10
        )
        return KlaviyoClient(settings, sleep=lambda seconds: None)

    def load(self, simulated: str, account_name: str | None, series: bool = True) -> None:
        """Segments and 45 days of series of one account; `account_name=None` loads as the old release did."""
        loaded_at = dt.datetime.now(dt.UTC)
        with self.client(simulated) as client:
            account = client.get_account()
            self.account_ids[simulated] = account.id
            resources, tag_names = client.list_segments_with_tags()
            previous = stored_segments(self.warehouse, account.id)
            segments = dlt_pipeline("klaviyo_segments", self.warehouse, self.work / "dlt", dlt_columns=True)
            if account_name is None:
                source = klaviyo_segments_source(account, resources, previous, loaded_at, tag_names)
                segments.run(source.with_resources(SEGMENTS_TABLE, SEGMENT_DEFINITIONS_TABLE, SEGMENT_TAGS_TABLE))
                segments.run(accounts_before_account_name(account, loaded_at))
            else:
                segments.run(
                    klaviyo_segments_source(
                        account, resources, previous, loaded_at, tag_names, account_name=account_name
                    )
                )
            if not series:
                return
            ids = tuple(resource["id"] for resource in resources)
            window = DayWindow(TODAY - dt.timedelta(days=DAYS), TODAY - dt.timedelta(days=1))
            table = fetch_series_table(client, account, SeriesRequest(ids, window), TODAY).table
        staged = self.work / f"series-{account.id}.parquet"
        pq.write_table(table, staged)
        dlt_pipeline("klaviyo_series", self.warehouse, self.work / "dlt").run(
            klaviyo_series_source([staged], pq.read_table, loaded_at)
        )

    def build(self) -> None:
        self.builds += 1
        run_dbt(["build"], self.warehouse, self.work / f"build_{self.builds}")


def churn_spike(day: dt.date):
    """A series response in which a third of the first segment's members leave on `day` (for the anomaly
    mart), its later totals lower to match."""

    def spike(body):
        attributes = body["data"]["attributes"]
        days = [stamp[:10] for stamp in attributes["date_times"]]
        stats = attributes["results"][0]["statistics"]
        hit = days.index(day.isoformat())
        left = stats["total_members"][hit] // 3
        stats["members_removed"][hit] += left
        stats["net_members_changed"][hit] -= left
        for index in range(hit, len(days)):
            stats["total_members"][index] -= left
        return body

    return spike


@dlt.source(name="klaviyo_segments", max_table_nesting=0)
def accounts_before_account_name(account: Account, loaded_at: dt.datetime):
    """klaviyo.accounts as the release before account_name wrote it."""
    columns = {name: hints for name, hints in ACCOUNT_COLUMNS.items() if name != "account_name"}

    @dlt.resource(name=ACCOUNTS_TABLE, primary_key="account_id", write_disposition="merge", columns=columns)
    def accounts():
        yield {"account_id": account.id, "timezone": account.timezone, "name": account.name, "_loaded_at": loaded_at}

    return (accounts,)


def rows(path: Path, sql: str) -> pd.DataFrame:
    with duckdb.connect(str(path), read_only=True) as connection:
        return connection.execute(sql).df()


def names_by_account(path: Path, mart: str) -> set[tuple[str, str]]:
    found = rows(path, f"select distinct account_id, account_name from marts.{mart}")
    return set(found.itertuples(index=False, name=None))


def assert_equals_a_full_rebuild(agency: Agency, daily_ignore: tuple[str, ...] = ()) -> None:
    """Every mart equals `dbt run --full-refresh` on a copy, compared column by column by name (an
    upgraded segment_growth_daily has account_name last, a rebuilt one second), but for `daily_ignore`."""
    work = agency.work / f"rebuild_{agency.builds}"
    work.mkdir()
    copy = work / "warehouse.duckdb"
    shutil.copyfile(agency.warehouse, copy)
    run_dbt(["run", "--full-refresh"], copy, work)
    for mart, keys in MARTS.items():
        ignored = set(daily_ignore) if mart == "segment_growth_daily" else set()
        columns = sorted(set(rows(copy, f"select * from marts.{mart} limit 0").columns) - ignored)
        sql = f"select {', '.join(columns)} from marts.{mart} order by {', '.join(keys)}"
        with duckdb.connect(str(agency.warehouse), read_only=True) as a, duckdb.connect(str(copy), read_only=True) as b:
            assert a.execute(sql).fetchall() == b.execute(sql).fetchall(), mart


@pytest.fixture(scope="module")
def agency(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Agency]:
    work = tmp_path_factory.mktemp("accounts_in_marts")
    configs = {
        name: SimulatorConfig(**settings, segment_count=4, speed=FAST, today=TODAY)
        for name, settings in SIMULATED.items()
    }
    with KlaviyoSimulator(accounts=configs) as sim:
        # two VIP segments in one account, one in the other (every simulated account starts with one)
        pacific = sim.accounts["pacific"].account
        pacific.rename(pacific.segments[1].id, "VIP silver club")
        agency = Agency(sim, work)

        # 1. the previous release: one account, no account_name anywhere
        agency.load("sydney", account_name=None)
        agency.build()
        with duckdb.connect(str(agency.warehouse)) as connection:
            for mart in MARTS:
                connection.execute(f"alter table marts.{mart} drop column account_name")
        # 2. the first build of the upgraded code, before any new load
        agency.build()
        agency.before_upgrade = {mart: names_by_account(agency.warehouse, mart) for mart in MARTS}
        # 3. the upgraded pipeline with an accounts file: the old account is brand_a, a second one joins
        agency.load("sydney", account_name="brand_a", series=False)
        sim.faults.add(path=SEGMENT_SERIES_PATH, mutate=churn_spike(TODAY - dt.timedelta(days=5)), times=1)
        agency.load("pacific", account_name="brand_b")
        agency.build()
        yield agency


def test_an_old_warehouse_upgrades_on_the_next_normal_build(agency: Agency) -> None:
    sydney, pacific = agency.account_ids["sydney"], agency.account_ids["pacific"]
    # before the new load the only account reads as the default one, in every mart
    for mart, names in agency.before_upgrade.items():
        # (the one churn spike, and so every anomaly, is in the account that joins later)
        assert names == ({(sydney, DEFAULT_ACCOUNT_NAME)} if mart != "segment_anomalies" else set()), mart
    # the raw table gained the column through dlt (no migration), one row per account, merged on account_id
    raw = rows(agency.warehouse, "select account_id, account_name from klaviyo.accounts order by account_id")
    assert dict(raw.itertuples(index=False, name=None)) == {sydney: "brand_a", pacific: "brand_b"}
    # every row of every mart names its account, the old rows of segment_growth_daily too
    for mart in MARTS:
        expected = {(sydney, "brand_a"), (pacific, "brand_b")}
        if mart == "segment_anomalies":
            expected = {(pacific, "brand_b")}
        assert names_by_account(agency.warehouse, mart) == expected, mart
    daily = rows(agency.warehouse, "select account_id, count(*) as n from marts.segment_growth_daily group by 1")
    assert dict(daily.itertuples(index=False, name=None)) == {sydney: 4 * DAYS, pacific: 4 * DAYS}
    assert_equals_a_full_rebuild(agency)


# ---------------------------------------------------------------------------------------------------------
# the analysts' guide's cross-account queries, against pandas over the raw tables
# ---------------------------------------------------------------------------------------------------------


def guide_query(title: str) -> str:
    """The SQL under the bold heading `**<title>...**` in the analysts' guide."""
    found = re.search(
        rf"^\*\*{re.escape(title)}[^\n]*\*\*\n+```sql\n(.*?)```", ANALYST_DOCS.read_text(), re.MULTILINE | re.DOTALL
    )
    assert found, f"no query titled {title!r} in {ANALYST_DOCS.name}"
    return found.group(1)


def raw_series(path: Path) -> pd.DataFrame:
    """The raw series with each segment's name and each account's name, as loaded."""
    frame = rows(
        path,
        """
        select series.*, segments.name as segment_name, accounts.account_name
        from klaviyo.segment_series_daily as series
        join klaviyo.segments as segments on segments.account_id = series.account_id and segments.id = series.segment_id
        join klaviyo.accounts as accounts on accounts.account_id = series.account_id
        """,
    )
    frame["date"] = pd.to_datetime(frame["date"]).dt.date
    return frame.sort_values(["account_id", "segment_id", "date"])


def test_which_brands_vip_segment_grows_fastest(agency: Agency) -> None:
    series = raw_series(agency.warehouse)
    expected = []
    for _, days in series[series.segment_name.str.contains("vip", case=False)].groupby(["account_id", "segment_id"]):
        by_day = {row.date: row for row in days.itertuples()}
        # the latest day whose 30 days are all there
        as_of = max(d for d in by_day if all(d - dt.timedelta(days=k) in by_day for k in range(30)))
        window = [by_day[as_of - dt.timedelta(days=k)] for k in range(30)]
        first = window[-1]
        start = first.total_members - first.net_members_changed
        net = sum(row.net_members_changed for row in window)
        expected.append((first.account_name, first.segment_name, as_of, start, net, net / start))
    expected.sort(key=lambda row: -row[5])
    assert len(expected) == 3 and {row[0] for row in expected} == {"brand_a", "brand_b"}

    result = rows(agency.warehouse, guide_query("Which brand's VIP segment grows fastest"))
    got = [
        (r.account_name, r.segment_name, r.as_of.date(), r.members_at_start_30d, r.net_change_30d, r.growth_pct_30d)
        for r in result.itertuples()
    ]
    assert [row[:5] for row in got] == [row[:5] for row in expected]
    assert [row[5] for row in got] == pytest.approx([round(100 * row[5], 1) for row in expected], abs=0.051)
    assert result["growth_rank"].tolist() == [1, 2, 3]


def test_churn_by_account_week_by_week(agency: Agency) -> None:
    series = raw_series(agency.warehouse)
    series["week_start"] = [d - dt.timedelta(days=d.weekday()) for d in series["date"]]
    series["members_at_start"] = series["total_members"] - series["net_members_changed"]
    # per segment and week: the start of its first day there, the removals summed; then per account
    per_segment = series.groupby(["account_name", "segment_id", "week_start"]).agg(
        start=("members_at_start", "first"), removed=("members_removed", "sum"), days=("date", "size")
    )
    expected = per_segment.groupby(["account_name", "week_start"]).agg(
        segments=("start", "size"), min_days=("days", "min"), start=("start", "sum"), removed=("removed", "sum")
    )

    result = rows(agency.warehouse, guide_query("Churn by account, week by week"))
    got = result.set_index(["account_name", result["week_start"].dt.date])
    assert list(got.index) == list(expected.index)  # both sorted by account name, then week
    assert got["segments"].tolist() == expected["segments"].tolist()
    assert got["min_days_covered"].tolist() == expected["min_days"].tolist()
    assert got["members_at_start"].tolist() == expected["start"].tolist()
    assert got["members_removed"].tolist() == expected["removed"].tolist()
    churn = (100 * expected["removed"] / expected["start"]).tolist()
    assert got["churn_pct"].tolist() == pytest.approx(churn, abs=0.0051)
    assert {name for name, _ in expected.index} == {"brand_a", "brand_b"}


def test_net_member_change_per_account(agency: Agency) -> None:
    series = raw_series(agency.warehouse)
    expected = {}
    for name, days in series.groupby("account_name"):
        as_of = days["date"].max()
        recent = days[days["date"] > as_of - dt.timedelta(days=30)]
        expected[name] = (
            as_of,
            recent["segment_id"].nunique(),
            recent["members_added"].sum(),
            recent["members_removed"].sum(),
            recent["net_members_changed"].sum(),
        )

    result = rows(agency.warehouse, guide_query("Net member change per account"))
    got = {
        r.account_name: (r.as_of.date(), r.segments, r.members_added, r.members_removed, r.net_members_changed)
        for r in result.itertuples()
    }
    assert got == expected and set(got) == {"brand_a", "brand_b"}
    assert result["net_members_changed"].is_monotonic_decreasing


# ---------------------------------------------------------------------------------------------------------
# renaming an account in the accounts file
# ---------------------------------------------------------------------------------------------------------


def test_a_renamed_account_shows_its_new_name_on_every_row(agency: Agency) -> None:
    sydney, pacific = agency.account_ids["sydney"], agency.account_ids["pacific"]
    unchanged = "select * exclude (account_name, growth_rate) from marts.segment_growth_daily"
    before = rows(agency.warehouse, unchanged)
    # nothing compares growth_rate to decide what to rebuild: a sentinel there shows which rows were rewritten
    with duckdb.connect(str(agency.warehouse)) as connection:
        connection.execute(f"update marts.segment_growth_daily set growth_rate = {SENTINEL}")
    # brand_b becomes brand_c in the accounts file; its next segments load writes the new name
    agency.load("pacific", account_name="brand_c", series=False)
    agency.build()
    rewritten = rows(
        agency.warehouse,
        f"select account_id, count(*) filter (where growth_rate = {SENTINEL}) as kept, count(*) as n "
        "from marts.segment_growth_daily group by 1",
    )
    # every row of the renamed account was rewritten, none of the other's
    assert {r.account_id: (r.kept, r.n) for r in rewritten.itertuples()} == {
        sydney: (4 * DAYS, 4 * DAYS),
        pacific: (0, 4 * DAYS),
    }
    for mart in MARTS:
        expected = {(sydney, "brand_a"), (pacific, "brand_c")}
        if mart == "segment_anomalies":
            expected = {(pacific, "brand_c")}
        assert names_by_account(agency.warehouse, mart) == expected, mart
    after = rows(agency.warehouse, unchanged)
    keys = list(MARTS["segment_growth_daily"])
    pd.testing.assert_frame_equal(
        after.sort_values(keys).reset_index(drop=True), before.sort_values(keys).reset_index(drop=True)
    )
    assert_equals_a_full_rebuild(agency, daily_ignore=("growth_rate",))


# ---------------------------------------------------------------------------------------------------------
# the source's account_name argument
# ---------------------------------------------------------------------------------------------------------


def test_without_an_account_name_the_account_is_the_default_one_and_an_empty_name_is_refused(tmp_path) -> None:
    account = Account(id="A1", timezone="UTC")
    loaded_at = dt.datetime(2025, 6, 1, tzinfo=dt.UTC)
    warehouse = tmp_path / "warehouse.duckdb"
    dlt_pipeline("klaviyo_segments", warehouse, tmp_path / "dlt", dlt_columns=True).run(
        klaviyo_segments_source(account, [], [], loaded_at)
    )
    assert rows(warehouse, "select account_name from klaviyo.accounts")["account_name"].tolist() == [
        DEFAULT_ACCOUNT_NAME
    ]
    with pytest.raises(ValueError, match="account_name=' '.*short name from the accounts file"):
        klaviyo_segments_source(account, [], [], loaded_at, account_name=" ")
