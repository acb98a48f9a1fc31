"""`segment-pipeline backfill`: every account's range in its own days, one real `dagster job execute` process per
account in parallel against the simulator serving several accounts, one account's failure reported alone.
"""

from __future__ import annotations

import datetime as dt
import io
import os
import signal
import subprocess
import sys
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from klaviyo_simulator.demo import write_accounts_file
from segment_pipeline import backfill as backfill_module
from segment_pipeline.accounts import Accounts, AccountSettings
from segment_pipeline.backfill import (
    ACCOUNT_TAG,
    BACKFILL_TAG,
    BackfillRefused,
    account_today,
    plan_ranges,
)
from segment_pipeline.backfill import main as backfill_main
from segment_pipeline.defs.account_names import job_name
from segment_pipeline.klaviyo.limits import REPORT_QUOTA_WINDOW_SECONDS, SEGMENT_SERIES_PATH, STEADY_WINDOW_SECONDS
from segment_pipeline.warehouse import lock_holder_description
from tests.dagster_processes import REPO, DagsterProcess, pipeline_env
from tests.pipeline_helpers import API_KEY

SPEED = 60.0
DAYS = 8
# far east of UTC, west of it, and a half-hour offset
TIMEZONES = {"sydney": "Australia/Sydney", "pacific": "US/Pacific", "kolkata": "Asia/Kolkata"}
# the accounts the simulator serves to the real command: far east of UTC and west of it (two keep the test lean;
# the lead's tests of the Dagster layer run three)
SERVED = ("sydney", "pacific")


def account(name: str, timezone: str) -> AccountSettings:
    return AccountSettings(name=name, api_key_env=f"KEY_{name.upper()}", timezone=timezone)


ACCOUNTS = Accounts(tuple(account(name, timezone) for name, timezone in TIMEZONES.items()))
# 14:00 UTC on 10 March 2026 is already the 11th in Sydney (UTC+11), still the 10th in Kolkata (UTC+5:30) and
# in the Pacific (UTC-7 since the 8th)
NOW = dt.datetime(2026, 3, 10, 14, 0, tzinfo=dt.UTC)


def test_days_end_yesterday_in_each_accounts_own_timezone():
    ranges = {r.account: r for r in plan_ranges(ACCOUNTS, days=3, now=NOW)}
    assert (ranges["sydney"].first, ranges["sydney"].last) == (dt.date(2026, 3, 8), dt.date(2026, 3, 10))
    assert (ranges["pacific"].first, ranges["pacific"].last) == (dt.date(2026, 3, 7), dt.date(2026, 3, 9))
    assert (ranges["kolkata"].first, ranges["kolkata"].last) == (dt.date(2026, 3, 7), dt.date(2026, 3, 9))
    assert [r.job for r in ranges.values()] == [job_name(name) for name in TIMEZONES]
    # --account chooses, in the order given; --start/--end are the same local dates for every account
    chosen = plan_ranges(ACCOUNTS, ["kolkata", "sydney"], start=dt.date(2026, 1, 1), end=dt.date(2026, 1, 31), now=NOW)
    assert [(r.account, r.first, r.last, r.days) for r in chosen] == [
        ("kolkata", dt.date(2026, 1, 1), dt.date(2026, 1, 31), 31),
        ("sydney", dt.date(2026, 1, 1), dt.date(2026, 1, 31), 31),
    ]


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        # a year back from Sydney's 11 March is 11 March 2025; the Pacific's 10 March allows 10 March 2025
        ({"start": dt.date(2025, 3, 10), "end": dt.date(2025, 3, 20)}, "account 'sydney' (Australia/Sydney): report"),
        ({"days": 366}, "the earliest day allowed now is 2025-03-11"),
        ({"start": dt.date(2023, 5, 1), "end": dt.date(2023, 5, 2)}, "no segment report data before 2023-06-01"),
        ({"start": dt.date(2026, 3, 2), "end": dt.date(2026, 3, 1)}, "ends before it starts"),
        # the 10th is over in Sydney, not yet in the Pacific or Kolkata
        ({"start": dt.date(2026, 3, 1), "end": dt.date(2026, 3, 10)}, "account 'pacific' (US/Pacific): the range ends"),
        ({"days": 0}, "--days must be at least 1"),
        ({"days": 3, "start": dt.date(2026, 3, 1)}, "either --days or --start and --end"),
        ({"start": dt.date(2026, 3, 1)}, "say which days"),
        ({"names": ["sydney", "brand_x"], "days": 3}, "no account named 'brand_x'"),
    ],
)
def test_what_klaviyo_or_the_partitions_would_refuse_is_refused_for_every_account(kwargs, expected):
    with pytest.raises(BackfillRefused) as refused:
        plan_ranges(ACCOUNTS, now=NOW, **kwargs)
    assert expected in str(refused.value)


def test_messages_count_in_words_that_agree(tmp_path, monkeypatch):
    one_day = plan_ranges(ACCOUNTS, ["kolkata"], days=1, now=NOW)
    assert one_day[0].describe() == "2026-03-09 to 2026-03-09 (1 day, Asia/Kolkata)"
    with pytest.raises(BackfillRefused) as refused:
        plan_ranges(ACCOUNTS, ["pacific"], start=dt.date(2026, 3, 1), end=dt.date(2026, 3, 10), now=NOW)
    assert "the range ends on 2026-03-10, but today is 2026-03-10 there, so the last day" in str(refused.value)
    alone = Accounts((account("default", "UTC"),))
    with pytest.raises(BackfillRefused, match="the only account is 'default'$"):
        plan_ranges(alone, ["brand_a"], days=1, now=NOW)
    with pytest.raises(BackfillRefused, match="the accounts are 'sydney', 'pacific' and 'kolkata'$"):
        plan_ranges(ACCOUNTS, ["brand_a"], days=1, now=NOW)

    # the run itself replaced by its outcome: the lines around it
    def ran(ranges, *args, **kwargs):
        return [backfill_module.AccountOutcome(ranges[0], 0, 1.0, tmp_path / "kolkata.log")]

    monkeypatch.setattr(backfill_module, "run_ranges", ran)
    out = io.StringIO()
    backfill_module.backfill(one_day, ACCOUNTS, {}, tmp_path, out=out)
    assert "Backfilling 1 account, 1 at a time" in out.getvalue()
    assert "Backfill finished in " in out.getvalue() and " s: 1 of 1 account ok." in out.getvalue()


def test_without_the_single_account_key_nothing_starts(tmp_path, capsys):
    home = tmp_path / "dagster_home"
    home.mkdir()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("KLAVIYO_")},
        "DAGSTER_HOME": str(home),
        "PIPELINE_STATE_DIR": str(tmp_path / "state"),
        "KLAVIYO_API_KEY": "  ",  # set but blank counts as unset
    }
    assert backfill_main(["--days", "3"], env=env) == 2
    err = capsys.readouterr().err
    assert "nothing was started" in err and "KLAVIYO_API_KEY is not set" in err and "account 'default'" in err
    # refused before the instance was even touched: no run, no log
    assert not (tmp_path / "state").exists() and list(home.iterdir()) == []


def backfill_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "segment_pipeline.cli", "backfill", *args]


@pytest.fixture
def served_accounts(make_simulator, tmp_path):
    """The simulator serving two accounts, their accounts file, and the deployment's environment."""
    sim = make_simulator(
        accounts={
            name: {"api_key": f"sim-key-{name}", "seed": seed, "timezone": timezone, "speed": SPEED}
            for seed, (name, timezone) in enumerate(TIMEZONES.items(), start=1)
            if name in SERVED
        }
    )
    keys = write_accounts_file(tmp_path / "accounts.yaml", sim, SPEED)
    env = pipeline_env(
        sim,
        tmp_path,
        KLAVIYO_ACCOUNTS_FILE=str(tmp_path / "accounts.yaml"),
        KLAVIYO_STEADY_WINDOW_SECONDS=str(STEADY_WINDOW_SECONDS / SPEED),
        KLAVIYO_REPORT_BUDGET_WINDOW_SECONDS=str(REPORT_QUOTA_WINDOW_SECONDS / SPEED),
        **keys,
    )
    env.pop("KLAVIYO_API_KEY")
    return sim, env, keys


def test_a_window_klaviyo_would_refuse_starts_nothing(served_accounts, tmp_path):
    sim, env, _ = served_accounts
    finished = subprocess.run(
        backfill_command("--days", "400"), cwd=REPO, env=env, capture_output=True, text=True, timeout=60
    )
    assert finished.returncode == 2, finished.stdout + finished.stderr
    for name in SERVED:
        assert f"account {name!r}" in finished.stderr
    assert "Klaviyo reports reach back one year" in finished.stderr
    assert sim.count() == 0
    assert not (tmp_path / "state" / "backfill_logs").exists()


def warehouse_series(path: Path, account_id: str) -> set[tuple]:
    with duckdb.connect(str(path), read_only=True) as connection:
        return set(
            connection.execute(
                "select segment_id, date, total_members, members_added, members_removed, net_members_changed "
                "from klaviyo.segment_series_daily where account_id = ?",
                [account_id],
            ).fetchall()
        )


def truth_series(served, days: int) -> set[tuple]:
    """The simulator's own numbers for the account's last `days` days, ending yesterday in its timezone."""
    last = account_today(account(served.name, served.timezone)) - dt.timedelta(days=1)
    first = last - dt.timedelta(days=days - 1)
    return {
        (
            segment.id,
            row["date"],
            row["total_members"],
            row["members_added"],
            row["members_removed"],
            row["net_members_changed"],
        )
        for segment in served.account.segments
        for row in served.account.series(segment.id, first, last)
    }


def test_every_account_in_parallel_and_a_revoked_key_fails_only_its_account(served_accounts, tmp_path):
    sim, env, keys = served_accounts
    sim.revoke_key("pacific")
    finished = subprocess.run(
        backfill_command("--days", str(DAYS)), cwd=REPO, env=env, capture_output=True, text=True, timeout=400
    )
    out = finished.stdout
    assert finished.returncode == 1, out + finished.stderr
    assert "1 of 2 accounts ok, 1 failed: pacific" in out, out
    # the failure Dagster reported, naming the account, and where to read the rest
    failed_part = out.split("pacific failed (exit code 1):")[1]
    assert "HTTP 401" in failed_part and "account 'pacific'" in failed_part
    log = tmp_path / "state" / "backfill_logs"
    assert f"in full: {log}" in failed_part and "pacific.log" in failed_part

    # the other loaded exactly the simulator's numbers for its own last DAYS days
    warehouse = tmp_path / "warehouse.duckdb"
    sydney = sim.accounts["sydney"]
    expected = truth_series(sydney, DAYS)
    assert len(expected) == DAYS * len(sydney.account.segments)
    assert warehouse_series(warehouse, sydney.account_id) == expected
    assert warehouse_series(warehouse, sim.accounts["pacific"].account_id) == set()

    # each account is a run of its own job in the instance, tagged with the backfill and the account
    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        runs = instance.get_runs(dg.RunsFilter(tags={BACKFILL_TAG: next(log.iterdir()).name}))
        statuses = {run.tags[ACCOUNT_TAG]: (run.job_name, run.status) for run in runs}
    assert statuses == {
        "sydney": (job_name("sydney"), dg.DagsterRunStatus.SUCCESS),
        "pacific": (job_name("pacific"), dg.DagsterRunStatus.FAILURE),
    }
    logs = "".join(path.read_text() for path in log.rglob("*.log"))
    assert all(key not in out + finished.stderr + logs for key in keys.values())

    # with the key back, the failed account again, and the loaded one asked again in full with --refetch
    sim.restore_key("pacific")
    again = subprocess.run(
        backfill_command("--days", str(DAYS), "--account", "pacific", "--account", "sydney", "--refetch"),
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert again.returncode == 0, again.stdout + again.stderr
    assert "2 of 2 accounts ok." in again.stdout
    for name in SERVED:
        served = sim.accounts[name]
        assert warehouse_series(warehouse, served.account_id) == truth_series(served, DAYS), name
    # sydney's days were all loaded, the older ones final: only --refetch asks for the whole range again
    sydney_reports = [r for r in sim.requests if r.account == "sydney" and r.path == SEGMENT_SERIES_PATH]
    first_day = account_today(account("sydney", TIMEZONES["sydney"])) - dt.timedelta(days=DAYS)
    assert len(sydney_reports) == 2
    assert sydney_reports[-1].json["data"]["attributes"]["timeframe"]["start"].startswith(first_day.isoformat())


def descendants(root: int) -> set[int]:
    """Every process started, directly or not, by `root` (from /proc)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = set(), [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_sigterm_stops_every_run_of_the_backfill_and_leaves_nothing_running(make_simulator, tmp_path):
    sim = make_simulator(api_key=API_KEY, segment_count=3, speed=SPEED)
    # Klaviyo's real pace: after the first of the two reports (70 days), the run waits 30 s for the second
    env = pipeline_env(sim, tmp_path, KLAVIYO_REPORT_RATE_PER_MINUTE="2")
    backfill = DagsterProcess(["segment_pipeline.cli", "backfill", "--days", "70"], env)
    logs = tmp_path / "state" / "backfill_logs"
    started: set[int] = set()
    try:
        backfill.wait_until(
            lambda: any("report 1/2" in path.read_text() for path in logs.rglob("default.log")),
            what="the first report of the account's run",
        )
        started = descendants(backfill.process.pid)
        assert started, "the account's run is a process of its own"
        backfill.process.send_signal(signal.SIGTERM)
        returncode = backfill.finish(timeout=120)
    finally:
        # whatever the outcome, leave nothing running
        survivors = [pid for pid in started if alive(pid)]
        if backfill.process.poll() is None:
            backfill.kill_group()
        for pid in survivors:
            os.kill(pid, signal.SIGKILL)
    out = backfill.output
    assert not survivors, "processes of the backfill outlived it"
    assert returncode == 128 + signal.SIGTERM, out
    assert "Backfill stopped by SIGTERM" in out and "1 run stopped." in out and "default stopped: run " in out
    # and what it leaves is consistent: its run ended (not "started" forever), the locks are free
    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        (run,) = instance.get_runs(dg.RunsFilter(tags={BACKFILL_TAG: next(logs.iterdir()).name}))
    assert run.status == dg.DagsterRunStatus.FAILURE, run.status
    assert run.run_id in out
    assert lock_holder_description(tmp_path / "warehouse.duckdb") is None
    assert sim.count(path=SEGMENT_SERIES_PATH) == 1
