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
   run in-process with the client's pacing lifted: memory does not depend on pacing): peak memory of the
   pipeline's process and of its dbt process (target < 500 MB each), and the series load's dlt merge against
   a plain DuckDB insert of the same rows (target within 5x).
4. A backfill of 4 accounts against 1 (`--only accounts`): the simulator serving 4 accounts of the same size
   (a year of 200 segments each, time x5 so that report pacing, 16 requests at 10 a minute, dominates),
   `segment-pipeline backfill --days 365` for one account, then for all 4 (each on a fresh simulator and
   warehouse): the 4 accounts' wall time against the one's (target well under 2x, not 4x: Klaviyo's limits
   are per account, so the accounts' requests go out in parallel).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import re
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def simulator(segments: int, speed: float, *extra: str) -> Iterator[str]:
    """The simulator as a separate process (its memory is not the pipeline's), stopped on the way out."""
    port = free_port()
    command = [
        str(BIN / "klaviyo-simulator"),
        "serve",
        "--port",
        str(port),
        "--api-key",
        API_KEY,
        "--segments",
        str(segments),
        "--speed",
        str(speed),
        "--timezone",
        TIMEZONE,
        *extra,
    ]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{base_url}/__simulator/stats", timeout=5):
                    break
            except OSError as exc:
                if process.poll() is not None or time.monotonic() > deadline:
                    detail = process.stderr.read().decode()[-2000:]
                    raise RuntimeError(f"the simulator did not start: {detail}") from exc
                time.sleep(0.2)
        yield base_url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def report_requests(base_url: str) -> int:
    with urllib.request.urlopen(f"{base_url}/__simulator/stats", timeout=10) as answer:
        stats = json.load(answer)
    return int(stats.get("report_requests_served", 0))


def pipeline_env(work: Path, base_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KLAVIYO_", "DAGSTER_"))}
    env.update(
        KLAVIYO_API_KEY=API_KEY,
        KLAVIYO_BASE_URL=base_url,
        KLAVIYO_TIMEZONE=TIMEZONE,
        KLAVIYO_REPORT_DAILY_LIMIT="100000",
        WAREHOUSE_PATH=str(work / "warehouse.duckdb"),
        ANALYTICS_PATH=str(work / "analytics.duckdb"),
        PIPELINE_STATE_DIR=str(work / "state"),
        CHARTS_DIR=str(work / "charts"),
        DAGSTER_HOME=str(work / "dagster_home"),
        RUNTIME__DLTHUB_TELEMETRY="false",
        DBT_SEND_ANONYMOUS_USAGE_STATS="false",
        PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        **extra,
    )
    return env


def year_range() -> tuple[dt.date, dt.date]:
    today = dt.datetime.now(dt.UTC).date()
    return today - dt.timedelta(days=DAYS), today - dt.timedelta(days=1)


def dlt_load_seconds(state_dir: Path) -> tuple[float | None, int | None]:
    """Seconds of the last series load's dlt `load` step (the merge), and the rows it merged."""
    import dlt

    try:
        pipeline = dlt.attach(pipeline_name="klaviyo_series", pipelines_dir=str(state_dir / "dlt"))
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
        env = {k: v for k, v in os.environ.items() if not k.startswith("KLAVIYO_API")}
        env["DAGSTER_HOME"] = tmp
        shutil.copy(REPO / "dagster_home" / "dagster.yaml", Path(tmp) / "dagster.yaml")
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
    os.environ["DAGSTER_HOME"] = str(dagster_home)
    import dagster as dg

    with dg.DagsterInstance.get() as instance:
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
    with tempfile.TemporaryDirectory() as tmp, simulator(segments, speed) as base_url:
        work = Path(tmp)
        (work / "dagster_home").mkdir()
        shutil.copy(REPO / "dagster_home" / "dagster.yaml", work / "dagster_home" / "dagster.yaml")
        env = pipeline_env(work, base_url, KLAVIYO_REPORT_RATE_PER_MINUTE="60")
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
        requests = report_requests(base_url)
        floor = max(requests - 1, 1)
        timeline = run_timeline(work / "dagster_home")
        load_seconds, _ = dlt_load_seconds(work / "state")
        insert_seconds, rows = plain_insert_seconds(work / "warehouse.duckdb", work)

        # the same dbt build alone, on a copy of the warehouse as the dbt step found it (raw tables only)
        alone = work / "alone.duckdb"
        shutil.copy(work / "warehouse.duckdb", alone)
        import duckdb

        with duckdb.connect(str(alone)) as connection:
            for schema in ("staging", "intermediate", "marts"):
                connection.execute(f"drop schema if exists {schema} cascade")
        dbt_env = {**env, "WAREHOUSE_PATH": str(alone)}
        dbt_command = [str(BIN / "dbt"), "build", "--quiet", "--target-path", str(work / "dbt_alone")]
        started = time.perf_counter()
        subprocess.run(
            [*dbt_command, "--project-dir", "dbt_project", "--profiles-dir", "dbt_project"],
            cwd=REPO,
            env=dbt_env,
            check=True,
            capture_output=True,
        )
        dbt_alone = time.perf_counter() - started

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


def merge_figures(load_seconds: float | None, insert_seconds: float, rows: int) -> None:
    report("plain DuckDB insert of the same rows", f"{insert_seconds:.2f} s", "", None)
    if load_seconds is None:
        report("dlt merge of the series", "n/a", "", None)
        return
    report("dlt merge (load step) of the series", f"{load_seconds:.2f} s", "", None)
    ratio = load_seconds / insert_seconds
    report("  merge / plain insert", f"x{ratio:.1f}", f"<= {MERGE_FACTOR:.0f}x", ratio <= MERGE_FACTOR)


# ------------------------------------------------------------------------------------ 3. memory, 10,000


def memory_child(base_url: str, work: str) -> None:
    """In this process: segments, series, models, copy and chart for a year; prints peak memory as JSON."""
    import dagster as dg
    from dagster_dbt import DbtCliResource

    import segment_pipeline.klaviyo.client as client_module

    # memory does not depend on pacing: lift it so a year of 700 report requests takes seconds, not 12 minutes
    client_module.min_interval = lambda *args, **kwargs: 0.0

    from segment_pipeline.defs.ingest.assets import segment_series_daily, segments
    from segment_pipeline.defs.publish.assets import analytics_copy, growth_chart
    from segment_pipeline.defs.resources import KlaviyoResource, WarehouseResource
    from segment_pipeline.defs.transform.assets import segment_growth_models
    from segment_pipeline.defs.transform.project import dbt_project

    root = Path(work)
    first, last = year_range()
    warehouse = WarehouseResource.from_env(
        warehouse_path=str(root / "warehouse.duckdb"),
        analytics_path=str(root / "analytics.duckdb"),
        state_dir=str(root / "state"),
        charts_dir=str(root / "charts"),
    )
    resources = {
        "klaviyo": KlaviyoResource.from_env(warehouse, base_url=base_url, report_rate_per_minute=100000),
        "warehouse": warehouse,
        "dbt": DbtCliResource(project_dir=dbt_project),
    }
    tags = {
        "dagster/asset_partition_range_start": first.isoformat(),
        "dagster/asset_partition_range_end": last.isoformat(),
    }
    # the steps one after another in this one process, as the job runs them; the peak after each says which
    # step raised it (ru_maxrss only grows)
    steps = {"segments": [segments], "series": [segment_series_daily], "models": [segment_growth_models]}
    steps |= {"analyst copy": [analytics_copy], "chart": [growth_chart]}
    figures = {"steps": {}}
    started = time.perf_counter()
    for name, assets in steps.items():
        step_started = time.perf_counter()
        result = dg.materialize(assets, resources=resources, tags=tags if name == "series" else {})
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
        base_url = stack.enter_context(simulator(segments, speed=100000))
        env = pipeline_env(work, base_url)
        env.pop("DAGSTER_HOME")
        result = subprocess.run(
            [sys.executable, __file__, "--memory-child", base_url, str(work)],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
        )
        lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
        if result.returncode != 0 or not lines:
            print(result.stdout[-3000:], result.stderr[-5000:], sep="\n")
            raise SystemExit("the memory run failed")
        figures = json.loads(lines[-1])
        load_seconds, _ = dlt_load_seconds(work / "state")
        insert_seconds, rows = plain_insert_seconds(work / "warehouse.duckdb", work)
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


def served_accounts(base_url: str) -> list[dict]:
    with urllib.request.urlopen(f"{base_url}/__simulator/accounts", timeout=10) as answer:
        return json.load(answer)["accounts"]


def accounts_backfill(work: Path, segments: int, speed: float, accounts: int, run: int) -> dict:
    """`segment-pipeline backfill --days 365` of the first `run` of `accounts` simulated accounts, on a fresh
    simulator and warehouse: wall time, each account's own time and report requests."""
    from klaviyo_simulator.accounts import derived_key
    from klaviyo_simulator.demo import key_variable, prepare_dagster_home
    from segment_pipeline.klaviyo.limits import REPORT_QUOTA_WINDOW_SECONDS, REPORTS_RATE_LIMIT, STEADY_WINDOW_SECONDS

    with simulator(segments, speed, "--accounts", str(accounts)) as base_url:
        served = served_accounts(base_url)
        prepare_dagster_home(work / "dagster_home")
        entries = "".join(
            f"  - name: {account['name']}\n    api_key_env: {key_variable(account['name'])}\n"
            f"    timezone: {account['timezone']}\n"
            # the simulator's windows run `speed` times faster: pace to match
            f"    report_rate_per_minute: {REPORTS_RATE_LIMIT.per_minute * speed:g}\n"
            for account in served
        )
        (work / "accounts.yaml").write_text(f"accounts:\n{entries}", encoding="utf-8")
        keys = {key_variable(account["name"]): derived_key(API_KEY, i) for i, account in enumerate(served, start=1)}
        env = pipeline_env(
            work,
            base_url,
            KLAVIYO_ACCOUNTS_FILE=str(work / "accounts.yaml"),
            KLAVIYO_STEADY_WINDOW_SECONDS=str(STEADY_WINDOW_SECONDS / speed),
            KLAVIYO_REPORT_BUDGET_WINDOW_SECONDS=str(REPORT_QUOTA_WINDOW_SECONDS / speed),
            **keys,
        )
        chosen = [argument for account in served[:run] for argument in ("--account", account["name"])]
        command = [str(BIN / "segment-pipeline"), "backfill", "--days", str(DAYS), "--parallel", str(run), *chosen]
        command += ["--log-dir", str(work / "logs")]
        started = time.perf_counter()
        result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - started
        if result.returncode != 0:
            print(result.stdout[-4000:], result.stderr[-3000:], sep="\n")
            raise SystemExit("the accounts backfill failed")
        after = {account["name"]: account for account in served_accounts(base_url)}
    # the backfill's line per account as it finishes: "<name> ok <seconds> s ..."
    own = {}
    for line in result.stdout.splitlines():
        parts = line.split()
        if len(parts) > 3 and parts[0] in after and parts[1] == "ok":
            own[parts[0]] = float(parts[2])
    return {
        "seconds": seconds,
        "own": own,
        "requests": {name: after[name]["report_requests_served"] for name in own},
        "steps": {name: step_seconds(work / "logs" / f"{name}.log") for name in own},
    }


# a Dagster event line: its time, then (after the job, the run id and maybe a pid) the step or event, the event
_EVENT_LINE = re.compile(r"^(\S+ \S+) \+0000 - dagster - \w+ - \S+ - \S+ - (?:\d+ - )?(\S+) - (\w+)")


def step_seconds(log: Path) -> dict[str, float]:
    """Seconds of one account's steps by the kind of work they do, from its Dagster log (to the second)."""
    starts: dict[str, float] = {}
    phases = dict.fromkeys(("segments", "series", "dbt (and its wait)", "checks, publish"), 0.0)
    for line in log.read_text(encoding="utf-8").splitlines():
        match = _EVENT_LINE.match(line)
        if match is None:
            continue
        moment = dt.datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S").timestamp()
        step, event = match.group(2), match.group(3)
        if event == "STEP_START":
            starts[step] = moment
        elif event in ("STEP_SUCCESS", "STEP_FAILURE") and step in starts:
            kind = "checks, publish"
            if step.endswith("segment_series_daily"):
                kind = "series"
            elif step.endswith("segments"):
                kind = "segments"
            elif step == "segment_growth_models":
                kind = "dbt (and its wait)"
            phases[kind] += moment - starts.pop(step)
    return phases


def bench_accounts(segments: int, speed: float, accounts: int = 4) -> None:
    print(
        f"backfill of {accounts} accounts against 1: a year of {segments:,} segments each, "
        f"{2 * speed:g} report requests a minute per account (time x{speed:g})",
        flush=True,
    )
    figures = {}
    for run in (1, accounts):
        with tempfile.TemporaryDirectory() as tmp:
            figures[run] = accounts_backfill(Path(tmp), segments, speed, accounts, run)
    print("  by step: segments / series / dbt (and its wait for the warehouse) / checks, publish / outside steps")
    for run, figure in figures.items():
        report(f"{run} account(s): wall time, command start to exit", f"{figure['seconds']:.1f} s", "", None)
        for name, seconds in figure["own"].items():
            report(
                f"  {name}: its process, report requests", f"{seconds:.1f} s {figure['requests'][name]:>4}", "", None
            )
            phases = dict(figure["steps"][name])
            # imports, loading the definitions, planning, exiting: the process's time outside its steps
            phases["outside steps"] = seconds - sum(phases.values())
            report(
                "    by step (s, as in the heading)", "/".join(f"{value:.0f}" for value in phases.values()), "", None
            )
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
    parser.add_argument("--only", choices=["validate", "end-to-end", "memory", "accounts"], help="run one benchmark")
    parser.add_argument("--keep", type=Path, help="keep the memory run's files in this directory")
    parser.add_argument("--memory-child", nargs=2, metavar=("BASE_URL", "WORK"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        memory_child(*args.memory_child)
        return
    os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")
    if args.only in (None, "validate"):
        bench_validate()
    if args.only in (None, "end-to-end"):
        bench_end_to_end(args.segments, args.speed)
    if args.only in (None, "memory"):
        bench_memory(args.memory_segments, args.keep)
    if args.only in (None, "accounts"):
        bench_accounts(args.accounts_segments, args.accounts_speed)


if __name__ == "__main__":
    main()
