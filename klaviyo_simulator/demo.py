"""`klaviyo-simulator demo` and `dev`: the whole pipeline, or the Dagster UI, on the bundled simulator.

Neither needs a Klaviyo account, and both run on the environment `demo_environment` defines.

`demo` (also `segment-pipeline demo`, `make demo`) starts the simulator, loads the first account's segments
once and then stages the scenario's definition change (`scenario`), runs the real Dagster job of each
account through the `dagster` command line for the last N days (one run per account, as `segment-pipeline
backfill` does), prints what was fetched and built, and stops the simulator. It writes only under
data/demo/, with its own Dagster instance. `dev` (`make dev`) starts the simulator (with the same edit made)
and `dagster dev` on it, everything under data/dev/ (or `--data-dir data/demo`: the demo's runs and data).

`demo --accounts N` serves N accounts in different timezones (see `accounts.numbered_configs`), writes an
accounts file for them (data/demo/accounts.yaml, checked by the pipeline's own loader), and backfills every
account's last N days, in its own timezone, in parallel, through the pipeline's own `segment-pipeline
backfill` code; then it prints what the warehouse holds per account. `dev --accounts N` serves the same
accounts to the Dagster UI.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import yaml

from segment_pipeline.accounts import ACCOUNTS_FILE_ENV, load_accounts
from segment_pipeline.backfill import (
    DEFAULT_PARALLEL,
    AccountRange,
    BackfillStopped,
    backfill,
    default_log_dir,
    plan_ranges,
    prepare_instance,
)
from segment_pipeline.charts import HTML_NAME, PNG_NAME
from segment_pipeline.config import PipelineSettings
from segment_pipeline.defs.account_names import asset_key
from segment_pipeline.klaviyo.limits import (
    REPORT_QUOTA_WINDOW_SECONDS,
    REPORTS_RATE_LIMIT,
    SEGMENT_SERIES_PATH,
    SEGMENT_VALUES_PATH,
    STEADY_WINDOW_SECONDS,
)
from segment_pipeline.tables import MARTS_SCHEMA, RAW_DATASET, SEGMENT_SERIES_TABLE, SEGMENTS_TABLE
from segment_pipeline.wording import plural

from . import scenario
from .account_config import SimulatorConfig
from .accounts import ServedAccount, numbered_configs
from .simulator import KlaviyoSimulator

DEMO_API_KEY = "pk_simulator_demo_key"
DEMO_TIMEZONE = "US/Eastern"
# the project's Dagster instance settings, kept in the repository beside the packages
INSTANCE_SETTINGS = Path(__file__).resolve().parents[1] / "dagster_home" / "dagster.yaml"
ACCOUNTS_FILE_NAME = "accounts.yaml"
# where `demo` and `dev` write by default (relative to the directory they start from), and the demo's days
DEMO_DATA_DIR = "data/demo"
DEV_DATA_DIR = "data/dev"
DEMO_DAYS = 90


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--days", type=int, default=DEMO_DAYS, help=f"days of series to load, ending yesterday (default {DEMO_DAYS})"
    )
    parser.add_argument("--segments", type=int, default=150, help="segments in the simulated account (default 150)")
    parser.add_argument("--seed", type=int, default=42, help="simulator seed (default 42)")
    parser.add_argument(
        "--speed",
        type=float,
        default=60.0,
        help="simulator time factor: 60 turns Klaviyo's 2 report requests a minute into 2 a second (default 60)",
    )
    parser.add_argument("--data-dir", default=DEMO_DATA_DIR, help=f"where the demo writes (default {DEMO_DATA_DIR})")
    parser.add_argument(
        "--accounts",
        type=int,
        default=1,
        help="simulated accounts, each with its own timezone, segments and quota; writes an accounts file for "
        "them and backfills them all in parallel (default 1)",
    )


def add_dev_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, default=8765, help="the simulator's port (default 8765)")
    parser.add_argument("--segments", type=int, default=150, help="segments in the simulated account (default 150)")
    parser.add_argument("--seed", type=int, default=42, help="simulator seed (default 42)")
    parser.add_argument("--speed", type=float, default=60.0, help="simulator time factor (default 60)")
    parser.add_argument(
        "--data-dir",
        default=DEV_DATA_DIR,
        help=f"where the pipeline writes (default {DEV_DATA_DIR}); {DEMO_DATA_DIR} opens the demo's runs and data",
    )
    parser.add_argument(
        "--accounts",
        type=int,
        default=1,
        help="simulated accounts, each with its own timezone, segments and quota, in an accounts file (default 1)",
    )


def simulator_config(args: argparse.Namespace) -> SimulatorConfig:
    return SimulatorConfig(
        api_key=DEMO_API_KEY, segment_count=args.segments, seed=args.seed, speed=args.speed, timezone=DEMO_TIMEZONE
    )


def demo_simulator(args: argparse.Namespace) -> KlaviyoSimulator:
    """The demo's simulator: today's single account, or `--accounts` accounts derived from it."""
    if args.accounts == 1:
        return KlaviyoSimulator(simulator_config(args))
    return KlaviyoSimulator(accounts=numbered_configs(simulator_config(args), args.accounts))


def key_variable(account_name: str) -> str:
    """The environment variable the demo's accounts file names for an account's key."""
    return f"KLAVIYO_API_KEY_{account_name.upper()}"


def write_accounts_file(path: Path, simulator: KlaviyoSimulator, speed: float) -> dict[str, str]:
    """Write an accounts file for the simulator's accounts; returns the key variables it names, with their keys."""
    entries = [
        {
            "name": served.name,
            "api_key_env": key_variable(served.name),
            "timezone": served.timezone,
            # the simulator runs its windows `speed` times faster; pace to match
            "report_rate_per_minute": REPORTS_RATE_LIMIT.per_minute * speed,
        }
        for served in simulator.accounts
    ]
    header = (
        "# Written by `klaviyo-simulator demo --accounts N` for its simulated accounts (see accounts.yaml.example\n"
        "# for every field). The keys are in the variables named here, in the demo's environment only.\n"
    )
    path.write_text(header + yaml.safe_dump({"accounts": entries}, sort_keys=False), encoding="utf-8")
    return {key_variable(served.name): served.config.api_key for served in simulator.accounts}


def demo_environment(
    base_url: str, data_dir: Path, speed: float, api_key: str = DEMO_API_KEY, timezone: str = DEMO_TIMEZONE
) -> dict[str, str]:
    """The environment of the demo run: the simulator as Klaviyo, every file under data_dir."""
    env = dict(os.environ)
    env.update(
        KLAVIYO_BASE_URL=base_url,
        KLAVIYO_API_KEY=api_key,
        KLAVIYO_TIMEZONE=timezone,
        # the simulator runs its rate-limit windows `speed` times faster; pace to match
        KLAVIYO_REPORT_RATE_PER_MINUTE=str(REPORTS_RATE_LIMIT.per_minute * speed),
        # its steady window and quota day are `speed` times shorter too: wait and count to match
        KLAVIYO_STEADY_WINDOW_SECONDS=str(STEADY_WINDOW_SECONDS / speed),
        KLAVIYO_REPORT_BUDGET_WINDOW_SECONDS=str(REPORT_QUOTA_WINDOW_SECONDS / speed),
        WAREHOUSE_PATH=str(data_dir / "warehouse.duckdb"),
        ANALYTICS_PATH=str(data_dir / "analytics.duckdb"),
        PIPELINE_STATE_DIR=str(data_dir / "state"),
        CHARTS_DIR=str(data_dir / "charts"),
    )
    # the demo's accounts are the simulator's: never the accounts file of the shell it was started from
    env.pop(ACCOUNTS_FILE_ENV, None)
    # the demo's own Dagster instance, so its runs never show in `make dev`'s UI (and the other way round)
    if not env.get("DAGSTER_HOME"):  # unset or empty
        env["DAGSTER_HOME"] = str(prepare_dagster_home(data_dir / "dagster_home"))
    return env


def prepare_dagster_home(home: Path) -> Path:
    """A Dagster instance directory with the project's instance settings (dagster_home/dagster.yaml)."""
    home.mkdir(parents=True, exist_ok=True)
    if INSTANCE_SETTINGS.is_file():
        shutil.copyfile(INSTANCE_SETTINGS, home / "dagster.yaml")
    return home


def run(args: argparse.Namespace) -> int:
    if args.accounts < 1:
        print("error: --accounts must be at least 1", file=sys.stderr)
        return 2
    data_dir = Path(args.data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    with demo_simulator(args) as simulator:
        env = simulated_environment(simulator, data_dir, args)
        # each demo starts a fresh simulator, with a fresh daily quota: forget the requests earlier demos counted
        shutil.rmtree(PipelineSettings.from_env(env).report_ledger_dir, ignore_errors=True)
        # every account through the pipeline's own backfill: its last N days in its own timezone, in parallel
        accounts = load_accounts(env)
        ranges = plan_ranges(accounts, days=args.days)
        prepare_instance(env)
        log_dir = default_log_dir(env, dt.datetime.now(dt.UTC))
        if not list_then_edit_a_segment(simulator, ranges[0], env, log_dir):
            return 1
        try:
            outcomes = backfill(ranges, accounts, env, log_dir, parallel=max(DEFAULT_PARALLEL, len(ranges)))
        except BackfillStopped as stopped:
            return stopped.exit_code  # the backfill said what it stopped; the simulator stops on the way out
        if not all(outcome.ok for outcome in outcomes):
            print("The demo run failed; why is above, the Dagster output in the logs named there.", file=sys.stderr)
            return 1
        report_requests = simulator.count(method="POST", path=SEGMENT_SERIES_PATH)
        values_requests = simulator.count(method="POST", path=SEGMENT_VALUES_PATH)
        all_requests = simulator.count()
        served = [(account, simulator.count(account=account.name)) for account in simulator.accounts]
    print_summary(Path(env["ANALYTICS_PATH"]), Path(env["CHARTS_DIR"]), report_requests, all_requests, values_requests)
    if args.accounts > 1:
        print(f"  accounts file:          {data_dir / ACCOUNTS_FILE_NAME}")
        print_accounts_summary(Path(env["WAREHOUSE_PATH"]), served)
    return 0


def list_then_edit_a_segment(
    simulator: KlaviyoSimulator, first: AccountRange, env: dict[str, str], log_dir: Path
) -> bool:
    """The scenario's definition change (`scenario`): the first account's segments are loaded once as they are,
    then one is edited as of a day inside its range, so the backfill's listing records the change on that day.

    Returns:
        False when the listing run failed (said on stderr, with its log).
    """
    account = simulator.accounts.first.account
    if scenario.segment_to_edit(account) is None:
        print("  (no segment old enough to stage a definition change in; the demo shows none)")
        return True
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{first.account}.listing.log"
    key = asset_key(first.account, "segments").to_user_string()
    command = [sys.executable, "-m", "dagster", "asset", "materialize", "-m", "segment_pipeline.definitions"]
    # tags come with the backfill's listing: this one only records the definitions as they were
    with log_path.open("w", encoding="utf-8") as log:
        listed = subprocess.run(
            [*command, "--select", key], env={**env, "KLAVIYO_TAGS": "off"}, stdout=log, stderr=subprocess.STDOUT
        )
    if listed.returncode != 0:
        print(f"The demo's first listing of the segments failed; its Dagster output is in {log_path}", file=sys.stderr)
        return False
    change = scenario.stage_definition_change(account, first.first, first.last)
    assert change is not None
    print(
        f"  {first.account:<24} {key}: listed, then the definition of {change.segment_name!r} edited on "
        f"{change.day} (the demo's definition change)"
    )
    return True


def print_accounts_summary(warehouse_path: Path, served: list[tuple[ServedAccount, int]]) -> None:
    """Per account: its timezone, and what the warehouse's raw tables hold for its account id."""
    with duckdb.connect(str(warehouse_path), read_only=True) as connection:
        segments = dict(
            connection.execute(f"select account_id, count(*) from {RAW_DATASET}.{SEGMENTS_TABLE} group by 1").fetchall()
        )
        per_account = f"select account_id, count(*), min(date), max(date) from {RAW_DATASET}.{SEGMENT_SERIES_TABLE}"
        series = {row[0]: row[1:] for row in connection.execute(per_account + " group by 1").fetchall()}
    print()
    print(
        f"  {'account':<12} {'timezone':<20} {'segments':>8} {'series rows':>11}  {'days (account-local)':<26} requests"
    )
    for account, requests in served:
        rows, first, last = series.get(account.account_id, (0, None, None))
        days = f"{first} to {last}" if first else "none"
        print(
            f"  {account.name:<12} {account.timezone:<20} {segments.get(account.account_id, 0):>8} {rows:>11}  "
            f"{days:<26} {requests}"
        )


def simulated_environment(simulator: KlaviyoSimulator, data_dir: Path, args: argparse.Namespace) -> dict[str, str]:
    """The pipeline's environment for the simulator: its one account, or an accounts file for several."""
    if len(simulator.accounts) == 1:
        print(f"Klaviyo simulator on {simulator.base_url}: {args.segments} segments, time x{args.speed:g}")
        return demo_environment(simulator.base_url, data_dir, args.speed)
    return several_accounts_environment(simulator, data_dir, args)


def several_accounts_environment(
    simulator: KlaviyoSimulator, data_dir: Path, args: argparse.Namespace
) -> dict[str, str]:
    """Write the accounts file for the simulator's accounts, check it with the pipeline's loader, point at it."""
    print(
        f"Klaviyo simulator on {simulator.base_url}: {len(simulator.accounts)} accounts of {args.segments} segments, "
        f"time x{args.speed:g}"
    )
    first = simulator.accounts.first
    env = demo_environment(simulator.base_url, data_dir, args.speed, timezone=first.timezone)
    # with an accounts file every account's key is in the variable the file names; no single-account key
    env.pop("KLAVIYO_API_KEY", None)
    accounts_file = data_dir / ACCOUNTS_FILE_NAME
    env.update(write_accounts_file(accounts_file, simulator, args.speed))
    env[ACCOUNTS_FILE_ENV] = str(accounts_file)
    checked = load_accounts(env)
    print(f"Accounts file {accounts_file} (checked: {len(checked)} accounts):")
    for served in simulator.accounts:
        print(
            f"  {served.name:<12} account {served.account_id}  {served.timezone:<20} key in {key_variable(served.name)}"
        )
    return env


def run_dev(args: argparse.Namespace) -> int:
    """The Dagster UI (`dagster dev -w workspace.yaml`) with the simulator as Klaviyo, until Ctrl-C."""
    if args.accounts < 1:
        print("error: --accounts must be at least 1", file=sys.stderr)
        return 2
    data_dir = Path(args.data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    simulator = demo_simulator(args).start(port=args.port)
    try:
        env = simulated_environment(simulator, data_dir, args)
        # the demo's simulator as the demo leaves it: its definition change made (the same edit), so the UI's
        # listings of the demo's warehouse see the definition the demo loaded last
        account = simulator.accounts.first.account
        yesterday = account.today() - dt.timedelta(days=1)
        scenario.stage_definition_change(account, yesterday - dt.timedelta(days=DEMO_DAYS - 1), yesterday)
        print(dev_notice(data_dir, Path(env["DAGSTER_HOME"]), args.accounts), flush=True)
        command = [sys.executable, "-m", "dagster", "dev", "-w", "workspace.yaml"]
        process = subprocess.Popen(command, env=env)
        try:
            return process.wait()
        except KeyboardInterrupt:
            # dagster dev shuts its webserver and daemon down on SIGINT (it got it too); wait for that
            return process.wait()
    finally:
        simulator.stop()


def dev_notice(data_dir: Path, dagster_home: Path, accounts: int) -> str:
    """What `dev` says before the UI starts: where its runs and data are, and how to see the demo's instead."""
    lines = [
        f"Dagster UI on http://127.0.0.1:3000 with the instance {dagster_home} and the warehouse, analyst copy "
        f"and report under {data_dir}."
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


def print_summary(
    analytics_path: Path, charts_dir: Path, report_requests: int, all_requests: int, values_requests: int = 0
) -> None:
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
        f"  requests to Klaviyo:    {all_requests} in all, {report_requests} segment-series reports, "
        f"{plural(values_requests, 'values report')} to reconcile"
    )
    print(f"  marts built:            {', '.join(name for (name,) in marts)}")
    print(f"  analyst copy:           {analytics_path}")
    print(f"  growth report:          {charts_dir / HTML_NAME} (and {PNG_NAME})")
