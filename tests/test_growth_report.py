"""The growth report in a real headless Chromium (Debian's `chromium`, driven by Playwright), against SQL over the
analyst copy it was made from.

One module-scoped run: a simulated account whose segments carry hostile names (markup, script ends, comment
openers, line separators, quotes), loaded for 45 days through the real assets (segments, series, dbt, analyst
copy, growth report). The page is opened once; every figure it shows is compared with SQL written here, over
the same analyst copy, not with the report's own queries.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pytest

from klaviyo_simulator import KlaviyoSimulator, SimulatorConfig
from klaviyo_simulator.tags import Tag
from segment_pipeline.report_packing import page_elements

from . import pipeline_helpers as pipeline
from .browser_fixtures import OpenPage
from .pipeline_helpers import API_KEY, FAST, definitions, materialize, range_tags

pytestmark = pytest.mark.timeout(600)

SEGMENTS, DAYS, SEED = 20, 45, 5
# names that break a page which puts text into HTML or into a <script> element unescaped
HOSTILE_NAMES = (
    "promo <!--<script> x",
    "</script><script>window.__pwned = 1</script>",
    "]]> <![CDATA[ & &amp; &lt;b&gt;",
    "line\u2028separator\u2029paragraph",
    "\"double\" 'single' `back` \\ slash",
    '<img src=x onerror="window.__pwned = 2">',
)
HOSTILE_TAG = "<b>bold</b> & </script>"


@dataclass
class Report:
    sim: KlaviyoSimulator
    work: Path
    last: dt.date

    @property
    def analytics(self) -> Path:
        return self.work / "analytics.duckdb"

    @property
    def page(self) -> Path:
        return self.work / "charts" / "segment_growth.html"

    def sql(self, sql: str, params: list | None = None) -> list[tuple]:
        with duckdb.connect(str(self.analytics), read_only=True) as connection:
            return connection.execute(sql, params or []).fetchall()


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Report]:
    work = tmp_path_factory.mktemp("growth_report")
    config = SimulatorConfig(api_key=API_KEY, segment_count=SEGMENTS, speed=FAST, seed=SEED)
    with KlaviyoSimulator(config) as sim:
        for segment, name in zip(sim.account.segments, HOSTILE_NAMES, strict=False):
            sim.account.rename(segment.id, name)
        tagged = sim.account.segments[-1]
        sim.account.set_tags(tagged.id, (*tagged.tags, Tag(id="hostile-tag", name=HOSTILE_TAG)))
        last = sim.account.today() - dt.timedelta(days=1)
        defs = definitions(sim, work)
        materialize([pipeline.SEGMENTS], sim, work, defs=defs)
        days = range_tags(last - dt.timedelta(days=DAYS - 1), last)
        everything = [pipeline.SERIES, pipeline.MODELS, pipeline.COPY, pipeline.CHART]
        result = materialize(everything, sim, work, defs=defs, tags=days)
        assert result.success
        yield Report(sim, work, last)


@pytest.fixture(scope="module")
def opened(report: Report, browser) -> Iterator[OpenPage]:
    page = OpenPage(browser, report.page)
    yield page
    page.close()


def test_the_header_states_what_the_analyst_copy_holds(report: Report, opened: OpenPage) -> None:
    ((first, last, segment_count),) = report.sql(
        "select min(date), max(date), count(distinct (account_id, segment_id)) from marts.segment_growth_daily"
    )
    ((account_name,),) = report.sql("select distinct account_name from marts.segment_growth_daily")
    ((anomalies,),) = report.sql(
        "select count(*) from marts.segment_anomalies where is_anomaly and date between ? and ?",
        [last - dt.timedelta(days=29), last],
    )
    assert (first, last) == (report.last - dt.timedelta(days=DAYS - 1), report.last)
    assert segment_count == SEGMENTS and anomalies > 0
    assert opened.text("#header-segments") == f"{segment_count} segments"
    assert opened.text("#header-accounts") == f"account {account_name}"
    assert opened.text("#header-span") == f"{first} to {last}"
    assert opened.text("#header-anomalies") == f"{anomalies} anomal{'y' if anomalies == 1 else 'ies'}"
    assert f"in the 30 days to {last}" in opened.text("header")
    assert opened.page.locator("#segment-picker option").count() == segment_count


def _number(value: float) -> str:
    """As the page's Intl.NumberFormat("en-US") writes it."""
    return f"{int(value):,}" if value == int(value) else f"{value:,.1f}"


def _signed(value: int) -> str:
    return f"+{value:,}" if value > 0 else f"{value:,}"


def test_the_movers_are_the_segments_sql_ranks_first(report: Report, opened: OpenPage) -> None:
    # each segment's latest day; movers had at least 100 members 30 days before it
    latest = """
        select account_id || '/' || segment_id as key, segment_name, total_members, net_change_30d,
               growth_rate_30d, members_at_start_30d
        from marts.segment_growth_daily
        qualify row_number() over (partition by account_id, segment_id order by date desc) = 1
    """
    for table, order, sign in (("growing", "desc", ">"), ("shrinking", "asc", "<")):
        expected = report.sql(
            f"select * from ({latest}) where members_at_start_30d >= 100 and growth_rate_30d {sign} 0 "
            f"order by growth_rate_30d {order}, key limit 10"
        )
        assert expected, table
        shown = opened.table(table)
        assert [row["key"] for row in shown] == [key for key, *_ in expected]
        for row, (_, name, total, net, growth, _) in zip(shown, expected, strict=True):
            name_cell, members, net_cell, growth_cell, _, _ = row["cells"]
            assert (name_cell, members, net_cell) == (name, f"{total:,}", _signed(net))
            assert growth_cell == f"{'+' if growth > 0 else ''}{100 * growth:.1f}%"


def test_the_anomaly_list_is_the_newest_anomalies_of_the_last_30_days(report: Report, opened: OpenPage) -> None:
    expected = report.sql(
        """
        select account_id || '/' || segment_id, segment_name, date, reason, value, baseline_median, robust_z
        from marts.segment_anomalies
        where is_anomaly and date > ?::date - 30
        order by date desc, abs(robust_z) desc, account_id, segment_id, metric
        """,
        [report.last],
    )
    shown = opened.table("anomalies")
    listed = [row for row in shown if row["key"]]
    assert len(listed) == min(len(expected), 20)
    for row, (key, name, day, reason, value, median, z) in zip(listed, expected, strict=False):
        assert row["key"] == key
        assert row["cells"][:4] == [name, day.isoformat(), reason.replace("_", " "), f"{value:,}"]
        assert row["cells"][4:] == [_number(round(median, 1)), f"{'+' if z > 0 else ''}{round(z, 1):g}"]
    if len(expected) > 20:
        assert shown[-1]["cells"] == [f"{len(expected) - 20} more in marts.segment_anomalies"]


def test_hostile_names_reach_the_page_as_text(report: Report, opened: OpenPage) -> None:
    page = opened.page
    stored = {name for (name,) in report.sql("select distinct segment_name from marts.segment_growth_daily")}
    assert set(HOSTILE_NAMES) <= stored  # the pipeline kept them as Klaviyo sent them
    html = report.page.read_text(encoding="utf-8")
    # the embedded data never holds a raw "<" (so no "</script>" or "<!--" inside a script element)
    embedded = page_elements(html)
    assert {"report-data", "report-summary", "report-chunk-0", "plotly-packed"} <= set(embedded)
    for _, text in embedded.values():
        assert "<" not in text and "\u2028" not in text and "\u2029" not in text
    options = page.evaluate(
        "() => Array.from(document.querySelectorAll('#segment-picker option')).map((o) => o.textContent)"
    )
    for name in HOSTILE_NAMES:
        assert sum(option.startswith((name + " (", "⚠ " + name + " (")) for option in options) == 1, name
    # nothing the names spell ran or became an element
    assert page.evaluate("() => window.__pwned") is None
    assert page.locator("img").count() == 0 and page.locator("b").count() == 0
    # every <script> element is one the page's source holds (the data holds no "<"), or Plotly, which the
    # page unpacks and adds itself
    scripts = page.evaluate("() => Array.from(document.querySelectorAll('script')).map((s) => s.id)")
    assert len(scripts) == len(re.findall("<script", html)) + 1 and scripts.count("plotly") == 1

    # the picker still works: search a hostile name, pick it, the chart and summary follow
    target = report.sql(
        "select account_id || '/' || segment_id from marts.segments where segment_name = ?", [HOSTILE_NAMES[0]]
    )
    page.fill("#segment-search", "<!--<script")
    assert page.locator("#segment-picker option").count() == 1
    page.select_option("#segment-picker", target[0][0])
    assert opened.chart()["segment"] == target[0][0]
    assert page.locator("#segment-summary strong").text_content() == HOSTILE_NAMES[0]
    page.fill("#segment-search", "bold")  # the hostile tag is searchable and shown as text
    assert page.locator("#segment-picker option").count() == 1
    page.select_option("#segment-picker", page.locator("#segment-picker option").first.get_attribute("value"))
    assert HOSTILE_TAG in [t.text_content() for t in page.locator("#segment-summary .tag").all()]
    page.fill("#segment-search", "")
    assert opened.problems == []
    assert all(url.startswith(("file:", "data:", "blob:")) for url in opened.requests), opened.requests


def _mondays(first: dt.date, last: dt.date) -> list[dt.date]:
    start = first - dt.timedelta(days=first.weekday())
    return [start + dt.timedelta(weeks=i) for i in range((last - start).days // 7 + 1)]


@pytest.mark.parametrize("days", [7, 30])
def test_the_weekly_view_marks_partial_weeks_on_a_monday_axis(report: Report, opened: OpenPage, days: int) -> None:
    page = opened.page
    # a flat segment (no change in the range): its axes must still tick in whole members
    ((key,),) = report.sql(
        """
        select account_id || '/' || segment_id from marts.segment_growth_daily
        group by all having min(total_members) = max(total_members) and max(members_added) = 0
        order by 1 limit 1
        """
    )
    page.select_option("#segment-picker", key)
    page.click(f"button[data-range='{days}']")
    page.click("button[data-interval=weekly]")
    chart = opened.chart()
    first = report.last - dt.timedelta(days=days - 1)
    weeks = _mondays(first, report.last)
    assert [dt.date.fromisoformat(x[:10]) for x in chart["x"]] == weeks
    # each week holds the days of the range in it: fewer than 7 is a partial week, hatched and said so
    in_range = {week: sum(first <= week + dt.timedelta(days=i) <= report.last for i in range(7)) for week in weeks}
    assert chart["patterns"] == ["/" if in_range[week] < 7 else "" for week in weeks]
    for hover, week in zip(chart["hover"], weeks, strict=True):
        assert hover == f"week of {week}" + (f" (partial: {in_range[week]} of 7 days)" if in_range[week] < 7 else "")
    # ticks fall on Mondays at midnight, and nowhere between days
    ticks = [dt.datetime.fromtimestamp(tick / 1000, dt.UTC) for tick in chart["xticks"]]
    assert ticks and all(t.weekday() == 0 and t.time() == dt.time(0) for t in ticks), ticks
    for label in chart["yticks"] + chart["y2ticks"]:
        assert re.fullmatch(r"[−-]?\d{1,3}(,\d{3})*", label), (label, chart["yticks"], chart["y2ticks"])
    page.click("button[data-interval=daily]")
    page.click("button[data-range='90']")
    assert opened.problems == []


# ---------------------------------------------------------------------------------------------------------
# a report of 10,000 segments
# ---------------------------------------------------------------------------------------------------------

LARGE_SEGMENTS, LARGE_DAYS = 10_000, 120


def make_large_mart(path: Path) -> None:
    """marts.segment_growth_daily of LARGE_SEGMENTS segments over LARGE_DAYS days, made in DuckDB."""
    with duckdb.connect(str(path)) as connection:
        connection.execute("create schema marts")
        connection.execute(f"""
            create table marts.segment_growth_daily as
            with days as (
                select s, d, date '2025-01-01' + cast(d as integer) as date,
                    cast(hash(s, d) % 500 as bigint) as added, cast(hash(d, s) % 400 as bigint) as removed
                from range({LARGE_SEGMENTS}) as segments(s), range({LARGE_DAYS}) as days(d)
            )
            select
                'acct' as account_id, 'large' as account_name, 'seg' || s as segment_id,
                'Segment ' || s as segment_name, date,
                cast(100000 * s + sum(added - removed) over (partition by s order by d) as bigint) as total_members,
                cast(added as bigint) as members_added, cast(removed as bigint) as members_removed,
                null::bigint as net_change_30d, null::double as growth_rate_30d, null::double as churn_rate_30d,
                null::bigint as members_at_start_30d, d = 50 as definition_changed
            from days
        """)


def test_a_report_of_10000_segments_opens_and_works(tmp_path: Path, browser) -> None:
    from segment_pipeline.charts import write_growth_charts

    database = tmp_path / "analytics.duckdb"
    make_large_mart(database)
    page_path = write_growth_charts(database, tmp_path / "charts")["html"]
    elements = page_elements(page_path.read_text(encoding="utf-8"))
    chunks = sum(name.startswith("report-chunk-") for name in elements)
    assert chunks > 1  # the series are split, and a chunk is unpacked when one of its segments is shown

    def totals(segment_id: str) -> list[int]:
        with duckdb.connect(str(database), read_only=True) as connection:
            rows = connection.execute(
                "select total_members from marts.segment_growth_daily where segment_id = ? order by date desc limit 90",
                [segment_id],
            ).fetchall()
        return [total for (total,) in reversed(rows)]

    opened = OpenPage(browser, page_path)
    try:
        page = opened.page
        assert opened.text("#header-segments") == "10,000 segments"
        assert page.locator("#segment-picker option").count() == LARGE_SEGMENTS
        # the largest segment is drawn first, with its numbers
        first = opened.chart()
        assert first["segment"] == f"acct/seg{LARGE_SEGMENTS - 1}" and first["totals"] == totals(
            f"seg{LARGE_SEGMENTS - 1}"
        )
        assert page.evaluate("Number(document.body.dataset.firstChartMs)") > 0
        # the smallest is in the last chunk: picking it unpacks that chunk and draws its own numbers
        page.fill("#segment-search", "seg0")
        key = "acct/seg0"
        page.select_option("#segment-picker", key)
        page.wait_for_function(f"document.getElementById('growth-chart').dataset.segment === '{key}'")
        smallest = opened.chart()
        assert smallest["totals"] == totals("seg0")
        assert page.locator("#segment-summary strong").text_content() == "Segment 0"
        page.click("button[data-interval=weekly]")
        weekly = opened.chart()
        assert weekly["segment"] == key and len(weekly["x"]) in (13, 14, 15)
        assert opened.problems == []
    finally:
        opened.close()
