"""`segment-pipeline demo`, the command behind `make demo`, end to end on small simulated accounts."""

import os
import subprocess
import sys
from pathlib import Path

import duckdb

from klaviyo_simulator import SimulatorConfig, command, demo
from segment_pipeline.accounts import read_accounts_file

REPO = Path(__file__).resolve().parents[1]


def test_demo_serves_three_accounts_writes_their_file_and_loads_the_first(tmp_path):
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
            "5",
            "--segments",
            "12",
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
    out = finished.stdout
    # the first account is loaded exactly as the one-account demo loads its account
    assert "segments loaded:        12" in out
    assert "series rows:            60" in out
    assert "1 segment-series reports" in out
    for path in ("analytics.duckdb", "charts/segment_growth.png", "charts/segment_growth.html"):
        assert (data / path).exists(), path
    with duckdb.connect(str(data / "analytics.duckdb"), read_only=True) as connection:
        assert connection.execute("select count(*) from marts.segment_growth_daily").fetchone()[0] == 60
        assert connection.execute("select count(distinct account_id) from klaviyo.segments").fetchone()[0] == 1
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
    assert demo.DEMO_API_KEY not in out + finished.stderr + (data / "accounts.yaml").read_text()


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
