"""`segment-pipeline demo`, the command behind `make demo`, end to end on small simulated accounts, and its
growth report opened in a real headless Chromium (Debian's `chromium`, driven by Playwright).

One demo run serves the module: three simulated accounts, of which the pipeline loads the first exactly as
the one-account demo would.
"""

import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from klaviyo_simulator import SimulatorConfig, command, demo
from segment_pipeline.accounts import read_accounts_file

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
DAYS, SEGMENTS = 20, 12


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("demo")
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text((REPO / "dagster_home" / "dagster.yaml").read_text())
    env = {**os.environ, "DAGSTER_HOME": str(home)}
    env.pop("KLAVIYO_API_KEY", None)  # the demo needs no Klaviyo account
    data = tmp_path / "demo"
    finished = subprocess.run(
        [
            sys.executable,
            "-m",
            "segment_pipeline.cli",
            "demo",
            "--days",
            str(DAYS),
            "--segments",
            str(SEGMENTS),
            "--accounts",
            "3",
            "--data-dir",
            str(data),
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=420,
    )
    assert finished.returncode == 0, finished.stdout[-3000:] + finished.stderr[-3000:]
    return data, finished.stdout, finished.stderr


def test_demo_loads_builds_publishes_and_reports(demo_run):
    data, out, err = demo_run
    # the first account is loaded exactly as the one-account demo loads its account
    assert f"segments loaded:        {SEGMENTS}" in out
    assert f"series rows:            {DAYS * SEGMENTS}" in out
    assert "1 segment-series reports, 1 values report(s) to reconcile" in out
    for path in ("analytics.duckdb", "charts/segment_growth.png", "charts/segment_growth.html"):
        assert (data / path).exists(), path
    with duckdb.connect(str(data / "analytics.duckdb"), read_only=True) as connection:
        assert connection.execute("select count(*) from marts.segment_growth_daily").fetchone()[0] == DAYS * SEGMENTS
        assert connection.execute("select count(distinct account_id) from klaviyo.segments").fetchone()[0] == 1


def test_demo_serves_three_accounts_and_writes_their_file(demo_run):
    data, out, err = demo_run
    # ... and it says plainly that the other accounts are served but not loaded
    assert "running it for account_1 (US/Eastern) only" in out
    assert "account_2:" in out and "0 requests" in out
    variables = {f"KLAVIYO_API_KEY_ACCOUNT_{i}": f"k{i}" for i in (1, 2, 3)}
    accounts = read_accounts_file(data / "accounts.yaml", variables)
    assert [(a.name, a.timezone) for a in accounts] == [
        ("account_1", "US/Eastern"),
        ("account_2", "Australia/Sydney"),
        ("account_3", "US/Pacific"),
    ]
    assert demo.DEMO_API_KEY not in out + err + (data / "accounts.yaml").read_text()


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
            assert page.locator("#segment-picker option").count() == SEGMENTS

            first = chart_state(page)
            assert first["bars"] == DAYS and len(first["total"]) == DAYS
            # search, then pick another segment: the chart follows
            other = page.locator("#segment-picker option").nth(3)
            name, key = other.text_content().removeprefix("⚠ ").split(" (")[0], other.get_attribute("value")
            page.fill("#segment-search", name)
            assert page.locator("#segment-picker option").count() < SEGMENTS
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
