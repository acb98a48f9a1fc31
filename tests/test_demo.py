"""`segment-pipeline demo`, the command behind `make demo`, end to end on a small simulated account."""

import os
import subprocess
import sys
from pathlib import Path

import duckdb

REPO = Path(__file__).resolve().parents[1]


def test_demo_loads_builds_publishes_and_reports(tmp_path):
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text((REPO / "dagster_home" / "dagster.yaml").read_text())
    env = {**os.environ, "DAGSTER_HOME": str(home)}
    env.pop("KLAVIYO_API_KEY", None)  # the demo needs no Klaviyo account
    data = tmp_path / "demo"
    finished = subprocess.run(
        [
            sys.executable,
            "-m",
            "segment_pipeline.cli",
            "demo",
            "--days",
            "5",
            "--segments",
            "12",
            "--data-dir",
            str(data),
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=420,
    )
    assert finished.returncode == 0, finished.stdout[-3000:] + finished.stderr[-3000:]
    out = finished.stdout
    assert "segments loaded:        12" in out
    assert "series rows:            60" in out
    assert "1 segment-series reports" in out
    for path in ("analytics.duckdb", "charts/segment_growth.png", "charts/segment_growth.html"):
        assert (data / path).exists(), path
    with duckdb.connect(str(data / "analytics.duckdb"), read_only=True) as connection:
        assert connection.execute("select count(*) from marts.segment_growth_daily").fetchone()[0] == 60
