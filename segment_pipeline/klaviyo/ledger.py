"""The report ledger: this pipeline's count of report requests per Klaviyo account, shared by every run.

Klaviyo allows 225 report requests a day per account, shared by every private-key integration. Each run is a
separate process, so the count lives in a small JSON file per account, `<ledger dir>/<account id>.json`:

    {"account_id": "AbC123", "sent": [<unix time>, ...], "last_done": <unix time> | null,
     "blocked_until": <unix time> | null, "blocked_at": <unix time> | null}

`sent` holds the start of every report request of the rolling window; `last_done` the end of the latest one
(the next process paces from it); `blocked_until`/`blocked_at` a quota block Klaviyo announced with a 429.

Every value is bounded before it is used. A time no clock can show (not a number, before 1970, after 9999)
or more request times than any account sends stops every report request with a message naming the file,
the value and the fix. A time further ahead of this machine's clock than one quota window is clock skew
(the clock was set back, or the file came from another machine): it is logged and capped, never slept on:
such request times count as sent now, a quota block ends one window from now at the latest, and a last
request "ended" in the future is taken as ended now.

Every change happens under an exclusive `flock` on a separate lock file (`<account id>.lock`, so the lock is
never on a file that is replaced), and is written to a temporary file in the same directory, fsynced and
renamed over the ledger: a crash at any point leaves either the old ledger or the new one, never half of one.
A ledger that cannot be read, or is not shaped like one, stops every report request with a message naming the
file: resetting the count silently could overspend a quota other integrations depend on.
"""

from __future__ import annotations

import contextlib
import copy
import datetime as dt
import fcntl
import json
import logging
import os
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .. import state_files
from .errors import (
    KLAVIYO_QUOTA,
    PIPELINE_LIMIT,
    KlaviyoQuotaExhausted,
    ReportBudgetError,
    ReportLedgerError,
    shown,
    window_text,
)
from .limits import REPORT_QUOTA_WINDOW_SECONDS

logger = logging.getLogger(__name__)

_NUMBER = (int, float)
# key -> (accepted types, may it be null)
_SHAPE: dict[str, tuple[tuple[type, ...], bool]] = {
    "account_id": ((str,), True),
    "sent": ((list,), False),
    "last_done": (_NUMBER, True),
    "blocked_until": (_NUMBER, True),
    "blocked_at": (_NUMBER, True),
}


_TIMES = ("last_done", "blocked_until", "blocked_at")
# the latest moment a datetime holds: a stored time after it is no time at all (and would not convert)
LATEST_TIME = dt.datetime(9999, 12, 31, 23, 59, 59, tzinfo=dt.UTC).timestamp()
# more request times than this is no real count (Klaviyo allows 225 report requests a day), nor a ledger
MAX_COUNTED_REQUESTS = 100_000
MAX_LEDGER_BYTES = 8 * 1024 * 1024
# a last request that ended less than this far ahead of the clock is the clocks' resolution, not skew
CLOCK_TOLERANCE_SECONDS = 1.0
# what to do about an impossible stored time, by key
_FIXES = {
    "blocked_until": 'set "blocked_until" and "blocked_at" to null (Klaviyo never blocks for longer than a day; if '
    "its quota is still spent, the next report request meets its 429 and the block is recorded again)",
    "last_done": 'set "last_done" to null (it only spaces report requests out)',
    "sent": 'remove the entries that are not times from "sent"',
}
_FIXES["blocked_at"] = _FIXES["blocked_until"]
_logger = logging.getLogger(__name__)


def _empty(account_id: str | None) -> dict[str, Any]:
    return {"account_id": account_id, "sent": [], "last_done": None, "blocked_until": None, "blocked_at": None}


def _utc(moment: float | None) -> dt.datetime | None:
    return None if moment is None else dt.datetime.fromtimestamp(moment, dt.UTC)


def _iso(moment: float) -> str:
    return dt.datetime.fromtimestamp(moment, dt.UTC).isoformat(timespec="seconds")


def _is_time(value: Any) -> bool:
    # a comparison, not math.isfinite: an int of hundreds of digits must not overflow, NaN compares False
    return isinstance(value, _NUMBER) and not isinstance(value, bool) and 0 <= value <= LATEST_TIME


class ReportBudget:
    """Counts one account's report requests over a rolling window against a limit.

    Args:
        daily_limit: report requests allowed per window (KLAVIYO_REPORT_DAILY_LIMIT).
        path: the ledger file; `None` keeps the ledger in memory (one process only).
        window_seconds: the rolling window (KLAVIYO_REPORT_BUDGET_WINDOW_SECONDS; a day unless a test shortens it).
        account_id: the account the ledger belongs to; a file holding another account's ledger is refused.
        log: where clock skew in the ledger is reported (a Dagster run passes its `context.log`).
    """

    def __init__(
        self,
        daily_limit: int,
        path: str | os.PathLike | None = None,
        *,
        window_seconds: float = REPORT_QUOTA_WINDOW_SECONDS,
        account_id: str | None = None,
        log: logging.Logger | logging.LoggerAdapter | None = None,
    ) -> None:
        if daily_limit < 1:
            raise ValueError("the daily report limit must be at least 1")
        if window_seconds <= 0:
            raise ValueError("the report budget window must be longer than 0 seconds")
        self.daily_limit = daily_limit
        self.window_seconds = window_seconds
        self.account_id = account_id
        self.path = Path(path) if path else None
        self.log = log or _logger
        self._memory = _empty(account_id)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"ReportBudget(account_id={self.account_id!r}, daily_limit={self.daily_limit}, path={self.path!r})"

    # -- the file ----------------------------------------------------------------------------------------

    @property
    def lock_path(self) -> Path | None:
        return None if self.path is None else self.path.with_name(self.path.name.removesuffix(".json") + ".lock")

    def _refuse(self, problem: str, fix: str = "inspect it") -> ReportLedgerError:
        return ReportLedgerError(
            f"the report ledger {self.path} {problem}. It counts this pipeline's report requests so that "
            "Klaviyo's daily quota is not overspent, so no report request is sent until it is fixed. Fix: "
            f"{fix}; or delete it if you are sure no report requests were sent for this account in the last "
            f"{window_text(self.window_seconds)} (deleting it forgets them)."
        )

    def _read(self) -> dict[str, Any]:
        assert self.path is not None
        try:
            if self.path.stat().st_size > MAX_LEDGER_BYTES:
                raise self._refuse(f"is larger than {MAX_LEDGER_BYTES // 2**20} MB, which no ledger grows to")
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return _empty(self.account_id)  # no request of this account was ever counted
        except (OSError, UnicodeDecodeError) as exc:
            raise self._refuse(f"cannot be read ({exc})") from exc
        try:
            ledger = json.loads(text)
        except ValueError as exc:  # JSONDecodeError, or a number of thousands of digits
            raise self._refuse(f"is damaged: it is not JSON ({exc})") from exc
        self._check_shape(ledger)
        return ledger

    def _check_shape(self, ledger: Any) -> None:
        if not isinstance(ledger, dict):
            raise self._refuse(f"is not shaped like a ledger: it holds a JSON {type(ledger).__name__}, not an object")
        for key, (types, nullable) in _SHAPE.items():
            if key not in ledger:
                raise self._refuse(f"is not shaped like a ledger: it has no {key!r}")
            value = ledger[key]
            if value is None and nullable:
                continue
            # bool is an int subclass; a time is never true/false
            if isinstance(value, bool) or not isinstance(value, types):
                raise self._refuse(f"is not shaped like a ledger: {key!r} holds {value!r}")
        if any(isinstance(t, bool) or not isinstance(t, _NUMBER) for t in ledger["sent"]):
            raise self._refuse("is not shaped like a ledger: 'sent' must hold only times (numbers)")
        if len(ledger["sent"]) > MAX_COUNTED_REQUESTS:
            raise self._refuse(
                f"counts {len(ledger['sent'])} report requests, more than any account can send (at most "
                f"{MAX_COUNTED_REQUESTS} are ever counted)"
            )
        impossible = [(key, ledger[key]) for key in _TIMES if ledger[key] is not None and not _is_time(ledger[key])]
        impossible += [("sent", t) for t in ledger["sent"] if not _is_time(t)][:1]
        if impossible:
            key, value = impossible[0]
            raise self._refuse(
                f"holds {key!r}: {shown(value)}, which is not a time (a ledger time lies between 1970 and 9999)",
                fix=_FIXES[key],
            )
        if self.account_id is not None and ledger["account_id"] not in (None, self.account_id):
            raise self._refuse(f"belongs to account {ledger['account_id']!r}, not {self.account_id!r}")

    def _write(self, ledger: dict[str, Any]) -> None:
        assert self.path is not None
        handle = tempfile.NamedTemporaryFile(
            "w", encoding="utf-8", dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp", delete=False
        )
        try:
            with handle:
                json.dump(ledger, handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(handle.name, self.path)
        except BaseException as exc:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(handle.name)
            if isinstance(exc, OSError):
                raise ReportLedgerError(
                    f"the report ledger {self.path} cannot be written ({state_files.describe(exc)}): "
                    f"{state_files.advice(exc, self.path)}. Every report request is counted there before it is "
                    "sent, so none is sent until it can be written."
                ) from exc
            raise
        # the rename itself must survive a power cut too
        directory = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)

    def _skewed(self, problem: str, remedy: str) -> None:
        where = self.path or f"of account {self.account_id} (in memory)"
        self.log.warning(
            "the report ledger %s: %s ahead of this machine's clock (was the clock set back, or the file copied "
            "from another machine?); %s",
            where,
            problem,
            remedy,
        )

    def _bound(self, ledger: dict, now: float) -> None:
        """Cap, and log, times further ahead of the clock than any this pipeline writes (see the module doc)."""
        horizon = now + self.window_seconds
        ahead = [t for t in ledger["sent"] if t > horizon]
        if ahead:
            ledger["sent"] = [now if t > horizon else t for t in ledger["sent"]]
            self._skewed(
                f"{len(ahead)} report request(s) are counted as sent at up to {_iso(max(ahead))}, more than "
                f"{window_text(self.window_seconds)}",
                f"they now count as sent at {_iso(now)} and age out at {_iso(horizon)}",
            )
        blocked = ledger["blocked_until"]
        if blocked is not None and blocked > horizon:
            ledger["blocked_until"] = horizon
            self._skewed(
                f"Klaviyo's quota block is recorded until {_iso(blocked)}, more than "
                f"{window_text(self.window_seconds)}",
                f"no block lasts longer, so it now ends at {_iso(horizon)}",
            )
        if ledger["blocked_at"] is not None and ledger["blocked_at"] > now + CLOCK_TOLERANCE_SECONDS:
            ledger["blocked_at"] = now
        last = ledger["last_done"]
        if last is not None and last > now + CLOCK_TOLERANCE_SECONDS:
            ledger["last_done"] = now
            self._skewed(
                f"the last report request is recorded as ending at {_iso(last)}, {last - now:.0f} s",
                "the next request is paced from now, waiting at most one pacing interval",
            )

    @contextlib.contextmanager
    def _ledger(self, now: float | None = None) -> Iterator[dict[str, Any]]:
        """The ledger, locked against every other thread and process, its times bounded against `now` (the
        clock by default); changes made to it, the bounding included, are saved."""
        now = time.time() if now is None else now
        with self._lock:
            if self.path is None:
                self._bound(self._memory, now)
                yield self._memory
                return
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                lock = open(self.lock_path, "a")  # closed by the `with` below, after the body ran
            except OSError as exc:
                raise ReportLedgerError(
                    f"the report ledger directory {self.path.parent} cannot be written ({exc}): give this process "
                    "write access to it, or point KLAVIYO_REPORT_LEDGER_DIR at a directory it can write"
                ) from exc
            with lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                ledger = self._read()
                before = copy.deepcopy(ledger)
                self._bound(ledger, now)
                yield ledger
                if ledger != before:
                    ledger["account_id"] = ledger["account_id"] or self.account_id
                    self._write(ledger)

    def _prune(self, ledger: dict, now: float) -> None:
        ledger["sent"] = [t for t in ledger["sent"] if t > now - self.window_seconds]
        if ledger["blocked_until"] is not None and ledger["blocked_until"] <= now:
            ledger["blocked_until"] = ledger["blocked_at"] = None

    # -- the budget --------------------------------------------------------------------------------------

    def _oldest_ages_out(self, ledger: dict) -> float | None:
        return min(ledger["sent"]) + self.window_seconds if ledger["sent"] else None

    def remaining(self, now: float | None = None) -> int:
        """Report requests left in the rolling window (0 while a quota block from Klaviyo is in force)."""
        now = time.time() if now is None else now
        with self._ledger(now) as ledger:
            self._prune(ledger, now)
            if ledger["blocked_until"] is not None:
                return 0
            return max(0, self.daily_limit - len(ledger["sent"]))

    def available_at(self, needed: int, now: float | None = None) -> dt.datetime | None:
        """When `needed` report requests will fit (UTC), if nothing else is sent; `None` if they fit now.

        For a run that sent what fits and must say when the rest can resume: a block from Klaviyo must end
        first, then enough counted requests must age out. More than the whole limit fits only a window at a
        time, so for `needed > daily_limit` it is when the whole limit is free.
        """
        now = time.time() if now is None else now
        with self._ledger(now) as ledger:
            self._prune(ledger, now)
            sent = sorted(ledger["sent"])
            blocked = ledger["blocked_until"]
        wanted = min(needed, self.daily_limit)
        # once the k oldest requests have aged out, daily_limit - len(sent) + k fit
        to_age_out = len(sent) - (self.daily_limit - wanted)
        free_at = sent[to_age_out - 1] + self.window_seconds if to_age_out > 0 else None
        moments = [m for m in (blocked, free_at) if m is not None]
        return _utc(max(moments)) if moments else None

    def last_request_done(self, now: float | None = None) -> float | None:
        """Wall-clock end of the last report request any process recorded, if known (never after `now`, give
        or take a second: a later one is clock skew, logged and taken as `now`)."""
        with self._ledger(now) as ledger:
            return ledger["last_done"]

    def ensure_available(self, needed: int, now: float | None = None) -> None:
        """Refuse, before sending anything, a run that needs more requests than the budget has left.

        Raises:
            ReportBudgetError: with `kind` KLAVIYO_QUOTA while a block from Klaviyo is in force, else
                PIPELINE_LIMIT when this pipeline's own count leaves fewer than `needed`.
        """
        now = time.time() if now is None else now
        with self._ledger(now) as ledger:
            self._prune(ledger, now)
            common = dict(
                needed=needed,
                account_id=self.account_id,
                daily_limit=self.daily_limit,
                window_seconds=self.window_seconds,
            )
            if needed > 0 and ledger["blocked_until"] is not None:
                raise ReportBudgetError(
                    remaining=0,
                    kind=KLAVIYO_QUOTA,
                    retry_at=_utc(ledger["blocked_until"]),
                    blocked_at=_utc(ledger["blocked_at"]),
                    **common,
                )
            left = max(0, self.daily_limit - len(ledger["sent"]))
            if needed > left:
                raise ReportBudgetError(
                    remaining=left, kind=PIPELINE_LIMIT, retry_at=_utc(self._oldest_ages_out(ledger)), **common
                )

    def take(self, path: str, now: float | None = None) -> None:
        """Count one request about to be sent, or fail fast when the budget is spent.

        Raises:
            KlaviyoQuotaExhausted: with `kind` KLAVIYO_QUOTA while a block from Klaviyo is in force, else
                PIPELINE_LIMIT when this pipeline's own count is at KLAVIYO_REPORT_DAILY_LIMIT.
        """
        now = time.time() if now is None else now
        with self._ledger(now) as ledger:
            self._prune(ledger, now)
            blocked = ledger["blocked_until"]
            if blocked is not None:
                raise KlaviyoQuotaExhausted(
                    path=path,
                    retry_after_seconds=blocked - now,
                    retry_at=_utc(blocked),
                    kind=KLAVIYO_QUOTA,
                    account_id=self.account_id,
                    blocked_at=_utc(ledger["blocked_at"]),
                )
            if len(ledger["sent"]) >= self.daily_limit:
                free_at = self._oldest_ages_out(ledger)
                raise KlaviyoQuotaExhausted(
                    path=path,
                    retry_after_seconds=free_at - now,
                    retry_at=_utc(free_at),
                    kind=PIPELINE_LIMIT,
                    account_id=self.account_id,
                    daily_limit=self.daily_limit,
                    window_seconds=self.window_seconds,
                )
            ledger["sent"].append(now)

    def finished(self, now: float | None = None) -> None:
        """Record the end of a report request, so the next process paces from it.

        A ledger that cannot be written now (a full disk) is only logged: the request was counted before it was
        sent, and its answer, already paid for, must still reach the caller. The next `take` refuses to send.
        """
        try:
            now = time.time() if now is None else now
            with self._ledger(now) as ledger:
                ledger["last_done"] = now
        except ReportLedgerError as exc:
            logger.warning("the end of a report request could not be recorded: %s", exc)

    def block_until(self, moment: float, now: float | None = None) -> None:
        """Klaviyo said the quota is spent until `moment`: no process sends a report request before then.

        A moment further than one window ahead is held only that long: no Klaviyo block lasts longer.
        """
        now = time.time() if now is None else now
        if not _is_time(moment) or moment > now + self.window_seconds:
            moment = now + self.window_seconds
        with self._ledger(now) as ledger:
            if ledger["blocked_until"] is None or moment > ledger["blocked_until"]:
                ledger["blocked_until"], ledger["blocked_at"] = moment, now

    def adopt_legacy(self, legacy: Path) -> None:
        """Merge the counts of an older version's account-less ledger into this one, then retire that file."""
        what_to_do = (
            "so its counts cannot be moved to the per-account ledgers. Inspect it, or delete it if you are sure no "
            f"report requests were sent in the last {window_text(self.window_seconds)} (deleting it forgets them)."
        )
        with self._ledger() as ledger:
            try:
                # bounded like a ledger: a file no ledger grows to is not read whole
                problem = f"is larger than {MAX_LEDGER_BYTES // 2**20} MB, which no ledger grows to"
                text = None if legacy.stat().st_size > MAX_LEDGER_BYTES else legacy.read_text(encoding="utf-8")
            except FileNotFoundError:
                return  # none, or another process adopted it first
            except (OSError, UnicodeDecodeError) as exc:
                problem, text = f"cannot be read ({exc})", None
            if text is None:
                raise ReportLedgerError(f"the report ledger of an older version, {legacy}, {problem}, {what_to_do}")
            try:
                old = json.loads(text)
            except ValueError:
                old = None
            keys = ("sent", "blocked_until", "last_done")
            if not (isinstance(old, dict) and all(k in old for k in keys) and isinstance(old["sent"], list)):
                raise ReportLedgerError(
                    f"the report ledger of an older version, {legacy}, is damaged or not shaped like a ledger, "
                    f"{what_to_do}"
                )
            # what is no time is no request; a time ahead of the clock is bounded by the next read
            ledger["sent"] = sorted(set(ledger["sent"]) | {t for t in old["sent"] if _is_time(t)})
            for key in ("blocked_until", "last_done"):
                if _is_time(old[key]) and (ledger[key] is None or old[key] > ledger[key]):
                    ledger[key] = old[key]
            if ledger["blocked_until"] is not None and ledger["blocked_at"] is None:
                ledger["blocked_at"] = ledger["last_done"]
            ledger["account_id"] = self.account_id
            # saved when the block ends; retire the old file only then, so a crash loses nothing
        os.replace(legacy, legacy.with_name(f"{legacy.name}.migrated-to-{self.account_id}"))


class ReportLedgers:
    """One ReportBudget per Klaviyo account, in `directory/<account id>.json` (in memory without a directory).

    Args:
        daily_limit: KLAVIYO_REPORT_DAILY_LIMIT.
        directory: where the ledger files live (KLAVIYO_REPORT_LEDGER_DIR); `None` keeps them in memory.
        window_seconds: the rolling window of every ledger.
        legacy_file: the single, account-less ledger file of older versions. If it exists, the first account
            bound adopts its counts (older versions served one account per state directory; adopting them can
            only over-count), and it is renamed to `<name>.migrated-to-<account id>`.
        log: where the ledgers report clock skew (the `ledger` module's logger by default).
    """

    def __init__(
        self,
        daily_limit: int,
        directory: str | os.PathLike | None = None,
        *,
        window_seconds: float = REPORT_QUOTA_WINDOW_SECONDS,
        legacy_file: str | os.PathLike | None = None,
        log: logging.Logger | logging.LoggerAdapter | None = None,
    ) -> None:
        self.daily_limit = daily_limit
        self.log = log
        self.directory = Path(directory) if directory else None
        self.window_seconds = window_seconds
        self.legacy_file = Path(legacy_file) if legacy_file and directory else None
        self._budgets: dict[str, ReportBudget] = {}
        self._lock = threading.Lock()

    def path_for(self, account_id: str) -> Path | None:
        """The ledger file of an account."""
        if self.directory is None:
            return None
        # account ids are short alphanumerics; anything else must not escape the directory
        if not account_id or not all(c.isalnum() or c in "-_" for c in account_id):
            raise ValueError(f"account id {account_id!r} cannot name a ledger file")
        return self.directory / f"{account_id}.json"

    def for_account(self, account_id: str) -> ReportBudget:
        """The budget of one account (the same object on every call)."""
        with self._lock:
            budget = self._budgets.get(account_id)
            if budget is None:
                budget = ReportBudget(
                    self.daily_limit,
                    self.path_for(account_id),
                    window_seconds=self.window_seconds,
                    account_id=account_id,
                    log=self.log,
                )
                self._budgets[account_id] = budget
                if self.legacy_file is not None:
                    budget.adopt_legacy(self.legacy_file)
            return budget
