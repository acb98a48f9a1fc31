"""Benchmarks: how fast the pipeline turns report responses into rows and merges them into DuckDB.

Run with `make benchmark` (or `python benchmarks/run.py --segments 10000 --days 365`). It measures and
reports; it asserts nothing, so a slow machine never fails the test suite. Measured on a 2-core machine, a
year of 10,000 segments (3.65 M rows, 700 report requests): parse 6.7 s, dlt merge 6.4 s, peak memory 1.9 GB.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import resource
import tempfile
import time
from pathlib import Path

os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")

import duckdb  # noqa: E402
import pyarrow as pa  # noqa: E402

from segment_pipeline.klaviyo import plan_series_requests, series_rows  # noqa: E402
from segment_pipeline.klaviyo.limits import SERIES_STATISTICS  # noqa: E402
from segment_pipeline.sources.series import SERIES_COLUMNS  # noqa: E402
from segment_pipeline.tables import RAW_DATASET, SEGMENT_SERIES_TABLE  # noqa: E402
from segment_pipeline.warehouse import dlt_pipeline  # noqa: E402


def fake_response(request, timezone_offset="+00:00"):
    """A well-formed series response for a planned request, with consistent numbers."""
    days = request.window.dates()
    results = []
    for index, segment_id in enumerate(request.segment_ids):
        added = [(index + d.toordinal()) % 7 for d in days]
        removed = [(index * 3 + d.toordinal()) % 5 for d in days]
        net = [a - r for a, r in zip(added, removed)]
        total, running = [], 1000 + index
        for change in net:
            running += change
            total.append(running)
        results.append(
            {
                "groupings": {"segment_id": segment_id},
                "statistics": dict(zip(SERIES_STATISTICS, (total, added, removed, net))),
            }
        )
    stamps = [f"{d.isoformat()}T00:00:00{timezone_offset}" for d in days]
    return {"data": {"attributes": {"date_times": stamps, "results": results}}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--segments", type=int, default=2000)
    parser.add_argument("--days", type=int, default=365)
    args = parser.parse_args()

    today = dt.date.today()
    ids = [f"S{i:06d}" for i in range(args.segments)]
    started = time.perf_counter()
    plan = plan_series_requests(ids, today - dt.timedelta(days=args.days), today - dt.timedelta(days=1), today)
    plan_seconds = time.perf_counter() - started

    responses = [fake_response(request) for request in plan]
    started = time.perf_counter()
    tables = [
        series_rows(body, account_id="bench", timezone="UTC", requested_ids=req.segment_ids, window=req.window)
        for body, req in zip(responses, plan)
    ]
    parse_seconds = time.perf_counter() - started
    rows = sum(t.num_rows for t in tables)

    with tempfile.TemporaryDirectory() as tmp:
        warehouse = Path(tmp) / "bench.duckdb"
        pipeline = dlt_pipeline("bench_series", warehouse, Path(tmp) / "dlt")
        loaded_at = dt.datetime.now(dt.UTC)
        stamped = [
            t.append_column(
                pa.field("_loaded_at", pa.timestamp("us", tz="UTC")),
                pa.array([loaded_at] * t.num_rows, type=pa.timestamp("us", tz="UTC")),
            )
            for t in tables
        ]
        timings = []
        for attempt in ("first load", "re-run"):
            started = time.perf_counter()
            pipeline.run(
                stamped,
                table_name=SEGMENT_SERIES_TABLE,
                write_disposition="merge",
                primary_key=["account_id", "segment_id", "date"],
                columns=SERIES_COLUMNS,
            )
            timings.append((attempt, time.perf_counter() - started))
        with duckdb.connect(str(warehouse), read_only=True) as connection:
            stored = connection.execute(f"select count(*) from {RAW_DATASET}.{SEGMENT_SERIES_TABLE}").fetchone()[0]

    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"segments x days:        {args.segments} x {args.days} = {rows:,} rows ({stored:,} stored after both loads)")
    print(f"plan:                   {len(plan)} requests in {plan_seconds * 1000:.1f} ms")
    print(f"parse responses:        {parse_seconds:.2f} s ({rows / parse_seconds:,.0f} rows/s)")
    for label, seconds in timings:
        print(f"dlt merge, {label + ':':<14}{seconds:.2f} s ({rows / seconds:,.0f} rows/s)")
    print(f"peak memory:            {peak_mb:,.0f} MB")


if __name__ == "__main__":
    main()
