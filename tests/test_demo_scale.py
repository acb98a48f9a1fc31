"""`segment-pipeline demo-scale`, the command behind `make demo-scale`, for real once: its own PostgreSQL (Debian's
package, started under the data folder), Dagster's storage in it and the run queue of deploy/dagster.yaml, four
simulated accounts' runs started by the Dagster daemon, loading a DuckLake whose catalog is in the same server.

Then, as a user would: PostgreSQL started again with the command connection.env names, `dagster` commands with
connection.env's variables find the demo's runs in PostgreSQL, and the analyst line the demo printed reads the
lake, every row equal to the simulator's truth, once.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import io
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from zoneinfo import ZoneInfo

import psycopg2
import pytest

from klaviyo_simulator import command
from klaviyo_simulator.account import SimulatedAccount
from klaviyo_simulator.accounts import numbered_configs
from segment_pipeline.accounts import read_accounts_file
from segment_pipeline.backfill import account_today
from segment_pipeline.devtools import demo
from segment_pipeline.devtools.postgres import LocalPostgres

REPO = Path(__file__).resolve().parents[1]
# small: four accounts are what the demo is about; segments and days only make it slower
SEGMENTS, DAYS, ACCOUNTS = 3, 3, 4
STATS = ("total_members", "members_added", "members_removed", "net_members_changed")
RUN_LINE = re.compile(r"^  run (?P<id>[0-9a-f-]{36}) (?P<status>\w+): ", re.MULTILINE)

pytestmark = pytest.mark.timeout(1500)


@pytest.fixture(scope="module")
def scale_run():
    # a folder the `postgres` account can reach when the tests run as root (pytest's own is closed to others)
    folder = Path(tempfile.mkdtemp(prefix="segment-pipeline-scale-"))
    folder.chmod(0o755)
    data = folder / "scale"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KLAVIYO_", "PG", "DAGSTER_", "WAREHOUSE_"))}
    started = dt.datetime.now(dt.UTC)
    command_line = [sys.executable, "-m", "segment_pipeline.cli", "demo-scale", "--data-dir", str(data)]
    command_line += ["--days", str(DAYS), "--segments", str(SEGMENTS)]
    local = LocalPostgres(data / "postgres", log=lambda _: None)
    try:
        result = subprocess.run(command_line, cwd=REPO, env=env, capture_output=True, text=True, timeout=1200)
        assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
        stopped = local.server() is None
        # as connection.env says: the server again, on the same data and port
        restart = result.stdout.split("start it again with: ")[1].splitlines()[0]
        assert subprocess.run(restart, shell=True, cwd=REPO, capture_output=True).returncode == 0
        yield data, result.stdout, started, stopped
    finally:
        local.stop()
        shutil.rmtree(folder, ignore_errors=True)


def sourced(data: Path, line: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    """`line` in bash with connection.env's variables exported, as the file's header says to."""
    script = f"set -a; . {data / 'connection.env'}; set +a; {line}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "DAGSTER_", "WAREHOUSE_"))}
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
    return subprocess.run(["bash", "-c", script], input=stdin, cwd=REPO, env=env, capture_output=True, text=True)


def connection_variables(data: Path) -> dict[str, str]:
    result = sourced(data, "env -0")
    return dict(item.split("=", 1) for item in result.stdout.split("\0") if "=" in item)


def test_the_runs_went_through_the_queue_into_postgres_and_dagster_finds_them(scale_run):
    data, out, _, stopped = scale_run
    assert stopped, "the demo stops the PostgreSQL server it started"
    printed = {match["id"]: match["status"] for match in RUN_LINE.finditer(out)}
    # the listing, one series run per account, the shared build
    assert len(printed) == ACCOUNTS + 2 and set(printed.values()) == {"success"}, out

    info = sourced(data, "dagster instance info")
    assert info.returncode == 0, info.stderr[-3000:]
    for line in (
        "run_storage: PostgresRunStorage",
        "event_log_storage: PostgresEventLogStorage",
        "key: segment_pipeline/account",
    ):
        assert line in info.stdout, info.stdout
    listed = sourced(data, "dagster run list --limit 100")
    assert listed.returncode == 0, listed.stderr[-3000:]
    assert set(re.findall(r"Run: ([0-9a-f-]{36})", listed.stdout)) == set(printed)

    # and they are rows of PostgreSQL, each queued before the daemon started it (the queued run coordinator)
    variables = connection_variables(data)
    url = re.fullmatch(r"postgresql\+psycopg2://(\w+)@([\d.]+):(\d+)/(\w+)", variables["DAGSTER_POSTGRES_URL"])
    assert url, variables["DAGSTER_POSTGRES_URL"]
    user, host, port, dbname = url.groups()
    with (
        psycopg2.connect(
            host=host, port=port, user=user, dbname=dbname, passfile=variables["PGPASSFILE"]
        ) as connection,
        connection.cursor() as cursor,
    ):
        cursor.execute("select run_id, status from runs")
        assert dict(cursor.fetchall()) == {run_id: "SUCCESS" for run_id in printed}
        cursor.execute("select distinct run_id from event_logs where dagster_event_type = 'PIPELINE_ENQUEUED'")
        assert {run_id for (run_id,) in cursor.fetchall()} == set(printed)


def simulated_accounts(at: dt.datetime | None = None) -> dict[str, SimulatedAccount]:
    """The demo's accounts, made again from the options the demo serves them with: the truth to check against.

    A simulated account anchors its segments' histories on its local today when it is made: `at` makes them as
    the demo's simulator made them at that moment (the run may have crossed an account's local midnight since).
    """
    args = command.build_parser().parse_args(["serve", f"--segments={SEGMENTS}", "--seed=42", "--speed=60"])
    configs = numbered_configs(command.config_of(args, demo.DEMO_API_KEY), ACCOUNTS)
    if at is not None:
        configs = {
            name: dataclasses.replace(config, today=at.astimezone(ZoneInfo(config.timezone)).date())
            for name, config in configs.items()
        }
    return {name: SimulatedAccount(config) for name, config in configs.items()}


def analyst_query(data: Path, out: str, sql: str) -> subprocess.CompletedProcess:
    """The analyst line exactly as the demo printed it, with `sql` typed into it."""
    line = out.split("Query the lake as an analyst (read-only), while its PostgreSQL runs:\n")[1].splitlines()[0]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    return subprocess.run(
        ["bash", "-c", line.strip()],
        input=f".mode csv\n.headers off\n{sql};\n",
        env=env,
        capture_output=True,
        text=True,
    )


def test_the_analyst_line_reads_every_row_of_every_account_exactly_once(scale_run):
    data, out, started, _ = scale_run
    result = analyst_query(
        data, out, f"select account_id, segment_id, date, {', '.join(STATS)} from klaviyo.segment_series_daily"
    )
    assert result.returncode == 0 and not result.stderr, result.stderr[-3000:]
    rows = [(r[0], r[1], dt.date.fromisoformat(r[2]), *map(int, r[3:])) for r in csv.reader(io.StringIO(result.stdout))]
    assert len(rows) == len(set(r[:3] for r in rows)), "a row is in the lake twice"

    settings = read_accounts_file(
        data / "accounts.yaml", {f"KLAVIYO_API_KEY_ACCOUNT_{i}": f"k{i}" for i in range(1, 5)}
    )
    # the truth as the demo's simulator made it when the run started, or (a local midnight passed before it
    # started serving) as it is made now
    truths = [simulated_accounts(started), simulated_accounts()]
    truth = truths[0]
    assert {r[0] for r in rows} == {account.account_id for account in truth.values()}
    for name, account in truth.items():
        mine = {(r[1], r[2]): tuple(r[3:]) for r in rows if r[0] == account.account_id}
        last = max(day for _, day in mine)
        yesterdays = {account_today(settings[name], moment) - dt.timedelta(days=1) for moment in (started, None)}
        assert last in yesterdays, (name, last, yesterdays)
        first = last - dt.timedelta(days=DAYS - 1)
        candidates = [
            {
                (segment.id, row["date"]): tuple(row[k] for k in STATS)
                for segment in made[name].segments
                for row in made[name].series(segment.id, first, last)
            }
            for made in truths
        ]
        expected = candidates[0] if mine == candidates[0] else candidates[1]
        assert len(expected) == DAYS * SEGMENTS
        assert mine == expected, name
        # the demo's own summary, read through the same line, says the same
        summary = re.search(rf"^  {name} +\S+ +(\d+) +(\d+)  {first} to {last} ", out, re.MULTILINE)
        assert summary and summary.groups() == (str(SEGMENTS), str(len(expected))), out

    # the models were built in the lake too, from the same rows
    marts = analyst_query(
        data, out, "select count(*), count(distinct (account_id, segment_id, date)) from marts.segment_growth_daily"
    )
    assert marts.stdout.strip() == f"{len(rows)},{len(rows)}", marts.stdout + marts.stderr
    # and the analysts' role cannot write
    write = analyst_query(data, out, "create table klaviyo.scribble as select 1 as x")
    assert "read-only" in (write.stdout + write.stderr).lower(), write.stdout + write.stderr


def test_passwords_stay_in_the_password_file(scale_run):
    data, out, _, _ = scale_run
    password_file = data / "pgpass"
    assert password_file.stat().st_mode & 0o777 == 0o600
    passwords = [line.rsplit(":", 1)[1] for line in password_file.read_text().splitlines()]
    assert len(passwords) == 3
    written = (data / "connection.env").read_text() + out
    assert not any(password in written for password in passwords)
    variables = connection_variables(data)
    assert variables["WAREHOUSE_PATH"].startswith("ducklake:postgres:dbname=lake ")
    assert Path(variables["WAREHOUSE_DATA_PATH"]) == data / "lake_data"
    assert Path(variables["DAGSTER_HOME"]) == data / "dagster_home"
    assert (data / "dagster_home" / "dagster.yaml").read_bytes() == (REPO / "deploy" / "dagster.yaml").read_bytes()
