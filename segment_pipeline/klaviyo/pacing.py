"""Client-side pacing so that a well-behaved run never earns a 429 from its own speed.

Klaviyo counts requests in fixed windows (1 s burst, 1 min steady) per account. Spacing request *starts*
exactly 60/rate apart can still land three requests in one window when network latency varies, so the gap is
timed from the end of the previous response and carries a small margin.

The daily report quota is counted by the ledger (ledger.py), not here.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable

from .limits import BURST_WINDOW_SECONDS, STEADY_WINDOW_SECONDS, RateLimit

# Extra fraction of the interval, to absorb latency differences between our clock and Klaviyo's windows.
PACING_MARGIN = 0.05
# A wait at least this long is logged with its reason and its end: a run never sleeps unexplained.
LOGGED_WAIT_SECONDS = 5.0


def until_text(seconds: float, now: float | None = None) -> str:
    """The wall-clock end of a wait, for a log line: '2026-12-01T09:00:03Z'."""
    end = (time.time() if now is None else now) + seconds
    return dt.datetime.fromtimestamp(end, dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def min_interval(limit: RateLimit, per_minute_override: float | None = None) -> float:
    """Seconds to leave between the end of one request and the start of the next for this limit."""
    per_minute = per_minute_override if per_minute_override else limit.per_minute
    return max(BURST_WINDOW_SECONDS / limit.per_second, STEADY_WINDOW_SECONDS / per_minute) * (1 + PACING_MARGIN)


class Pacer:
    """Keeps at least `interval` seconds between the end of one request and the start of the next.

    It never waits longer than one interval: a `not_before_wall` in the future (another process's clock, or
    this one set back) cannot make it sleep for longer. Waits of LOGGED_WAIT_SECONDS or more are logged, with
    `what` they keep to.
    """

    def __init__(
        self,
        interval: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        what: str = "the request rate",
        log: logging.Logger | logging.LoggerAdapter | None = None,
    ) -> None:
        self.interval = interval
        self.what = what
        self.log = log or logging.getLogger(__name__)
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
            delay = min(delay, self.interval)
            if delay >= LOGGED_WAIT_SECONDS:
                self.log.info("waiting %.1f s, until %s, to keep %s", delay, until_text(delay), self.what)
            if delay > 0:
                self._sleep(delay)
                return delay
            return 0.0

    def done(self) -> None:
        """Record that a request just finished (its response arrived or it failed)."""
        with self._lock:
            self._last_done = self._clock()
