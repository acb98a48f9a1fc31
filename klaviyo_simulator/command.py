"""Command line of the simulator: `serve` runs it as its own process until SIGINT or SIGTERM.

    klaviyo-simulator serve --port 8765 --segments 120 --seed 3
    python -m klaviyo_simulator serve --port 8765     # the same
    klaviyo-simulator serve --accounts 3              # three accounts, keys <key>-1, <key>-2, <key>-3

The key comes from `--api-key` or the `KLAVIYO_API_KEY` environment variable; it is never printed (with
`--accounts N`, neither are the keys derived from it: the output says how to form them).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from .account_config import SimulatorConfig
from .accounts import derived_key, numbered_configs
from .simulator import KlaviyoSimulator

DEFAULT_PORT = 8765
API_KEY_ENV = "KLAVIYO_API_KEY"
# a process that runs for days must not grow its request log without bound
_LOG_LIMIT = 10_000


def _date(value: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected YYYY-MM-DD, got {value!r}") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the simulator's options to a parser (used by `segment-pipeline simulator` and `python -m`).

    Args:
        parser: The parser or sub-parser to extend.
    """
    defaults = SimulatorConfig()
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default: %(default)s)")
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help="port to bind, 0 for any free port (default: %(default)s)"
    )
    parser.add_argument(
        "--segments", type=int, default=defaults.segment_count, help="number of segments (default: %(default)s)"
    )
    parser.add_argument(
        "--seed", type=int, default=defaults.seed, help="seed for all generated data (default: %(default)s)"
    )
    parser.add_argument(
        "--speed",
        type=float,
        default=defaults.speed,
        help="divide every rate-limit window by this (default: %(default)s)",
    )
    parser.add_argument(
        "--quota-day-seconds",
        type=float,
        default=None,
        help="real seconds of the daily report-quota window (default: 86400 / speed)",
    )
    parser.add_argument(
        "--timezone", default=defaults.timezone, help="account timezone, IANA name (default: %(default)s)"
    )
    parser.add_argument(
        "--today", type=_date, default=None, help="fix the account's today (YYYY-MM-DD); default: real clock"
    )
    parser.add_argument(
        "--backfill-hours",
        type=float,
        default=defaults.backfill_hours,
        help="hours a segment created through the admin endpoint answers zeros for its past (default: %(default)s)",
    )
    parser.add_argument(
        "--revision-days",
        type=int,
        default=defaults.revision_days,
        help="days a day's report bucket keeps changing (late members); 0 never (default: %(default)s)",
    )
    parser.add_argument(
        "--missing-scope",
        action="append",
        default=[],
        metavar="SCOPE",
        help="answer 403 for endpoints needing this scope (repeatable), e.g. accounts:read",
    )
    parser.add_argument(
        "--api-key", default=None, help=f"the private key clients must send (default: ${API_KEY_ENV}); never printed"
    )
    parser.add_argument(
        "--ready-file",
        default=None,
        metavar="PATH",
        help="once listening, write the base URL and each account's name, id, timezone and key to this JSON file "
        "(mode 0600), for programs that start the simulator",
    )
    parser.add_argument(
        "--accounts",
        type=int,
        default=1,
        metavar="N",
        help="serve N accounts, one per key: account_<i> answers to the key <KEY>-<i>, has the seed SEED+i-1 and "
        "its own timezone, limits and quota (default: %(default)s, one account answering to KEY itself)",
    )


def config_of(args: argparse.Namespace, api_key: str) -> SimulatorConfig:
    """The (first) account's configuration the options describe; `numbered_configs` derives the others."""
    return SimulatorConfig(
        api_key=api_key,
        segment_count=args.segments,
        seed=args.seed,
        speed=args.speed,
        quota_day_seconds=args.quota_day_seconds,
        timezone=args.timezone,
        today=args.today,
        missing_scopes=tuple(args.missing_scope),
        backfill_hours=args.backfill_hours,
        processing_hours=min(args.backfill_hours, SimulatorConfig.processing_hours),
        revision_days=args.revision_days,
    )


def run(args: argparse.Namespace) -> int:
    """Serve until SIGINT or SIGTERM.

    Args:
        args: Parsed options from a parser extended by `add_arguments`.

    Returns:
        The process exit code: 0 after a clean stop, 2 for bad options.
    """
    api_key = args.api_key or os.environ.get(API_KEY_ENV)
    if not api_key:
        print(
            f"error: no API key: pass --api-key or set {API_KEY_ENV} (clients must send the same key)",
            file=sys.stderr,
        )
        return 2
    try:
        config = config_of(args, api_key)
        if args.accounts > 1:
            simulator = KlaviyoSimulator(accounts=numbered_configs(config, args.accounts), log_limit=_LOG_LIMIT)
        elif args.accounts == 1:
            simulator = KlaviyoSimulator(config, log_limit=_LOG_LIMIT)
        else:
            raise ValueError("--accounts must be at least 1")
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    try:
        simulator.start(host=args.host, port=args.port)
    except OSError as exc:
        print(f"error: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 2

    stop = threading.Event()

    def _request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, _request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        if args.accounts == 1:
            print(
                f"Klaviyo simulator listening on {simulator.base_url} "
                f"(account {simulator.account.account_id}, {len(simulator.account.segments)} segments, "
                f"seed {config.seed}, timezone {config.timezone}, speed {config.speed:g})",
                flush=True,
            )
        else:
            print_accounts(simulator, "${" + API_KEY_ENV + "}" if not args.api_key else "<the --api-key value>")
        if args.ready_file:
            write_ready_file(Path(args.ready_file), simulator)
        while not stop.wait(0.5):
            pass
    finally:
        simulator.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


def print_accounts(simulator: KlaviyoSimulator, key_source: str) -> None:
    """The listening line, then one line per account with how to form its key (never the key itself)."""
    speed = simulator.config.speed
    print(
        f"Klaviyo simulator listening on {simulator.base_url} ({len(simulator.accounts)} accounts, speed {speed:g})",
        flush=True,
    )
    for index, served in enumerate(simulator.accounts, start=1):
        key = derived_key(key_source, index)
        print(
            f"  {served.name:<12} account {served.account_id}  {served.timezone:<20} "
            f"{len(served.account.segments)} segments, seed {served.config.seed}, key: {key}",
            flush=True,
        )


def write_ready_file(path: Path, simulator: KlaviyoSimulator) -> None:
    """What a program that started the simulator needs to talk to it, written whole (temporary file, rename)."""
    ready = {
        "base_url": simulator.base_url,
        "accounts": [
            {
                "name": served.name,
                "account_id": served.account_id,
                "timezone": served.timezone,
                "segments": len(served.account.segments),
                "api_key": served.config.api_key,
            }
            for served in simulator.accounts
        ],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        json.dump(ready, handle)
    os.replace(temporary, path)


# `segment-pipeline simulator` hands over to this command line with `--as "segment-pipeline simulator"` first,
# so that usage lines and errors name the command the user typed
SHOWN_AS_OPTION = "--as"


def build_parser(shown_as: str | None = None) -> argparse.ArgumentParser:
    """The parser of `klaviyo-simulator` (and `python -m klaviyo_simulator`): `serve`.

    Args:
        shown_as: The command as the user typed it (e.g. "segment-pipeline simulator"), for `serve`'s usage
            line; default "klaviyo-simulator serve".
    """
    parser = argparse.ArgumentParser(
        prog="klaviyo-simulator",
        description="A local Klaviyo API simulator (segments and segment reports) over HTTP.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    named = {"prog": shown_as} if shown_as else {}
    serve = commands.add_parser("serve", help="serve the simulated Klaviyo API over HTTP", **named)
    add_arguments(serve)
    serve.set_defaults(handler=run, parser=serve)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse `argv` and run the chosen command.

    Args:
        argv: Arguments without the program name; `None` reads `sys.argv`. They may start with
            `--as "<command>"`: how `segment-pipeline` names the subcommand it hands over.

    Returns:
        The exit code.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    shown_as = None
    if len(argv) >= 2 and argv[0] == SHOWN_AS_OPTION:
        shown_as, argv = argv[1], argv[2:]
    args, unknown = build_parser(shown_as).parse_known_args(argv)
    if unknown:
        # reported by the subcommand's parser, whose usage line names what the user typed
        args.parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    return int(args.handler(args) or 0)
