"""The warehouse as a DuckLake against a DuckDB file (`python benchmarks/run.py --only lake`).

The same backfill of 8 simulated accounts runs twice, each time on a fresh simulator and Dagster instance
(`dagster dev`: webserver and daemon; the project's instance settings, so only the warehouse differs): once
into a DuckDB file, once into a DuckLake whose catalog is in a local PostgreSQL (`devtools.postgres`, as
`make demo-scale` starts it) with its Parquet files in a folder. For each:

- wall time of `segment-pipeline backfill`, command start to exit;
- time waiting for the warehouse, added up over every step: the waits for its lock (each step that queued
  says "got the lock ... after waiting N s" on the file, "got the lake's writer lock after waiting N s" on the
  lake), and on the lake the back-off after a commit conflict with a writer outside the pipeline ("retrying
  in N s");
- peak memory of each run: the run's process and the processes it started (dbt), sampled from /proc every
  0.2 s (VmHWM, the kernel's high-water mark of resident memory);
- the code location's load time: `dagster definitions validate` with each warehouse setting (median of 3).

It measures and reports; it sets no target (the lake's worth is that every machine can write it, and its cost
is a PostgreSQL round trip per statement: both show here).
"""

from __future__ import annotations

import contextlib
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from segment_pipeline.devtools import processes
from segment_pipeline.devtools.demo import pipeline_environment
from segment_pipeline.devtools.postgres import LocalPostgres
from segment_pipeline.devtools.scale import ScaledDeployment, set_up_databases

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
API_KEY = "pk_benchmark_lake_0000000"
RUN_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
# what the pipeline logs when a step waited for the warehouse (warehouse.py, lake/errors.py)
WAITED = {
    "file": re.compile(r"got the lock .* after waiting ([\d.]+) s"),
    "lake": re.compile(r"(?:got the lake's writer lock after waiting|retrying in) ([\d.]+) s"),
}


class PeakMemory:
    """Samples /proc: the peak resident memory (VmHWM) of each Dagster run's process and of the dbt processes
    under it, in MB."""

    def __init__(self, interval: float = 0.2) -> None:
        self.runs: dict[str, float] = {}
        self.children: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, args=(interval,), daemon=True)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self, interval: float) -> None:
        while not self._stop.wait(interval):
            self.sample()

    def sample(self) -> None:
        found: dict[int, tuple[int, str, float]] = {}  # pid: (parent pid, command line, peak MB)
        for entry in Path("/proc").glob("[0-9]*"):
            try:
                command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                status = (entry / "status").read_text()
            except OSError:
                continue
            peak, parent = re.search(r"VmHWM:\s+(\d+) kB", status), re.search(r"PPid:\s+(\d+)", status)
            if peak and parent:
                found[int(entry.name)] = (int(parent[1]), command, int(peak[1]) / 1024)
        # a run's process is a multiprocessing child of the code server, its command line without the run id;
        # it starts `tail -F <instance>/storage/<run id>/compute_logs/...` to capture its output: that names it
        runs = {}
        for parent, command, _ in found.values():
            match = RUN_ID.search(command) if "compute_logs" in command else None
            if match and parent in found:
                runs[parent] = match[0]
                self.runs[match[0]] = max(self.runs.get(match[0], 0.0), found[parent][2])
        for pid, (parent, command, peak) in found.items():
            if "dbt" not in command:
                continue  # the run's log capture (tail, its watcher) is not the run's work
            for _ in range(8):  # up the tree to the run's process
                if parent in runs or parent not in found:
                    break
                parent = found[parent][0]
            if parent in runs and pid not in runs:
                run_id = runs[parent]
                self.children[run_id] = max(self.children.get(run_id, 0.0), peak)


@contextlib.contextmanager
def lake_variables(work: Path) -> Iterator[dict[str, str]]:
    """A local PostgreSQL with the lake's database (as `make demo-scale` makes it), stopped on the way out."""
    folder = work / "postgres"
    local = LocalPostgres(folder, log=lambda _: None)
    try:
        server = local.start()
        deployment = ScaledDeployment(work, server)
        set_up_databases(local, server, deployment.password_file)
        variables = deployment.variables()
        del variables["DAGSTER_POSTGRES_URL"]  # Dagster keeps the project's own instance: only the warehouse differs
        yield variables
    finally:
        local.stop()


def load_time(env: dict[str, str], runs: int = 3) -> float:
    """Median seconds of `dagster definitions validate` (the code location loaded and checked)."""
    from run import validate_times  # benchmarks/run.py, beside this script (it imports this module lazily)

    return statistics.median(validate_times(env, runs)[0])


def waited_seconds(dagster_home: Path, run_ids: list[str], pattern: re.Pattern) -> float:
    """The waits for the warehouse the runs' steps logged, added up."""
    import dagster as dg

    total = 0.0
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        for run_id in run_ids:
            for entry in instance.all_logs(run_id):
                total += sum(float(seconds) for seconds in pattern.findall(entry.user_message or ""))
    return total


def backfill(kind: str, work: Path, accounts: int, segments: int, days: int, speed: float) -> dict:
    """One backfill of every account on a fresh simulator and instance, into a file or a lake."""
    from segment_pipeline.backfill import BACKFILL_TAG

    with contextlib.ExitStack() as stack:
        extra = stack.enter_context(lake_variables(work)) if kind == "lake" else {}
        simulator = stack.enter_context(
            processes.simulator(work, api_key=API_KEY, accounts=accounts, segments=segments, speed=speed)
        )
        env = pipeline_environment(simulator, work, speed)
        env.update(
            RUNTIME__DLTHUB_TELEMETRY="false", DBT_SEND_ANONYMOUS_USAGE_STATS="false", PATH=f"{BIN}:{env['PATH']}"
        )
        env.update(extra)
        figures = {"load": load_time(env)}
        api = stack.enter_context(processes.dagster(env, work / "dagster.log"))
        command = [str(BIN / "segment-pipeline"), "backfill", "--days", str(days), "--dagster-url", api.url]
        with PeakMemory() as memory:
            started = time.perf_counter()
            result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
            figures["seconds"] = time.perf_counter() - started
        if result.returncode != 0:
            print(result.stdout[-4000:], result.stderr[-3000:], sep="\n")
            raise SystemExit(f"the {kind} backfill failed; Dagster's log: {work / 'dagster.log'}")
        run_ids = [timing.run.run_id for timing in api.run_timings() if BACKFILL_TAG in timing.run.tags]
    figures["waited"] = waited_seconds(Path(env["DAGSTER_HOME"]), run_ids, WAITED[kind])
    figures["runs"] = len(run_ids)
    figures["run_mb"] = [memory.runs[r] for r in run_ids if r in memory.runs]
    figures["child_mb"] = [memory.children[r] for r in run_ids if r in memory.children]
    return figures


def bench_lake(report, accounts: int = 8, segments: int = 20, days: int = 30, speed: float = 60) -> None:
    """Print the figures of both warehouses, with `report(label, value, target, ok)` of benchmarks/run.py."""
    print(
        f"backfill of {accounts} accounts ({segments} segments, {days} days each) into a DuckDB file and into a "
        "DuckLake (PostgreSQL catalog, Parquet files in a folder)",
        flush=True,
    )
    for kind in ("file", "lake"):
        work = Path(tempfile.mkdtemp(prefix=f"segment-pipeline-bench-{kind}-"))
        work.chmod(0o755)  # the `postgres` account runs the lake's server when this runs as root
        try:
            figures = backfill(kind, work, accounts, segments, days, speed)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        print(f"  {kind}:")
        report("  code location load (validate, median)", f"{figures['load']:.1f} s", "", None)
        report(f"  wall time, {figures['runs']} runs", f"{figures['seconds']:.1f} s", "", None)
        report("  time waiting for the warehouse", f"{figures['waited']:.1f} s", "", None)
        if figures["run_mb"]:
            worst = max(figures["run_mb"])
            middle = statistics.median(figures["run_mb"])
            report("  peak memory per run (median / max)", f"{middle:.0f} / {worst:.0f} MB", "", None)
        if figures["child_mb"]:
            report("  its dbt process (max)", f"{max(figures['child_mb']):.0f} MB", "", None)


def main() -> None:
    import argparse

    from run import report  # benchmarks/run.py, beside this file (run as a script, its folder is on the path)

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=8)
    parser.add_argument("--segments", type=int, default=20, help="segments of each account")
    parser.add_argument("--days", type=int, default=30, help="days of the backfill")
    args = parser.parse_args()
    bench_lake(report, args.accounts, args.segments, args.days)


if __name__ == "__main__":
    main()
