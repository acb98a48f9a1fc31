"""`segment-pipeline` command line: run the bundled Klaviyo simulator, or the demo on it."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="segment-pipeline",
        description="Klaviyo segment growth history in DuckDB. See README.md for the Dagster commands.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    from .simulator import cli as simulator_cli

    simulator = commands.add_parser("simulator", help="serve the bundled Klaviyo simulator over HTTP")
    simulator_cli.add_arguments(simulator)
    simulator.set_defaults(handler=simulator_cli.run)

    from . import demo

    demo_parser = commands.add_parser("demo", help="load the last 90 days from the simulator and build everything")
    demo.add_arguments(demo_parser)
    demo_parser.set_defaults(handler=demo.run)

    args = parser.parse_args(argv)
    return int(args.handler(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
