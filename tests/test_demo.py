"""`segment-pipeline demo`, the command behind `make demo`, end to end on small simulated accounts, and its
growth report opened in a real headless Chromium (Debian's `chromium`, driven by Playwright).

One demo run serves the module: three simulated accounts in different timezones, all backfilled in parallel
through the pipeline's own backfill code; every count is checked against the simulator's truth.
"""

import datetime as dt
import os
import re
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from klaviyo_simulator import SimulatorConfig, command, demo
from klaviyo_simulator.account import SimulatedAccount
from klaviyo_simulator.accounts import numbered_configs
from segment_pipeline.accounts import read_accounts_file
from segment_pipeline.backfill import account_today

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
DAYS, SEGMENTS, ACCOUNTS = 20, 12, 3
DEMO_ARGS = ["demo", "--days", str(DAYS), "--segments", str(SEGMENTS), "--accounts", str(ACCOUNTS)]
# one line per account in the demo's summary: name, timezone, segments, series rows, days, requests
ACCOUNT_LINE = re.compile(
    r"^  (?P<name>account_\d+) +(?P<timezone>\S+) +(?P<segments>\d+) +(?P<rows>\d+)  "
    r"(?P<first>\d{4}-\d\d-\d\d) to (?P<last>\d{4}-\d\d-\d\d) +(?P<requests>\d+)$",
    re.MULTILINE,
)


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("demo")
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text((REPO / "dagster_home" / "dagster.yaml").read_text())
    env = {**os.environ, "DAGSTER_HOME": str(home)}
    env.pop("KLAVIYO_API_KEY", None)  # the demo needs no Klaviyo account
    data = tmp_path / "demo"
    started = dt.datetime.now(dt.UTC)
    finished = subprocess.run(
        [sys.executable, "-m", "segment_pipeline.cli", *DEMO_ARGS, "--data-dir", str(data)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=420,
    )
    assert finished.returncode == 0, finished.stdout[-3000:] + finished.stderr[-3000:]
    return data, finished.stdout, finished.stderr, started


def simulated_accounts() -> dict[str, SimulatedAccount]:
    """The demo's accounts, made again from the same options: the simulator's truth to check against."""
    args = command.build_parser().parse_args(DEMO_ARGS)
    return {name: SimulatedAccount(config) for name, config in numbered_configs(demo.simulator_config(args), 3).items()}


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
    settings = read_accounts_file(data / "accounts.yaml", {f"KLAVIYO_API_KEY_{n.upper()}": n for n in truth})
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
        assert connection.execute("select count(*) from marts.segment_growth_daily").fetchone()[0] == total_rows
        assert connection.execute("select count(distinct account_id) from klaviyo.segments").fetchone()[0] == ACCOUNTS
    assert f"{ACCOUNTS} of {ACCOUNTS} accounts ok." in out
    for path in ("analytics.duckdb", "charts/segment_growth.png", "charts/segment_growth.html"):
        assert (data / path).exists(), path


def test_the_demo_writes_the_accounts_file_and_never_a_key(demo_run):
    data, out, err, _ = demo_run
    variables = {f"KLAVIYO_API_KEY_ACCOUNT_{i}": f"k{i}" for i in (1, 2, 3)}
    accounts = read_accounts_file(data / "accounts.yaml", variables)
    assert [(a.name, a.timezone) for a in accounts] == [
        ("account_1", "US/Eastern"),
        ("account_2", "Australia/Sydney"),
        ("account_3", "US/Pacific"),
    ]
    logs = "".join(path.read_text() for path in (data / "state" / "backfill_logs").rglob("*.log"))
    assert len(list((data / "state" / "backfill_logs").rglob("*.log"))) == ACCOUNTS
    assert demo.DEMO_API_KEY not in out + err + logs + (data / "accounts.yaml").read_text()
    assert "not handled" not in out and "is not there yet" not in out


def test_one_account_is_the_demo_of_before(tmp_path):
    args = command.build_parser().parse_args(["demo"])
    assert args.accounts == 1
    simulator = demo.demo_simulator(args)
    assert len(simulator.accounts) == 1
    assert simulator.config == SimulatorConfig(
        api_key=demo.DEMO_API_KEY, segment_count=150, seed=42, speed=60.0, timezone=demo.DEMO_TIMEZONE
    )
    env = demo.demo_environment("http://127.0.0.1:1", tmp_path, args.speed)
    assert (env["KLAVIYO_API_KEY"], env["KLAVIYO_TIMEZONE"]) == (demo.DEMO_API_KEY, demo.DEMO_TIMEZONE)
    assert "KLAVIYO_ACCOUNTS_FILE" not in env
    assert command.main(["demo", "--accounts", "0"]) == 2


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
            assert page.locator("#segment-picker option").count() == ACCOUNTS * SEGMENTS

            first = chart_state(page)
            assert first["bars"] == DAYS and len(first["total"]) == DAYS
            # search, then pick another segment: the chart follows
            other = page.locator("#segment-picker option").nth(3)
            # "<name> · <account> (<latest>)": with several accounts each option names its account
            label = other.text_content().removeprefix("⚠ ").split(" (")[0]
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
