"""`segment-pipeline` command line: `backfill` (the pipeline's own), and a front door to the bundled simulator's
`demo`, `dev` and `serve` commands.

The product package never imports the simulator (it is test and demo tooling that ships beside it); the
simulator's commands hand over to `python -m klaviyo_simulator` in a process of its own, with the same arguments.
"""

from __future__ import annotations

import os
import sys

_FORWARDED = {"demo": "demo", "dev": "dev", "simulator": "serve"}
_USAGE = """usage: segment-pipeline {backfill,demo,dev,simulator} [options]

  backfill    load a range of days for every account, accounts in parallel (segment-pipeline backfill --help)
  demo        run the whole pipeline on a fresh bundled Klaviyo simulator (klaviyo-simulator demo)
  dev         the Dagster UI with the bundled simulator as Klaviyo (klaviyo-simulator dev)
  simulator   serve the bundled Klaviyo simulator over HTTP (klaviyo-simulator serve)

The Dagster commands are in README.md; `segment-pipeline demo --help` lists the demo's options.
"""


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] == "backfill":
        from .backfill import main as backfill_main

        return backfill_main(args[1:])
    if not args or args[0] not in _FORWARDED:
        print(_USAGE, file=sys.stderr if args and args[0] not in ("-h", "--help") else sys.stdout)
        return 0 if args and args[0] in ("-h", "--help") else 2
    # `--as` (read by klaviyo_simulator.command) makes its usage lines and errors name `segment-pipeline <command>`
    command = [sys.executable, "-m", "klaviyo_simulator", "--as", f"segment-pipeline {args[0]}", _FORWARDED[args[0]]]
    command += args[1:]
    # exec, not a child: signals (Ctrl-C, SIGTERM) and the exit code reach the simulator directly
    os.execv(sys.executable, command)
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
