"""The segments listing against the simulator's real limits (time x1): how long the definitions of 1,000
segments take to list, and the once-a-day listing with their tags (`include=tags`, paced under Klaviyo's
stricter limit for it), with the requests each sent and any 429 the simulator answered.

`make benchmark` runs it with the other figures (`--only listing` alone); target: the plain listing of
1,000 segments (100 pages) well under 10 s. The tags listing has no target: it is what the first run of each
account-local day pays, and docs/architecture.md quotes it.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import httpx

from segment_pipeline.devtools import processes
from segment_pipeline.devtools.demo import STATS_PATH
from segment_pipeline.klaviyo import KlaviyoClient
from segment_pipeline.klaviyo.limits import SEGMENTS_PATH
from segment_pipeline.klaviyo.settings import ApiKey, KlaviyoSettings

API_KEY = "pk_benchmark_listing_0000"
LISTING_TARGET_S = 10.0


def _throttled(base_url: str) -> int:
    counts = httpx.get(base_url + STATS_PATH, timeout=10).json()["requests_by_path"].get(SEGMENTS_PATH, {})
    return int(counts.get("429", 0))


def _timed(client: KlaviyoClient, with_tags: bool) -> tuple[float, float, int, int]:
    """Seconds, of which waited by the pacer, segments listed and listing requests sent."""
    before, waited = sum(client.stats.sent.values()), client.stats.seconds_waited
    started = time.perf_counter()
    segments = client.list_segments_with_tags()[0] if with_tags else client.list_segments()
    seconds = time.perf_counter() - started
    return seconds, client.stats.seconds_waited - waited, len(segments), sum(client.stats.sent.values()) - before


def bench_listing(segments: int = 1000, report=print) -> None:
    """Print the two listing figures; `report(label, value, target, ok)` is the harness's line printer."""
    print(f"listing {segments:,} segments against the simulator's real limits (time x1)", flush=True)
    with tempfile.TemporaryDirectory(prefix="listing-bench-") as work:
        with processes.simulator(Path(work), api_key=API_KEY, segments=segments, speed=1.0) as simulator:
            settings = KlaviyoSettings(api_key=ApiKey(API_KEY), base_url=simulator.base_url)
            with KlaviyoClient(settings) as client:
                seconds, waited, listed, sent = _timed(client, with_tags=False)
                throttled = _throttled(simulator.base_url)
                report(
                    f"  definitions: {listed:,} in {sent} requests",
                    f"{seconds:.2f} s",
                    f"well under {LISTING_TARGET_S:.0f} s",
                    seconds < LISTING_TARGET_S,
                )
                report("    of which pacing waits", f"{waited:.2f} s", "", None)
                report("    429s answered", str(throttled), "0", throttled == 0)
                seconds, waited, listed, sent = _timed(client, with_tags=True)
                report(f"  with tags (once a day): {listed:,} in {sent}", f"{seconds:.1f} s", "", None)
                report("    of which pacing waits", f"{waited:.1f} s", "", None)
                report("    429s answered", str(_throttled(simulator.base_url) - throttled), "0", None)
