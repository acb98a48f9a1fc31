"""Growth charts of the largest segments: a PNG and a self-contained HTML page.

Reads `marts.segment_growth_daily` from the analyst copy (or any warehouse file) through a short read-only
DuckDB connection, picks the `top_n` segments with the most members on their latest day, and draws their
total members and daily members added/removed. The HTML page embeds the PNG as base64 and carries a small
table, with no scripts, stylesheets or fonts from elsewhere, so it can be mailed or opened offline.

No Dagster imports, and no pyplot: figures are built on the Agg canvas directly, so nothing global changes.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import io
import os
import tempfile
from pathlib import Path

import duckdb
import pandas as pd

from .tables import MARTS_SCHEMA

__all__ = ["GROWTH_DAILY_TABLE", "write_growth_charts"]

GROWTH_DAILY_TABLE = f"{MARTS_SCHEMA}.segment_growth_daily"
PNG_NAME = "segment_growth.png"
HTML_NAME = "segment_growth.html"

# the largest segments by total_members on their own latest day, with that day's 30-day figures:
# arg_max_null keeps them NULL when the latest window is incomplete (arg_max would skip to an older day)
_TOP_SEGMENTS_SQL = f"""
with latest as (
    select
        account_id,
        segment_id,
        arg_max(segment_name, date) as segment_name,
        max(date) as latest_date,
        arg_max(total_members, date) as latest_total_members,
        arg_max_null(net_change_30d, date) as net_change_30d,
        arg_max_null(growth_rate_30d, date) as growth_rate_30d,
        arg_max_null(churn_rate_30d, date) as churn_rate_30d
    from {GROWTH_DAILY_TABLE}
    group by account_id, segment_id
)
select *
from latest
order by latest_total_members desc nulls last, account_id, segment_id
limit ?
"""

_SERIES_SQL = f"""
with top_segments as ({_TOP_SEGMENTS_SQL})
select daily.account_id, daily.segment_id, daily.date, daily.total_members, daily.members_added,
       daily.members_removed
from {GROWTH_DAILY_TABLE} as daily
join top_segments using (account_id, segment_id)
order by daily.account_id, daily.segment_id, daily.date
"""


def _read(path: Path, top_n: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    with duckdb.connect(str(path), read_only=True) as connection:
        exists = connection.execute(
            "select count(*) from information_schema.tables where table_schema = ? and table_name = ?",
            [MARTS_SCHEMA, "segment_growth_daily"],
        ).fetchone()[0]
        if not exists:
            raise LookupError(f"{path} has no {GROWTH_DAILY_TABLE}: build the dbt models (and publish) first")
        top = connection.execute(_TOP_SEGMENTS_SQL, [top_n]).df()
        series = connection.execute(_SERIES_SQL, [top_n]).df()
    return top, series


def _label(row: pd.Series, several_accounts: bool) -> str:
    name = row["segment_name"] if isinstance(row["segment_name"], str) and row["segment_name"] else row["segment_id"]
    return f"{name} ({row['account_id']})" if several_accounts else str(name)


def _draw(top: pd.DataFrame, series: pd.DataFrame) -> bytes:
    # matplotlib takes seconds to import; only the chart step pays for it, not every Dagster process
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
    from matplotlib.figure import Figure

    figure = Figure(figsize=(11, 7.5), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    totals_axis, flows_axis = figure.subplots(2, 1, sharex=True, height_ratios=[3, 2])
    if top.empty:
        totals_axis.text(
            0.5, 0.5, "no segment growth data yet", ha="center", va="center", transform=totals_axis.transAxes
        )
    several_accounts = top["account_id"].nunique() > 1
    palette = [f"C{i}" for i in range(10)]  # matplotlib's default colour cycle
    for index, row in top.reset_index(drop=True).iterrows():
        rows = series[(series["account_id"] == row["account_id"]) & (series["segment_id"] == row["segment_id"])]
        dates = pd.to_datetime(rows["date"])
        color = palette[index % len(palette)]
        label = _label(row, several_accounts)
        totals_axis.plot(dates, rows["total_members"], color=color, label=label)
        # removals drawn below zero so inflow and outflow of one segment read as one band
        flows_axis.plot(dates, rows["members_added"], color=color, linewidth=1)
        flows_axis.plot(dates, -rows["members_removed"], color=color, linewidth=1, linestyle="--")
    totals_axis.set_title(f"Total members: the {len(top)} largest segments")
    totals_axis.set_ylabel("members")
    totals_axis.grid(alpha=0.3)
    if not top.empty:
        totals_axis.legend(loc="upper left", fontsize="small")
    flows_axis.axhline(0, color="black", linewidth=0.6)
    flows_axis.set_title("Daily members added (solid, above 0) and removed (dashed, below 0)")
    flows_axis.set_ylabel("members per day")
    flows_axis.grid(alpha=0.3)
    locator = AutoDateLocator()
    flows_axis.xaxis.set_major_locator(locator)
    flows_axis.xaxis.set_major_formatter(ConciseDateFormatter(locator))
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def _format_int(value) -> str:
    return "" if pd.isna(value) else f"{int(value):,}"


def _format_rate(value) -> str:
    return "" if pd.isna(value) else f"{value:+.1%}"


def _html_page(top: pd.DataFrame, png_bytes: bytes, source: Path) -> str:
    rows = []
    for rank, row in enumerate(top.itertuples(index=False), start=1):
        latest = "" if pd.isna(row.latest_date) else pd.Timestamp(row.latest_date).date().isoformat()
        cells = [
            str(rank),
            row.account_id,
            row.segment_id,
            row.segment_name or "",
            latest,
            _format_int(row.latest_total_members),
            _format_int(row.net_change_30d),
            _format_rate(row.growth_rate_30d),
            _format_rate(row.churn_rate_30d),
        ]
        rows.append("<tr>" + "".join(f"<td>{html.escape(str(cell))}</td>" for cell in cells) + "</tr>")
    body_rows = "\n".join(rows) or '<tr><td colspan="9">no segment growth data yet</td></tr>'
    headers = ["#", "account", "segment id", "segment", "latest day", "members", "net 30d", "growth 30d", "churn 30d"]
    header_row = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    image = base64.b64encode(png_bytes).decode("ascii")
    generated = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Segment growth</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}
img {{ max-width: 100%; height: auto; }}
table {{ border-collapse: collapse; margin-top: 1em; }}
th, td {{ border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: right; }}
th {{ background: #f3f3f3; }}
td:nth-child(2), td:nth-child(3), td:nth-child(4) {{ text-align: left; }}
</style>
</head>
<body>
<h1>Segment growth</h1>
<p>The largest segments by total members on their latest day. Source: {html.escape(source.name)}
(<code>{html.escape(GROWTH_DAILY_TABLE)}</code>), generated {generated}.</p>
<img alt="Total members and daily members added and removed of the largest segments"
     src="data:image/png;base64,{image}">
<table>
<thead><tr>{header_row}</tr></thead>
<tbody>
{body_rows}
</tbody>
</table>
<p>Net, growth and churn cover the 30 days up to the latest day; they are blank until 30 consecutive days
are loaded, and the rates also when the segment had no members 30 days earlier.</p>
</body>
</html>
"""


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
    warehouse_or_analytics_path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    top_n: int = 5,
) -> dict[str, Path]:
    """Draw the growth of the `top_n` largest segments to a PNG and a self-contained HTML page.

    Args:
        warehouse_or_analytics_path: a DuckDB file with `marts.segment_growth_daily` (normally the analyst
            copy, so the live warehouse is never held). Opened read-only and closed before drawing.
        out_dir: directory for segment_growth.png and segment_growth.html (created if missing).
        top_n: how many segments to draw, largest first.

    Returns:
        ``{"png": Path, "html": Path}``.

    Raises:
        FileNotFoundError: the DuckDB file does not exist.
        LookupError: the file has no `marts.segment_growth_daily` yet.
    """
    if top_n < 1:
        raise ValueError(f"top_n must be at least 1, got {top_n}")
    source = Path(warehouse_or_analytics_path).expanduser().absolute()
    if not source.is_file():
        raise FileNotFoundError(f"{source} does not exist: publish the analyst copy (or build the warehouse) first")
    out = Path(out_dir).expanduser().absolute()
    out.mkdir(parents=True, exist_ok=True)

    top, series = _read(source, top_n)

    png_path, html_path = out / PNG_NAME, out / HTML_NAME
    png_bytes = _draw(top, series)
    _write_atomically(png_path, png_bytes)
    _write_atomically(html_path, _html_page(top, png_bytes, source).encode("utf-8"))
    return {"png": png_path, "html": html_path}
