"""`segment-pipeline backfill`: one Dagster backfill of a range of days for the deployment's accounts.

Each account's range is in its own days (`--days N` ends yesterday in EACH account's timezone). Everything
Klaviyo would refuse (a range older than a year or before its data floor), every day that is not over yet, a
missing key and an unknown account are refused for all accounts before anything is submitted. Then one asset
backfill is launched through the Dagster webserver's API, the same object as one launched from the UI: it
shows in the Backfills tab, and the daemon runs it: each account's segments, one run per account for its
series range, then the shared models, analyst copy and report once. The command follows the backfill and
prints each account's outcome; Ctrl-C or SIGTERM cancels the backfill (its runs stop with it), `--detach`
leaves it running in Dagster.

No Dagster import here: the webserver does the work, so this starts quickly and works against any deployment.
"""

from __future__ import annotations

import argparse
import datetime as dt
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import FrameType

from .accounts import Accounts, AccountSettings
from .config import ConfigError
from .dagster_api import DEFAULT_DAGSTER_URL, BackfillRun, BackfillStatus, DagsterApi, DagsterApiError
from .klaviyo import ReportWindowError, check_reporting_window
from .settings import Settings, key_is_set, load_settings
from .tables import SEGMENT_SERIES_TABLE, SEGMENTS_TABLE

# tags on the backfill (and so on every run it starts), to find it in the UI
BACKFILL_TAG = "segment_pipeline/backfill"
EXIT_OK, EXIT_FAILED, EXIT_REFUSED = 0, 1, 2
_POLL_SECONDS = 2.0


class BackfillRefused(ValueError):
    """The backfill cannot start as asked; nothing was submitted. The message says what to change."""


@dataclass(frozen=True)
class AccountRange:
    """One account's part of a backfill: its range of account-local days (inclusive)."""

    account: str
    timezone: str
    first: dt.date
    last: dt.date

    @property
    def days(self) -> int:
        return (self.last - self.first).days + 1

    def describe(self) -> str:
        return f"{self.first} to {self.last} ({self.days} day{'s' * (self.days != 1)}, {self.timezone})"


def account_today(account: AccountSettings, now: dt.datetime | None = None) -> dt.date:
    """The account-local date now."""
    return (now or dt.datetime.now(dt.UTC)).astimezone(account.zone).date()


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
        days: Days ending yesterday in each account's own timezone; or else `start` and `end`, the first and
            the last account-local day, the same dates for every account.
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
        where = accounts.source or "this deployment (one account, no KLAVIYO_ACCOUNTS_FILE)"
        raise BackfillRefused(f"no account named {', '.join(map(repr, unknown))} in {where}; {accounts.listed}")
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
                f"account {account.name!r} ({account.timezone}): the range ends on {last}, but today is {today} there, "
                f"so the last day that can be loaded is {yesterday}; end the range on {yesterday} or before"
            )
            continue
        ranges.append(AccountRange(account.name, account.timezone, first, last))
    if problems:
        raise BackfillRefused("nothing was submitted:\n" + "\n".join(f"  {problem}" for problem in problems))
    return ranges


def check_keys(settings: Settings, ranges: Sequence[AccountRange]) -> None:
    """Every account of the backfill has its key variable set, or nothing is submitted."""
    missing = [settings.accounts[r.account] for r in ranges if not key_is_set(settings.accounts[r.account])]
    if missing:
        lines = [f"  account {a.name!r}: {a.api_key_env} is not set" for a in missing]
        raise BackfillRefused(
            "nothing was submitted:\n" + "\n".join(lines) + "\nExport each account's private API key in that "
            "variable, in the environment of the Dagster processes that run the backfill (the daemon and its runs)"
        )


def backfill_assets(ranges: Sequence[AccountRange], shared: Sequence[tuple[str, ...]]) -> dict:
    """What the backfill selects: each account's segments and series range, and the shared assets once."""
    from .defs.account_names import asset_key  # names only: no definitions are built

    selection: dict[tuple[str, ...], tuple[str, str] | None] = {}
    for account_range in ranges:
        selection[tuple(asset_key(account_range.account, SEGMENTS_TABLE).path)] = None
        selection[tuple(asset_key(account_range.account, SEGMENT_SERIES_TABLE).path)] = (
            account_range.first.isoformat(),
            account_range.last.isoformat(),
        )
    selection.update({path: None for path in shared})
    return selection


def shared_asset_paths(api: DagsterApi) -> list[tuple[str, ...]]:
    """The dbt models, the analyst copy and the report, as the deployment defines them (their groups)."""
    from .defs.account_names import is_shared_group

    return sorted(path for path, group in api.asset_groups().items() if is_shared_group(group))


def run_accounts(run: BackfillRun) -> set[str]:
    """The accounts whose assets a run materializes (none for the shared build)."""
    from .defs.account_names import account_of

    return {name for name in map(account_of, run.asset_keys) if name}


def account_verdict(status: BackfillStatus, account: str) -> str:
    """ "ok" when every partition of the account's assets in the backfill is materialized, "FAILED" when one
    failed, else "not run". Read per asset, not per run: one run may hold several accounts' steps."""
    from .defs.account_names import account_of

    progress = [p for path, p in status.assets.items() if account_of(path) == account]
    if any(p.failed for p in progress):
        return "FAILED"
    if progress and all(p.materialized == p.targeted for p in progress):
        return "ok"
    return "not run"


def summarize(status: BackfillStatus, ranges: Sequence[AccountRange], url: str) -> list[str]:
    """One line per account, from its assets' progress in the backfill; a failure links the run that failed."""
    lines = []
    for account_range in ranges:
        verdict = account_verdict(status, account_range.account)
        runs = [run for run in status.runs if account_range.account in run_accounts(run)]
        failed = [run for run in runs if run.status != "SUCCESS"] if verdict == "FAILED" else []
        detail = f" (run {failed[0].run_id}: {url}/runs/{failed[0].run_id})" if failed else ""
        lines.append(f"  {account_range.account:<16} {account_range.describe():<44} {verdict}{detail}")
    return lines


def follow(
    api: DagsterApi,
    backfill_id: str,
    ranges: Sequence[AccountRange],
    out: Callable[[str], None] = print,
    poll_seconds: float = _POLL_SECONDS,
    stop: list[int] | None = None,
) -> BackfillStatus:
    """Wait for the backfill to finish, telling each run as it ends; Ctrl-C or SIGTERM cancels it (and the
    signals received are appended to `stop`)."""
    stop = [] if stop is None else stop
    canceled = len(stop)

    def _request_stop(signum: int, frame: FrameType | None) -> None:
        stop.append(signum)

    previous = {sig: signal.signal(sig, _request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    told: set[str] = set()
    try:
        while True:
            status = api.backfill(backfill_id)
            for run in status.runs:
                if run.run_id not in told and run.status in ("SUCCESS", "FAILURE", "CANCELED"):
                    told.add(run.run_id)
                    out(f"  run {run.run_id} {run.status.lower()}: {_run_label(run)}")
            if len(stop) > canceled:
                name = signal.Signals(stop[-1]).name
                out(f"{name}: canceling backfill {backfill_id} (its runs stop with it)")
                api.cancel_backfill(backfill_id)
                canceled = len(stop)
            if status.finished:
                return status
            time.sleep(poll_seconds)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _run_label(run: BackfillRun) -> str:
    accounts = ", ".join(sorted(run_accounts(run)))
    first = run.tags.get("dagster/asset_partition_range_start")
    last = run.tags.get("dagster/asset_partition_range_end")
    if accounts and first:
        return f"series of {accounts}, {first} to {last}"
    return f"segments of {accounts}" if accounts else "the shared models, analyst copy and report"


def run_backfill(
    settings: Settings,
    ranges: Sequence[AccountRange],
    url: str,
    *,
    refetch: bool = False,
    detach: bool = False,
    out: Callable[[str], None] = print,
) -> int:
    """Submit the backfill, follow it unless `detach`, print the outcome; returns the exit code."""
    started = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    from .defs.account_names import REFETCH_TAG

    tags = {BACKFILL_TAG: started, **({REFETCH_TAG: "true"} if refetch else {})}
    with DagsterApi(url) as api:
        backfill_id = api.launch_backfill(
            backfill_assets(ranges, shared_asset_paths(api)),
            tags=tags,
            title=f"segment-pipeline backfill of {len(ranges)} account{'s' * (len(ranges) != 1)}",
        )
        out(f"backfill {backfill_id} submitted: {url}/overview/backfills/{backfill_id}")
        for account_range in ranges:
            out(f"  {account_range.account:<16} {account_range.describe()}")
        if detach:
            out("it runs in Dagster; follow it in the UI (Overview > Backfills)")
            return EXIT_OK
        signals: list[int] = []
        status = follow(api, backfill_id, ranges, out, stop=signals)
    stopped_by = f" (stopped by {signal.Signals(signals[0]).name})" if signals else ""
    out(f"backfill {backfill_id} {status.status.lower().replace('_', ' ')}{stopped_by}:")
    for line in summarize(status, ranges, url):
        out(line)
    if status.error:
        out(f"  Dagster reported: {status.error}")
    if signals:
        # as a shell reports a process ended by a signal (130 for SIGINT, 143 for SIGTERM)
        return 128 + signals[0]
    ok = status.status in ("COMPLETED", "COMPLETED_SUCCESS") and all(run.status == "SUCCESS" for run in status.runs)
    return EXIT_OK if ok and all(account_verdict(status, r.account) == "ok" for r in ranges) else EXIT_FAILED


def _date(value: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date as YYYY-MM-DD, got {value!r}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="segment-pipeline backfill",
        description=(
            "Load a range of days for the deployment's accounts as one Dagster backfill (shown in the UI's "
            "Backfills tab, run by the daemon): each account's days in its own timezone, one series run per "
            "account, then the shared models once. Needs the Dagster webserver and daemon running."
        ),
    )
    parser.add_argument("--days", type=int, help="days ending yesterday, in each account's own timezone")
    parser.add_argument("--start", type=_date, help="first day (YYYY-MM-DD), with --end")
    parser.add_argument("--end", type=_date, help="last day (YYYY-MM-DD), with --start")
    parser.add_argument("--account", action="append", default=[], help="only this account (repeatable)")
    parser.add_argument("--refetch", action="store_true", help="ask Klaviyo again for days already final")
    parser.add_argument(
        "--dagster-url", default=DEFAULT_DAGSTER_URL, help="the Dagster webserver (default %(default)s)"
    )
    parser.add_argument("--detach", action="store_true", help="submit and return; follow it in the UI")
    parser.add_argument(
        "--skip-key-check",
        action="store_true",
        help="do not refuse when an account's key variable is unset here (keys set only where the daemon runs)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
        ranges = plan_ranges(settings.accounts, args.account, args.days, args.start, args.end)
        if not args.skip_key_check:
            check_keys(settings, ranges)
    except (BackfillRefused, ConfigError) as exc:
        print(f"segment-pipeline backfill: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    try:
        return run_backfill(settings, ranges, args.dagster_url, refetch=args.refetch, detach=args.detach)
    except DagsterApiError as exc:
        print(f"segment-pipeline backfill: {exc}", file=sys.stderr)
        return EXIT_FAILED
