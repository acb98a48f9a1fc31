"""The marts over both platforms: Klaviyo's daily series and the Segments API's count snapshots.

One DuckDB file holds the synthetic Klaviyo tables of test_dbt_models and a week of Segments API snapshots
with irregular recounts (several a day, none for days, evening counts that are the previous day in the
workspace's timezone, a recount that found the same number). `dbt build` runs over it; the daily mart's net
changes must be the differences between consecutive counts, on the count days, with members added, removed
and churn NULL, and a re-build must change nothing. A warehouse whose mart was built before the platform
existed (no platform column, no segments_api schema) upgrades without --full-refresh. The growth report made
from the same file is opened in a real Chromium: its header counts each platform's segments, its picker labels
the platform, and a net-only segment is drawn with its net changes and no added/removed bars.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from . import segments_api_raw as raw
from .browser_fixtures import OpenPage
from .test_dbt_models import ANALYST_DOCS, query, run_dbt, synthetic_raw_tables, write_raw_warehouse

pytestmark = pytest.mark.timeout(600)

WORKSPACE, TIMEZONE = "acme", "America/New_York"
LOADED = dt.datetime(2024, 3, 21, 11, 0, tzinfo=dt.UTC)
MARTS = (
    ("segment_growth_daily", ["account_id", "segment_id", "date"]),
    ("segment_growth_weekly", ["account_id", "segment_id", "week_start"]),
    ("segment_growth_monthly", ["account_id", "segment_id", "month_start"]),
    ("segments", ["account_id", "segment_id"]),
    ("segment_definition_history", ["account_id", "segment_id", "version_number"]),
)


# the week ends inside the synthetic Klaviyo data's last days (to 2024-03-31), so the guide's queries that look
# back from the newest day find both platforms
def _day(day: int) -> dt.date:
    """Day `day` of the scenario (day 1 = 2024-03-21)."""
    return dt.date(2024, 3, 20 + day)


def _utc(day: int, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime.combine(_day(day), dt.time(hour, minute), tzinfo=dt.UTC)


def _seen(segment: str, fetched: dt.datetime, counted: dt.datetime, count: int) -> raw.Observation:
    return raw.Observation(WORKSPACE, segment, fetched, counted, count)


# what a week of fetches showed; a fetch at 11:00 UTC is 07:00 in New York (UTC-4 in late March)
OBSERVATIONS = [
    # 03:00 UTC on day 2 is the evening of day 1 in New York
    _seen("clx_high", _utc(2, 11), _utc(2, 3), 1000),
    _seen("clx_high", _utc(3, 11), _utc(2, 15), 1012),
    _seen("clx_high", _utc(4, 11), _utc(2, 15), 1012),  # not recounted since: no new point
    _seen("clx_high", _utc(4, 21), _utc(4, 20), 1030),
    _seen("clx_high", _utc(4, 23, 40), _utc(4, 23, 30), 1025),  # recounted again that day: kept
    _seen("clx_high", _utc(8, 11), _utc(7, 14), 990),
    _seen("clx_daily", _utc(2, 11), _utc(2, 1), 500),
    _seen("clx_daily", _utc(3, 11), _utc(3, 2, 30), 510),
    _seen("clx_daily", _utc(4, 11), _utc(3, 13), 505),
    _seen("clx_daily", _utc(5, 11), _utc(4, 13), 505),  # recounted, same number: a change of 0
    _seen("clx_daily", _utc(6, 11), _utc(6, 3), 530),
    _seen("clx_daily", _utc(7, 11), _utc(6, 16), 540),
    _seen("clx_daily", _utc(8, 11), _utc(7, 16), 541),
    _seen("clx_daily", _utc(9, 11), _utc(8, 15), 560),
    _seen("clx_once", _utc(2, 11), _utc(1, 12), 42),
]
# loaded after the first build: a new day, and a later recount of a day already built
LATER_OBSERVATIONS = [
    _seen("clx_high", _utc(10, 11), _utc(9, 18), 1001),
    _seen("clx_once", _utc(10, 11), _utc(9, 20), 47),
    _seen("clx_daily", _utc(9, 23), _utc(8, 22), 566),
]

FILTERS_V1 = [{"field": "opens_count", "operator": "gte", "value": 3}]
FILTERS_V2 = [
    {"field": "opens_count", "operator": "gte", "value": 4},
    {"field": "last_open_at", "operator": "within_days", "value": 90},
]


def _definition(segment: str, filters: list[dict], first_seen: dt.datetime, match_type: str = "all") -> dict:
    return {
        "workspace_name": WORKSPACE,
        "segment_id": segment,
        "definition_hash": raw.definition_hash(match_type, filters),
        "match_type": match_type,
        "filters": json.dumps(filters),
        "name": NAMES[segment],
        "description": None,
        "first_seen_at": first_seen,
        "_loaded_at": first_seen,
    }


NAMES = {"clx_high": "High-Engagement Users", "clx_daily": "Daily recounts", "clx_once": "Counted once"}


def api_tables(observations: list[raw.Observation]) -> dict[str, pd.DataFrame]:
    segments = pd.DataFrame(
        [
            {
                "workspace_name": WORKSPACE,
                "segment_id": segment,
                "name": name,
                "description": None,
                "created_at": dt.datetime(2024, 1, 25, 11, tzinfo=dt.UTC),
                "first_seen_at": LOADED,
                "last_seen_at": _utc(9, 11),
                "deleted_at": None,
                "_loaded_at": _utc(9, 11),
            }
            for segment, name in NAMES.items()
        ]
    )
    definitions = pd.DataFrame(
        [
            _definition("clx_high", FILTERS_V1, _utc(2, 11)),
            # the filter edit was first seen at 19:40 in New York on day 4, a count day of the segment
            _definition("clx_high", FILTERS_V2, _utc(4, 23, 40)),
            _definition("clx_daily", FILTERS_V1, _utc(2, 11), match_type="any"),
            _definition("clx_once", [{"field": "last_open_at", "operator": "not_exists", "value": None}], _utc(2, 11)),
        ]
    )
    workspaces = pd.DataFrame([{"workspace_name": WORKSPACE, "timezone": TIMEZONE, "_loaded_at": LOADED}])
    snapshots = raw.count_snapshots(observations, {WORKSPACE: TIMEZONE})
    return {
        "workspaces": workspaces,
        "segments": segments,
        "segment_definitions": definitions,
        "segment_count_snapshots": snapshots,
    }


def expected_intervals(observations: list[raw.Observation]) -> pd.DataFrame:
    """Per segment and count day: the count, the change since the previous count and the days it covers."""
    snapshots = raw.count_snapshots(observations, {WORKSPACE: TIMEZONE}).sort_values(["segment_id", "counted_date"])
    by_segment = snapshots.groupby("segment_id")
    frame = pd.DataFrame(
        {
            "segment_id": snapshots["segment_id"],
            "date": snapshots["counted_date"],
            "total_members": snapshots["cached_count"],
            "net_members_changed": by_segment["cached_count"].diff(),
            "change_days": by_segment["counted_date"].diff().map(lambda d: d.days if pd.notna(d) else None),
        }
    )
    return frame.reset_index(drop=True)


def _api_daily(warehouse: Path) -> pd.DataFrame:
    frame = query(warehouse, "select * from marts.segment_growth_daily where platform = 'segments_api'")
    frame["date"] = pd.to_datetime(frame["date"]).dt.date
    return frame.sort_values(["segment_id", "date"]).reset_index(drop=True)


def _mart(warehouse: Path, mart: str, keys: list[str]) -> pd.DataFrame:
    frame = query(warehouse, f"select * from marts.{mart}")
    return frame[sorted(frame.columns)].sort_values(keys).reset_index(drop=True)


def _copy(source: Path, target: Path) -> None:
    shutil.copyfile(source, target)


@pytest.fixture(scope="module")
def two_platforms(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The warehouse after one build, and the same after a second build of unchanged raw tables."""
    work = tmp_path_factory.mktemp("two_platforms")
    warehouse = work / "warehouse.duckdb"
    write_raw_warehouse(warehouse, synthetic_raw_tables())
    raw.write_tables(warehouse, api_tables(OBSERVATIONS))
    run_dbt(["build"], warehouse, work)
    first = work / "first.duckdb"
    _copy(warehouse, first)
    run_dbt(["run"], warehouse, work)
    return first, warehouse


def test_net_changes_are_the_differences_between_counts_on_the_count_days(two_platforms: tuple[Path, Path]) -> None:
    first, _ = two_platforms
    actual = _api_daily(first)
    expected = expected_intervals(OBSERVATIONS)
    assert list(actual["segment_id"]) == list(expected["segment_id"])
    assert list(actual["date"]) == list(expected["date"])
    assert list(actual["total_members"]) == list(expected["total_members"])
    pd.testing.assert_series_equal(
        actual["net_members_changed"].astype("float64"),
        expected["net_members_changed"].astype("float64"),
        check_names=False,
    )
    pd.testing.assert_series_equal(
        actual["change_days"].astype("float64"), expected["change_days"].astype("float64"), check_names=False
    )
    # the scenario's edge cases are really in there: an evening count dated the previous local day, a day with
    # two recounts keeping the later, a change over several days, a recount that found the same number
    high = actual[actual.segment_id == "clx_high"].set_index("date")
    assert high.loc[_day(1), "total_members"] == 1000
    assert high.loc[_day(4), "net_members_changed"] == 1025 - 1012
    assert high.loc[_day(4), "change_days"] == 2 and high.loc[_day(4), "is_multi_day_change"]
    assert _day(3) not in high.index
    daily = actual[actual.segment_id == "clx_daily"].set_index("date")
    assert daily.loc[_day(4), "net_members_changed"] == 0


def test_what_the_platform_cannot_know_stays_null(two_platforms: tuple[Path, Path]) -> None:
    first, _ = two_platforms
    actual = _api_daily(first)
    for column in ("members_added", "members_removed", "churn_rate", "add_rate", "members_added_7d", "churn_rate_30d"):
        assert actual[column].isna().all(), column
    firsts = actual.groupby("segment_id").head(1)
    assert firsts["net_members_changed"].isna().all() and firsts["change_days"].isna().all()
    later = actual.drop(firsts.index)
    start = later["total_members"] - later["net_members_changed"]
    assert (later["members_at_start"] == start).all()
    pd.testing.assert_series_equal(
        later["growth_rate"], (later["net_members_changed"] / start).astype("float64"), check_names=False
    )
    assert set(query(first, "select distinct platform from marts.segment_growth_daily")["platform"]) == {
        "klaviyo",
        "segments_api",
    }


def test_a_rolling_window_is_complete_only_when_its_counts_cover_it(two_platforms: tuple[Path, Path]) -> None:
    first, _ = two_platforms
    actual = _api_daily(first).set_index(["segment_id", "date"])
    counts = expected_intervals(OBSERVATIONS).set_index(["segment_id", "date"])["total_members"]
    # clx_daily has a count on 03-01 and on every day after: the window ending 03-08 starts at the 03-01 count
    row = actual.loc[("clx_daily", _day(8))]
    assert row["members_at_start_7d"] == counts[("clx_daily", _day(1))]
    assert row["net_change_7d"] == counts[("clx_daily", _day(8))] - counts[("clx_daily", _day(1))]
    # the day before, the first count of the window is the segment's first: nothing to measure from
    assert pd.isna(actual.loc[("clx_daily", _day(7)), "net_change_7d"])
    # clx_high's counts are days apart: its 7-day windows never start on a count
    assert actual.loc["clx_high", "net_change_7d"].isna().all()


def test_rollups_sum_the_net_changes_and_keep_flows_null(two_platforms: tuple[Path, Path]) -> None:
    first, _ = two_platforms
    intervals = expected_intervals(OBSERVATIONS)
    intervals["week_start"] = intervals["date"].map(lambda d: d - dt.timedelta(days=d.weekday()))
    weekly = query(first, "select * from marts.segment_growth_weekly where platform = 'segments_api'")
    weekly["week_start"] = pd.to_datetime(weekly["week_start"]).dt.date
    assert len(weekly) == intervals.groupby(["segment_id", "week_start"]).ngroups
    for row in weekly.itertuples():
        days = intervals[(intervals.segment_id == row.segment_id) & (intervals.week_start == row.week_start)]
        assert row.members_at_end == days["total_members"].iloc[-1]
        expected_net = days["net_members_changed"].sum(min_count=1)
        if pd.isna(expected_net):  # only a segment's first count: a total, no change
            assert pd.isna(row.net_members_changed)
        else:
            assert row.net_members_changed == expected_net
        assert row.multi_day_changes == int((days["change_days"] > 1).sum())
        assert pd.isna(row.members_added) and pd.isna(row.members_removed) and pd.isna(row.churn_rate)
        first_change = days.dropna(subset=["change_days"])
        if len(first_change):
            expected_from = first_change["date"].iloc[0] - dt.timedelta(
                days=int(first_change["change_days"].iloc[0]) - 1
            )
            assert pd.Timestamp(row.changes_from).date() == min(expected_from, days["date"].iloc[0])
    monthly = query(first, "select * from marts.segment_growth_monthly where platform = 'segments_api'")
    for row in monthly.itertuples():
        days = intervals[intervals.segment_id == row.segment_id]
        assert row.members_at_end == days["total_members"].iloc[-1]
        expected_net = days["net_members_changed"].sum(min_count=1)
        assert pd.isna(row.net_members_changed) if pd.isna(expected_net) else row.net_members_changed == expected_net


def test_segments_and_definition_history_of_the_platform(two_platforms: tuple[Path, Path]) -> None:
    first, _ = two_platforms
    segments = query(first, "select * from marts.segments where platform = 'segments_api'").set_index("segment_id")
    assert set(segments.index) == set(NAMES)
    counts = expected_intervals(OBSERVATIONS).groupby("segment_id").last()
    for segment, row in segments.iterrows():
        assert row["segment_name"] == NAMES[segment] and row["account_name"] == WORKSPACE
        assert list(row["tags"]) == []
        assert row["latest_total_members"] == counts.loc[segment, "total_members"]
    assert segments.loc["clx_high", "definition_version_count"] == 2
    assert segments.loc["clx_high", "condition_count"] == len(FILTERS_V2)
    assert list(segments.loc["clx_high", "condition_types"]) == sorted({f["field"] for f in FILTERS_V2})
    history = query(
        first,
        "select * from marts.segment_definition_history where platform = 'segments_api' and segment_id = 'clx_high'"
        " order by version_number",
    )
    assert list(history["version_number"]) == [1, 2]
    assert list(history["is_current"]) == [False, True]
    assert list(history["definition_hash"]) == [raw.definition_hash("all", f) for f in (FILTERS_V1, FILTERS_V2)]
    # the edit is marked on the count day it was first seen (19:40 in New York on day 4)
    flagged = query(
        first,
        "select date from marts.segment_growth_daily where platform = 'segments_api' and definition_changed",
    )
    assert list(pd.to_datetime(flagged["date"]).dt.date) == [_day(4)]


def test_a_rebuild_changes_nothing(two_platforms: tuple[Path, Path]) -> None:
    first, again = two_platforms
    for mart, keys in MARTS:
        pd.testing.assert_frame_equal(_mart(again, mart, keys), _mart(first, mart, keys), obj=mart)


def test_new_and_revised_counts_build_incrementally_as_a_full_rebuild(
    two_platforms: tuple[Path, Path], tmp_path: Path
) -> None:
    first, _ = two_platforms
    warehouse, rebuilt = tmp_path / "warehouse.duckdb", tmp_path / "rebuilt.duckdb"
    snapshots = raw.count_snapshots(OBSERVATIONS + LATER_OBSERVATIONS, {WORKSPACE: TIMEZONE})
    for path in (warehouse, rebuilt):
        _copy(first, path)
        # the loader merges on (workspace, segment, counted_date): a later recount replaces the day's row
        with duckdb.connect(str(path)) as connection:
            connection.execute("delete from segments_api.segment_count_snapshots")
        # clx_once's filter edit, seen on day 5, when it had no count: its next count (day 9, loaded now) spans it
        edit = pd.DataFrame([_definition("clx_once", FILTERS_V2, _utc(5, 11))])
        raw.write_tables(path, {"segment_count_snapshots": snapshots, "segment_definitions": edit})
    run_dbt(["run"], warehouse, tmp_path)
    run_dbt(["run", "--full-refresh"], rebuilt, tmp_path)
    for mart, keys in MARTS:
        pd.testing.assert_frame_equal(_mart(warehouse, mart, keys), _mart(rebuilt, mart, keys), obj=mart)
    flagged = query(
        warehouse,
        "select date from marts.segment_growth_daily where segment_id = 'clx_once' and definition_changed",
    )
    assert [d.date() if hasattr(d, "date") else d for d in flagged["date"]] == [_day(9)]
    actual = _api_daily(warehouse)
    expected = expected_intervals(OBSERVATIONS + LATER_OBSERVATIONS)
    assert list(actual["net_members_changed"].fillna(-1)) == list(expected["net_members_changed"].fillna(-1))
    assert len(actual) == len(_api_daily(first)) + 2


def test_a_warehouse_from_before_the_platform_upgrades_without_a_full_refresh(tmp_path: Path) -> None:
    warehouse, rebuilt = tmp_path / "warehouse.duckdb", tmp_path / "rebuilt.duckdb"
    write_raw_warehouse(warehouse, synthetic_raw_tables())
    # a Klaviyo-only warehouse: the segments_api tables do not exist, every model builds all the same
    run_dbt(["run"], warehouse, tmp_path)
    assert (
        query(warehouse, "select count(*) as n from marts.segment_growth_daily where platform <> 'klaviyo'")["n"][0]
        == 0
    )
    # the mart as an older version built it: no platform, change_days or is_multi_day_change
    with duckdb.connect(str(warehouse)) as connection:
        for column in ("platform", "change_days", "is_multi_day_change"):
            connection.execute(f"alter table marts.segment_growth_daily drop column {column}")
    raw.write_tables(warehouse, api_tables(OBSERVATIONS))
    _copy(warehouse, rebuilt)
    run_dbt(["run"], warehouse, tmp_path)
    run_dbt(["run", "--full-refresh"], rebuilt, tmp_path)
    assert query(warehouse, "select count(*) as n from marts.segment_growth_daily where platform is null")["n"][0] == 0
    for mart, keys in MARTS:
        pd.testing.assert_frame_equal(_mart(warehouse, mart, keys), _mart(rebuilt, mart, keys), obj=mart)


def test_the_analysts_queries_run_over_both_platforms(two_platforms: tuple[Path, Path]) -> None:
    first, _ = two_platforms
    queries = re.findall(r"```sql\n(.*?)```", ANALYST_DOCS.read_text(), flags=re.DOTALL)
    for sql in queries:
        assert len(query(first, sql)) > 0, sql
    across = [sql for sql in queries if "latest.platform" in sql]
    assert across, "the guide has a query across both platforms"
    for sql in across:
        result = query(first, sql)
        assert {"klaviyo", "segments_api"} <= set(result["platform"]), sql


# ---------------------------------------------------------------------------------------------------------
# the growth report over both platforms, in a real Chromium
# ---------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def report_page(two_platforms: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory, browser):
    from segment_pipeline.charts import write_growth_charts

    first, _ = two_platforms
    page_path = write_growth_charts(first, tmp_path_factory.mktemp("two_platform_report"))["html"]
    page = OpenPage(browser, page_path)
    yield page
    page.close()


def _chart(page: OpenPage) -> dict:
    return page.page.evaluate(
        """() => {
            const chart = document.getElementById("growth-chart");
            return {
                segment: chart.dataset.segment, netOnly: chart.dataset.netOnly,
                names: chart.data.map((trace) => trace.name),
                x: chart.data[0].x, totals: chart.data[0].y, bars: chart.data[1].y,
                patterns: (chart.data[1].marker.pattern || {}).shape || null,
                annotations: chart._fullLayout.annotations.map((a) => a.text),
            };
        }"""
    )


def test_the_report_header_counts_each_platforms_segments(
    two_platforms: tuple[Path, Path], report_page: OpenPage
) -> None:
    first, _ = two_platforms
    counts = dict(
        query(
            first,
            "select platform, count(distinct (account_id, segment_id)) as n from marts.segment_growth_daily group by 1",
        ).itertuples(index=False)
    )
    total = sum(counts.values())
    assert report_page.text("#header-segments") == f"{total} segments"
    assert report_page.text("#header-platforms") == (
        f"Klaviyo {counts['klaviyo']}, Segments API {counts['segments_api']}: net change only"
    )
    ((span_first, span_last),) = query(
        first, "select min(date) as a, max(date) as b from marts.segment_growth_daily"
    ).itertuples(index=False)
    assert report_page.text("#header-span") == f"{pd.Timestamp(span_first).date()} to {pd.Timestamp(span_last).date()}"
    options = report_page.page.evaluate(
        "() => Array.from(document.querySelectorAll('#segment-picker option')).map((o) => [o.value, o.textContent])"
    )
    assert len(options) == total
    labelled = {value: text for value, text in options}
    for segment, name in NAMES.items():
        assert f"[Segments API Δ] {name}" in labelled[f"{WORKSPACE}/{segment}"]
    assert sum(text.lstrip("⚠ ").startswith("[Klaviyo] ") for text in labelled.values()) == counts["klaviyo"]
    assert report_page.problems == []


def test_a_net_only_segment_is_drawn_with_its_net_changes_and_no_flows(
    two_platforms: tuple[Path, Path], report_page: OpenPage
) -> None:
    first, _ = two_platforms
    page = report_page.page
    for segment in ("clx_high", "clx_daily"):
        key = f"{WORKSPACE}/{segment}"
        page.select_option("#segment-picker", key)
        page.wait_for_function(f"document.getElementById('growth-chart').dataset.segment === '{key}'")
        chart = _chart(report_page)
        assert chart["netOnly"] == "true"
        assert "Members added" not in chart["names"] and "Members removed" not in chart["names"]
        assert chart["names"][1] == "Net change (only net is known)"
        assert any("only the net change between counts is known" in text for text in chart["annotations"])
        assert page.locator("#net-only-mark").text_content() == "only net change is known"
        rows = query(
            first,
            f"select date, total_members, net_members_changed, change_days from marts.segment_growth_daily "
            f"where account_id = '{WORKSPACE}' and segment_id = '{segment}' order by date",
        )
        by_day = {pd.Timestamp(r.date).date(): r for r in rows.itertuples()}
        days = [dt.date.fromisoformat(x[:10]) for x in chart["x"]]
        assert days[0] == min(by_day) and days[-1] == max(by_day)
        for when, total, bar, pattern in zip(days, chart["totals"], chart["bars"], chart["patterns"], strict=True):
            row = by_day.get(when)
            assert total == (None if row is None else row.total_members), when
            expected = None if row is None or pd.isna(row.net_members_changed) else row.net_members_changed
            assert bar == expected, when
            assert pattern == ("x" if row is not None and not pd.isna(row.change_days) and row.change_days > 1 else "")
    # a Klaviyo segment keeps its added and removed bars
    ((klaviyo_key,),) = query(
        first, "select account_id || '/' || segment_id from marts.segments where platform = 'klaviyo' limit 1"
    ).itertuples(index=False)
    page.select_option("#segment-picker", klaviyo_key)
    page.wait_for_function(f"document.getElementById('growth-chart').dataset.segment === '{klaviyo_key}'")
    chart = _chart(report_page)
    assert chart["netOnly"] == "false" and chart["names"][1:3] == ["Members added", "Members removed"]
    assert page.locator("#net-only-mark").count() == 0
    assert report_page.problems == []
