"""`segment-pipeline lake`: move a file warehouse into the lake, and show analysts how to query it.

    segment-pipeline lake copy [--from data/warehouse.duckdb]   # every table and row of the file, once
    segment-pipeline lake analyst                               # the DuckDB line that queries the lake read-only

The lake is the deployment's warehouse setting (WAREHOUSE_PATH=ducklake:postgres:..., WAREHOUSE_DATA_PATH);
its password comes from PGPASSWORD or PGPASSFILE, as for every run.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from ..config import DEFAULT_WAREHOUSE_PATH, WAREHOUSE_DATA_PATH_ENV, WAREHOUSE_ENV, ConfigError
from .errors import LakeCommitConflictError, LakeUnavailableError
from .extensions import LakeExtensionsError
from .location import Lake


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="segment-pipeline lake", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    copy = commands.add_parser(
        "copy",
        help="copy a DuckDB file warehouse into the lake (history included); a second run copies nothing again",
    )
    copy.add_argument(
        "--from",
        dest="source",
        type=Path,
        default=Path(DEFAULT_WAREHOUSE_PATH),
        help=f"the file warehouse to copy (default: {DEFAULT_WAREHOUSE_PATH})",
    )
    commands.add_parser("analyst", help="print the DuckDB command an analyst runs to query the lake read-only")
    return parser


def analyst_command(lake: Lake, program: str = "duckdb") -> str:
    """The shell line that opens DuckDB's CLI (`program`) on the lake, read-only (the password from PGPASSWORD
    or PGPASSFILE)."""
    return f"{shlex.quote(program)} -cmd {shlex.quote(lake.analyst_sql() + ';')}"


def _the_lake() -> Lake:
    from ..settings import load_settings

    lake = load_settings().storage.lake
    if lake is None:
        raise ConfigError(
            f"{WAREHOUSE_ENV} names a DuckDB file, not a lake: set {WAREHOUSE_ENV}=ducklake:postgres:dbname=... "
            f"host=... port=... user=... and {WAREHOUSE_DATA_PATH_ENV} (docs/deploying.md), then run again."
        )
    return lake


def main(argv: list[str]) -> int:
    from .copy import CopyRefusedError, copy_file_warehouse

    args = _parser().parse_args(argv)
    try:
        lake = _the_lake()
        if args.command == "analyst":
            print(analyst_command(lake))
            return 0
        report = copy_file_warehouse(args.source, lake, log=lambda message: print(message, file=sys.stderr))
    except (
        ConfigError,
        CopyRefusedError,
        FileNotFoundError,
        LakeUnavailableError,
        LakeCommitConflictError,
        LakeExtensionsError,
    ) as exc:
        print(f"segment-pipeline lake {args.command}: {exc}", file=sys.stderr)
        return 1
    print("\n".join(report.lines()))
    return 0
