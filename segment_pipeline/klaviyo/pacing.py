"""Client-side pacing so that a well-behaved run never earns a 429 from its own speed.

Klaviyo counts requests in fixed windows (1 s burst, 1 min steady) per account. Spacing request *starts*
exactly 60/rate apart can still land three requests in one window when network latency varies, so the gap is
timed from the end of the previous response and carries a small margin.

The reporting endpoints also have a daily quota (225 a day per account, shared with every integration). The
ReportBudget ledger counts our report requests over a rolling 24 hours, in a small JSON file when given a path,
so that separate runs (each a separate process) see one budget between them.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from .errors import KlaviyoQuotaExhausted, ReportBudgetError
from .limits import RateLimit

DAY_SECONDS = 24 * 60 * 60
# Extra fraction of the interval, to absorb latency differences between our clock and Klaviyo's windows.
PACING_MARGIN = 0.05


def min_interval(limit: RateLimit, per_minute_override: float | None = None) -> float:
    """Seconds to leave between the end of one request and the start of the next for this limit."""
    per_minute = per_minute_override if per_minute_override else limit.per_minute
    return max(1.0 / limit.per_second, 60.0 / per_minute) * (1 + PACING_MARGIN)


class Pacer:
    """Keeps at least `interval` seconds between the end of one request and the start of the next."""

    def __init__(
        self,
        interval: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.interval = interval
        self._clock = clock
        self._sleep = sleep
        self._last_done: float | None = None
        self._lock = threading.Lock()

    def wait(self, not_before_wall: float | None = None) -> float:
        """Sleep until the next request may start; returns the seconds slept.

        Args:
            not_before_wall: a wall-clock (time.time) moment before which no request may start, e.g. the end
                of another process's last request, read from the budget ledger.
        """
        with self._lock:
            delay = 0.0
            if self._last_done is not None:
                delay = self._last_done + self.interval - self._clock()
            if not_before_wall is not None:
                delay = max(delay, not_before_wall + self.interval - time.time())
            if delay > 0:
                self._sleep(delay)
                return delay
            return 0.0

    def done(self) -> None:
        """Record that a request just finished (its response arrived or it failed)."""
        with self._lock:
            self._last_done = self._clock()


class ReportBudget:
    """Counts report requests over a rolling 24 hours against a daily limit.

    With `path`, the ledger lives in a JSON file (locked while read and written) so every process of the
    pipeline shares it; without, it lives in memory.
    """

    def __init__(
        self, daily_limit: int, path: str | os.PathLike | None = None, *, window_seconds: float = DAY_SECONDS
    ) -> None:
        if daily_limit < 1:
            raise ValueError("the daily report limit must be at least 1")
        if window_seconds <= 0:
            raise ValueError("the budget window must be longer than 0 seconds")
        self.daily_limit = daily_limit
        # 24 hours; tests shorten it (KLAVIYO_REPORT_BUDGET_WINDOW_SECONDS) to live through several "days"
        self.window_seconds = window_seconds
        self.path = Path(path) if path else None
        self._memory: dict = {"sent": [], "blocked_until": None, "last_done": None}
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def _ledger(self) -> Iterator[dict]:
        with self._lock:
            if self.path is None:
                yield self._memory
                return
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a+", encoding="utf-8") as handle:
                fcntl.flock(handle, fcntl.LOCK_EX)
                handle.seek(0)
                text = handle.read()
                try:
                    ledger = json.loads(text) if text.strip() else {}
                except json.JSONDecodeError:
                    # a damaged ledger must not stop the pipeline; start counting afresh
                    ledger = {}
                ledger.setdefault("sent", [])
                ledger.setdefault("blocked_until", None)
                ledger.setdefault("last_done", None)
                yield ledger
                handle.seek(0)
                handle.truncate()
                json.dump(ledger, handle)

    def _prune(self, ledger: dict, now: float) -> None:
        ledger["sent"] = [t for t in ledger["sent"] if t > now - self.window_seconds]

    def remaining(self, now: float | None = None) -> int:
        """Report requests left in the rolling 24-hour budget."""
        now = time.time() if now is None else now
        with self._ledger() as ledger:
            self._prune(ledger, now)
            if ledger["blocked_until"] and ledger["blocked_until"] > now:
                return 0
            return max(0, self.daily_limit - len(ledger["sent"]))

    def next_request_at(self, now: float | None = None) -> float:
        """The wall-clock moment the next report request is allowed (now, if the budget has room)."""
        now = time.time() if now is None else now
        with self._ledger() as ledger:
            self._prune(ledger, now)
            moment = now
            if ledger["blocked_until"] and ledger["blocked_until"] > now:
                moment = ledger["blocked_until"]
            if len(ledger["sent"]) >= self.daily_limit:
                # the oldest requests fall out of the window one by one; this one frees the first slot
                oldest = sorted(ledger["sent"])[len(ledger["sent"]) - self.daily_limit]
                moment = max(moment, oldest + self.window_seconds)
            return moment

    def last_request_done(self) -> float | None:
        """Wall-clock end of the last report request any process recorded, if known."""
        with self._ledger() as ledger:
            return ledger["last_done"]

    def ensure_available(self, needed: int, now: float | None = None) -> None:
        """Refuse, before sending anything, a run that needs more requests than the budget has left."""
        left = self.remaining(now)
        if needed > left:
            raise ReportBudgetError(
                f"this run needs {needed} report requests but only {left} of the daily budget of "
                f"{self.daily_limit} are left (rolling 24 hours). Run a shorter range, wait, or raise "
                "KLAVIYO_REPORT_DAILY_LIMIT if Klaviyo allows more for this account."
            )

    def take(self, path: str, now: float | None = None) -> None:
        """Count one request about to be sent, or fail fast when the budget is spent."""
        now = time.time() if now is None else now
        with self._ledger() as ledger:
            self._prune(ledger, now)
            blocked = ledger["blocked_until"]
            if blocked and blocked > now:
                raise KlaviyoQuotaExhausted(
                    path=path,
                    retry_after_seconds=blocked - now,
                    retry_at=dt.datetime.fromtimestamp(blocked, dt.UTC),
                )
            if len(ledger["sent"]) >= self.daily_limit:
                free_at = min(ledger["sent"]) + self.window_seconds
                raise KlaviyoQuotaExhausted(
                    path=path,
                    retry_after_seconds=free_at - now,
                    retry_at=dt.datetime.fromtimestamp(free_at, dt.UTC),
                    local_budget=True,
                )
            ledger["sent"].append(now)

    def finished(self, now: float | None = None) -> None:
        """Record the end of a report request, so the next process paces from it."""
        with self._ledger() as ledger:
            ledger["last_done"] = time.time() if now is None else now

    def block_until(self, moment: float) -> None:
        """Klaviyo said the quota is spent until `moment`: no process sends a report request before then."""
        with self._ledger() as ledger:
            ledger["blocked_until"] = max(moment, ledger["blocked_until"] or 0)
