"""`segment-pipeline` command line: `backfill`, and the devtools' `demo` and `dev`, and the bundled simulator.

segment-pipeline backfill --days 30        # one Dagster backfill of every account's last 30 days
segment-pipeline demo                      # the whole pipeline on the simulator (make demo)
segment-pipeline dev                       # the Dagster UI on the simulator (make dev)
segment-pipeline demo-scale                # the demo on Dagster-on-PostgreSQL and a DuckLake (make demo-scale)
segment-pipeline lake copy                 # move a file warehouse into the lake WAREHOUSE_PATH names
segment-pipeline simulator --port 8765     # the simulator alone (python -m klaviyo_simulator serve)
"""

from __future__ import annotations

import os
import sys

_USAGE = """usage: segment-pipeline {backfill,demo,demo-scale,dev,lake,simulator} [options]

  backfill    load a range of days for the deployment's accounts as one Dagster backfill
  demo        run the whole pipeline on a fresh bundled Klaviyo simulator
  demo-scale  the demo on a scaled deployment: Dagster on PostgreSQL, the warehouse a DuckLake (data/scale/)
  dev         the Dagster UI with the bundled simulator as Klaviyo
  lake        copy a file warehouse into the DuckLake warehouse; print the analysts' DuckDB line
  simulator   serve the bundled Klaviyo simulator over HTTP (python -m klaviyo_simulator serve)

`segment-pipeline <command> --help` lists a command's options; docs/operating.md says more.
"""


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    command, rest = (args[0], args[1:]) if args else (None, [])
    if command == "backfill":
        from .backfill import main as backfill_main

        return backfill_main(rest)
    if command == "demo":
        from .devtools.demo import run_demo

        return run_demo(rest)
    if command == "demo-scale":
        from .devtools.scale import run_demo_scale

        return run_demo_scale(rest)
    if command == "dev":
        from .devtools.demo import run_dev

        return run_dev(rest)
    if command == "lake":
        from .lake.command import main as lake_main

        return lake_main(rest)
    if command == "simulator":
        # exec, not a child: signals (Ctrl-C, SIGTERM) and the exit code reach the simulator directly
        os.execv(
            sys.executable,
            [sys.executable, "-m", "klaviyo_simulator", "--as", "segment-pipeline simulator", "serve", *rest],
        )
    print(_USAGE, file=sys.stdout if command in ("-h", "--help") else sys.stderr)
    return 0 if command in ("-h", "--help") else 2


if __name__ == "__main__":
    sys.exit(main())
