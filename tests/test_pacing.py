"""The client's pacer on a clock the test moves: one request per interval, and burst windows."""

from __future__ import annotations

from segment_pipeline.klaviyo.limits import SEGMENTS_RATE_LIMIT
from segment_pipeline.klaviyo.pacing import PACING_MARGIN, Pacer, burst_windows


class Clock:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def send(pacer: Pacer, clock: Clock, latency: float = 0.01) -> float:
    """One request: wait, answer after `latency`; returns the moment it started."""
    pacer.wait()
    started = clock.now
    clock.now += latency
    pacer.done()
    return started


def test_one_request_per_interval_counts_from_the_end_of_the_last_one() -> None:
    clock = Clock()
    pacer = Pacer(2.0, clock=clock, sleep=clock.sleep)
    starts = [send(pacer, clock, latency=0.5) for _ in range(3)]
    assert [round(b - a, 6) for a, b in zip(starts, starts[1:], strict=False)] == [2.5, 2.5]


def test_burst_windows_let_requests_through_until_a_window_is_full() -> None:
    clock = Clock()
    pacer = Pacer(windows=((3, 1.0), (5, 10.0)), clock=clock, sleep=clock.sleep)
    starts = [send(pacer, clock) for _ in range(7)]
    ends = [start + 0.01 for start in starts]
    # the first three at once; the fourth a second after the first one ended; the sixth ten seconds after it
    assert clock.slept[0] > 0.9 and starts[2] - starts[0] < 0.05
    assert round(starts[3] - ends[0], 6) == 1.0
    assert round(starts[5] - ends[0], 6) == 10.0
    # any window of the length holds at most its count of requests, wherever it starts
    for count, seconds in ((3, 1.0), (5, 10.0)):
        assert all(starts[i + count] - ends[i] >= seconds - 1e-9 for i in range(len(starts) - count))


def test_the_listing_uses_the_segments_limits_whole_with_a_margin() -> None:
    (burst, steady) = burst_windows(SEGMENTS_RATE_LIMIT)
    assert burst == (75, 1 + PACING_MARGIN) and steady == (750, 60 * (1 + PACING_MARGIN))
    clock = Clock()
    pacer = Pacer(windows=(burst, steady), clock=clock, sleep=clock.sleep)
    for _ in range(100):  # 1,000 segments
        send(pacer, clock, latency=0.001)
    assert sum(clock.slept) < 1.1  # one wait for the burst window, not a gap before every page
