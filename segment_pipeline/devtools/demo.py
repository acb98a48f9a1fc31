"""`segment-pipeline demo` (`make demo`) and `segment-pipeline dev` (`make dev`), on the bundled simulator.

Neither needs a Klaviyo account. `demo` starts the simulator (its own process), then Dagster (`dagster dev`:
the webserver and the daemon) on an instance under data/demo/, submits one backfill of the last N days of
every account through Dagster's API exactly as `segment-pipeline backfill` does, follows it, prints what
was fetched and built, and stops everything it started. `dev` starts the simulator and `dagster dev` on it,
with everything under data/dev/, until Ctrl-C.

`--accounts N` serves N accounts in different timezones and writes an accounts file for them
(<data dir>/accounts.yaml, checked by the pipeline's own loader); each account's range is in its own days.
`demo` also snapshots a simulated Segments API workspace daily over its last days (`--segments-api`,
segments_api_demo.py), so the marts and the report show both platforms.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import logging
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from zoneinfo import ZoneInfo

import duckdb
import httpx
import yaml

from ..backfill import AccountRange, plan_ranges, run_backfill
from ..charts import HTML_NAME, PNG_NAME
from ..klaviyo.limits import REPORT_QUOTA_WINDOW_SECONDS, REPORTS_RATE_LIMIT, STEADY_WINDOW_SECONDS
from ..settings import ACCOUNTS_FILE_ENV, SINGLE_ACCOUNT_VARIABLES, Settings, child_environment, load_settings
from ..tables import MARTS_SCHEMA, RAW_DATASET, SEGMENT_SERIES_TABLE, SEGMENTS_TABLE
from . import processes, segments_api_demo

DEMO_API_KEY = "pk_simulator_demo_key"
DEMO_TIMEZONE = "US/Eastern"
ACCOUNTS_FILE_NAME = "accounts.yaml"
DEMO_DATA_DIR = "data/demo"
DEV_DATA_DIR = "data/dev"
DEMO_DAYS = 90
DEMO_SEGMENTS_API_SEGMENTS = 30
# the simulator's admin endpoints: its request counts, and the demo's definition change (its `scenario.py`)
STATS_PATH = "/__simulator/stats"
DEFINITION_CHANGE_PATH = "/__simulator/scenario/definition-change"


def add_common_arguments(parser: argparse.ArgumentParser, data_dir: str) -> None:
    parser.add_argument("--segments", type=int, default=150, help="segments per simulated account (default 150)")
    parser.add_argument("--seed", type=int, default=42, help="simulator seed (default 42)")
    parser.add_argument(
        "--speed",
        type=float,
        default=60.0,
        help="simulator time factor: 60 turns Klaviyo's 2 report requests a minute into 2 a second (default 60)",
    )
    parser.add_argument("--data-dir", default=data_dir, help=f"where everything is written (default {data_dir})")
    parser.add_argument(
        "--accounts",
        type=int,
        default=1,
        help="simulated accounts, each with its own timezone, segments and quota, in an accounts file "
        "(default %(default)s)",
    )


def demo_parser(
    prog: str = "segment-pipeline demo",
    description: str = "The whole pipeline on a fresh bundled Klaviyo simulator: a backfill of the last N days of "
    "every account through Dagster, then the models, the analyst copy and the growth report.",
    data_dir: str = DEMO_DATA_DIR,
    accounts: int = 1,
    segments_api: int = DEMO_SEGMENTS_API_SEGMENTS,
) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument(
        "--days", type=int, default=DEMO_DAYS, help=f"days of series to load, ending yesterday (default {DEMO_DAYS})"
    )
    parser.add_argument(
        "--segments-api",
        type=int,
        default=segments_api,
        help="segments of a simulated Segments API workspace, the second platform, snapshotted once a simulated "
        f"day over the last {segments_api_demo.SNAPSHOT_DAYS} days (default {segments_api}; 0: Klaviyo only)",
    )
    parser.add_argument(
        "--segments-api-days",
        type=int,
        default=segments_api_demo.SNAPSHOT_DAYS,
        help=f"days of daily Segments API snapshots, at most --days (default {segments_api_demo.SNAPSHOT_DAYS})",
    )
    add_common_arguments(parser, data_dir)
    parser.set_defaults(accounts=accounts)
    return parser


def dev_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="segment-pipeline dev",
        description="The Dagster UI (dagster dev) with the bundled simulator as Klaviyo, until Ctrl-C.",
    )
    parser.add_argument("--port", type=int, default=8765, help="the simulator's port (default 8765)")
    parser.add_argument("--dagster-port", type=int, default=3000, help="the Dagster UI's port (default 3000)")
    add_common_arguments(parser, DEV_DATA_DIR)
    return parser


def key_variable(account_name: str) -> str:
    """The environment variable the demo's accounts file names for an account's key."""
    return f"KLAVIYO_API_KEY_{account_name.upper()}"


def pipeline_environment(
    simulator: processes.Simulator, data_dir: Path, speed: float, instance_settings: Path = processes.INSTANCE_SETTINGS
) -> dict[str, str]:
    """The pipeline's environment for the simulator: every file under `data_dir`, its own Dagster instance
    (made from `instance_settings`), the simulator's one account as the single-account variables, or an
    accounts file for several."""
    env = child_environment(without=(*SINGLE_ACCOUNT_VARIABLES, ACCOUNTS_FILE_ENV))
    # the second platform is on only when the demo serves it (segments_api_demo.add_to_environment)
    env = {name: value for name, value in env.items() if not name.startswith("SEGMENTS_API_")}
    env.update(
        KLAVIYO_BASE_URL=simulator.base_url,
        # the simulator's steady window and quota day are `speed` times shorter: wait and count to match
        KLAVIYO_STEADY_WINDOW_SECONDS=str(STEADY_WINDOW_SECONDS / speed),
        KLAVIYO_REPORT_BUDGET_WINDOW_SECONDS=str(REPORT_QUOTA_WINDOW_SECONDS / speed),
        WAREHOUSE_PATH=str(data_dir / "warehouse.duckdb"),
        ANALYTICS_PATH=str(data_dir / "analytics.duckdb"),
        PIPELINE_STATE_DIR=str(data_dir / "state"),
        CHARTS_DIR=str(data_dir / "charts"),
        # its own Dagster instance, so the demo's runs never mix with another instance's
        DAGSTER_HOME=str(processes.prepare_dagster_home(data_dir / "dagster_home", instance_settings)),
    )
    # the simulator's rate-limit windows run `speed` times faster; pace to match
    rate = REPORTS_RATE_LIMIT.per_minute * speed
    if len(simulator.accounts) == 1:
        served = simulator.accounts[0]
        env.update(
            KLAVIYO_API_KEY=served.api_key,
            KLAVIYO_TIMEZONE=served.timezone,
            KLAVIYO_REPORT_RATE_PER_MINUTE=str(rate),
        )
        return env
    entries = [
        {"name": s.name, "api_key_env": key_variable(s.name), "timezone": s.timezone, "report_rate_per_minute": rate}
        for s in simulator.accounts
    ]
    accounts_file = data_dir / ACCOUNTS_FILE_NAME
    header = (
        "# Written by `segment-pipeline demo --accounts N` for its simulated accounts (see accounts.yaml.example\n"
        "# for every field). The keys are in the variables named here, in the demo's environment only.\n"
    )
    accounts_file.write_text(header + yaml.safe_dump({"accounts": entries}, sort_keys=False), encoding="utf-8")
    env.update({key_variable(s.name): s.api_key for s in simulator.accounts})
    env[ACCOUNTS_FILE_ENV] = str(accounts_file)
    return env


@contextlib.contextmanager
def running_simulator(args: argparse.Namespace, data_dir: Path, port: int = 0) -> Iterator[processes.Simulator]:
    timezone = DEMO_TIMEZONE if args.accounts == 1 else None
    with processes.simulator(
        data_dir,
        api_key=DEMO_API_KEY,
        accounts=args.accounts,
        segments=args.segments,
        seed=args.seed,
        speed=args.speed,
        timezone=timezone,
        port=port,
    ) as simulator:
        accounts = f"{len(simulator.accounts)} account{'s' * (len(simulator.accounts) != 1)}"
        print(
            f"Klaviyo simulator on {simulator.base_url}: {accounts} of {args.segments} segments, time x{args.speed:g}"
        )
        yield simulator


def run_demo(argv: list[str] | None = None) -> int:
    args = demo_parser().parse_args(argv)
    if args.accounts < 1 or args.days < 1 or args.segments_api < 0:
        print(
            "segment-pipeline demo: --accounts and --days must be at least 1, --segments-api 0 or more", file=sys.stderr
        )
        return 2
    data_dir = Path(args.data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    run = backfill_on_simulator(args, data_dir)
    if run.code != 0:
        print(f"The demo failed: what failed is above; Dagster's log is in {data_dir / 'dagster.log'}.")
        return run.code
    storage = run.settings.storage
    print_summary(storage.analytics_path, storage.charts_dir, run.stats)
    if args.segments_api:
        with duckdb.connect(str(storage.analytics_path), read_only=True) as connection:
            print("\n".join(segments_api_demo.summary_lines(connection)))
    if args.accounts > 1:
        print(f"  accounts file:          {run.env[ACCOUNTS_FILE_ENV]}")
        print_accounts_summary(storage.analytics_path, run.simulator, run.stats)
    print(f"  the demo's Dagster runs: DAGSTER_HOME={run.env['DAGSTER_HOME']} dagster dev -w workspace.yaml")
    return 0


@dataclasses.dataclass(frozen=True)
class DemoRun:
    """What a demo's backfill left: its exit code, the pipeline's environment and settings, the simulator that
    served it (stopped by now) and the simulator's request counts."""

    code: int
    env: dict[str, str]
    settings: Settings
    simulator: processes.Simulator
    stats: dict


def backfill_on_simulator(
    args: argparse.Namespace,
    data_dir: Path,
    *,
    deployment: dict[str, str] | None = None,
    instance_settings: Path = processes.INSTANCE_SETTINGS,
    edit_a_definition: bool = True,
) -> DemoRun:
    """Start the simulator (and the Segments API one when `args.segments_api` asks for it) and `dagster dev`
    (webserver and daemon), take the second platform's daily snapshots, submit one backfill of the last
    `args.days` days of every account as `segment-pipeline backfill` does, follow it, stop them all.

    `deployment` holds variables that win over the demo's own (the scaled demo's lake and Dagster storage);
    `edit_a_definition` lists the segments first and edits one (the demo's definition change), in this process.
    """
    snapshot_days = max(1, min(args.days, args.segments_api_days))
    second_platform = (
        segments_api_demo.simulator(data_dir, args.segments_api, snapshot_days, args.seed)
        if args.segments_api
        else contextlib.nullcontext()
    )
    with running_simulator(args, data_dir) as simulator, second_platform as served:
        env = pipeline_environment(simulator, data_dir, args.speed, instance_settings)
        if served is not None:
            accounts_file = Path(env[ACCOUNTS_FILE_ENV]) if ACCOUNTS_FILE_ENV in env else None
            segments_api_demo.add_to_environment(env, served, accounts_file)
        env.update(deployment or {})
        settings = load_settings(env)
        # a fresh simulator has a fresh daily quota: forget the requests earlier demos counted
        shutil.rmtree(settings.ledger_dir, ignore_errors=True)
        ranges = plan_ranges(settings.accounts, days=args.days)
        if edit_a_definition:
            list_then_edit_a_segment(settings, simulator, ranges[0])
        if served is not None:
            segments_api_demo.snapshot_history(settings, served, snapshot_days)
        with processes.dagster(env, data_dir / "dagster.log") as api:
            print(f"Dagster on {api.url} (instance {env['DAGSTER_HOME']}, log {data_dir / 'dagster.log'})")
            code = run_backfill(settings, ranges, api.url)
        stats = httpx.get(simulator.base_url + STATS_PATH, timeout=10).json()
    return DemoRun(code, env, settings, simulator, stats)


def list_then_edit_a_segment(settings: Settings, simulator: processes.Simulator, first: AccountRange) -> None:
    """The demo's definition change: the first account's segments are listed once as they are, then the
    simulator edits one as of the middle day of its range, so the backfill's listing records the change on that
    day, what a daily schedule would have seen over those days (the report's change markers and the analysts'
    definition-change query then have one to show).

    The listing goes through the same service the segments asset runs, without tags (the backfill loads them).
    """
    from ..ingest.access import KlaviyoAccess
    from ..ingest.segments import refresh_segments
    from ..warehouse import Holder, Warehouse

    untagged = dataclasses.replace(settings, klaviyo=dataclasses.replace(settings.klaviyo, tags="off"))
    access = KlaviyoAccess(untagged, settings.accounts[first.account])
    log = logging.getLogger("segment_pipeline.demo")
    refresh_segments(access, Warehouse(settings.storage), Holder(step="demo listing"), log)
    change = stage_definition_change(simulator, first.first, first.last)
    if change is None:
        print("  (no segment old enough to stage a definition change in; the demo shows none)")
        return
    print(
        f"  {first.account:<24} segments listed, then the definition of {change['segment_name']!r} edited on "
        f"{change['at'][:10]} (the demo's definition change)"
    )


def stage_definition_change(simulator: processes.Simulator, first: dt.date, last: dt.date) -> dict | None:
    """The simulator edits one segment of its first account as of the middle day of `first`..`last`
    (account-local); None when it has no segment old enough to edit."""
    answer = httpx.post(
        simulator.base_url + DEFINITION_CHANGE_PATH,
        params={"account": simulator.accounts[0].account_id, "first": str(first), "last": str(last)},
        timeout=10,
    )
    if answer.status_code == 409:
        return None
    answer.raise_for_status()
    return answer.json()


def dev_notice(data_dir: Path, dagster_home: Path, accounts: int, dagster_port: int = 3000) -> str:
    """What `dev` says before the UI starts: where its runs and data are, and how to open the demo's instead."""
    lines = [
        f"Dagster UI on http://127.0.0.1:{dagster_port} with the instance {dagster_home} and the warehouse, "
        f"analyst copy and report under {data_dir}."
    ]
    demo_dir = Path(DEMO_DATA_DIR).resolve()
    if data_dir != demo_dir:
        also = f" SIM_ACCOUNTS={accounts}" if accounts > 1 else ""
        lines.append(
            f"The runs of `make demo` are in their own instance ({demo_dir / 'dagster_home'}), not in this UI: "
            f"`make dev DEV_DATA_DIR={DEMO_DATA_DIR}{also}` (or `segment-pipeline dev --data-dir {DEMO_DATA_DIR}`) "
            "opens the UI on them and on the demo's warehouse (give the demo's --accounts too, when it had several)."
        )
    return "\n".join(lines)


def run_dev(argv: list[str] | None = None) -> int:
    """The Dagster UI (`dagster dev`) with the simulator as Klaviyo, until Ctrl-C."""
    args = dev_parser().parse_args(argv)
    if args.accounts < 1:
        print("segment-pipeline dev: --accounts must be at least 1", file=sys.stderr)
        return 2
    data_dir = Path(args.data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    with running_simulator(args, data_dir, port=args.port) as simulator:
        env = pipeline_environment(simulator, data_dir, args.speed)
        load_settings(env)  # a bad accounts file stops here, with its lines, before Dagster starts
        # the demo's edit, so that on the demo's warehouse the listings find the definition it loaded last and
        # record no change that did not happen
        first_account = simulator.accounts[0]
        yesterday = dt.datetime.now(dt.UTC).astimezone(ZoneInfo(first_account.timezone)).date() - dt.timedelta(days=1)
        stage_definition_change(simulator, yesterday - dt.timedelta(days=DEMO_DAYS - 1), yesterday)
        print(dev_notice(data_dir, Path(env["DAGSTER_HOME"]), args.accounts, args.dagster_port))
        command = [sys.executable, "-m", "dagster", "dev", "-w", str(processes.WORKSPACE)]
        command += ["-h", "127.0.0.1", "-p", str(args.dagster_port)]
        process = subprocess.Popen(command, env=env, cwd=processes.REPO)
        try:
            return process.wait()
        except KeyboardInterrupt:
            # dagster dev shuts its webserver and daemon down on SIGINT (it got it too); wait for that
            return process.wait()


def print_summary(analytics_path: Path, charts_dir: Path, stats: dict) -> None:
    """What the demo loaded and built, read from the analyst copy, and what it asked the simulator."""
    by_path = stats.get("requests_by_path", {})
    requests = sum(sum(counts.values()) for counts in by_path.values())
    reports = sum(by_path.get("/api/segment-series-reports", {}).values())
    values = sum(by_path.get("/api/segment-values-reports", {}).values())
    with duckdb.connect(str(analytics_path), read_only=True) as connection:
        segments = connection.execute(f"select count(*) from {RAW_DATASET}.{SEGMENTS_TABLE}").fetchone()[0]
        rows, first, last = connection.execute(
            f"select count(*), min(date), max(date) from {RAW_DATASET}.{SEGMENT_SERIES_TABLE}"
        ).fetchone()
        marts = connection.execute(
            "select table_name from information_schema.tables where table_schema = ? order by 1", [MARTS_SCHEMA]
        ).fetchall()
    print()
    print("Demo finished.")
    print(f"  segments loaded:        {segments}")
    print(f"  series rows:            {rows} ({first} to {last})")
    print(
        f"  requests to Klaviyo:    {requests} in all: {reports} segment-series report{'s' * (reports != 1)}, "
        f"{values} values report{'s' * (values != 1)} to reconcile"
    )
    print(f"  marts built:            {', '.join(name for (name,) in marts)}")
    print(f"  analyst copy:           {analytics_path}")
    print(f"  growth report:          {charts_dir / HTML_NAME} (and {PNG_NAME})")


# what the accounts' summary shows of each account: its segments, and its series rows and days
ACCOUNT_SEGMENTS_SQL = f"select account_id, count(*) from {RAW_DATASET}.{SEGMENTS_TABLE} group by 1 order by 1"
ACCOUNT_SERIES_SQL = (
    f"select account_id, count(*), min(date), max(date) from {RAW_DATASET}.{SEGMENT_SERIES_TABLE} group by 1 order by 1"
)


def print_accounts_summary(analytics_path: Path, simulator: processes.Simulator, stats: dict) -> None:
    """Per account: its timezone, and what the analyst copy holds for its account id."""
    with duckdb.connect(str(analytics_path), read_only=True) as connection:
        segments = dict(connection.execute(ACCOUNT_SEGMENTS_SQL).fetchall())
        series = {row[0]: row[1:] for row in connection.execute(ACCOUNT_SERIES_SQL).fetchall()}
    print_accounts_table(simulator, stats, segments, series)


def print_accounts_table(
    simulator: processes.Simulator, stats: dict, segments: dict[str, int], series: dict[str, tuple]
) -> None:
    """One line per account: timezone, segments, series rows and days (from `series`: rows, first, last) and
    the requests the simulator answered it."""
    per_account = stats.get("accounts", {})
    print()
    print(
        f"  {'account':<12} {'timezone':<20} {'segments':>8} {'series rows':>11}  {'days (account-local)':<26} requests"
    )
    for served in simulator.accounts:
        rows, first, last = series.get(served.account_id, (0, None, None))
        days = f"{first} to {last}" if first else "none"
        counts = per_account.get(served.name, {}).get("requests_by_path", {})
        requests = sum(sum(c.values()) for c in counts.values())
        print(
            f"  {served.name:<12} {served.timezone:<20} {segments.get(served.account_id, 0):>8} {rows:>11}  "
            f"{days:<26} {requests}"
        )
