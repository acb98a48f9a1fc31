"""`segment-pipeline backfill`: load a range of days for every account of the deployment, accounts in parallel.

Each account's range is in its own days (`--days N` ends yesterday in EACH account's timezone), and each
account runs as its own `dagster job execute` process of its own job (`account_names.job_name`), in the
Dagster instance of DAGSTER_HOME, so the runs show in the UI like any other. Klaviyo's limits are per account,
so the accounts' report requests go out at the same time; their writes to the DuckDB file take turns through
the warehouse lock. One account's failure stops only that account's process.

Everything Klaviyo would refuse (a range older than a year or before its data floor) and every day that is
not over yet is refused for all accounts before any process starts. Each account's Dagster output is kept in
`<PIPELINE_STATE_DIR>/backfill_logs/<started>/<account>.log`, with every account key replaced by `***`; the
summary names each failed account, the failure Dagster reported and that log.

This module knows accounts and the Dagster command line; it never imports the definitions (loading them is
the child processes' work, and a bad accounts file is reported here before anything starts).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO
from zoneinfo import ZoneInfo

from .accounts import Accounts, AccountSettings, load_accounts
from .config import ConfigError, PipelineSettings
from .defs.account_names import job_name, series_op_name
from .klaviyo import KlaviyoConfigError, ReportWindowError, check_reporting_window
from .wording import plural

# Processes at a time. Each is a whole Dagster run (a few hundred MB); Klaviyo's pace per account, not the
# CPU, is what a backfill waits for, so a handful in flight keeps every account's requests going.
DEFAULT_PARALLEL = 4
LOG_DIR_NAME = "backfill_logs"
# tags on every run a backfill starts, to find them in the UI (Runs > filter by tag)
BACKFILL_TAG = "segment_pipeline/backfill"
ACCOUNT_TAG = "segment_pipeline/account"
EXIT_OK, EXIT_FAILED, EXIT_REFUSED = 0, 1, 2
# how long the accounts' runs get to stop after the signal is passed on (Dagster marks each run canceled and
# lets its step end); what still runs then is killed, with everything it started
STOP_GRACE_SECONDS = 60.0
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_POLL_SECONDS = 0.2

_RUN_ID = re.compile(r" - ([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}) - ")
_STEP_FAILURE = re.compile(r" - (?P<step>[\w.\-\[\]]+) - STEP_FAILURE - ")
_FAILURE_PREFIX = "dagster._core.definitions.events.Failure: "


class BackfillRefused(ValueError):
    """The backfill cannot start as asked; nothing was started. The message says what to change."""


class BackfillStopped(Exception):
    """A signal stopped the backfill: every account's run was passed the signal and has ended.

    Attributes:
        signum: The signal received (SIGINT or SIGTERM).
        outcomes: How each started account's process ended (those still running were stopped), in `ranges` order.
        not_started: The accounts' ranges that had not started yet.
    """

    def __init__(self, signum: int, outcomes: list[AccountOutcome], not_started: list[AccountRange]) -> None:
        self.signum = signum
        self.outcomes = outcomes
        self.not_started = not_started
        super().__init__(f"stopped by {signal.Signals(signum).name}")

    @property
    def exit_code(self) -> int:
        """128 + the signal's number, as a shell reports a process ended by it (130 for SIGINT, 143 for SIGTERM)."""
        return 128 + self.signum


@dataclass(frozen=True)
class AccountRange:
    """One account's part of a backfill: its job and its range of account-local days (inclusive)."""

    account: str
    timezone: str
    job: str
    first: dt.date
    last: dt.date

    @property
    def days(self) -> int:
        return (self.last - self.first).days + 1

    def describe(self) -> str:
        return f"{self.first} to {self.last} ({plural(self.days, 'day')}, {self.timezone})"


@dataclass
class AccountOutcome:
    """How one account's process ended."""

    range: AccountRange
    returncode: int
    seconds: float
    log_path: Path
    run_id: str | None = None
    failures: list[str] = field(default_factory=list)
    stopped: bool = False  # a signal to the backfill stopped it

    @property
    def ok(self) -> bool:
        return self.returncode == 0


# -- what to run ----------------------------------------------------------------------------------------------


def account_today(account: AccountSettings, now: dt.datetime | None = None) -> dt.date:
    """The account-local date now."""
    now = now or dt.datetime.now(dt.UTC)
    return now.astimezone(ZoneInfo(account.timezone)).date()


def plan_ranges(
    accounts: Accounts,
    names: Sequence[str] = (),
    days: int | None = None,
    start: dt.date | None = None,
    end: dt.date | None = None,
    now: dt.datetime | None = None,
) -> list[AccountRange]:
    """Each chosen account's range, checked against what Klaviyo and the partitions allow.

    Args:
        accounts: The deployment's accounts.
        names: The accounts to backfill (every account when empty), in the order given.
        days: Days ending yesterday in each account's own timezone; or else
        start: ... the first and
        end: ... the last account-local day, the same dates for every account.
        now: The moment to count "yesterday" and Klaviyo's one year from (default: the clock).

    Raises:
        BackfillRefused: Naming every problem of every account at once.
    """
    if days is not None and (start is not None or end is not None):
        raise BackfillRefused("give either --days or --start and --end, not both")
    if days is None and (start is None or end is None):
        raise BackfillRefused(
            "say which days: --days N (ending yesterday in each account's timezone), or --start and --end"
        )
    if days is not None and days < 1:
        raise BackfillRefused(f"--days must be at least 1 (it is {days})")
    unknown = [name for name in names if name not in accounts.names]
    if unknown:
        raise BackfillRefused(
            f"no account named {', '.join(map(repr, unknown))} in {_source(accounts)}; {accounts.listed}"
        )
    chosen = [accounts[name] for name in dict.fromkeys(names)] if names else list(accounts)
    ranges, problems = [], []
    for account in chosen:
        today = account_today(account, now)
        yesterday = today - dt.timedelta(days=1)
        first, last = (yesterday - dt.timedelta(days=days - 1), yesterday) if days is not None else (start, end)
        assert first is not None and last is not None
        try:
            check_reporting_window(first, last, today)
        except ReportWindowError as exc:
            problems.append(f"account {account.name!r} ({account.timezone}): {exc}")
            continue
        if last > yesterday:
            # the newest partition is yesterday: today is not over, so its numbers are not a day's yet
            problems.append(
                f"account {account.name!r} ({account.timezone}): the range ends on {last}, but today is {today} "
                f"there, so the last day that can be loaded is {yesterday}; end the range on {yesterday} or before"
            )
            continue
        ranges.append(AccountRange(account.name, account.timezone, job_name(account.name), first, last))
    if problems:
        raise BackfillRefused("nothing was started:\n" + "\n".join(f"  {problem}" for problem in problems))
    return ranges


def check_keys(ranges: Sequence[AccountRange], accounts: Accounts, env: Mapping[str, str]) -> None:
    """Refuse, before anything starts, a backfill of an account whose key variable is not set.

    An accounts file is refused at load for that already; the single-account `KLAVIYO_API_KEY` is read only
    when a run starts, so without this check each run would start and fail on its own.

    Raises:
        BackfillRefused: Naming every such account and its variable.
    """
    problems = []
    for account_range in ranges:
        try:
            accounts[account_range.account].api_key(env)
        except KlaviyoConfigError as exc:
            problems.append(str(exc))
    if problems:
        raise BackfillRefused("nothing was started:\n" + "\n".join(f"  {problem}" for problem in problems))


def _source(accounts: Accounts) -> str:
    return str(accounts.source) if accounts.source else "this deployment (one account, no KLAVIYO_ACCOUNTS_FILE)"


def job_command(account_range: AccountRange, backfill_id: str, config_file: Path | None = None) -> list[str]:
    """The `dagster job execute` command of one account's run (as the README's command line for one job)."""
    tags = {
        "dagster/asset_partition_range_start": account_range.first.isoformat(),
        "dagster/asset_partition_range_end": account_range.last.isoformat(),
        BACKFILL_TAG: backfill_id,
        ACCOUNT_TAG: account_range.account,
    }
    command = [sys.executable, "-m", "dagster", "job", "execute", "-m", "segment_pipeline.definitions"]
    command += ["-j", account_range.job, "--tags", json.dumps(tags)]
    if config_file is not None:
        command += ["-c", str(config_file)]
    return command


# -- running ---------------------------------------------------------------------------------------------------


def prepare_instance(env: Mapping[str, str]) -> Path:
    """The Dagster instance of DAGSTER_HOME, its storage created once before the accounts' processes start.

    Raises:
        BackfillRefused: DAGSTER_HOME is not set or is not a directory. Without it each `dagster job execute`
            would record its run in a temporary instance of its own, deleted on exit: no run would show in the UI.
    """
    raw = (env.get("DAGSTER_HOME") or "").strip()
    if not raw:
        raise BackfillRefused(
            "DAGSTER_HOME is not set, so the runs would go to temporary instances and show nowhere; set it to the "
            "directory of the Dagster instance your UI and daemon use (it holds dagster.yaml)"
        )
    home = Path(raw).expanduser().resolve()
    if not home.is_dir():
        raise BackfillRefused(
            f"DAGSTER_HOME={raw} is not a directory; create it with a copy of dagster_home/dagster.yaml"
        )
    import dagster as dg

    # processes started together on a new instance would race to create its SQLite storage
    with dg.DagsterInstance.from_config(str(home)):
        pass
    return home


class _Redactor:
    """Replaces every account key (read from the environment) by `***` in what the children print."""

    def __init__(self, accounts: Accounts, env: Mapping[str, str]) -> None:
        keys = {(env.get(account.api_key_env) or "").strip() for account in accounts}
        # longest first, so a key that contains another is hidden whole
        self._keys = sorted((key for key in keys if key), key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for key in self._keys:
            text = text.replace(key, "***")
        return text


def failure_messages(log_text: str) -> list[str]:
    """What Dagster reported for each failed step: `<step>: <error message>`, in order, without repeats.

    After a STEP_FAILURE event Dagster prints the error (`<exception class>: <message>`) up to a blank line;
    for a `dagster.Failure` that is the description the step gave, which is the message to show.
    """
    lines = log_text.splitlines()
    messages: list[str] = []
    for index, line in enumerate(lines):
        match = _STEP_FAILURE.search(line)
        if match is None:
            continue
        error: list[str] = []
        for following in lines[index + 1 :]:
            if not following.strip():
                if error:
                    break
                continue
            if following.startswith("Stack Trace:") or re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", following):
                break
            error.append(following.strip())
        text = " ".join(error).removeprefix(_FAILURE_PREFIX) or "see the log"
        message = f"{match.group('step')}: {text}"
        if message not in messages:
            messages.append(message)
    if not messages:
        # no step failed: the run could not start (bad job name, a code location that does not load, ...)
        tail = [line.strip() for line in lines if line.strip()]
        errors = [line for line in tail if line.startswith(("Error", "dagster.", "Traceback")) or "Error:" in line]
        messages = errors[-1:] or tail[-1:]
    return messages


def _run_id(log_text: str) -> str | None:
    match = _RUN_ID.search(log_text)
    return match.group(1) if match else None


def run_ranges(
    ranges: Sequence[AccountRange],
    accounts: Accounts,
    env: Mapping[str, str],
    log_dir: Path,
    parallel: int = DEFAULT_PARALLEL,
    refetch: bool = False,
    on_finish: Callable[[AccountOutcome], None] | None = None,
    cwd: Path | None = None,
) -> list[AccountOutcome]:
    """Run each account's job as its own `dagster job execute` process, `parallel` at a time.

    Args:
        ranges: The accounts' ranges (from `plan_ranges`).
        accounts: The deployment's accounts (for the keys to keep out of the logs).
        env: The environment of every process (DAGSTER_HOME, the accounts file and key variables, ...).
        log_dir: Where each account's output goes, as `<account>.log`.
        parallel: How many processes at a time (at least 1).
        refetch: Ask Klaviyo again for every day of the range, final or not (the series' `refetch` option).
        on_finish: Called with each outcome as its process ends, in the order they end.
        cwd: The processes' working directory (default: this process's).

    Returns:
        The outcomes, in the order of `ranges`.
    """
    log_dir.mkdir(parents=True, exist_ok=True)
    backfill_id = log_dir.name
    redact = _Redactor(accounts, env)
    finished: queue.Queue[int] = queue.Queue()
    outcomes: dict[int, AccountOutcome] = {}
    running: dict[int, subprocess.Popen[str]] = {}
    pending = list(enumerate(ranges))

    def start(index: int, account_range: AccountRange) -> None:
        config_file = None
        if refetch:
            config_file = log_dir / f"{account_range.account}.refetch.yaml"
            op = series_op_name(account_range.account)
            config_file.write_text(json.dumps({"ops": {op: {"config": {"refetch": True}}}}), encoding="utf-8")
        log_path = log_dir / f"{account_range.account}.log"
        process = subprocess.Popen(
            job_command(account_range, backfill_id, config_file),
            env=dict(env),
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            errors="replace",
            bufsize=1,
            # a session of its own: a terminal's Ctrl-C reaches only this process, which passes it on once,
            # and a process group to stop whole (the run and any dbt it started)
            start_new_session=True,
        )
        running[index] = process
        started = time.monotonic()

        def copy_output() -> None:
            # the log is written through the redactor, line by line, so no key ever reaches the disk
            with log_path.open("w", encoding="utf-8") as log:
                assert process.stdout is not None
                for line in process.stdout:
                    log.write(redact(line))
                    log.flush()
            returncode = process.wait()
            text = log_path.read_text(encoding="utf-8", errors="replace")
            outcomes[index] = AccountOutcome(
                account_range,
                returncode,
                time.monotonic() - started,
                log_path,
                _run_id(text),
                [] if returncode == 0 else failure_messages(text),
            )
            finished.put(index)

        threading.Thread(target=copy_output, name=f"backfill-{account_range.account}", daemon=True).start()

    def collect(index: int, stopped: bool = False) -> None:
        running.pop(index)
        outcomes[index].stopped = stopped and not outcomes[index].ok
        if on_finish is not None:
            on_finish(outcomes[index])

    with _signals_recorded() as received:
        while (pending or running) and not received:
            while pending and len(running) < max(parallel, 1):
                start(*pending.pop(0))
            try:
                # short waits: a signal is noticed here, never in the middle of starting a process
                collect(finished.get(timeout=_POLL_SECONDS))
            except queue.Empty:
                pass
        if not received:
            return [outcomes[index] for index in range(len(ranges))]
        # a signal: pass it on once to every run and let them stop (Dagster marks each run canceled), then make
        # sure nothing of them is left; further signals meanwhile are ignored, and the wait is bounded
        for sig in _STOP_SIGNALS:
            signal.signal(sig, signal.SIG_IGN)
        signum = received[0]
        for process in running.values():
            if process.poll() is None:
                process.send_signal(signum)
        groups = [process.pid for process in running.values()]
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        while running and time.monotonic() < deadline:
            try:
                collect(finished.get(timeout=_POLL_SECONDS), stopped=True)
            except queue.Empty:
                pass
        for group in groups:
            _kill_group(group)
        while running:
            collect(finished.get(timeout=30), stopped=True)
    raise BackfillStopped(
        signum, [outcomes[index] for index in range(len(ranges)) if index in outcomes], [r for _, r in pending]
    )


@contextlib.contextmanager
def _signals_recorded() -> Iterator[list[int]]:
    """While the accounts' processes run, SIGINT and SIGTERM are recorded in the list yielded (first one first)."""
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received  # signals reach the main thread only: whoever runs there handles them
        return

    def record(signum: int, frame: object) -> None:
        received.append(signum)

    previous = {sig: signal.signal(sig, record) for sig in _STOP_SIGNALS}
    try:
        yield received
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _kill_group(group: int) -> None:
    """SIGKILL what is left of an account's process group (its run, or a dbt it started, past the grace time)."""
    try:
        os.killpg(group, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass  # nothing left of it


# -- the command -----------------------------------------------------------------------------------------------


def _date(value: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a day as YYYY-MM-DD, got {value!r}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="segment-pipeline backfill",
        description=(
            "Load a range of days for every account of the deployment (KLAVIYO_ACCOUNTS_FILE, or the "
            "single-account variables), one `dagster job execute` process per account, accounts in parallel. "
            "Runs go to the Dagster instance of DAGSTER_HOME and show in its UI."
        ),
    )
    parser.add_argument("--days", type=int, help="days to load, ending yesterday in each account's own timezone")
    parser.add_argument("--start", type=_date, help="first day (YYYY-MM-DD, account-local), with --end")
    parser.add_argument("--end", type=_date, help="last day (YYYY-MM-DD, account-local, inclusive), with --start")
    parser.add_argument(
        "--account",
        action="append",
        default=[],
        metavar="NAME",
        help="backfill only this account (repeatable; default: every account)",
    )
    parser.add_argument(
        "--parallel",
        type=int,
        default=DEFAULT_PARALLEL,
        metavar="N",
        help=f"accounts running at the same time (default {DEFAULT_PARALLEL})",
    )
    parser.add_argument(
        "--refetch",
        action="store_true",
        help="ask Klaviyo again for every day of the range, even days already final in the warehouse",
    )
    parser.add_argument(
        "--log-dir",
        type=Path,
        help=f"where each account's Dagster output goes (default PIPELINE_STATE_DIR/{LOG_DIR_NAME}/<started>)",
    )
    return parser


def default_log_dir(env: Mapping[str, str], started: dt.datetime) -> Path:
    """`<PIPELINE_STATE_DIR>/backfill_logs/<UTC start, e.g. 20261201T112233Z>`."""
    state_dir = PipelineSettings.from_env(dict(env)).state_dir
    return state_dir / LOG_DIR_NAME / started.astimezone(dt.UTC).strftime("%Y%m%dT%H%M%SZ")


def print_outcome(outcome: AccountOutcome, out: IO[str] = sys.stdout) -> None:
    """One line as an account finishes: ok or failed, how long, its range and its run (the summary says why)."""
    status = "ok" if outcome.ok else "STOPPED" if outcome.stopped else "FAILED"
    run = f"  run {outcome.run_id}" if outcome.run_id else ""
    print(
        f"  {outcome.range.account:<24} {status:<6} {outcome.seconds:7.1f} s  {outcome.range.describe()}{run}", file=out
    )
    out.flush()


def print_summary(outcomes: Sequence[AccountOutcome], seconds: float, out: IO[str] = sys.stdout) -> None:
    failed = [outcome for outcome in outcomes if not outcome.ok]
    print(
        f"Backfill finished in {seconds:.1f} s: {len(outcomes) - len(failed)} of {plural(len(outcomes), 'account')} ok"
        + (f", {len(failed)} failed: {', '.join(o.range.account for o in failed)}" if failed else "."),
        file=out,
    )
    for outcome in failed:
        print(f"  {outcome.range.account} failed (exit code {outcome.returncode}):", file=out)
        for message in outcome.failures or ["Dagster reported no step failure"]:
            print(f"    {message}", file=out)
        run = f"run {outcome.run_id} in the Dagster UI" if outcome.run_id else "no run was started"
        print(f"    in full: {outcome.log_path} ({run})", file=out)
    if failed:
        print(
            "Re-running the same command resumes the failed accounts: days already loaded and final are not asked "
            "for again (add --account NAME to run only them).",
            file=out,
        )
    out.flush()


def print_stopped(stopped: BackfillStopped, seconds: float, out: IO[str] = sys.stdout) -> None:
    """What a signal left: which accounts finished, which runs were stopped, which never started."""
    name = signal.Signals(stopped.signum).name
    done = [outcome for outcome in stopped.outcomes if not outcome.stopped]
    halted = [outcome for outcome in stopped.outcomes if outcome.stopped]
    parts = [plural(len(done), "account") + " had finished"] if done else []
    parts.append(plural(len(halted), "run") + " stopped")
    if stopped.not_started:
        parts.append(plural(len(stopped.not_started), "account") + " not started")
    print(
        f"Backfill stopped by {name} after {seconds:.1f} s: {', '.join(parts)}. No process of the backfill is "
        "left running.",
        file=out,
    )
    for outcome in halted:
        run = f"run {outcome.run_id} (ended, marked failed in the Dagster UI)" if outcome.run_id else "no run yet"
        print(f"  {outcome.range.account} stopped: {run}; log {outcome.log_path}", file=out)
    for account_range in stopped.not_started:
        print(f"  {account_range.account} not started", file=out)
    print(
        "Every response received is kept. Re-running the same command resumes: days already loaded and final "
        "are not asked for again.",
        file=out,
    )
    out.flush()


def backfill(
    ranges: Sequence[AccountRange],
    accounts: Accounts,
    env: Mapping[str, str],
    log_dir: Path,
    parallel: int = DEFAULT_PARALLEL,
    refetch: bool = False,
    out: IO[str] = sys.stdout,
    cwd: Path | None = None,
) -> list[AccountOutcome]:
    """Run the ranges, printing a line per account as it finishes and the summary at the end."""
    print(
        f"Backfilling {plural(len(ranges), 'account')}, {min(max(parallel, 1), len(ranges))} at a time; logs in "
        f"{log_dir}",
        file=out,
    )
    for account_range in ranges:
        print(f"  {account_range.account:<24} {account_range.job}: {account_range.describe()}", file=out)
    out.flush()
    started = time.monotonic()
    try:
        outcomes = run_ranges(
            ranges, accounts, env, log_dir, parallel, refetch, on_finish=lambda o: print_outcome(o, out), cwd=cwd
        )
    except BackfillStopped as stopped:
        print_stopped(stopped, time.monotonic() - started, out)
        raise
    print_summary(outcomes, time.monotonic() - started, out)
    return outcomes


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    """`segment-pipeline backfill`: 0 when every account succeeded, 1 when one failed, 2 when refused, 128 + the
    signal's number when SIGINT (130) or SIGTERM (143) stopped it (after passing it on and waiting for the runs)."""
    args = build_parser().parse_args(argv)
    env = dict(os.environ if env is None else env)
    if args.parallel < 1:
        print("error: --parallel must be at least 1", file=sys.stderr)
        return EXIT_REFUSED
    try:
        accounts = load_accounts(env)
        ranges = plan_ranges(accounts, args.account, args.days, args.start, args.end)
        check_keys(ranges, accounts, env)
        prepare_instance(env)
    except (ConfigError, BackfillRefused) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    log_dir = args.log_dir.resolve() if args.log_dir else default_log_dir(env, dt.datetime.now(dt.UTC))
    try:
        outcomes = backfill(ranges, accounts, env, log_dir, args.parallel, args.refetch)
    except BackfillStopped as stopped:
        return stopped.exit_code
    return EXIT_OK if all(outcome.ok for outcome in outcomes) else EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
