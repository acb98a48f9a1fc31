"""`segment-pipeline demo`, the command behind `make demo`, end to end on small simulated accounts, and its
growth report opened in a real headless Chromium (Debian's `chromium`, driven by Playwright).

One demo run serves the module: the simulator (its own process) serving three accounts in different
timezones, `dagster dev` (webserver and daemon), and one Dagster backfill of every account submitted through
the webserver as `segment-pipeline backfill` submits it; every count is checked against the simulator's truth.
"""

import ast
import datetime as dt
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from klaviyo_simulator import command, scenario
from klaviyo_simulator.account import SimulatedAccount
from klaviyo_simulator.accounts import derived_key, numbered_configs
from segment_pipeline.accounts import read_accounts_file
from segment_pipeline.backfill import account_today
from segment_pipeline.charts import HTML_NAME
from segment_pipeline.devtools import demo, processes, segments_api_demo
from segment_pipeline.report_packing import read_page

REPO = Path(__file__).resolve().parents[1]
ANALYST_DOCS = REPO / "docs" / "for-sql-analysts.md"
CHROMIUM = Path("/usr/bin/chromium")
# 35 days: the analysts' guide's 30-day windows are complete on the demo's data (still one report per account)
DAYS, SEGMENTS, ACCOUNTS = 35, 12, 3
# and a simulated Segments API workspace, the second platform, snapshotted daily over its last days
API_SEGMENTS, API_DAYS = 6, 4
DEMO_ARGS = [
    "demo",
    *("--days", str(DAYS), "--segments", str(SEGMENTS), "--accounts", str(ACCOUNTS)),
    *("--segments-api", str(API_SEGMENTS), "--segments-api-days", str(API_DAYS)),
]
# one line per account in the demo's summary: name, timezone, segments, series rows, days, requests
ACCOUNT_LINE = re.compile(
    r"^  (?P<name>account_\d+) +(?P<timezone>\S+) +(?P<segments>\d+) +(?P<rows>\d+)  "
    r"(?P<first>\d{4}-\d\d-\d\d) to (?P<last>\d{4}-\d\d-\d\d) +(?P<requests>\d+)$",
    re.MULTILINE,
)


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("demo")
    env = dict(os.environ)
    env.pop("KLAVIYO_API_KEY", None)  # the demo needs no Klaviyo account (and keeps its own Dagster instance)
    data = tmp_path / "demo"
    started = dt.datetime.now(dt.UTC)
    demo_process = subprocess.Popen(
        [sys.executable, "-m", "segment_pipeline.cli", *DEMO_ARGS, "--data-dir", str(data)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out, err = demo_process.communicate(timeout=600)
    except subprocess.TimeoutExpired:
        # SIGTERM, not SIGKILL: the demo cancels its backfill and stops the simulator and Dagster it started
        demo_process.terminate()
        out, err = demo_process.communicate(timeout=180)
        pytest.fail(f"the demo took more than 600 s:\n{out[-3000:]}{err[-3000:]}")
    assert demo_process.returncode == 0, out[-3000:] + err[-3000:]
    return data, out, err, started


def simulated_accounts() -> dict[str, SimulatedAccount]:
    """The demo's accounts, made again from the options the demo serves them with: the truth to check against."""
    args = command.build_parser().parse_args(["serve", f"--segments={SEGMENTS}", "--seed=42", "--speed=60"])
    configs = numbered_configs(command.config_of(args, demo.DEMO_API_KEY), ACCOUNTS)
    return {name: SimulatedAccount(config) for name, config in configs.items()}


def test_every_account_is_loaded_with_exact_rows_for_its_own_days(demo_run):
    data, out, err, started = demo_run
    summary = {match["name"]: match for match in ACCOUNT_LINE.finditer(out)}
    truth = simulated_accounts()
    assert list(summary) == list(truth)
    with duckdb.connect(str(data / "warehouse.duckdb"), read_only=True) as connection:
        stored = {
            account_id: (rows, first, last)
            for account_id, rows, first, last in connection.execute(
                "select account_id, count(*), min(date), max(date) from klaviyo.segment_series_daily group by 1"
            ).fetchall()
        }
    assert len(stored) == ACCOUNTS
    variables = {f"KLAVIYO_API_KEY_{n.upper()}": n for n in truth}
    settings = read_accounts_file(data / "accounts.yaml", {**variables, segments_api_demo.KEY_VARIABLE: "k"})
    total_rows = 0
    for name, account in truth.items():
        line = summary[name]
        assert line["timezone"] == account.timezone
        rows, first, last = stored[account.account_id]
        # the last day is yesterday in the account's own timezone (as it was when the demo started, or now)
        yesterdays = {account_today(settings[name], moment) - dt.timedelta(days=1) for moment in (started, None)}
        assert last in yesterdays, (name, last, yesterdays)
        assert (last - first).days + 1 == DAYS
        expected = sum(len(account.series(segment.id, first, last)) for segment in account.segments)
        assert expected == DAYS * len(account.segments)
        assert rows == expected
        assert (int(line["segments"]), int(line["rows"])) == (len(account.segments), rows)
        assert (line["first"], line["last"]) == (first.isoformat(), last.isoformat())
        assert int(line["requests"]) > 0
        total_rows += rows
    assert {account.timezone for account in truth.values()} == {"US/Eastern", "Australia/Sydney", "US/Pacific"}
    with duckdb.connect(str(data / "analytics.duckdb"), read_only=True) as connection:
        klaviyo_rows = "select count(*) from marts.segment_growth_daily where platform = 'klaviyo'"
        assert connection.execute(klaviyo_rows).fetchone()[0] == total_rows
        assert connection.execute("select count(distinct account_id) from klaviyo.segments").fetchone()[0] == ACCOUNTS
    for name in truth:
        assert re.search(rf"^  {name} .* ok$", out, re.MULTILINE), out
    for path in ("analytics.duckdb", "charts/segment_growth.png", "charts/segment_growth.html"):
        assert (data / path).exists(), path


def test_the_demo_writes_the_accounts_file_and_never_a_key(demo_run):
    data, out, err, _ = demo_run
    variables = {f"KLAVIYO_API_KEY_ACCOUNT_{i}": f"k{i}" for i in (1, 2, 3)}
    accounts = read_accounts_file(data / "accounts.yaml", {**variables, segments_api_demo.KEY_VARIABLE: "k"})
    assert [(a.name, a.platform, a.timezone) for a in accounts] == [
        ("account_1", "klaviyo", "US/Eastern"),
        ("account_2", "klaviyo", "Australia/Sydney"),
        ("account_3", "klaviyo", "US/Pacific"),
        (segments_api_demo.WORKSPACE, "segments_api", segments_api_demo.TIMEZONE),
    ]
    # no key in what it printed, in Dagster's log (the runs' output too) or in the accounts file
    logs = (data / "dagster.log").read_text() + (data / "simulator.log").read_text()
    logs += (data / "segments_api_simulator.log").read_text()
    api_key = f"{segments_api_demo.KEY_PREFIX}-{segments_api_demo.WORKSPACE}"
    for key in [demo.DEMO_API_KEY, *(derived_key(demo.DEMO_API_KEY, i) for i in (1, 2, 3)), api_key]:
        assert key not in out + err + logs + (data / "accounts.yaml").read_text()
    assert "not handled" not in out and "is not there yet" not in out


def test_one_account_is_the_demo_of_before(tmp_path):
    args = demo.demo_parser().parse_args([])
    assert (args.accounts, args.segments, args.seed, args.speed, args.days) == (1, 150, 42, 60.0, demo.DEMO_DAYS)
    served = processes.ServedAccount("account_1", "ACCT1", demo.DEMO_TIMEZONE, 150, demo.DEMO_API_KEY)
    simulator = processes.Simulator("http://127.0.0.1:1", (served,), tmp_path / "simulator.log")
    env = demo.pipeline_environment(simulator, tmp_path, args.speed)
    assert (env["KLAVIYO_API_KEY"], env["KLAVIYO_TIMEZONE"]) == (demo.DEMO_API_KEY, demo.DEMO_TIMEZONE)
    assert "KLAVIYO_ACCOUNTS_FILE" not in env and env["DAGSTER_HOME"] == str(tmp_path / "dagster_home")
    assert demo.run_demo(["--accounts", "0"]) == 2


def chart_state(page) -> dict:
    return page.evaluate(
        """() => {
            const chart = document.getElementById("growth-chart");
            return {segment: chart.dataset.segment, total: chart.data[0].y, bars: chart.data[1].x.length,
                    added: chart.data[1].y};
        }"""
    )


def test_the_report_works_in_a_real_browser_offline(demo_run, tmp_path):
    from playwright.sync_api import sync_playwright

    assert CHROMIUM.exists(), "install Debian's chromium (make test does: apt-get install -y chromium)"
    report = demo_run[0] / "charts" / "segment_growth.html"
    problems, requests = [], []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda error: problems.append(str(error)))
            page.on("request", lambda request: requests.append(request.url))
            page.goto(report.as_uri())
            page.wait_for_selector("body[data-ready=true]", timeout=60_000)
            assert page.locator("#segment-picker option").count() == ACCOUNTS * SEGMENTS + API_SEGMENTS
            klaviyo = page.locator("#segment-picker option[data-platform=klaviyo]")
            assert klaviyo.count() == ACCOUNTS * SEGMENTS
            page.select_option("#segment-picker", klaviyo.first.get_attribute("value"))

            first = chart_state(page)
            assert first["bars"] == DAYS and len(first["total"]) == DAYS
            # search, then pick another segment: the chart follows
            other = klaviyo.nth(3)
            # "[Klaviyo] <name> · <account> (<latest>)": with several platforms and accounts each option names both
            label = re.sub(r"^(⚠ )?\[Klaviyo\] ", "", other.text_content()).split(" (")[0]
            name, account = label.split(" · ")
            key = other.get_attribute("value")
            # the account's short name from the accounts file (every mart row carries it)
            assert account in {name for name, _ in simulated_accounts().items()}
            page.fill("#segment-search", name)
            assert page.locator("#segment-picker option").count() < ACCOUNTS * SEGMENTS
            page.select_option("#segment-picker", key)
            picked = chart_state(page)
            assert picked["segment"] != first["segment"] and picked["total"] != first["total"]
            assert name in page.locator("#segment-summary").text_content()

            # weekly: the days regroup into ISO weeks, each bar the sum of its days
            page.click("button[data-interval=weekly]")
            weekly = chart_state(page)
            assert DAYS // 7 <= weekly["bars"] <= DAYS // 7 + 2
            assert sum(weekly["added"]) == sum(picked["added"])
            page.click("button[data-range='7']")
            assert chart_state(page)["bars"] <= 2

            page.screenshot(path=str(tmp_path / "growth-report.png"), full_page=True)
        finally:
            browser.close()
    assert problems == []
    assert all(url.startswith(("file:", "data:", "blob:")) for url in requests), requests
    assert (tmp_path / "growth-report.png").stat().st_size > 10_000


# the guide's queries whose empty answer is the demo's truth, by title, with why
EMPTY_ON_THE_DEMO = {"Days where Klaviyo's numbers do not add up": "the simulator's numbers always add up"}


def guide_queries() -> dict[str, str]:
    text = ANALYST_DOCS.read_text()
    titled = dict(re.findall(r"^\*\*([^\n]*)\*\*\n+```sql\n(.*?)```", text, flags=re.MULTILINE | re.DOTALL))
    assert len(titled) == text.count("```sql"), "every query of the guide has a bold title right above it"
    return titled


def test_every_query_of_the_analysts_guide_returns_rows_on_the_demos_copy(demo_run):
    data = demo_run[0]
    queries = guide_queries()
    assert set(EMPTY_ON_THE_DEMO) <= set(queries)
    # the guide opens the demo's copy by the path the demo writes (relative to where `make demo` runs)
    assert "data/demo/analytics.duckdb" in ANALYST_DOCS.read_text()
    empty = []
    with duckdb.connect(str(data / "analytics.duckdb"), read_only=True) as connection:
        for title, sql in queries.items():
            rows = connection.execute(sql).fetchall()
            if not rows and title not in EMPTY_ON_THE_DEMO:
                empty.append(title)
            if title in EMPTY_ON_THE_DEMO:
                assert rows == [], title
    assert empty == [], f"these queries of {ANALYST_DOCS.name} return no rows on the demo's data: {empty}"


def test_the_demo_shows_a_definition_change_inside_its_range(demo_run):
    data, out, _, _ = demo_run
    found = re.search(r"the definition of (?P<name>.+) edited on (?P<day>\d{4}-\d\d-\d\d)", out)
    assert found, out
    name, day = found["name"], dt.date.fromisoformat(found["day"])
    # the segment the scenario picks in the demo's first account, edited in the middle of its range
    account = simulated_accounts()["account_1"]
    segment = scenario.segment_to_edit(account)
    assert segment is not None and repr(segment.name) == name
    with duckdb.connect(str(data / "analytics.duckdb"), read_only=True) as connection:
        first, last = connection.execute(
            "select min(date), max(date) from marts.segment_growth_daily where account_id = ?", [account.account_id]
        ).fetchone()
        changed = connection.execute(
            "select segment_id, date from marts.segment_growth_daily where definition_changed and platform = 'klaviyo'"
        ).fetchall()
        versions = connection.execute(
            "select version_number from marts.segment_definition_history where segment_id = ? and account_id = ? "
            "order by 1",
            [segment.id, account.account_id],
        ).fetchall()
    assert day == scenario.change_day(first, last) and first < day < last
    assert changed == [(segment.id, day)]
    assert versions == [(1,), (2,)]
    # and the growth report marks it on that day (the page's data, unpacked as its script unpacks it)
    page = (data / "charts" / HTML_NAME).read_text(encoding="utf-8")
    (embedded,) = [s for s in read_page(page)["segments"] if s["id"] == segment.id]
    start = dt.date.fromisoformat(embedded["start"])
    assert [start + dt.timedelta(days=index) for index, _ in embedded["changes"]] == [day]


def test_dev_says_where_its_runs_are_and_opens_the_demos_on_request(demo_run):
    dev_dir, demo_dir = Path(demo.DEV_DATA_DIR).resolve(), Path(demo.DEMO_DATA_DIR).resolve()
    notice = demo.dev_notice(dev_dir, dev_dir / "dagster_home", 3)
    assert demo.dev_parser().parse_args([]).data_dir == demo.DEV_DATA_DIR
    assert f"instance {dev_dir / 'dagster_home'}" in notice
    assert "runs of `make demo` are in their own instance" in notice
    assert "`make dev DEV_DATA_DIR=data/demo SIM_ACCOUNTS=3`" in notice
    assert "make demo" not in demo.dev_notice(demo_dir, demo_dir / "dagster_home", 1)
    # which `make dev DEV_DATA_DIR=...` passes on (the instance is `<data dir>/dagster_home`)
    planned = subprocess.run(
        ["make", "-n", "dev", "DEV_DATA_DIR=data/demo"], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert "--data-dir data/demo" in planned.stdout, planned.stdout + planned.stderr

    # dev's simulator makes the demo's edit too: on the demo's warehouse its listings find the definition the
    # demo loaded last, so no change is recorded that did not happen
    data = demo_run[0]
    account = simulated_accounts()["account_1"]
    yesterday = account.today() - dt.timedelta(days=1)
    change = scenario.stage_definition_change(account, yesterday - dt.timedelta(days=demo.DEMO_DAYS - 1), yesterday)
    with duckdb.connect(str(data / "analytics.duckdb"), read_only=True) as connection:
        (loaded,) = connection.execute(
            "select definition from marts.segments where account_id = ? and segment_id = ?",
            [account.account_id, change.segment_id],
        ).fetchone()
    assert json.loads(loaded) == account.segment(change.segment_id).definition


def test_the_demos_marts_and_report_hold_both_platforms(demo_run):
    data, out, _, _ = demo_run
    with duckdb.connect(str(data / "analytics.duckdb"), read_only=True) as connection:
        per_platform = connection.execute(
            "select platform, count(distinct (account_id, segment_id)), count(*), min(date), max(date) "
            "from marts.segment_growth_daily group by 1 order by 1"
        ).fetchall()
        flows = connection.execute(
            "select count(*) from marts.segment_growth_daily where platform = 'segments_api' "
            "and (members_added is not null or members_removed is not null or churn_rate is not null)"
        ).fetchone()[0]
        changes = connection.execute(
            "select count(*), count(*) filter (where is_multi_day_change) from marts.segment_growth_daily "
            "where platform = 'segments_api' and net_members_changed is not null"
        ).fetchone()
        segments = dict(connection.execute("select platform, count(*) from marts.segments group by 1").fetchall())
        edited = connection.execute(
            "select segment_name from marts.segment_definition_history "
            "where platform = 'segments_api' and version_number = 2"
        ).fetchall()
    assert [row[:2] for row in per_platform] == [
        ("klaviyo", ACCOUNTS * SEGMENTS),
        ("segments_api", API_SEGMENTS),
    ]
    assert segments == {"klaviyo": ACCOUNTS * SEGMENTS, "segments_api": API_SEGMENTS}
    assert flows == 0 and changes[0] > 0  # net changes only, never invented flows
    # the demo's filter edit half-way is a second definition version
    (name,) = re.findall(r"the filters of (.+) edited half-way", out)
    assert edited == [(ast.literal_eval(name),)]  # the demo prints the name's repr
    # the summary says what the copy holds, per platform
    for platform, count, rows, first, last in per_platform:
        assert f"marts, {platform + ':':<14}  {count} segments, {rows} daily rows ({first} to {last})" in out
    # and the report carries both, the platform of every segment with it
    page = (data / "charts" / HTML_NAME).read_text(encoding="utf-8")
    embedded = read_page(page)
    assert embedded["platforms"] == {"klaviyo": ACCOUNTS * SEGMENTS, "segments_api": API_SEGMENTS}
    assert sum(s["platform"] == "segments_api" for s in embedded["segments"]) == API_SEGMENTS
