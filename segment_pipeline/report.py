"""The growth report: one self-contained HTML page (Plotly and its JavaScript embedded, no network needed).

A marketer picks any segment of any account (searchable), a range (7, 30, 90, 365 days or all) and daily or
weekly bars, and sees total members as a line and members added/removed as bars, with markers on the days
the definition changed (the version's summary on hover) and on anomalies. Below: the fastest-growing and
fastest-shrinking segments over 30 days with trend lines, and the recent anomalies. Clicking a row shows
that segment; "Download CSV" exports what the chart shows.

Plotly draws everything; the page's own script unpacks the data (report_packing), picks what the chosen
segment, range and interval show and hands it to Plotly.react. No Dagster here.
"""

from __future__ import annotations

import datetime as dt
import functools
import html
import json
from importlib import resources
from pathlib import Path

from .config import DEFAULT_DUCKDB_MEMORY_LIMIT
from .lake.location import Lake
from .report_data import (
    MOVERS_MIN_START,
    NET_ONLY_PLATFORMS,
    PLATFORM_LABELS,
    RECENT_DAYS,
    ReportData,
    read_report_data,
    source_name,
)
from .report_packing import ALPHABET, pack

REPORT_TITLE = "Segment growth"
CHART_ID = "growth-chart"

# the page's stylesheet and script, kept as files beside this module so they read as CSS and JavaScript
_ASSETS = resources.files("segment_pipeline") / "report_assets"


def _asset(name: str) -> str:
    return (_ASSETS / name).read_text(encoding="utf-8")


@functools.cache
def _packed_plotly() -> tuple[str, int]:
    """Plotly's JavaScript (4.8 MB), packed to about a third; the page unpacks and runs it."""
    from plotly.offline import get_plotlyjs

    return pack(get_plotlyjs().encode("utf-8"))


def _packed(element_id: str, packed: tuple[str, int], **attributes: int) -> str:
    """A packed part as a script element the browser never runs (type text/plain); its text has no "<"."""
    text, length = packed
    extra = "".join(f' data-{name}="{value}"' for name, value in attributes.items())
    return f'<script id="{element_id}" type="text/plain" data-length="{length}"{extra}>{text}</script>\n'


# Inside <script>, "</script" ends the element and "<!--" followed by "<script" makes the parser swallow the
# rest of the page; U+2028/2029 end a line in older JavaScript. JSON may spell any character as \\uXXXX, so
# these never appear raw in the page (the same escapes as Go's html/template and Rails' json_escape).
_SCRIPT_ESCAPES = str.maketrans(
    {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
)


def json_for_script(value) -> str:
    """`value` as JSON that is safe anywhere inside a <script> element, whatever strings it holds."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).translate(_SCRIPT_ESCAPES)


def _count(count: int, one: str, many: str) -> str:
    return f"{count:,} {one if count == 1 else many}"


def _header_facts(data: ReportData) -> str:
    """What the data covers, as HTML: each figure in its own element so a test can read it back."""
    if not data.segments:
        return "no segment growth data yet"
    names = ", ".join(data.accounts)
    accounts = f"account {names}" if len(data.accounts) == 1 else f"{len(data.accounts)} accounts ({names})"
    # with a second platform, how many segments each has (and which know only net change)
    platforms = ""
    if len(data.platforms) > 1 or any(p in NET_ONLY_PLATFORMS for p in data.platforms):
        parts = [
            f"{PLATFORM_LABELS.get(platform, platform)} {count:,}"
            + (": net change only" if platform in NET_ONLY_PLATFORMS else "")
            for platform, count in data.platforms.items()
        ]
        platforms = f' (<span id="header-platforms">{html.escape(", ".join(parts))}</span>)'
    return (
        f'<span id="header-segments">{_count(len(data.segments), "segment", "segments")}</span>{platforms} in '
        f'<span id="header-accounts">{html.escape(accounts)}</span>, '
        f'<span id="header-span">{data.first_date} to {data.last_date}</span> · '
        f'<span id="header-anomalies">{_count(data.anomaly_count_30d, "anomaly", "anomalies")}</span>'
        f" in the {RECENT_DAYS} days to {data.last_date}"
    )


def render_report(data: ReportData, source_name: str, generated: dt.datetime | None = None) -> str:
    """The whole page as a string."""
    generated = generated or dt.datetime.now(dt.UTC)
    empty = "" if data.segments else '<p class="note">no segment growth data yet</p>'
    page_json = {**data.as_json(), "chart_id": CHART_ID, "alphabet": ALPHABET}
    mover_head = (
        "<tr><th>segment</th><th>members</th><th>net 30d</th><th>growth 30d</th><th>trend</th><th>anomalies</th></tr>"
    )
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{REPORT_TITLE}</title>
<style>{_asset("report.css")}</style>
</head>
<body>
<header>
<h1>{REPORT_TITLE}</h1>
<p>{_header_facts(data)} · from {html.escape(source_name)}, generated
{generated.strftime("%Y-%m-%d %H:%M UTC")}</p>
</header>
<main>
<aside>
<input id="segment-search" type="search" placeholder="Search segments, ids, accounts, tags"
 aria-label="Search segments">
<select id="segment-picker" size="20" aria-label="Segment"></select>
</aside>
<section>
<div class="controls">
<span>Range</span>
<button data-range="7">7 days</button><button data-range="30">30 days</button>
<button data-range="90" class="active">90 days</button><button data-range="365">365 days</button>
<button data-range="all">All</button>
<span class="spacer"></span>
<button data-interval="daily" class="active">Daily</button><button data-interval="weekly">Weekly</button>
<button id="download-csv">Download CSV</button>
</div>
<div id="segment-summary"></div>
{empty}
<div id="{CHART_ID}" class="plotly-graph-div"></div>
<p class="note">Bars: members added (up) and removed (down) per day or ISO week (Monday start); a hatched week
is partial (fewer than 7 of its days in the range or in the data). ◆ the definition
changed that day (hover for the new version). ✕ an anomaly: churn or net change with a robust z-score of at least
3.5 against the segment's previous 28 days. A segment marked Δ (only net change is known, e.g. from the Segments
API) has a count only on the days it was recounted: its line joins the counts and one bar per count carries the
net change since the previous count, hatched when it covers several days; members added and removed are
unknown, so none are drawn.</p>
</section>
<div class="tables">
<section>
<h2>Fastest growing, last 30 days</h2>
<table id="growing"><thead>{mover_head}</thead><tbody></tbody></table>
</section>
<section>
<h2>Fastest shrinking, last 30 days</h2>
<table id="shrinking"><thead>{mover_head}</thead><tbody></tbody></table>
</section>
<section class="wide">
<h2>Anomalies, last 30 days</h2>
<table id="anomalies"><thead><tr><th>segment</th><th>day</th><th>what</th><th>value</th><th>usual</th>
<th>robust z</th></tr></thead><tbody></tbody></table>
</section>
<p class="note">Growth is net change over the last 30 complete days divided by the members 30 days ago; segments
with fewer than {MOVERS_MIN_START} members then are left out. Click a row to chart the segment.</p>
</div>
</main>
<script id="report-data" type="application/json">{json_for_script(page_json)}</script>
{_packed("report-summary", data.packed_summary())}\
{"".join(_packed(f"report-chunk-{i}", (c.text, c.length), days=c.days) for i, c in enumerate(data.chunks))}\
{_packed("plotly-packed", _packed_plotly())}\
<script>{_asset("report.js")}</script>
</body>
</html>
"""


def build_report(source: Path | Lake, memory_limit: str = DEFAULT_DUCKDB_MEMORY_LIMIT) -> str:
    """Read the analyst copy (or any file with the marts, or a lake) and render the page."""
    return render_report(read_report_data(source, memory_limit), source_name(source))
