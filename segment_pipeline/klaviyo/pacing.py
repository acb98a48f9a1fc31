"""Client-side pacing so that a well-behaved run never earns a 429 from its own speed.

Klaviyo counts requests in fixed windows (1 s burst, 1 min steady) per account. Spacing request *starts*
exactly 60/rate apart can still land three requests in one window when network latency varies, so every gap
is timed from the *end* of an earlier response and carries a small margin.

A pacer keeps one or more windows `(requests, seconds)`: a request starts only once the request `requests`
back ended at least `seconds` ago. Klaviyo counts a request when it arrives, after its start and before its
end, so any `requests + 1` consecutive requests then span more than `seconds` at Klaviyo: no fixed window of
that length, wherever it begins, holds more than `requests`. The segments listing uses its limits' burst and
steady windows this way (1,000 segments in about two seconds of pacing instead of a page every 80 ms); the
report endpoints keep one request per interval, so the ledger can carry the spacing across processes.

The daily report quota is counted by the ledger (ledger.py), not here.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections import deque
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


Window = tuple[int, float]


def burst_windows(limit: RateLimit) -> tuple[Window, ...]:
    """The limit's burst and steady windows, each widened by the margin: `limit.per_second` requests a
    second and `limit.per_minute` a minute, sent as fast as those allow."""
    margin = 1 + PACING_MARGIN
    return ((limit.per_second, BURST_WINDOW_SECONDS * margin), (limit.per_minute, STEADY_WINDOW_SECONDS * margin))


class Pacer:
    """Keeps each window: at most `requests` starts within `seconds` of the end of an earlier request.

    `Pacer(interval)` is one request per interval, timed from the end of the previous one; `windows=` gives
    several (see `burst_windows`). It never waits longer than its longest window: a `not_before_wall` in the
    future (another process's clock, or this one set back) cannot make it sleep for longer. Waits of
    LOGGED_WAIT_SECONDS or more are logged, with `what` they keep to.
    """

    def __init__(
        self,
        interval: float | None = None,
        *,
        windows: tuple[Window, ...] | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        what: str = "the request rate",
        log: logging.Logger | logging.LoggerAdapter | None = None,
    ) -> None:
        if windows is None:
            if interval is None:
                raise ValueError("a Pacer needs an interval or windows")
            windows = ((1, interval),)
        self.windows = tuple(windows)
        # the longest wait any window can ask for, and what a `not_before_wall` is counted from
        self.interval = max(seconds for _, seconds in self.windows)
        self.what = what
        self.log = log or logging.getLogger(__name__)
        self._clock = clock
        self._sleep = sleep
        # the ends of the latest requests, as many as the widest window counts
        self._done: deque[float] = deque(maxlen=max(requests for requests, _ in self.windows))
        self._lock = threading.Lock()

    def _delay(self) -> float:
        now = self._clock()
        delay = 0.0
        for requests, seconds in self.windows:
            if len(self._done) >= requests:
                delay = max(delay, self._done[-requests] + seconds - now)
        return delay

    def wait(self, not_before_wall: float | None = None) -> float:
        """Sleep until the next request may start; returns the seconds slept.

        Args:
            not_before_wall: a wall-clock (time.time) moment before which no request may start, e.g. the end
                of another process's last request, read from the budget ledger.
        """
        with self._lock:
            delay = self._delay()
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
            self._done.append(self._clock())
