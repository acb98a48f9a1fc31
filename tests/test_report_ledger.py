"""The report ledger against the simulator over real HTTP: per account, atomic, fail-closed, honest refusals."""

import datetime as dt
import json
import logging
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from segment_pipeline.klaviyo import (
    KLAVIYO_QUOTA,
    PIPELINE_LIMIT,
    DayWindow,
    KlaviyoClient,
    KlaviyoQuotaExhausted,
    KlaviyoSettings,
    ReportBudget,
    ReportBudgetError,
    ReportLedgerError,
)
from segment_pipeline.klaviyo.limits import ACCOUNTS_PATH, SEGMENT_SERIES_PATH
from segment_pipeline.klaviyo.settings import checked_api_key

KEY = "pk_ledger_test_key"
FAST = 60.0


@pytest.fixture
def sim(make_simulator):
    return make_simulator(api_key=KEY, segment_count=3, speed=FAST)


def make_client(sim, ledger_dir, **overrides) -> KlaviyoClient:
    values = dict(
        api_key=KEY,
        base_url=sim.base_url,
        report_rate_per_minute=2 * FAST,
        backoff_base_seconds=0.05,
        timeout_seconds=5.0,
        ledger_dir=str(ledger_dir),
    )
    values.update(overrides)
    values["api_key"] = checked_api_key(values["api_key"])
    return KlaviyoClient(KlaviyoSettings(**values))


def one_report(client, sim):
    day = sim.account.today() - dt.timedelta(days=1)
    return client.query_segment_series((sim.account.segments[0].id,), DayWindow(day, day), sim.account.timezone)


def ledger_file(directory, sim):
    return directory / f"{sim.account.account_id}.json"


def test_a_report_before_the_account_is_known_asks_for_the_account_first(sim, tmp_path):
    with make_client(sim, tmp_path) as client:
        one_report(client, sim)
    paths = [r.path for r in sim.requests]
    assert paths == [ACCOUNTS_PATH, SEGMENT_SERIES_PATH]
    ledger = json.loads(ledger_file(tmp_path, sim).read_text())
    assert ledger["account_id"] == sim.account.account_id
    assert len(ledger["sent"]) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{sim.account.account_id}.{ext}" for ext in ("json", "lock")]


def test_two_accounts_in_one_state_dir_share_neither_counts_nor_blocks(make_simulator, tmp_path):
    first = make_simulator(api_key=KEY, segment_count=3, speed=FAST, seed=7)
    second = make_simulator(api_key=KEY, segment_count=3, speed=FAST, seed=8)
    assert first.account.account_id != second.account.account_id
    first.exhaust_report_quota()
    with make_client(first, tmp_path) as client:
        client.get_account()
        with pytest.raises(KlaviyoQuotaExhausted) as caught:
            one_report(client, first)
    assert caught.value.kind == KLAVIYO_QUOTA and caught.value.account_id == first.account.account_id
    with make_client(second, tmp_path, report_daily_limit=5) as client:
        client.get_account()
        assert client.budget.remaining() == 5  # neither the first account's count nor its block
        one_report(client, second)
        one_report(client, second)
        assert client.budget.remaining() == 3
    with make_client(first, tmp_path, report_daily_limit=5) as client:
        client.get_account()
        assert client.budget.remaining() == 0  # still blocked, by its own 429
    first_ledger = json.loads(ledger_file(tmp_path, first).read_text())
    second_ledger = json.loads(ledger_file(tmp_path, second).read_text())
    assert len(first_ledger["sent"]) == 1 and first_ledger["blocked_until"] is not None
    assert len(second_ledger["sent"]) == 2 and second_ledger["blocked_until"] is None


@pytest.mark.parametrize(
    "content, problem",
    [
        pytest.param('{"account_id": "x", "sent": [1700000000.0, 17', "is damaged: it is not JSON", id="truncated"),
        pytest.param("", "is damaged: it is not JSON", id="empty"),
        pytest.param("[1, 2, 3]", "holds a JSON list, not an object", id="a list"),
        pytest.param('{"sent": []}', "has no 'account_id'", id="missing keys"),
        pytest.param(
            '{"account_id": null, "sent": "many", "last_done": null, "blocked_until": null, "blocked_at": null}',
            "'sent' holds 'many'",
            id="sent is text",
        ),
        pytest.param(
            '{"account_id": null, "sent": [1, "x"], "last_done": null, "blocked_until": null, "blocked_at": null}',
            "'sent' must hold only times",
            id="a time that is text",
        ),
        pytest.param(
            '{"account_id": null, "sent": [], "last_done": null, "blocked_until": true, "blocked_at": null}',
            "'blocked_until' holds True",
            id="boolean block",
        ),
        pytest.param(
            '{"account_id": "zzz999", "sent": [], "last_done": null, "blocked_until": null, "blocked_at": null}',
            "belongs to account 'zzz999'",
            id="another account's ledger",
        ),
    ],
)
def test_a_damaged_or_wrong_shaped_ledger_fails_closed_and_is_left_alone(sim, tmp_path, content, problem):
    path = ledger_file(tmp_path, sim)
    path.write_text(content)
    with make_client(sim, tmp_path) as client:
        with pytest.raises(ReportLedgerError) as caught:
            one_report(client, sim)
        with pytest.raises(ReportLedgerError):
            client.budget.remaining()
    message = str(caught.value)
    assert str(path) in message and problem in message
    assert "delete it if you are sure no report requests were sent" in message and "forgets them" in message
    assert sim.count(path=SEGMENT_SERIES_PATH) == 0  # nothing was sent on an unknown count
    assert path.read_text() == content  # and the evidence is not overwritten


_CRASH_DURING_WRITE = """
import os, sys, time
from segment_pipeline.klaviyo import ledger

def stuck_replace(src, dst):
    print("temp file written", flush=True)
    time.sleep(60)

ledger.os.replace = stuck_replace
ledger.ReportBudget(5, sys.argv[1], account_id="acct01").take("/api/segment-series-reports")
"""


def test_a_crash_between_the_temp_write_and_the_rename_leaves_the_old_ledger_whole(tmp_path):
    path = tmp_path / "acct01.json"
    budget = ReportBudget(5, path, account_id="acct01")
    budget.take(SEGMENT_SERIES_PATH)
    before = path.read_text()
    child = subprocess.Popen([sys.executable, "-c", _CRASH_DURING_WRITE, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "temp file written"
        # the new ledger is complete in its temp file, the child holds the lock: kill it there
        temps = [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
        assert len(temps) == 1 and len(json.loads(temps[0].read_text())["sent"]) == 2
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    assert path.read_text() == before
    # the lock died with the process; the old count is intact and counting goes on
    again = ReportBudget(5, path, account_id="acct01")
    assert again.remaining() == 4
    again.take(SEGMENT_SERIES_PATH)
    assert again.remaining() == 3


def test_readers_never_see_a_partial_ledger_while_another_process_writes(tmp_path):
    path = tmp_path / "acct01.json"
    writer = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys\nfrom segment_pipeline.klaviyo import ReportBudget\n"
            "b = ReportBudget(100000, sys.argv[1], account_id='acct01')\n"
            "for _ in range(300): b.take('/api/segment-series-reports'); b.finished()\n",
            str(path),
        ]
    )
    reads = 0
    try:
        while writer.poll() is None:
            if path.exists():
                json.loads(path.read_text())  # read without the lock: must always be a whole ledger
                reads += 1
    finally:
        writer.kill()
        writer.wait()
    assert writer.returncode == 0
    assert reads > 10
    assert len(json.loads(path.read_text())["sent"]) == 300


def test_pipeline_limit_refusals_say_so_and_when_the_oldest_request_ages_out(sim, tmp_path):
    with make_client(sim, tmp_path, report_daily_limit=2) as client:
        client.get_account()
        before = time.time()
        one_report(client, sim)
        one_report(client, sim)
        with pytest.raises(ReportBudgetError) as planned:
            client.budget.ensure_available(1)
        with pytest.raises(KlaviyoQuotaExhausted) as sending:
            one_report(client, sim)
    assert sim.count(path=SEGMENT_SERIES_PATH) == 2
    for error in (planned.value, sending.value):
        assert error.kind == PIPELINE_LIMIT
        # the oldest counted request was sent just after `before`; it ages out a day later
        assert before + 86_400 <= error.retry_at.timestamp() <= time.time() + 86_400
        message = str(error)
        assert "this pipeline's own limit" in message and "KLAVIYO_REPORT_DAILY_LIMIT=2" in message
        assert "per 24 hours" in message and error.retry_at.isoformat(timespec="seconds") in message
        assert "Klaviyo answered 429" not in message
    assert planned.value.needed == 1 and planned.value.remaining == 0
    assert sending.value.local_budget


def test_klaviyo_quota_refusals_say_so_with_the_time_of_the_429(sim, tmp_path):
    sim.exhaust_report_quota()
    with make_client(sim, tmp_path) as client:
        client.get_account()
        with pytest.raises(KlaviyoQuotaExhausted) as first:
            one_report(client, sim)
        with pytest.raises(ReportBudgetError) as planned:
            client.budget.ensure_available(1)
        with pytest.raises(KlaviyoQuotaExhausted) as sending:
            one_report(client, sim)
    assert sim.count(path=SEGMENT_SERIES_PATH) == 1  # only the request that met the 429
    for error in (first.value, planned.value, sending.value):
        assert error.kind == KLAVIYO_QUOTA
        assert error.blocked_at is not None and abs(error.blocked_at.timestamp() - time.time()) < 30
        assert abs(error.retry_at.timestamp() - first.value.retry_at.timestamp()) < 1
        message = str(error)
        assert "Klaviyo's reporting quota" in message and "429 at" in message
        assert error.blocked_at.isoformat(timespec="seconds") in message
        assert "this pipeline's own limit" not in message
    assert not sending.value.local_budget


def test_the_window_can_be_shortened_for_tests(sim, tmp_path):
    from segment_pipeline.ingest.access import KlaviyoAccess
    from segment_pipeline.settings import load_settings

    settings = load_settings(
        {
            "KLAVIYO_API_KEY": KEY,
            "KLAVIYO_BASE_URL": sim.base_url,
            "KLAVIYO_REPORT_RATE_PER_MINUTE": str(2 * FAST),
            "KLAVIYO_REPORT_BUDGET_WINDOW_SECONDS": "1.5",
            "KLAVIYO_REPORT_DAILY_LIMIT": "1",
            "KLAVIYO_REPORT_LEDGER_DIR": str(tmp_path),
        }
    )
    with KlaviyoAccess(settings, settings.accounts["default"]).client() as client:
        assert client.settings.report_budget_window_seconds == 1.5
        one_report(client, sim)
        with pytest.raises(ReportBudgetError, match="per 1.5 s"):
            client.budget.ensure_available(1)
        time.sleep(1.6)
        assert client.budget.remaining() == 1
        one_report(client, sim)
    assert sim.count(path=SEGMENT_SERIES_PATH) == 2


def test_the_old_ledger_variable_is_refused_rather_than_silently_ignored():
    from segment_pipeline.config import ConfigError
    from segment_pipeline.settings import load_settings

    with pytest.raises(ConfigError, match="KLAVIYO_BUDGET_PATH is no longer read.*KLAVIYO_REPORT_LEDGER_DIR"):
        load_settings({"KLAVIYO_API_KEY": KEY, "KLAVIYO_BUDGET_PATH": "/tmp/ledger.json"})


def test_the_single_ledger_of_an_older_version_is_adopted_by_the_account_not_forgotten(sim, tmp_path):
    from segment_pipeline.klaviyo import ReportLedgers

    legacy = tmp_path / "klaviyo_report_budget.json"
    now = time.time()
    legacy.write_text(json.dumps({"sent": [now - 100, now - 50], "blocked_until": None, "last_done": now - 49}))
    ledgers = ReportLedgers(3, tmp_path / "report_ledgers", legacy_file=legacy)
    with KlaviyoClient(make_client(sim, tmp_path).settings, ledgers=ledgers) as client:
        client.get_account()
        assert client.budget.remaining() == 1
        one_report(client, sim)
        with pytest.raises(KlaviyoQuotaExhausted, match="this pipeline's own limit"):
            one_report(client, sim)
    assert not legacy.exists()
    assert (tmp_path / f"klaviyo_report_budget.json.migrated-to-{sim.account.account_id}").exists()
    assert len(json.loads(ledger_file(tmp_path / "report_ledgers", sim).read_text())["sent"]) == 3


def test_available_at_says_when_a_number_of_requests_will_fit(tmp_path):
    budget = ReportBudget(3, tmp_path / "acct01.json", window_seconds=100, account_id="acct01")
    for moment in (1000.0, 1010.0, 1020.0):
        budget.take(SEGMENT_SERIES_PATH, now=moment)
    now = 1030.0
    assert budget.available_at(0, now=now) is None
    assert budget.available_at(1, now=now).timestamp() == 1100.0  # the oldest ages out
    assert budget.available_at(2, now=now).timestamp() == 1110.0
    assert budget.available_at(3, now=now).timestamp() == 1120.0
    assert budget.available_at(50, now=now).timestamp() == 1120.0  # never more than the whole limit at once
    budget.block_until(1125.0, now=now)
    assert budget.available_at(1, now=now).timestamp() == 1125.0  # Klaviyo's block comes first
    assert budget.available_at(1, now=1250.0) is None


def test_the_series_asset_counts_in_the_accounts_ledger_under_the_state_dir(make_simulator, tmp_path):
    from tests.pipeline_helpers import API_KEY, SEGMENTS, SERIES, materialize, range_tags

    sim = make_simulator(api_key=API_KEY, segment_count=3, speed=FAST)
    day = sim.account.today() - dt.timedelta(days=30)
    materialize([SEGMENTS], sim, tmp_path)
    materialize([SERIES], sim, tmp_path, tags=range_tags(day, day))
    ledgers = tmp_path / "state" / "report_ledgers"
    assert len(json.loads(ledger_file(ledgers, sim).read_text())["sent"]) == 1
    # a damaged ledger stops the next run with the file named, before any report request
    ledger_file(ledgers, sim).write_text("{not json")
    result = materialize([SERIES], sim, tmp_path, tags=range_tags(day, day), raise_on_error=False)
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure).step_failure_data.error
    assert "is damaged" in failure.message and str(ledger_file(ledgers, sim)) in failure.message
    assert sim.count(path=SEGMENT_SERIES_PATH) == 1


def test_a_ledger_directory_that_cannot_be_written_is_a_clear_error(sim, tmp_path):
    blocker = tmp_path / "not_a_directory"
    blocker.write_text("a file where the ledger directory should be")
    with make_client(sim, blocker / "ledgers") as client, pytest.raises(ReportLedgerError, match="cannot be written"):
        one_report(client, sim)
    assert sim.count(path=SEGMENT_SERIES_PATH) == 0


# stands for a number of 5,000 digits, which Python's json neither writes nor reads
HUGE = "<a number of 5000 digits>"


def ledger_text(sim, **values) -> str:
    ledger = {"account_id": sim.account.account_id, "sent": [], "last_done": None, "blocked_until": None}
    text = json.dumps({"blocked_at": None, **ledger, **values}, allow_nan=True)
    return text.replace(json.dumps(HUGE), "9" * 5000)


@pytest.mark.parametrize(
    "values, problem, fix",
    [
        pytest.param(
            # what an older version stored from `Retry-After: 99999999999999`
            {"blocked_until": time.time() + 99999999999999, "blocked_at": time.time()},
            "holds 'blocked_until': 1000",
            'set "blocked_until" and "blocked_at" to null',
            id="a block in the year 3170900",
        ),
        pytest.param(
            {"blocked_at": -1e300}, "holds 'blocked_at'", 'set "blocked_until" and "blocked_at" to null', id="-1e300"
        ),
        pytest.param({"last_done": float("nan")}, "holds 'last_done': nan,", 'set "last_done" to null', id="NaN"),
        pytest.param({"sent": [time.time(), float("inf")]}, "holds 'sent': inf,", "remove the entries", id="inf"),
        pytest.param({"sent": [10**400]}, "holds 'sent': 1000000000", "remove the entries", id="400 digits"),
        pytest.param({"sent": [-5]}, "holds 'sent': -5,", "remove the entries", id="before 1970"),
        pytest.param({"sent": [HUGE]}, "is damaged: it is not JSON (Exceeds the limit", "inspect it", id="5000 digits"),
        pytest.param({"sent": [1.0] * 100_001}, "counts 100001 report requests", "inspect it", id="a count"),
    ],
)
def test_an_impossible_stored_value_fails_closed_naming_the_file_and_the_fix(sim, tmp_path, values, problem, fix):
    path = ledger_file(tmp_path, sim)
    content = ledger_text(sim, **values)
    path.write_text(content)
    with make_client(sim, tmp_path) as client:
        with pytest.raises(ReportLedgerError) as caught:
            one_report(client, sim)
        for read in (client.budget.remaining, lambda: client.budget.available_at(1)):
            with pytest.raises(ReportLedgerError):
                read()
    message = str(caught.value)
    assert str(path) in message and problem in message and fix in message
    assert f"no report request is sent until it is fixed. Fix: {fix}" in message
    assert sim.count(path=SEGMENT_SERIES_PATH) == 0
    assert path.read_text() == content


def skewed_client(sim, ledger_dir, slept, **overrides):
    settings = make_client(sim, ledger_dir, **overrides).settings
    return KlaviyoClient(settings, sleep=slept.append)


def test_a_last_request_in_the_future_is_clock_skew_logged_and_never_slept_on(sim, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    path = ledger_file(tmp_path, sim)
    ahead = time.time() + 3600  # the clock was set back an hour after the last request
    path.write_text(ledger_text(sim, last_done=ahead))
    slept = []
    # Klaviyo's real pace, 2 a minute: the next request waits one interval (31.5 s), never the hour
    with skewed_client(sim, tmp_path, slept, report_rate_per_minute=2) as client:
        started = time.time()
        one_report(client, sim)
    assert slept and max(slept) <= 31.5 + 0.1
    stored = json.loads(path.read_text())
    assert started <= stored["last_done"] <= time.time()
    text = caplog.text
    when = dt.datetime.fromtimestamp(ahead, dt.UTC).isoformat(timespec="seconds")
    assert f"the last report request is recorded as ending at {when}" in text and "set back" in text
    # the wait itself is logged with its reason and its end
    assert re.search(r"waiting 3\d\.\d s, until 20\S+Z, to keep report requests at 2 a minute", text)
    assert sim.count(path=SEGMENT_SERIES_PATH) == 1


def test_times_further_ahead_than_a_window_are_capped_once_and_logged(sim, tmp_path, caplog):
    path = ledger_file(tmp_path, sim)
    now = time.time()
    days = 24 * 60 * 60
    path.write_text(ledger_text(sim, sent=[now - 60, now + 5 * days], blocked_until=now + 3 * days, blocked_at=now))
    with make_client(sim, tmp_path, report_daily_limit=5) as client:
        client.get_account()
        assert client.budget.remaining() == 0  # the block holds, but only for one window
        resume = client.budget.available_at(1).timestamp()
        first = json.loads(path.read_text())
        client.budget.remaining()
    assert now + days <= resume <= time.time() + days
    assert now + days <= first["blocked_until"] <= time.time() + days
    assert all(t <= time.time() for t in first["sent"]) and len(first["sent"]) == 2
    assert json.loads(path.read_text())["blocked_until"] == first["blocked_until"]  # capped once, not sliding
    assert "1 report request(s) are counted as sent at up to" in caplog.text
    assert "Klaviyo's quota block is recorded until" in caplog.text and "no block lasts longer" in caplog.text
    assert sum("quota block is recorded" in r.getMessage() for r in caplog.records) == 1
    assert sim.count(path=SEGMENT_SERIES_PATH) == 0


def test_the_series_step_logs_clock_skew_in_its_run_and_finishes(make_simulator, tmp_path, monkeypatch):
    import dagster as dg

    from tests.pipeline_helpers import API_KEY, SEGMENTS, SERIES, materialize

    sim = make_simulator(api_key=API_KEY, segment_count=3, speed=FAST)
    materialize([SEGMENTS], sim, tmp_path)
    ledgers = tmp_path / "state" / "report_ledgers"
    ledgers.mkdir(parents=True)
    ledger_file(ledgers, sim).write_text(ledger_text(sim, last_done=time.time() + 6 * 3600))
    day = sim.account.today() - dt.timedelta(days=20)
    started = time.monotonic()
    with dg.DagsterInstance.ephemeral() as instance:
        result = materialize([SERIES], sim, tmp_path, instance=instance, partition_key=day.isoformat())
        messages = [entry.user_message for entry in instance.all_logs(result.run_id)]
    assert time.monotonic() - started < 60
    assert [m for m in messages if "the last report request is recorded as ending at" in m and "set back" in m]
    assert sim.count(path=SEGMENT_SERIES_PATH) == 1
