"""The growth report: one self-contained HTML page (Plotly and its JavaScript embedded, no network needed).

A marketer picks any segment of any account (searchable), a range (7, 30, 90, 365 days or all) and daily or
weekly bars, and sees total members as a line and members added/removed as bars, with markers on the days
the definition changed (the version's summary on hover) and on anomalies. Below: the fastest-growing and
fastest-shrinking segments over 30 days with trend lines, and the recent anomalies. Clicking a row shows
that segment; "Download CSV" exports what the chart shows.

Plotly draws everything; the page's own script only picks the data for the chosen segment, range and
interval and hands it to Plotly.react. No Dagster here.
"""

from __future__ import annotations

import datetime as dt
import html
import json
from pathlib import Path

from .report_data import MOVERS_MIN_START, ReportData, read_report_data

REPORT_TITLE = "Segment growth"
CHART_ID = "growth-chart"

_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0; color: #1f2933; background: #f7f8fa; }
header { background: #1f2933; color: #fff; padding: 0.9em 1.5em; }
header h1 { margin: 0; font-size: 1.3em; }
header p { margin: 0.2em 0 0; color: #cbd2d9; font-size: 0.85em; }
main { display: grid; grid-template-columns: 20em 1fr; gap: 1em; padding: 1em 1.5em; }
aside, section { background: #fff; border: 1px solid #e4e7eb; border-radius: 6px; padding: 0.8em; }
#segment-search { width: 100%; box-sizing: border-box; padding: 0.4em; margin-bottom: 0.4em; }
#segment-picker { width: 100%; height: 26em; }
.controls { display: flex; flex-wrap: wrap; gap: 0.4em; align-items: center; margin-bottom: 0.5em; }
.controls button { border: 1px solid #9aa5b1; background: #fff; border-radius: 4px; padding: 0.25em 0.7em; cursor: pointer; }
.controls button.active { background: #3e4c59; color: #fff; border-color: #3e4c59; }
.controls .spacer { flex: 1; }
#segment-summary { margin: 0.2em 0 0.6em; font-size: 0.95em; }
#segment-summary .tag { background: #e4e7eb; border-radius: 3px; padding: 0 0.4em; margin-left: 0.3em; font-size: 0.85em; }
#growth-chart { height: 30em; }
.tables { grid-column: 1 / -1; display: grid; grid-template-columns: 1fr 1fr; gap: 1em; }
.tables section.wide { grid-column: 1 / -1; }
table { border-collapse: collapse; width: 100%; font-size: 0.88em; }
th, td { border-bottom: 1px solid #e4e7eb; padding: 0.3em 0.5em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
tbody tr { cursor: pointer; }
tbody tr:hover { background: #f0f4f8; }
tr.anomalous td { background: #fff1f0; }
td.spark { width: 130px; padding: 0; }
.up { color: #1d7a46; } .down { color: #b42318; }
.note { color: #616e7c; font-size: 0.8em; }
"""

# The page's own logic: choose data, hand it to Plotly. Kept small on purpose; Plotly does the drawing.
_SCRIPT = """
(function () {
  const DATA = JSON.parse(document.getElementById("report-data").textContent);
  const chart = document.getElementById("%(chart_id)s");
  const byKey = new Map(DATA.segments.map((s) => [s.key, s]));
  const state = { key: DATA.segments.length ? DATA.segments[0].key : null, range: 90, interval: "daily" };
  const fmt = new Intl.NumberFormat("en-US");
  const pct = (v) => (v === null ? "" : (v > 0 ? "+" : "") + (100 * v).toFixed(1) + "%%");
  const signed = (v) => (v === null ? "" : (v > 0 ? "+" : "") + fmt.format(v));

  function day(start, index) {
    const d = new Date(start + "T00:00:00Z");
    d.setUTCDate(d.getUTCDate() + index);
    return d.toISOString().slice(0, 10);
  }
  function monday(iso) {
    const d = new Date(iso + "T00:00:00Z");
    d.setUTCDate(d.getUTCDate() - ((d.getUTCDay() + 6) %% 7));
    return d.toISOString().slice(0, 10);
  }

  // the chosen segment's days inside the range, regrouped by ISO week when weekly
  function view(segment) {
    const n = segment.total.length;
    const from = state.range === "all" ? 0 : Math.max(0, n - state.range);
    const rows = [];
    for (let i = from; i < n; i++) {
      rows.push({ x: day(segment.start, i), index: i, total: segment.total[i], added: segment.added[i], removed: segment.removed[i] });
    }
    if (state.interval === "weekly") {
      const weeks = new Map();
      for (const r of rows) {
        const key = monday(r.x);
        const w = weeks.get(key) || { x: key, total: null, added: 0, removed: 0, first: r.index, last: r.index };
        if (r.total !== null) w.total = r.total;  // members at the end of the week's last day present
        w.added += r.added || 0;
        w.removed += r.removed || 0;
        w.last = r.index;
        weeks.set(key, w);
      }
      return Array.from(weeks.values());
    }
    return rows.map((r) => ({ ...r, first: r.index, last: r.index }));
  }

  function markers(segment, rows, items, text) {
    const x = [], y = [], hover = [];
    for (const item of items) {
      const row = rows.find((r) => item[0] >= r.first && item[0] <= r.last);
      if (!row) continue;
      x.push(row.x); y.push(row.total); hover.push(text(item));
    }
    return { x, y, hover };
  }

  function draw() {
    const segment = byKey.get(state.key);
    if (!segment) return;
    const rows = view(segment);
    const x = rows.map((r) => r.x);
    const changes = markers(segment, rows, segment.changes, (c) => day(segment.start, c[0]) + ": " + c[1]);
    const flagged = segment.anomalies.filter((a) => a[5] !== "definition_changed");
    const anomalies = markers(segment, rows, flagged, (a) =>
      day(segment.start, a[0]) + ": " + a[5].replace(/_/g, " ") + " — " + a[1].replace("_", " ") + " " +
      fmt.format(a[2]) + " vs usual " + fmt.format(a[3]) + " (robust z " + (a[4] > 0 ? "+" : "") + a[4] + ")");
    const unit = state.interval === "weekly" ? "week" : "day";
    const traces = [
      { type: "scatter", mode: "lines", name: "Total members", x, y: rows.map((r) => r.total), line: { color: "#2f6fde", width: 2.5 },
        hovertemplate: "%%{y:,} members<extra>%%{x}</extra>" },
      { type: "bar", name: "Members added", x, y: rows.map((r) => r.added), yaxis: "y2", marker: { color: "#2fa36b" },
        hovertemplate: "+%%{y:,} added<extra>%%{x}</extra>" },
      { type: "bar", name: "Members removed", x, y: rows.map((r) => (r.removed === null ? null : -r.removed)), yaxis: "y2",
        marker: { color: "#d64545" }, customdata: rows.map((r) => r.removed), hovertemplate: "%%{customdata:,} removed<extra>%%{x}</extra>" },
      { type: "scatter", mode: "markers", name: "Definition changed", x: changes.x, y: changes.y, text: changes.hover,
        hovertemplate: "%%{text}<extra></extra>", marker: { symbol: "diamond", size: 12, color: "#f0b429", line: { color: "#8d6708", width: 1 } } },
      { type: "scatter", mode: "markers", name: "Anomaly", x: anomalies.x, y: anomalies.y, text: anomalies.hover,
        hovertemplate: "%%{text}<extra></extra>", marker: { symbol: "x", size: 12, color: "#b42318", line: { width: 2 } } },
    ];
    const layout = {
      margin: { l: 70, r: 20, t: 30, b: 40 },
      barmode: "relative",
      hovermode: "closest",
      legend: { orientation: "h", y: 1.08 },
      xaxis: { anchor: "y2", type: "date" },
      yaxis: { domain: [0.42, 1], title: { text: "members" }, tickformat: "," },
      yaxis2: { domain: [0, 0.34], title: { text: "per " + unit }, tickformat: "," },
      shapes: changes.x.map((when) => ({ type: "line", xref: "x", yref: "paper", x0: when, x1: when, y0: 0, y1: 1,
        line: { color: "#f0b429", width: 1, dash: "dot" } })),
    };
    Plotly.react(chart, traces, layout, { displaylogo: false, responsive: true });
    const tags = segment.tags.map((t) => '<span class="tag"></span>');
    const summary = document.getElementById("segment-summary");
    summary.innerHTML = "<strong></strong> <span class=note></span><br>" +
      fmt.format(segment.latest || 0) + " members · net 30 days " + (segment.net30 === null ? "n/a" : signed(segment.net30)) +
      " (" + (segment.growth30 === null ? "n/a" : pct(segment.growth30)) + ")" + tags.join("");
    summary.querySelector("strong").textContent = segment.name;
    summary.querySelector(".note").textContent = segment.account + " / " + segment.id;
    summary.querySelectorAll(".tag").forEach((el, i) => (el.textContent = segment.tags[i]));
    chart.dataset.segment = segment.key;
    chart.dataset.interval = state.interval;
  }

  // picker: every segment of every account, filtered by the search box (name, id, account or tag)
  const picker = document.getElementById("segment-picker");
  const search = document.getElementById("segment-search");
  function fillPicker() {
    const needle = search.value.trim().toLowerCase();
    picker.innerHTML = "";
    for (const s of DATA.segments) {
      const haystack = (s.name + " " + s.id + " " + s.account + " " + s.tags.join(" ")).toLowerCase();
      if (needle && !haystack.includes(needle)) continue;
      const option = document.createElement("option");
      option.value = s.key;
      option.textContent = s.name + (DATA.accounts.length > 1 ? " · " + s.account : "") + " (" + fmt.format(s.latest || 0) + ")";
      option.selected = s.key === state.key;
      picker.appendChild(option);
    }
  }
  function select(key) { state.key = key; fillPicker(); draw(); }
  search.addEventListener("input", fillPicker);
  picker.addEventListener("change", () => select(picker.value));

  function toggle(selector, attribute, apply) {
    document.querySelectorAll(selector).forEach((button) => button.addEventListener("click", () => {
      document.querySelectorAll(selector).forEach((b) => b.classList.toggle("active", b === button));
      apply(button.dataset[attribute]);
      draw();
    }));
  }
  toggle("button[data-range]", "range", (v) => (state.range = v === "all" ? "all" : Number(v)));
  toggle("button[data-interval]", "interval", (v) => (state.interval = v));

  document.getElementById("download-csv").addEventListener("click", () => {
    const segment = byKey.get(state.key);
    const lines = ["account_id,segment_id,segment_name," + (state.interval === "weekly" ? "week_start" : "date") + ",total_members,members_added,members_removed"];
    const quote = (v) => '"' + String(v).replace(/"/g, '""') + '"';
    for (const r of view(segment)) {
      lines.push([quote(segment.account), quote(segment.id), quote(segment.name), r.x, r.total ?? "", r.added ?? "", r.removed ?? ""].join(","));
    }
    const link = document.createElement("a");
    link.href = URL.createObjectURL(new Blob([lines.join("\\n")], { type: "text/csv" }));
    link.download = "segment-growth-" + segment.id + "-" + state.interval + ".csv";
    link.click();
  });

  // movers: a row per segment with a 30-day trend line drawn by Plotly
  function recentAnomalies(s) {
    const n = s.total.length;
    return s.anomalies.filter((a) => a[5] !== "definition_changed" && a[0] >= n - 30).length;
  }
  function moverRows(tableId, keys) {
    const body = document.querySelector("#" + tableId + " tbody");
    if (!keys.length) { body.innerHTML = '<tr><td colspan="6" class="note">none</td></tr>'; return; }
    for (const key of keys) {
      const s = byKey.get(key);
      const row = document.createElement("tr");
      const flagged = recentAnomalies(s);
      if (flagged) row.classList.add("anomalous");
      row.innerHTML = "<td></td><td></td><td></td><td></td><td class=spark></td><td></td>";
      const cells = row.children;
      cells[0].textContent = s.name;
      cells[1].textContent = fmt.format(s.latest || 0);
      cells[2].textContent = signed(s.net30);
      cells[3].textContent = pct(s.growth30);
      cells[3].className = s.growth30 > 0 ? "up" : "down";
      cells[5].textContent = flagged ? String(flagged) : "";
      row.addEventListener("click", () => select(key));
      body.appendChild(row);
      const last = s.total.slice(-30);
      Plotly.newPlot(cells[4], [{ type: "scatter", mode: "lines", y: last, line: { color: s.growth30 > 0 ? "#1d7a46" : "#b42318", width: 1.5 } }],
        { width: 130, height: 32, margin: { l: 2, r: 2, t: 2, b: 2 }, xaxis: { visible: false }, yaxis: { visible: false },
          paper_bgcolor: "rgba(0,0,0,0)", plot_bgcolor: "rgba(0,0,0,0)", showlegend: false }, { staticPlot: true });
    }
  }
  moverRows("growing", DATA.movers.growing);
  moverRows("shrinking", DATA.movers.shrinking);

  // recent anomalies across all segments, newest first
  const anomalyBody = document.querySelector("#anomalies tbody");
  const recent = [];
  for (const s of DATA.segments) {
    for (const a of s.anomalies) {
      if (a[5] !== "definition_changed" && a[0] >= s.total.length - 30) recent.push([s, a]);
    }
  }
  recent.sort((p, q) => day(q[0].start, q[1][0]).localeCompare(day(p[0].start, p[1][0])) || Math.abs(q[1][4]) - Math.abs(p[1][4]));
  if (!recent.length) anomalyBody.innerHTML = '<tr><td colspan="6" class="note">no anomalies in the last 30 days</td></tr>';
  for (const [s, a] of recent) {
    const row = document.createElement("tr");
    row.className = "anomalous";
    row.innerHTML = "<td></td><td></td><td></td><td></td><td></td><td></td>";
    const values = [s.name, day(s.start, a[0]), a[5].replace(/_/g, " "), fmt.format(a[2]), fmt.format(a[3]), (a[4] > 0 ? "+" : "") + a[4]];
    values.forEach((v, i) => (row.children[i].textContent = v));
    row.addEventListener("click", () => select(s.key));
    anomalyBody.appendChild(row);
  }

  fillPicker();
  draw();
  document.body.dataset.ready = "true";
})();
"""


def _figure_html() -> str:
    """Plotly's own JavaScript and an empty figure in the chart's div; the page's script fills it."""
    # plotly takes a second to import: only the report step pays for it, not every Dagster process
    import plotly.graph_objects as go
    import plotly.io as pio

    figure = go.Figure(layout={"margin": {"l": 70, "r": 20, "t": 30, "b": 40}})
    return pio.to_html(
        figure,
        include_plotlyjs=True,
        full_html=False,
        div_id=CHART_ID,
        config={"displaylogo": False, "responsive": True},
        default_height="30em",
    )


def _json_for_script(value) -> str:
    # inside <script type="application/json"> only "</" could end the element early
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).replace("</", "<\\/")


def render_report(data: ReportData, source_name: str, generated: dt.datetime | None = None) -> str:
    """The whole page as a string."""
    generated = generated or dt.datetime.now(dt.UTC)
    span = (
        f"{data.first_date} to {data.last_date}" if data.first_date and data.last_date else "no segment growth data yet"
    )
    segments = len(data.segments)
    accounts = len(data.accounts)
    empty = "" if segments else '<p class="note">no segment growth data yet</p>'
    mover_head = "<tr><th>segment</th><th>members</th><th>net 30d</th><th>growth 30d</th><th>trend</th><th>anomalies</th></tr>"
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{REPORT_TITLE}</title>
<style>{_STYLE}</style>
</head>
<body>
<header>
<h1>{REPORT_TITLE}</h1>
<p>{segments} segments in {accounts} account(s), {html.escape(span)} · {data.anomaly_count_30d} anomalies in the
last 30 days · from {html.escape(source_name)}, generated {generated.strftime("%Y-%m-%d %H:%M UTC")}</p>
</header>
<main>
<aside>
<input id="segment-search" type="search" placeholder="Search segments, ids, accounts, tags" aria-label="Search segments">
<select id="segment-picker" size="20" aria-label="Segment"></select>
</aside>
<section>
<div class="controls">
<span>Range</span>
<button data-range="7">7 days</button><button data-range="30">30 days</button><button data-range="90" class="active">90 days</button><button data-range="365">365 days</button><button data-range="all">All</button>
<span class="spacer"></span>
<button data-interval="daily" class="active">Daily</button><button data-interval="weekly">Weekly</button>
<button id="download-csv">Download CSV</button>
</div>
<div id="segment-summary"></div>
{empty}
{_figure_html()}
<p class="note">Bars: members added (up) and removed (down) per day or ISO week (Monday start). ◆ the definition
changed that day (hover for the new version). ✕ an anomaly: churn or net change with a robust z-score of at least
3.5 against the segment's previous 28 days.</p>
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
<table id="anomalies"><thead><tr><th>segment</th><th>day</th><th>what</th><th>value</th><th>usual</th><th>robust z</th></tr></thead><tbody></tbody></table>
</section>
<p class="note">Growth is net change over the last 30 complete days divided by the members 30 days ago; segments
with fewer than {MOVERS_MIN_START} members then are left out. Click a row to chart the segment.</p>
</div>
</main>
<script id="report-data" type="application/json">{_json_for_script(data.as_json())}</script>
<script>{_SCRIPT % {"chart_id": CHART_ID}}</script>
</body>
</html>
"""


def build_report(source: Path) -> str:
    """Read the analyst copy (or any file with the marts) and render the page."""
    return render_report(read_report_data(source), source.name)
