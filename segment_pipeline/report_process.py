"""The growth report drawn in a process of its own, started by the report step through Dagster Pipes.

    python -m segment_pipeline.report_process SOURCE CHARTS_DIR --memory-limit 128MB
        [--data-path PATH --extension-dir DIR]

SOURCE is the analyst copy's path, or a lake's `ducklake:postgres:...` setting (then with its data path and
extension folder; the password comes from PGPASSWORD or PGPASSFILE, as everywhere). The report's data (every
segment's series, compressed) is built here, so it never adds to the memory of the shared build's process,
which has just built the models and the copy; this process imports neither Dagster nor dlt, only the small
`dagster_pipes` to hand the step its metadata.
"""

from __future__ import annotations

import argparse
import base64
import sys
from pathlib import Path


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m segment_pipeline.report_process", description=__doc__)
    parser.add_argument("source", help="the analyst copy's path, or the lake's ducklake:postgres:... setting")
    parser.add_argument("charts_dir", type=Path)
    parser.add_argument("--memory-limit", required=True)
    parser.add_argument("--data-path", help="the lake's data path")
    parser.add_argument("--extension-dir", type=Path, help="the lake's DuckDB extension folder")
    return parser


def report_metadata(paths: dict[str, Path]) -> dict[str, dict]:
    """The step's metadata as Pipes carries it: the preview inline (the UI shows Markdown), the files by path."""
    preview = base64.b64encode(paths["preview"].read_bytes()).decode("ascii")
    chart = f"![The largest segments' growth](data:image/png;base64,{preview})"
    return {
        "chart": {"raw_value": chart, "type": "md"},
        **{name: {"raw_value": str(paths[file]), "type": "path"} for name, file in REPORT_FILES.items()},
    }


# metadata entry -> the file of write_growth_charts it names
REPORT_FILES = {"report": "html", "png": "png", "html": "html"}


def main(argv: list[str] | None = None) -> None:
    from dagster_pipes import open_dagster_pipes

    from .charts import write_growth_charts
    from .lake import LAKE_PREFIX, Lake

    args = _parser().parse_args(argv)
    source: Path | Lake = Path(args.source)
    if args.source.startswith(LAKE_PREFIX):
        source = Lake.from_url(args.source, args.data_path, args.extension_dir)
    with open_dagster_pipes() as pipes:
        paths = write_growth_charts(source, args.charts_dir, memory_limit=args.memory_limit)
        pipes.log.info(f"growth report written to {paths['html']}")
        pipes.report_asset_materialization(metadata=report_metadata(paths))


if __name__ == "__main__":
    main(sys.argv[1:])
