"""Benchmarks: the whole pipeline on the simulator, against the targets of its performance section.

Run with `make benchmark` (a few minutes; it finishes by itself and stops every process it starts). It
measures and reports, printing each figure with its target and whether it meets it; it never fails the
test suite, because a slow machine is not a defect. The figures:

1. `dagster definitions validate` wall time (target < 5 s).
2. A year of 1,000 segments end to end through the real Dagster CLI (`dagster asset materialize --select '*'
   --partition-range`) on the simulator, the client at 1 report request a second: wall time against the
   API floor, (report requests - 1) seconds (target within 1.5x), with a per-step breakdown from the run's
   event log and the time outside any step; dbt's step against the same `dbt build` run alone on a copy of
   the warehouse as it was before the step (target within 1.5x).
3. A year of 10,000 segments (3.65 M rows) in one process (segments, series, models, analyst copy, chart,
   materialized in-process from the code location's own definitions, with the client's pacing and report
   budget lifted: memory depends on neither): peak memory of the pipeline's process and of its dbt process
   (target < 500 MB each), and the series load's dlt merge against a plain DuckDB insert of the same rows
   (target within 5x).
4. A backfill of 4 accounts against 1 (`--only accounts`): the simulator serving 4 accounts of the same size
   (a year of 200 segments each, time x5 so that report pacing, 16 requests at 10 a minute, dominates) and
   Dagster (`dagster dev`: webserver and daemon) on a fresh instance; `segment-pipeline backfill --days 365
   --dagster-url ...` for one account, then for all 4 (each on a fresh simulator, warehouse and instance): the
   4 accounts' wall time against the one's (target well under 2x, not 4x: Klaviyo's limits are per account,
   so the accounts' runs go out in parallel). Each account's time and steps, and the shared build's, come
   from the backfill's runs as Dagster's API reports them (their start and end, their steps').
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from segment_pipeline.config import StorageSettings
from segment_pipeline.devtools import processes
from segment_pipeline.devtools.demo import STATS_PATH, pipeline_environment
from segment_pipeline.settings import ACCOUNTS_FILE_ENV, SINGLE_ACCOUNT_VARIABLES, child_environment, load_settings

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
API_KEY = "pk_benchmark_0000000000"
TIMEZONE = "UTC"
DAYS = 365

VALIDATE_TARGET_S = 5.0
FLOOR_FACTOR = 1.5
DBT_FACTOR = 1.5
MEMORY_TARGET_MB = 500
MERGE_FACTOR = 5.0
ACCOUNTS_FACTOR = 2.0


# ---------------------------------------------------------------------------------------------- helpers


def verdict(ok: bool) -> str:
    return "meets target" if ok else "MISSES target"


def report(label: str, value: str, target: str, ok: bool | None) -> None:
    status = "" if ok is None else f"  [{verdict(ok)}: {target}]"
    print(f"  {label:<42}{value:>14}{status}", flush=True)


@contextlib.contextmanager
def deployment(
    work: Path, segments: int, speed: float, accounts: int = 1, **extra: str
) -> Iterator[tuple[processes.Simulator, dict[str, str]]]:
    """The simulator as a separate process (its memory is not the pipeline's), stopped on the way out, and the
    pipeline's environment for it as the demo builds it (every file under `work`, its own Dagster instance), with
    `extra` variables on top."""
    timezone = TIMEZONE if accounts == 1 else None
    with processes.simulator(
        work, api_key=API_KEY, accounts=accounts, segments=segments, speed=speed, timezone=timezone
    ) as simulator:
        env = pipeline_environment(simulator, work, speed)
        env.update(
            RUNTIME__DLTHUB_TELEMETRY="false",
            DBT_SEND_ANONYMOUS_USAGE_STATS="false",
            PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
            **extra,
        )
        yield simulator, env


def simulator_stats(simulator: processes.Simulator) -> dict:
    """The simulator's request counters: `report_requests_served` in all, and per account under `accounts`."""
    return httpx.get(simulator.base_url + STATS_PATH, timeout=10).json()


def year_range() -> tuple[dt.date, dt.date]:
    today = dt.datetime.now(dt.UTC).date()
    return today - dt.timedelta(days=DAYS), today - dt.timedelta(days=1)


def dlt_load_seconds(pipelines_dir: Path) -> tuple[float | None, int | None]:
    """Seconds of the last series load's dlt `load` step (the merge), and the rows it merged."""
    import dlt

    try:
        pipeline = dlt.attach(pipeline_name="klaviyo_series", pipelines_dir=str(pipelines_dir))
        trace = pipeline.last_trace
    except Exception:  # noqa: BLE001 - a layout the harness does not know: report no figure
        return None, None
    if trace is None:
        return None, None
    seconds = {step.step: (step.finished_at - step.started_at).total_seconds() for step in trace.steps}
    rows = None
    for step in trace.steps:
        if step.step == "normalize" and step.step_info is not None:
            rows = sum(step.step_info.row_counts.values()) if step.step_info.row_counts else None
    return seconds.get("load"), rows


def plain_insert_seconds(warehouse: Path, work: Path) -> tuple[float, int]:
    """A plain DuckDB insert of the series rows (read back as Arrow) into an empty table of a new file."""
    import duckdb

    from segment_pipeline.klaviyo import SERIES_ROW_SCHEMA
    from segment_pipeline.tables import RAW_DATASET, SEGMENT_SERIES_TABLE

    columns = ", ".join([*SERIES_ROW_SCHEMA.names, "_loaded_at"])
    with duckdb.connect(str(warehouse), read_only=True) as source:
        rows = source.sql(f"select {columns} from {RAW_DATASET}.{SEGMENT_SERIES_TABLE}").to_arrow_table()
    target = work / "plain_insert.duckdb"
    with duckdb.connect(str(target)) as connection:
        connection.execute("create table series as select * from rows limit 0")
        started = time.perf_counter()
        connection.execute("insert into series select * from rows")
        connection.execute("checkpoint")
        seconds = time.perf_counter() - started
    target.unlink()
    return seconds, rows.num_rows


# --------------------------------------------------------------------------------------------- 1. validate


def bench_validate(runs: int = 3) -> None:
    print("dagster definitions validate", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        # a deployment of the one default account, whatever this shell has set for the pipeline
        home = processes.prepare_dagster_home(Path(tmp))
        env = child_environment(without=(*SINGLE_ACCOUNT_VARIABLES, ACCOUNTS_FILE_ENV), DAGSTER_HOME=str(home))
        times = []
        for _ in range(runs):
            started = time.perf_counter()
            subprocess.run(
                [str(BIN / "dagster"), "definitions", "validate", "-m", "segment_pipeline.definitions"],
                cwd=REPO,
                env=env,
                check=True,
                capture_output=True,
            )
            times.append(time.perf_counter() - started)
    median = statistics.median(times)
    report(
        f"wall time (median of {runs})", f"{median:.1f} s", f"< {VALIDATE_TARGET_S:.0f} s", median < VALIDATE_TARGET_S
    )


# ------------------------------------------------------------------------------------- 2. end to end (CLI)


def run_timeline(dagster_home: Path) -> dict:
    """Wall-clock moments of the latest run from its event log: run start/end and each step's start/end."""
    import dagster as dg

    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        run = instance.get_runs(limit=1)[0]
        timeline = {"steps": {}, "run_start": None, "run_end": None, "materializations": 0}
        starts = {}
        for entry in instance.all_logs(run.run_id):
            event = entry.dagster_event
            if event is None:
                continue
            kind = event.event_type_value
            if kind == "STEP_START":
                starts[entry.step_key] = entry.timestamp
            elif kind in ("STEP_SUCCESS", "STEP_FAILURE") and entry.step_key in starts:
                timeline["steps"][entry.step_key] = (starts[entry.step_key], entry.timestamp)
            elif kind in ("RUN_START", "PIPELINE_START"):
                timeline["run_start"] = entry.timestamp
            elif kind in ("RUN_SUCCESS", "RUN_FAILURE", "PIPELINE_SUCCESS", "PIPELINE_FAILURE"):
                timeline["run_end"] = entry.timestamp
            elif kind == "ASSET_MATERIALIZATION":
                timeline["materializations"] += 1
    return timeline


def bench_end_to_end(segments: int, speed: float) -> None:
    print(f"a year of {segments:,} segments end to end through the Dagster CLI, 1 report request a second", flush=True)
    first, last = year_range()
    with contextlib.ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        simulator, env = stack.enter_context(deployment(work, segments, speed, KLAVIYO_REPORT_RATE_PER_MINUTE="60"))
        settings = load_settings(env)
        command = [
            str(BIN / "dagster"),
            "asset",
            "materialize",
            "-m",
            "segment_pipeline.definitions",
            "--select",
            "*",
            "--partition-range",
            f"{first.isoformat()}...{last.isoformat()}",
        ]
        started, started_wall = time.perf_counter(), time.time()
        result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
        total, ended_wall = time.perf_counter() - started, time.time()
        if result.returncode != 0:
            print(result.stdout[-3000:], result.stderr[-5000:], sep="\n")
            raise SystemExit("the end-to-end run failed")
        requests = simulator_stats(simulator)["report_requests_served"]
        floor = max(requests - 1, 1)
        timeline = run_timeline(Path(env["DAGSTER_HOME"]))
        load_seconds, _ = dlt_load_seconds(settings.storage.dlt_pipelines_dir)
        insert_seconds, rows = plain_insert_seconds(settings.storage.warehouse_path, work)
        dbt_alone = dbt_build_alone(settings.storage, work)

    report("report requests", f"{requests}", "", None)
    report("rows loaded", f"{rows:,}", "", None)
    report("API floor (requests - 1) s", f"{floor:.0f} s", "", None)
    report(
        "wall time, CLI start to exit",
        f"{total:.1f} s",
        f"<= {FLOOR_FACTOR}x floor = {FLOOR_FACTOR * floor:.0f} s",
        total <= FLOOR_FACTOR * floor,
    )
    report("  ratio to the floor", f"x{total / floor:.2f}", "", None)
    durations = {step: end - start for step, (start, end) in timeline["steps"].items()}
    for step, seconds in sorted(durations.items(), key=lambda item: -item[1]):
        report(f"  step {step}", f"{seconds:.1f} s", "", None)
    in_steps = sum(durations.values())
    report("  outside any step, in all", f"{total - in_steps:.1f} s", "", None)
    if timeline["run_start"] and timeline["run_end"]:
        report("    CLI start to run start (imports, plan)", f"{timeline['run_start'] - started_wall:.1f} s", "", None)
        between = timeline["run_end"] - timeline["run_start"] - in_steps
        report("    inside the run, between steps", f"{between:.1f} s", "", None)
        report("    run end to CLI exit", f"{ended_wall - timeline['run_end']:.1f} s", "", None)
    report("  materializations recorded", f"{timeline['materializations']}", "", None)
    dbt_step = next((s for k, s in durations.items() if "segment_growth_models" in k or "dbt" in k), None)
    report("dbt build alone (same warehouse)", f"{dbt_alone:.1f} s", "", None)
    if dbt_step is not None:
        report(
            "dbt step / dbt build alone",
            f"x{dbt_step / dbt_alone:.2f}",
            f"<= {DBT_FACTOR}x",
            dbt_step <= DBT_FACTOR * dbt_alone,
        )
    merge_figures(load_seconds, insert_seconds, rows)


def dbt_build_alone(storage: StorageSettings, work: Path) -> float:
    """Seconds of the dbt step's own `dbt build` (the same arguments), run alone on a copy of the warehouse as the
    step found it (raw tables only)."""
    import duckdb

    from segment_pipeline.defs.transform.assets import DbtConfig, dbt_build_args
    from segment_pipeline.defs.transform.project import DBT_PROJECT_DIR, dbt_executable
    from segment_pipeline.tables import MARTS_SCHEMA

    alone = dataclasses.replace(storage, warehouse_path=work / "alone.duckdb")
    shutil.copy(storage.warehouse_path, alone.warehouse_path)
    with duckdb.connect(str(alone.warehouse_path)) as connection:
        for schema in ("staging", "intermediate", MARTS_SCHEMA):
            connection.execute(f"drop schema if exists {schema} cascade")
    command = [dbt_executable(), "--quiet", *dbt_build_args(DbtConfig(), alone), "--target-path", str(work / "dbt")]
    started = time.perf_counter()
    subprocess.run(
        [*command, "--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir", str(DBT_PROJECT_DIR)],
        cwd=DBT_PROJECT_DIR,
        env=child_environment(DBT_SEND_ANONYMOUS_USAGE_STATS="false"),
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - started


def merge_figures(load_seconds: float | None, insert_seconds: float, rows: int) -> None:
    report("plain DuckDB insert of the same rows", f"{insert_seconds:.2f} s", "", None)
    if load_seconds is None:
        report("dlt merge of the series", "n/a", "", None)
        return
    report("dlt merge (load step) of the series", f"{load_seconds:.2f} s", "", None)
    ratio = load_seconds / insert_seconds
    report("  merge / plain insert", f"x{ratio:.1f}", f"<= {MERGE_FACTOR:.0f}x", ratio <= MERGE_FACTOR)


# ------------------------------------------------------------------------------------ 3. memory, 10,000


def memory_child() -> None:
    """In this process: segments, series, models, copy and chart for a year; prints peak memory as JSON.

    The deployment is the one in this process's environment (the simulator's one account, `default`)."""
    import dagster as dg

    import segment_pipeline.klaviyo.client as client_module
    from segment_pipeline.accounts import Accounts
    from segment_pipeline.defs.account_names import asset_key, is_shared_group
    from segment_pipeline.defs.deployment import build_definitions
    from segment_pipeline.defs.publish.assets import ANALYTICS_COPY_KEY, GROWTH_CHART_KEY
    from segment_pipeline.tables import SEGMENT_SERIES_TABLE, SEGMENTS_TABLE

    # memory does not depend on pacing nor on the report budget: lift both, so a year of 700 report requests
    # takes seconds, not hours, and fits one run (the budget allows Klaviyo's 225 a day at most)
    client_module.min_interval = lambda *args, **kwargs: 0.0
    client_module.burst_windows = lambda limit: ((1, 0.0),)
    settings = load_settings()
    (account,) = settings.accounts
    lifted = account.model_copy(update={"report_daily_limit": 1_000_000})
    settings = dataclasses.replace(settings, accounts=Accounts((lifted,), settings.accounts.source))
    defs = build_definitions(settings)

    first, last = year_range()
    tags = {
        "dagster/asset_partition_range_start": first.isoformat(),
        "dagster/asset_partition_range_end": last.isoformat(),
    }
    groups = {key: group for assets in defs.assets for key, group in assets.group_names_by_key.items()}
    models = [key for key, group in groups.items() if is_shared_group(group)]
    models = [key for key in models if key not in (ANALYTICS_COPY_KEY, GROWTH_CHART_KEY)]
    # the steps one after another in this one process, as the runs do them; the peak after each says which
    # step raised it (ru_maxrss only grows)
    steps = {"segments": [asset_key(account.name, SEGMENTS_TABLE)]}
    steps |= {"series": [asset_key(account.name, SEGMENT_SERIES_TABLE)], "models": models}
    steps |= {"analyst copy": [ANALYTICS_COPY_KEY], "chart": [GROWTH_CHART_KEY]}
    figures = {"steps": {}}
    started = time.perf_counter()
    for name, keys in steps.items():
        step_started = time.perf_counter()
        result = dg.materialize(
            defs.assets,
            selection=dg.AssetSelection.assets(*keys),
            resources=defs.resources,
            tags=tags if name == "series" else {},
        )
        if not result.success:
            raise SystemExit(f"the {name} step failed")
        figures["steps"][name] = {
            "seconds": time.perf_counter() - step_started,
            "own_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "children_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
        }
    figures["seconds"] = time.perf_counter() - started
    figures["own_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    figures["children_mb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(json.dumps(figures))


def bench_memory(segments: int, keep: Path | None) -> None:
    print(f"a year of {segments:,} segments in one process (pacing lifted)", flush=True)
    with contextlib.ExitStack() as stack:
        if keep:
            shutil.rmtree(keep, ignore_errors=True)
            keep.mkdir(parents=True)
        work = keep or Path(stack.enter_context(tempfile.TemporaryDirectory()))
        _, env = stack.enter_context(deployment(work, segments, speed=100000))
        storage = load_settings(env).storage
        result = subprocess.run(
            [sys.executable, __file__, "--memory-child"], cwd=REPO, env=env, capture_output=True, text=True
        )
        lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
        if result.returncode != 0 or not lines:
            print(result.stdout[-3000:], result.stderr[-5000:], sep="\n")
            raise SystemExit("the memory run failed")
        figures = json.loads(lines[-1])
        load_seconds, _ = dlt_load_seconds(storage.dlt_pipelines_dir)
        insert_seconds, rows = plain_insert_seconds(storage.warehouse_path, work)
    report("rows loaded", f"{rows:,}", "", None)
    report("wall time, in process", f"{figures['seconds']:.1f} s", "", None)
    for name, step in figures["steps"].items():
        peaks = f"{step['own_mb']:,.0f} / {step['children_mb']:,.0f} MB"
        report(f"  {name}: seconds; peak so far, own / children", f"{step['seconds']:.1f} s {peaks}", "", None)
    for label, key in (("peak memory, pipeline process", "own_mb"), ("peak memory, dbt process", "children_mb")):
        value = figures[key]
        report(label, f"{value:,.0f} MB", f"< {MEMORY_TARGET_MB} MB", value < MEMORY_TARGET_MB)
    merge_figures(load_seconds, insert_seconds, rows)


# ------------------------------------------------------------------------------ 4. accounts in parallel


def accounts_backfill(work: Path, segments: int, speed: float, accounts: int, run: int) -> dict:
    """`segment-pipeline backfill --days 365` of the first `run` of `accounts` simulated accounts, on a fresh
    simulator, warehouse and Dagster instance (`dagster dev`: webserver and daemon): the command's wall time,
    the backfill's runs with their times and steps from Dagster's API, each account's report requests."""
    from segment_pipeline.backfill import BACKFILL_TAG

    with contextlib.ExitStack() as stack:
        simulator, env = stack.enter_context(deployment(work, segments, speed, accounts))
        api = stack.enter_context(processes.dagster(env, work / "dagster.log"))
        chosen = [argument for served in simulator.accounts[:run] for argument in ("--account", served.name)]
        command = [str(BIN / "segment-pipeline"), "backfill", "--days", str(DAYS), "--dagster-url", api.url]
        started = time.perf_counter()
        result = subprocess.run([*command, *chosen], cwd=REPO, env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - started
        if result.returncode != 0:
            print(result.stdout[-4000:], result.stderr[-3000:], sep="\n")
            raise SystemExit(f"the accounts backfill failed; Dagster's log: {work / 'dagster.log'}")
        runs = [timing for timing in api.run_timings() if BACKFILL_TAG in timing.run.tags]
        served = simulator_stats(simulator)["accounts"]
    names = [account.name for account in simulator.accounts[:run]]
    return {
        "seconds": seconds,
        "runs": runs,
        "accounts": names,
        "requests": {name: served[name]["report_requests_served"] for name in names},
    }


def span(runs: list) -> float:
    """Seconds from the first run's start to the last run's end."""
    starts = [timing.start for timing in runs if timing.start is not None]
    ends = [timing.end for timing in runs if timing.end is not None]
    return max(ends) - min(starts) if starts and ends else 0.0


def step_phases(runs: list, kinds: dict[str, str], other: str) -> dict[str, float]:
    """Seconds of the runs' steps by kind: a step named in `kinds` counts as its kind, any other as `other`."""
    phases = dict.fromkeys([*dict.fromkeys(kinds.values()), other], 0.0)
    for timing in runs:
        for step in timing.steps:
            if step.start is not None and step.end is not None:
                phases[kinds.get(step.step_key, other)] += step.end - step.start
    return phases


def account_phases(runs: list, name: str) -> tuple[float, dict[str, float]]:
    """One account's time, its runs' first start to last end, and its steps by kind (its segments may share a run
    with the other accounts' segments: only its own steps count)."""
    from segment_pipeline.backfill import run_accounts
    from segment_pipeline.defs.account_names import segments_op_name, series_op_name

    own = [timing for timing in runs if name in run_accounts(timing.run)]
    segments_step = segments_op_name(name)
    # the account's own steps: those of its runs that no other account shares (its series run), and its segments
    steps = [
        dataclasses.replace(timing, steps=tuple(s for s in timing.steps if s.step_key == segments_step))
        if run_accounts(timing.run) != {name}
        else timing
        for timing in own
    ]
    phases = step_phases(steps, {segments_step: "segments", series_op_name(name): "series"}, "checks")
    # waits for the daemon to start a run, other accounts' steps in a shared run, each run's start and exit
    phases["outside its steps"] = span(own) - sum(phases.values())
    return span(own), phases


def bench_accounts(segments: int, speed: float, accounts: int = 4) -> None:
    from segment_pipeline.backfill import run_accounts

    print(
        f"backfill of {accounts} accounts against 1: a year of {segments:,} segments each, "
        f"{2 * speed:g} report requests a minute per account (time x{speed:g}), one Dagster backfill",
        flush=True,
    )
    figures = {}
    for run in (1, accounts):
        with tempfile.TemporaryDirectory() as tmp:
            figures[run] = accounts_backfill(Path(tmp), segments, speed, accounts, run)
    print("  each account's runs, by step: segments / series / checks / outside its steps")
    print("  the shared build's run, by step: dbt / analyst copy, report, checks / outside steps")
    for run, figure in figures.items():
        report(f"{run} account(s): wall time, command start to exit", f"{figure['seconds']:.1f} s", "", None)
        report("  backfill: first run start to last run end", f"{span(figure['runs']):.1f} s", "", None)
        for name in figure["accounts"]:
            seconds, phases = account_phases(figure["runs"], name)
            requests = figure["requests"][name]
            report(f"  {name}: its runs, report requests", f"{seconds:.1f} s {requests:>4}", "", None)
            report("    by step (s, as in the heading)", "/".join(f"{v:.0f}" for v in phases.values()), "", None)
        shared = [timing for timing in figure["runs"] if not run_accounts(timing.run)]
        phases = step_phases(shared, {"segment_growth_models": "dbt"}, "publish")
        phases["outside steps"] = span(shared) - sum(phases.values())
        report(f"  shared build: {len(shared)} run(s)", f"{span(shared):.1f} s", "", None)
        report("    by step (s, as in the heading)", "/".join(f"{v:.0f}" for v in phases.values()), "", None)
    ratio = figures[accounts]["seconds"] / figures[1]["seconds"]
    report(
        f"{accounts} accounts / 1 account",
        f"x{ratio:.2f}",
        f"well under {ACCOUNTS_FACTOR:.0f}x (not {accounts}x)",
        ratio < ACCOUNTS_FACTOR,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--segments", type=int, default=1000, help="segments of the end-to-end run")
    parser.add_argument("--memory-segments", type=int, default=10000, help="segments of the memory run")
    parser.add_argument("--speed", type=float, default=60, help="simulator speed of the end-to-end run")
    parser.add_argument("--accounts-segments", type=int, default=200, help="segments of each account (accounts run)")
    parser.add_argument("--accounts-speed", type=float, default=5, help="simulator speed of the accounts run")
    parser.add_argument(
        "--only",
        choices=["validate", "listing", "end-to-end", "memory", "accounts", "lake"],
        help="run one benchmark",
    )
    parser.add_argument("--keep", type=Path, help="keep the memory run's files in this directory")
    parser.add_argument("--memory-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        memory_child()
        return
    os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")
    if args.only in (None, "validate"):
        bench_validate()
    if args.only in (None, "listing"):
        from listing import bench_listing  # benchmarks/listing.py, beside this script

        bench_listing(report=report)
    if args.only in (None, "end-to-end"):
        bench_end_to_end(args.segments, args.speed)
    if args.only in (None, "memory"):
        bench_memory(args.memory_segments, args.keep)
    if args.only in (None, "accounts"):
        bench_accounts(args.accounts_segments, args.accounts_speed)
    if args.only in (None, "lake"):
        from lake import bench_lake  # benchmarks/lake.py: 8 accounts into a DuckLake against a DuckDB file

        bench_lake(report)


if __name__ == "__main__":
    main()
