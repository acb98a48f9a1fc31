"""`segment-pipeline backfill`: every account's range in its own days, submitted as ONE Dagster backfill through
a real webserver and daemon (`dagster dev`) against the simulator serving two accounts; one account's failure
reported alone; a SIGTERM cancels the backfill and leaves no run behind.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import dagster as dg
import duckdb
import pytest
import yaml

from klaviyo_simulator import KlaviyoSimulator, SimulatorConfig
from segment_pipeline.accounts import Accounts, AccountSettings
from segment_pipeline.backfill import BACKFILL_TAG, BackfillRefused, account_today, plan_ranges
from segment_pipeline.dagster_api import DagsterApi
from segment_pipeline.defs.account_names import account_of
from segment_pipeline.devtools.processes import WORKSPACE, free_port
from segment_pipeline.klaviyo.limits import REPORT_QUOTA_WINDOW_SECONDS, SEGMENT_SERIES_PATH, STEADY_WINDOW_SECONDS
from segment_pipeline.warehouse import lock_holder_description
from tests.dagster_processes import REPO, DagsterProcess, pipeline_env
from tests.simulator_fixtures import DEFAULT_SIMULATOR_CONFIG, contract_problems

SPEED = 60.0
DAYS = 8
# far east of UTC, west of it, and a half-hour offset
TIMEZONES = {"sydney": "Australia/Sydney", "pacific": "US/Pacific", "kolkata": "Asia/Kolkata"}
# the accounts the simulator serves to the real command: far east of UTC and west of it
SERVED = ("sydney", "pacific")
ENDED = {dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED}

pytestmark = pytest.mark.timeout(900)


def account(name: str, timezone: str) -> AccountSettings:
    return AccountSettings(name=name, api_key_env=f"KEY_{name.upper()}", timezone=timezone)


ACCOUNTS = Accounts(tuple(account(name, timezone) for name, timezone in TIMEZONES.items()))
# 14:00 UTC on 10 March 2026 is already the 11th in Sydney (UTC+11), still the 10th in Kolkata (UTC+5:30) and
# in the Pacific (UTC-7 since the 8th)
NOW = dt.datetime(2026, 3, 10, 14, 0, tzinfo=dt.UTC)


# ------------------------------------------------------------------------------------ the plan, refused or not


def test_days_end_yesterday_in_each_accounts_own_timezone():
    ranges = {r.account: r for r in plan_ranges(ACCOUNTS, days=3, now=NOW)}
    assert (ranges["sydney"].first, ranges["sydney"].last) == (dt.date(2026, 3, 8), dt.date(2026, 3, 10))
    assert (ranges["pacific"].first, ranges["pacific"].last) == (dt.date(2026, 3, 7), dt.date(2026, 3, 9))
    assert (ranges["kolkata"].first, ranges["kolkata"].last) == (dt.date(2026, 3, 7), dt.date(2026, 3, 9))
    assert list(ranges) == list(TIMEZONES)
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


def test_messages_count_in_words_that_agree():
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


def backfill(env: dict[str, str], *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """`segment-pipeline backfill ...` run to its end."""
    command = [sys.executable, "-m", "segment_pipeline.cli", "backfill", *args]
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def refused(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    """The command against a webserver address nobody listens on: a refusal must come before any call to it."""
    nowhere = f"http://127.0.0.1:{free_port()}"
    finished = backfill(env, *args, "--dagster-url", nowhere, timeout=120)
    assert finished.returncode == 2, finished.stdout + finished.stderr
    assert "nothing was submitted" in finished.stderr and "cannot be reached" not in finished.stderr
    return finished


def test_without_the_single_account_key_nothing_is_submitted(tmp_path):
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("KLAVIYO_")},
        "PIPELINE_STATE_DIR": str(tmp_path / "state"),
        "KLAVIYO_API_KEY": "  ",  # set but blank counts as unset
    }
    err = refused(env, "--days", "3").stderr
    assert "account 'default': KLAVIYO_API_KEY is not set" in err
    assert not (tmp_path / "state").exists()


# --------------------------------------------------------------------- through a real webserver and daemon


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    """The simulator serving two accounts, their accounts file, and `dagster dev` (webserver and daemon) on them."""
    work = tmp_path_factory.mktemp("backfill")
    configs = {
        name: SimulatorConfig(
            **{**DEFAULT_SIMULATOR_CONFIG, "api_key": f"sim-key-{name}", "seed": seed, "timezone": tz, "speed": SPEED}
        )
        for seed, (name, tz) in enumerate(TIMEZONES.items(), start=1)
        if name in SERVED
    }
    sim = KlaviyoSimulator(accounts=configs).start()
    keys = {f"KLAVIYO_API_KEY_{name.upper()}": config.api_key for name, config in configs.items()}
    entries = [
        {
            "name": n,
            "api_key_env": f"KLAVIYO_API_KEY_{n.upper()}",
            "timezone": c.timezone,
            "report_rate_per_minute": 120,
        }
        for n, c in configs.items()
    ]
    (work / "accounts.yaml").write_text(yaml.safe_dump({"accounts": entries}))
    env = pipeline_env(
        sim,
        work,
        KLAVIYO_ACCOUNTS_FILE=str(work / "accounts.yaml"),
        KLAVIYO_STEADY_WINDOW_SECONDS=str(STEADY_WINDOW_SECONDS / SPEED),
        KLAVIYO_REPORT_BUDGET_WINDOW_SECONDS=str(REPORT_QUOTA_WINDOW_SECONDS / SPEED),
        **keys,
    )
    env.pop("KLAVIYO_API_KEY")
    url = f"http://127.0.0.1:{free_port()}"
    dagster = DagsterProcess(
        ["dagster", "dev", "-w", str(WORKSPACE), "-h", "127.0.0.1", "-p", url.rsplit(":")[-1]], env
    )
    try:
        with DagsterApi(url) as api:
            api.wait_until_loaded(timeout=240)
        yield sim, env, url, keys, dagster
    finally:
        # SIGTERM lets dagster dev stop its webserver, daemon and code servers; then nothing of it may remain
        if dagster.process.poll() is None:
            os.killpg(dagster.process.pid, signal.SIGTERM)
            try:
                dagster.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                pass
        dagster.kill_group()
        sim.stop()
    problems = contract_problems(sim)
    assert problems == [], problems[:10]


def warehouse_series(path: Path, account_id: str) -> set[tuple]:
    with duckdb.connect(str(path), read_only=True) as connection:
        return set(
            connection.execute(
                "select segment_id, date, total_members, members_added, members_removed, net_members_changed "
                "from klaviyo.segment_series_daily where account_id = ?",
                [account_id],
            ).fetchall()
        )


def printed_range(out: str, name: str) -> tuple[dt.date, dt.date]:
    """The account's range as the command printed it (its days as of when it ran, even across a midnight)."""
    found = re.search(rf"^  {name} +(\d{{4}}-\d\d-\d\d) to (\d{{4}}-\d\d-\d\d) \({DAYS} days, ", out, re.M)
    assert found, out
    first, last = dt.date.fromisoformat(found[1]), dt.date.fromisoformat(found[2])
    # DAYS days ending yesterday in the account's timezone, yesterday as of some moment of the run
    assert (last - first).days + 1 == DAYS and last < account_today(account(name, TIMEZONES[name]))
    return first, last


def truth_series(served, first: dt.date, last: dt.date) -> set[tuple]:
    """The simulator's own numbers for the account's days `first` to `last`."""
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


def backfill_runs(env: dict[str, str], backfill_id: str) -> list[dg.DagsterRun]:
    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        return list(instance.get_runs(dg.RunsFilter(tags={"dagster/backfill": backfill_id})))


def submitted_id(out: str) -> str:
    found = re.search(r"^backfill (\S+) submitted: ", out, re.MULTILINE)
    assert found, out
    return found[1]


def test_a_window_klaviyo_would_refuse_submits_nothing(deployment):
    sim, env, url, _, _ = deployment
    err = refused(env, "--days", "400").stderr
    for name in SERVED:
        assert f"account {name!r}" in err
    assert "Klaviyo reports reach back one year" in err
    assert sim.count() == 0


def test_one_backfill_of_every_account_and_a_revoked_key_fails_only_its_account(deployment):
    sim, env, url, keys, dagster = deployment
    work = Path(env["WAREHOUSE_PATH"]).parent
    sim.revoke_key("pacific")
    finished = backfill(env, "--days", str(DAYS), "--dagster-url", url)
    out = finished.stdout
    assert finished.returncode == 1, out + finished.stderr
    backfill_id = submitted_id(out)
    runs = backfill_runs(env, backfill_id)
    failed = {run.run_id: run for run in runs if run.status != dg.DagsterRunStatus.SUCCESS}
    # pacific's segments step was refused; the run that failed holds its step (the accounts' segments may share a
    # run: each account's verdict is read from its own assets), and the summary links it
    assert failed and all(
        "pacific" in {account_of(key.path) for key in run.asset_selection or ()} for run in failed.values()
    ), runs
    linked = re.search(rf"^  pacific .* FAILED \(run (\S+): {url}/runs/(\S+)\)$", out, re.M)
    assert linked and linked[1] == linked[2] and linked[1] in failed, out
    assert re.search(r"^  sydney .*\(8 days, Australia/Sydney\) +ok$", out, re.M), out
    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        failure = next(
            event.dagster_event.step_failure_data.error.message
            for event in instance.all_logs(linked[1])
            if event.dagster_event and event.dagster_event.is_step_failure
        )
    assert "HTTP 401" in failure and "account 'pacific'" in failure, failure
    # every run of it carries the command's tag (the UI finds them by it) and Dagster's own backfill tag
    assert all(BACKFILL_TAG in run.tags for run in runs)

    # the other loaded exactly the simulator's numbers for its own last DAYS days
    warehouse = work / "warehouse.duckdb"
    sydney = sim.accounts["sydney"]
    expected = truth_series(sydney, *printed_range(out, "sydney"))
    assert len(expected) == DAYS * len(sydney.account.segments)
    assert warehouse_series(warehouse, sydney.account_id) == expected
    assert warehouse_series(warehouse, sim.accounts["pacific"].account_id) == set()
    assert all(key not in out + finished.stderr + "".join(dagster.lines) for key in keys.values())

    # with the key back, the failed account again, and the loaded one asked again in full with --refetch
    sim.restore_key("pacific")
    again = backfill(
        env, "--days", str(DAYS), "--account", "pacific", "--account", "sydney", "--refetch", "--dagster-url", url
    )
    assert again.returncode == 0, again.stdout + again.stderr
    assert all(run.status == dg.DagsterRunStatus.SUCCESS for run in backfill_runs(env, submitted_id(again.stdout)))
    for name in SERVED:
        served = sim.accounts[name]
        first, last = printed_range(again.stdout, name)
        stored = {row for row in warehouse_series(warehouse, served.account_id) if first <= row[1] <= last}
        assert stored == truth_series(served, first, last), name
    # sydney's days were all loaded, the older ones final: only --refetch asks for the whole range again
    sydney_reports = [r for r in sim.requests if r.account == "sydney" and r.path == SEGMENT_SERIES_PATH]
    first_day, _ = printed_range(again.stdout, "sydney")
    assert len(sydney_reports) == 2
    assert sydney_reports[-1].json["data"]["attributes"]["timeframe"]["start"].startswith(first_day.isoformat())
    # the shared models were built once, after both accounts, from the backfill itself
    with duckdb.connect(str(work / "analytics.duckdb"), read_only=True) as connection:
        accounts = connection.execute("select count(distinct account_id) from marts.segment_growth_daily").fetchone()
    assert accounts == (2,)


def run_workers(root: int) -> set[int]:
    """The processes the code server spawned for runs and their steps (multiprocessing's `spawn_main`) among
    everything `root` started (a run's process is spawned by the code server that launched it)."""
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
            todo.append(child)
            try:
                command = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                continue
            if b"spawn_main" in command:
                found.add(child)
    return found


def test_sigterm_cancels_the_backfill_and_leaves_no_run_going(deployment):
    sim, env, url, _, dagster = deployment
    work = Path(env["WAREHOUSE_PATH"]).parent
    sim.reset_log()
    # the series request is held at the simulator until released: the run is mid-request when the signal comes
    release = threading.Event()
    idle = run_workers(dagster.process.pid)  # none, unless another run is still winding down
    sim.faults.add(path=SEGMENT_SERIES_PATH, mutate=lambda body: (release.wait(120), body)[1])
    backfill = DagsterProcess(
        ["segment_pipeline.cli", "backfill", "--days", "3", "--account", "sydney", "--refetch", "--dagster-url", url],
        env,
    )
    try:
        backfill.wait_until(lambda: sim.count(path=SEGMENT_SERIES_PATH) >= 1, timeout=300, what="the series request")
        started = run_workers(dagster.process.pid) - idle
        assert started, "the series run is a process of its own"
        backfill.process.send_signal(signal.SIGTERM)
        returncode = backfill.finish(timeout=240)
    finally:
        release.set()
        if backfill.process.poll() is None:
            backfill.kill_group()
    out = backfill.output
    assert returncode == 128 + signal.SIGTERM, out
    backfill_id = submitted_id(out)
    assert f"SIGTERM: canceling backfill {backfill_id}" in out
    assert f"backfill {backfill_id} canceled (stopped by SIGTERM):" in out
    # nothing of it goes on: every run ended (the series run canceled mid-request), no run process is left
    runs = backfill_runs(env, backfill_id)
    assert runs and all(run.status in ENDED for run in runs), [(r.run_id, r.status) for r in runs]
    assert dg.DagsterRunStatus.CANCELED in {run.status for run in runs}
    # (a canceled run's process exits right after it recorded its end: give it a moment, not a minute)
    deadline = time.monotonic() + 30
    while started & run_workers(dagster.process.pid) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert started & run_workers(dagster.process.pid) == set(), "processes of the backfill's runs outlived it"
    # no run of the backfill holds the warehouse lock (the shared build that automation starts after the
    # segments' load may hold it meanwhile: that run is not the backfill's)
    holder = lock_holder_description(work / "warehouse.duckdb") or ""
    assert not any(run.run_id in holder for run in runs), holder
    assert sim.count(path=SEGMENT_SERIES_PATH) == 1
