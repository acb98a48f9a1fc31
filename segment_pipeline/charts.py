"""Growth charts: a PNG of the largest segments (for mail and chat) and the interactive growth report.

Reads `marts.segment_growth_daily` from the analyst copy (or any warehouse file) through a short read-only
DuckDB connection, picks the `top_n` segments with the most members on their latest day, and draws their
total members and daily members added/removed. The HTML page is the growth report (report.py): every
segment, interactive, with Plotly embedded, so it can be mailed or opened offline.

No Dagster imports, and no pyplot: figures are built on the Agg canvas directly, so nothing global changes.
"""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path

import pandas as pd

from .config import DEFAULT_DUCKDB_MEMORY_LIMIT
from .lake.location import Lake
from .report import build_report
from .report_data import GROWTH_DAILY_TABLE, PLATFORM_LABELS, connect_read_only, segment_summary_sql, source_name
from .tables import MARTS_SCHEMA

__all__ = ["GROWTH_DAILY_TABLE", "write_growth_charts"]

PNG_NAME = "segment_growth.png"
PREVIEW_NAME = "segment_growth_preview.png"
HTML_NAME = "segment_growth.html"


_SERIES_SQL = f"""
select daily.account_id, daily.segment_id, daily.date, daily.total_members, daily.members_added,
       daily.members_removed
from {GROWTH_DAILY_TABLE} as daily
join (select unnest(?::varchar[]) as account_id, unnest(?::varchar[]) as segment_id) using (account_id, segment_id)
order by daily.account_id, daily.segment_id, daily.date
"""


def _read(
    path: Path | Lake, top_n: int, memory_limit: str = DEFAULT_DUCKDB_MEMORY_LIMIT
) -> tuple[pd.DataFrame, pd.DataFrame]:
    with (
        tempfile.TemporaryDirectory(prefix="growth-chart-") as spill_dir,
        connect_read_only(path, memory_limit, spill_dir) as connection,
    ):
        exists = connection.execute(
            "select count(*) from information_schema.tables "
            "where table_catalog = current_database() and table_schema = ? and table_name = ?",
            [MARTS_SCHEMA, "segment_growth_daily"],
        ).fetchone()[0]
        if not exists:
            raise LookupError(
                f"{source_name(path)} has no {GROWTH_DAILY_TABLE}: build the dbt models (and publish) first"
            )
        # the top_n largest segments by total_members on their own latest day, with that day's 30-day figures
        top = connection.execute(f"{segment_summary_sql(connection)} limit ?", [top_n]).df()
        keys = [top["account_id"].tolist(), top["segment_id"].tolist()]
        series = connection.execute(_SERIES_SQL, keys).df()
    return top, series


def _label(row: pd.Series, several_accounts: bool, several_platforms: bool = False) -> str:
    name = row["segment_name"] if isinstance(row["segment_name"], str) and row["segment_name"] else row["segment_id"]
    label = f"{name} ({row['account_id']})" if several_accounts else str(name)
    return f"{label} [{PLATFORM_LABELS.get(row['platform'], row['platform'])}]" if several_platforms else label


# a legend entry longer than this is cut (with "…") so the legend beside the chart never squeezes it away
_LABEL_CHARS = 40


def _figure(top: pd.DataFrame, series: pd.DataFrame, *, width: float = 11, height: float = 7.5, dpi: int = 100):
    """The matplotlib Figure of the largest segments (drawn on the Agg canvas, nothing global touched)."""
    # matplotlib takes seconds to import; only the chart step pays for it, not every Dagster process
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator, StrMethodFormatter

    figure = Figure(figsize=(width, height), dpi=dpi, layout="constrained")
    FigureCanvasAgg(figure)
    totals_axis, flows_axis = figure.subplots(2, 1, sharex=True, height_ratios=[3, 2])
    if top.empty:
        totals_axis.text(
            0.5, 0.5, "no segment growth data yet", ha="center", va="center", transform=totals_axis.transAxes
        )
    several_accounts = top["account_id"].nunique() > 1
    several_platforms = top["platform"].nunique() > 1
    palette = [f"C{i}" for i in range(10)]  # matplotlib's default colour cycle
    for index, row in top.reset_index(drop=True).iterrows():
        rows = series[(series["account_id"] == row["account_id"]) & (series["segment_id"] == row["segment_id"])]
        dates = pd.to_datetime(rows["date"])
        color = palette[index % len(palette)]
        label = _label(row, several_accounts, several_platforms)
        if len(label) > _LABEL_CHARS:
            label = label[: _LABEL_CHARS - 1] + "…"
        totals_axis.plot(dates, rows["total_members"], color=color, label=label)
        # removals drawn below zero so inflow and outflow of one segment read as one band (a net-only
        # platform's segment has neither: NULL, so nothing is drawn for it)
        flows_axis.plot(dates, rows["members_added"], color=color, linewidth=1)
        flows_axis.plot(dates, -rows["members_removed"], color=color, linewidth=1, linestyle="--")
    totals_axis.set_title(f"Total members: the {len(top)} largest segments")
    totals_axis.set_ylabel("members")
    totals_axis.grid(alpha=0.3)
    if not top.empty:
        # beside the chart, not on it: inside the axes it hid the largest segment's line
        totals_axis.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small", borderaxespad=0)
    flows_axis.axhline(0, color="black", linewidth=0.6)
    flows_axis.set_title("Daily members added (solid, above 0) and removed (dashed, below 0)")
    flows_axis.set_ylabel("members per day")
    flows_axis.grid(alpha=0.3)
    for axis in (totals_axis, flows_axis):
        # whole members written out (2,400,000), never as an offset or "1e6" above the axis
        axis.yaxis.set_major_locator(MaxNLocator(integer=True))
        axis.yaxis.set_major_formatter(StrMethodFormatter("{x:,.0f}"))
    locator = AutoDateLocator()
    flows_axis.xaxis.set_major_locator(locator)
    flows_axis.xaxis.set_major_formatter(ConciseDateFormatter(locator))
    return figure


def _draw(top: pd.DataFrame, series: pd.DataFrame, **size) -> bytes:
    buffer = io.BytesIO()
    _figure(top, series, **size).savefig(buffer, format="png")
    return buffer.getvalue()


def _write_atomically(path: Path, data: bytes) -> None:
    # readers (a browser, the Dagster UI) never see a half-written file
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        # mkstemp creates the file private; charts are meant to be shared
        os.chmod(temp, 0o644)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def write_growth_charts(
    warehouse_or_analytics_path: str | os.PathLike[str] | Lake,
    out_dir: str | os.PathLike[str],
    top_n: int = 5,
    memory_limit: str = DEFAULT_DUCKDB_MEMORY_LIMIT,
) -> dict[str, Path]:
    """Draw the `top_n` largest segments to a PNG (and a small preview) and write the growth report page.

    Args:
        warehouse_or_analytics_path: a DuckDB file with `marts.segment_growth_daily` (normally the analyst
            copy, so the live warehouse is never held), or a lake. Opened read-only and closed before drawing.
        out_dir: directory for segment_growth.png, segment_growth_preview.png and segment_growth.html
            (created if missing).
        top_n: how many segments to draw, largest first.
        memory_limit: DuckDB's memory limit while reading (the pipeline's DUCKDB_MEMORY_LIMIT); beyond it
            DuckDB spills to a temporary directory.

    Returns:
        ``{"png": Path, "preview": Path, "html": Path}``; the preview is a small PNG for the Dagster UI.

    Raises:
        FileNotFoundError: the DuckDB file does not exist.
        LookupError: the file has no `marts.segment_growth_daily` yet.
    """
    if top_n < 1:
        raise ValueError(f"top_n must be at least 1, got {top_n}")
    source = warehouse_or_analytics_path
    if not isinstance(source, Lake):
        source = Path(source).expanduser().absolute()
    if isinstance(source, Path) and not source.is_file():
        raise FileNotFoundError(f"{source} does not exist: publish the analyst copy (or build the warehouse) first")
    out = Path(out_dir).expanduser().absolute()
    out.mkdir(parents=True, exist_ok=True)

    top, series = _read(source, top_n, memory_limit)

    png_path, preview_path, html_path = out / PNG_NAME, out / PREVIEW_NAME, out / HTML_NAME
    _write_atomically(png_path, _draw(top, series))
    _write_atomically(preview_path, _draw(top, series, width=8, height=5.5, dpi=56))
    _write_atomically(html_path, build_report(source, memory_limit).encode("utf-8"))
    return {"png": png_path, "preview": preview_path, "html": html_path}
