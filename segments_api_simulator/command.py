"""Command line: `python -m segments_api_simulator --port 8766 --workspace main=120 --workspace eu=30`.

Each workspace's key is `<--key-prefix>-<name>` (a simulator's key, not a secret): the demo and the tests
form it the same way. The clock starts at `--start` and moves only through `POST /_admin/clock`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import signal
import sys
from types import FrameType

from .server import SegmentsApiSimulator
from .world import DEFAULT_START, World

DEFAULT_PORT = 8766
DEFAULT_KEY_PREFIX = "sim-segments-key"


def workspace_key(prefix: str, name: str) -> str:
    """The key a workspace of the command line answers to."""
    return f"{prefix}-{name}"


def _workspace(text: str) -> tuple[str, int]:
    name, _, count = text.partition("=")
    try:
        segments = int(count or "20")
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected NAME=SEGMENTS, got {text!r}") from None
    if not name or not 0 <= segments <= 100_000:
        raise argparse.ArgumentTypeError(f"expected NAME=SEGMENTS with 0 to 100000 segments, got {text!r}")
    return name, segments


def _moment(text: str) -> dt.datetime:
    try:
        moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an ISO date-time, got {text!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m segments_api_simulator", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="0 for any free port (default %(default)s)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--start", type=_moment, default=DEFAULT_START, help="the clock's first moment (UTC)")
    parser.add_argument("--key-prefix", default=DEFAULT_KEY_PREFIX)
    parser.add_argument(
        "--workspace", type=_workspace, action="append", help="NAME=SEGMENTS, repeatable (default: main=20)"
    )
    args = parser.parse_args(argv)
    world = World(seed=args.seed, start=args.start)
    for name, segments in args.workspace or [("main", 20)]:
        world.add_workspace(name, workspace_key(args.key_prefix, name), segments)
    simulator = SegmentsApiSimulator(world, args.host, args.port)

    def stop(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    names = ", ".join(f"{w.name} ({len(w.segments)} segments)" for w in world.workspaces.values())
    print(f"Segments API simulator on {simulator.base_url}: {names}; keys are {args.key_prefix}-<name>", flush=True)
    try:
        simulator.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
