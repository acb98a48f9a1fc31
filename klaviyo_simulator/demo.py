"""`klaviyo-simulator demo` and `dev`: the whole pipeline, or the Dagster UI, on the bundled simulator.

Neither needs a Klaviyo account, and both run on the environment `demo_environment` defines.

`demo` (also `segment-pipeline demo`, `make demo`) starts the simulator, materializes the real Dagster job
through the `dagster` command line for the last N days (one run, like a backfill from the UI), prints what
was fetched and built, and stops the simulator. It writes only under data/demo/, with its own Dagster
instance. `dev` (`make dev`) starts the simulator and `dagster dev` on it, everything under data/dev/.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import subprocess
import sys
from pathlib import Path
from zoneinfo import ZoneInfo

import duckdb

from segment_pipeline.charts import HTML_NAME, PNG_NAME
from segment_pipeline.klaviyo.limits import REPORTS_RATE_LIMIT, SEGMENT_SERIES_PATH, SEGMENT_VALUES_PATH
from segment_pipeline.tables import MARTS_SCHEMA, RAW_DATASET, SEGMENT_SERIES_TABLE, SEGMENTS_TABLE

from .account_config import SimulatorConfig
from .simulator import KlaviyoSimulator

DEMO_API_KEY = "pk_simulator_demo_key"
DEMO_TIMEZONE = "US/Eastern"
# the project's Dagster instance settings, kept in the repository beside the packages
INSTANCE_SETTINGS = Path(__file__).resolve().parents[1] / "dagster_home" / "dagster.yaml"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--days", type=int, default=90, help="days of series to load, ending yesterday (default 90)")
    parser.add_argument("--segments", type=int, default=150, help="segments in the simulated account (default 150)")
    parser.add_argument("--seed", type=int, default=42, help="simulator seed (default 42)")
    parser.add_argument(
        "--speed",
        type=float,
        default=60.0,
        help="simulator time factor: 60 turns Klaviyo's 2 report requests a minute into 2 a second (default 60)",
    )
    parser.add_argument("--data-dir", default="data/demo", help="where the demo writes (default data/demo)")


def add_dev_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, default=8765, help="the simulator's port (default 8765)")
    parser.add_argument("--segments", type=int, default=150, help="segments in the simulated account (default 150)")
    parser.add_argument("--seed", type=int, default=42, help="simulator seed (default 42)")
    parser.add_argument("--speed", type=float, default=60.0, help="simulator time factor (default 60)")
    parser.add_argument("--data-dir", default="data/dev", help="where the pipeline writes (default data/dev)")


def simulator_config(args: argparse.Namespace) -> SimulatorConfig:
    return SimulatorConfig(
        api_key=DEMO_API_KEY, segment_count=args.segments, seed=args.seed, speed=args.speed, timezone=DEMO_TIMEZONE
    )


def demo_environment(base_url: str, data_dir: Path, speed: float) -> dict[str, str]:
    """The environment of the demo run: the simulator as Klaviyo, every file under data_dir."""
    env = dict(os.environ)
    env.update(
        KLAVIYO_BASE_URL=base_url,
        KLAVIYO_API_KEY=DEMO_API_KEY,
        KLAVIYO_TIMEZONE=DEMO_TIMEZONE,
        # the simulator runs its rate-limit windows `speed` times faster; pace to match
        KLAVIYO_REPORT_RATE_PER_MINUTE=str(REPORTS_RATE_LIMIT.per_minute * speed),
        WAREHOUSE_PATH=str(data_dir / "warehouse.duckdb"),
        ANALYTICS_PATH=str(data_dir / "analytics.duckdb"),
        PIPELINE_STATE_DIR=str(data_dir / "state"),
        CHARTS_DIR=str(data_dir / "charts"),
    )
    # the demo's own Dagster instance, so its runs never show in `make dev`'s UI (and the other way round)
    env.setdefault("DAGSTER_HOME", str(prepare_dagster_home(data_dir / "dagster_home")))
    return env


def prepare_dagster_home(home: Path) -> Path:
    """A Dagster instance directory with the project's instance settings (dagster_home/dagster.yaml)."""
    home.mkdir(parents=True, exist_ok=True)
    if INSTANCE_SETTINGS.is_file():
        shutil.copyfile(INSTANCE_SETTINGS, home / "dagster.yaml")
    return home


def run(args: argparse.Namespace) -> int:
    data_dir = Path(args.data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    # each demo starts a fresh simulator, with a fresh daily quota: forget the requests earlier demos counted
    (data_dir / "state" / "klaviyo_report_budget.json").unlink(missing_ok=True)
    with KlaviyoSimulator(simulator_config(args)) as simulator:
        print(f"Klaviyo simulator on {simulator.base_url}: {args.segments} segments, time x{args.speed:g}")
        env = demo_environment(simulator.base_url, data_dir, args.speed)
        yesterday = dt.datetime.now(ZoneInfo(DEMO_TIMEZONE)).date() - dt.timedelta(days=1)
        first = yesterday - dt.timedelta(days=args.days - 1)
        command = [
            sys.executable,
            "-m",
            "dagster",
            "job",
            "execute",
            "-m",
            "segment_pipeline.definitions",
            "-j",
            "segment_growth_job",
            "--tags",
            f'{{"dagster/asset_partition_range_start": "{first}", "dagster/asset_partition_range_end": "{yesterday}"}}',
        ]
        print(f"Running segment_growth_job for {first} to {yesterday} (one run)...")
        finished = subprocess.run(command, env=env, capture_output=True, text=True)
        if finished.returncode != 0:
            sys.stdout.write(finished.stdout[-4000:])
            sys.stderr.write(finished.stderr[-8000:])
            print("The demo run failed; the Dagster output is above.", file=sys.stderr)
            return 1
        report_requests = simulator.count(method="POST", path=SEGMENT_SERIES_PATH)
        values_requests = simulator.count(method="POST", path=SEGMENT_VALUES_PATH)
        all_requests = simulator.count()
    print_summary(Path(env["ANALYTICS_PATH"]), Path(env["CHARTS_DIR"]), report_requests, all_requests, values_requests)
    return 0


def run_dev(args: argparse.Namespace) -> int:
    """The Dagster UI (`dagster dev -w workspace.yaml`) with the simulator as Klaviyo, until Ctrl-C."""
    data_dir = Path(args.data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    simulator = KlaviyoSimulator(simulator_config(args)).start(port=args.port)
    try:
        print(f"Klaviyo simulator on {simulator.base_url}: {args.segments} segments, time x{args.speed:g}")
        env = demo_environment(simulator.base_url, data_dir, args.speed)
        command = [sys.executable, "-m", "dagster", "dev", "-w", "workspace.yaml"]
        process = subprocess.Popen(command, env=env)
        try:
            return process.wait()
        except KeyboardInterrupt:
            # dagster dev shuts its webserver and daemon down on SIGINT (it got it too); wait for that
            return process.wait()
    finally:
        simulator.stop()


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
        f"{values_requests} values report(s) to reconcile"
    )
    print(f"  marts built:            {', '.join(name for (name,) in marts)}")
    print(f"  analyst copy:           {analytics_path}")
    print(f"  growth report:          {charts_dir / HTML_NAME} (and {PNG_NAME})")
