// The growth report's own logic: unpack the embedded data, choose what the picked segment, range and interval
// show, and hand it to Plotly, which draws.
//
// What is packed and how is segment_pipeline/report_packing.py: the heavy parts (Plotly itself, every
// segment's summary, the daily series in chunks) are gzip written in base-85; the browser inflates them
// with DecompressionStream. A chunk is inflated the first time one of its segments is shown.
(async function () {
  const DATA = JSON.parse(document.getElementById("report-data").textContent);
  const chart = document.getElementById(DATA.chart_id);
  if (typeof DecompressionStream === "undefined") {
    chart.textContent = "This report needs a browser from 2023 or later (Chrome 80, Firefox 113, Safari 16.4).";
    return;
  }

  // ------------------------------------------------------------------------------------------- unpacking
  const DIGIT = new Uint8Array(128);
  for (let i = 0; i < DATA.alphabet.length; i++) DIGIT[DATA.alphabet.charCodeAt(i)] = i;
  function unbase85(text, length) {
    const out = new Uint8Array((text.length / 5) * 4);
    for (let i = 0, o = 0; i < text.length; i += 5, o += 4) {
      let v = 0;
      for (let k = 0; k < 5; k++) v = v * 85 + DIGIT[text.charCodeAt(i + k)];
      out[o] = v >>> 24; out[o + 1] = (v >>> 16) & 255; out[o + 2] = (v >>> 8) & 255; out[o + 3] = v & 255;
    }
    return out.subarray(0, length);
  }
  async function inflate(id) {
    const element = document.getElementById(id);
    const packed = unbase85(element.textContent, Number(element.dataset.length));
    const stream = new Blob([packed]).stream().pipeThrough(new DecompressionStream("gzip"));
    return new Uint8Array(await new Response(stream).arrayBuffer());
  }
  const utf8 = new TextDecoder();

  // Plotly arrives packed too: run it as the page's own script would have
  const plotly = document.createElement("script");
  plotly.id = "plotly";
  plotly.textContent = utf8.decode(await inflate("plotly-packed"));
  document.head.appendChild(plotly);

  // every segment's summary, column by column
  const columns = JSON.parse(utf8.decode(await inflate("report-summary")));
  const SEGMENTS = columns.key.map((key, i) => {
    const segment = { loaded: false };
    for (const name of Object.keys(columns)) segment[name] = columns[name][i];
    segment.account = DATA.accounts[segment.account];
    segment.platform = Object.keys(DATA.platforms)[segment.platform];
    segment.platformLabel = DATA.platform_labels[segment.platform] || segment.platform;
    // a platform that knows totals and net change only: no added/removed bars are drawn for its segments
    segment.netOnly = DATA.net_only_platforms.includes(segment.platform);
    return segment;
  });
  const byKey = new Map(SEGMENTS.map((s) => [s.key, s]));
  const members = new Map();  // chunk -> its segments, in page order
  for (const s of SEGMENTS) (members.get(s.chunk) || members.set(s.chunk, []).get(s.chunk)).push(s);

  // a chunk's planes: byte-shuffled little-endian 32-bit words, zigzag-encoded
  function plane(bytes, at, count) {
    const out = new Array(count);
    for (let j = 0; j < count; j++) {
      const v = (bytes[at + j] | (bytes[at + count + j] << 8) | (bytes[at + 2 * count + j] << 16) | (bytes[at + 3 * count + j] << 24)) >>> 0;
      out[j] = (v >>> 1) ^ -(v & 1);
    }
    return out;
  }
  const HAS_TOTAL = 1, HAS_ADDED = 2, HAS_REMOVED = 4;
  function unpackChunk(bytes, segments) {
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const changesLength = view.getUint32(0, true);
    const changes = JSON.parse(utf8.decode(bytes.subarray(4, 4 + changesLength)));
    const count = segments.reduce((sum, s) => sum + s.days, 0);
    let at = 4 + changesLength;
    const mask = bytes.subarray(at, at + count);
    at += count;
    const next = (n) => { const values = plane(bytes, at, n); at += 4 * n; return values; };
    const residual = next(count), net = next(count), churn = next(count);
    const counts = next(segments.length);
    const anomalies = counts.reduce((sum, n) => sum + n, 0);
    const steps = next(anomalies), kinds = next(anomalies), values = next(anomalies), usual = next(anomalies), z = next(anomalies);
    let row = 0;
    segments.forEach((s, index) => {
      s.total = new Array(s.days); s.added = new Array(s.days); s.removed = new Array(s.days);
      let previous = 0;
      for (let d = 0; d < s.days; d++) {
        const j = s.offset + d;
        const added = churn[j] + Math.max(net[j], 0), removed = churn[j] + Math.max(-net[j], 0);
        const total = residual[j] + previous + added - removed;
        previous = total;
        s.total[d] = mask[j] & HAS_TOTAL ? total : null;
        s.added[d] = mask[j] & HAS_ADDED ? added : null;
        s.removed[d] = mask[j] & HAS_REMOVED ? removed : null;
      }
      s.changes = changes[index];
      // [day, metric, value, usual, robust z, reason]
      s.anomalies = [];
      for (let k = 0, when = 0; k < counts[index]; k++, row++) {
        when += steps[row];
        const [metric, reason] = DATA.anomaly_kinds[kinds[row]];
        s.anomalies.push([when, metric, values[row], usual[row] / 2, z[row] / 10, reason]);
      }
      s.loaded = true;
    });
  }
  const loading = new Map();  // chunk -> the promise of its unpacking
  function load(segment) {
    if (!loading.has(segment.chunk)) {
      loading.set(segment.chunk, inflate("report-chunk-" + segment.chunk).then((bytes) => unpackChunk(bytes, members.get(segment.chunk))));
    }
    return loading.get(segment.chunk);
  }

  const state = { key: SEGMENTS.length ? SEGMENTS[0].key : null, range: 90, interval: "daily" };
  const fmt = new Intl.NumberFormat("en-US");
  const pct = (v) => (v === null ? "" : (v > 0 ? "+" : "") + (100 * v).toFixed(1) + "%");
  const signed = (v) => (v === null ? "" : (v > 0 ? "+" : "") + fmt.format(v));

  function day(start, index) {
    const d = new Date(start + "T00:00:00Z");
    d.setUTCDate(d.getUTCDate() + index);
    return d.toISOString().slice(0, 10);
  }
  function monday(iso) {
    const d = new Date(iso + "T00:00:00Z");
    d.setUTCDate(d.getUTCDate() - ((d.getUTCDay() + 6) % 7));
    return d.toISOString().slice(0, 10);
  }

  // the chosen segment's days inside the range, regrouped by ISO week (Monday start) when weekly; a week
  // with fewer than 7 days of data in the range (cut by the range, or days missing) is partial
  // a net-only segment's rows: on each count day, the change since the previous count (the whole change,
  // on the count day, as the marts hold it) and the days it covers; the first count has no change
  function netChanges(segment) {
    const net = new Array(segment.days).fill(null), span = new Array(segment.days).fill(null);
    let previous = null;
    for (let i = 0; i < segment.days; i++) {
      if (segment.total[i] === null) continue;
      if (previous !== null) { net[i] = segment.total[i] - segment.total[previous]; span[i] = i - previous; }
      previous = i;
    }
    return { net, span };
  }
  function view(segment) {
    const n = segment.total.length;
    const from = state.range === "all" ? 0 : Math.max(0, n - state.range);
    const changes = segment.netOnly ? netChanges(segment) : null;
    const rows = [];
    for (let i = from; i < n; i++) {
      rows.push({ x: day(segment.start, i), index: i, total: segment.total[i], added: segment.added[i], removed: segment.removed[i],
        net: changes ? changes.net[i] : null, span: changes ? changes.span[i] : null });
    }
    if (state.interval === "weekly") {
      const weeks = new Map();
      for (const r of rows) {
        const key = monday(r.x);
        const w = weeks.get(key) || { x: key, total: null, added: 0, removed: 0, net: null, span: 0, first: r.index, last: r.index, days: 0 };
        if (r.total !== null) {
          w.total = r.total;  // members at the end of the week's last day present
          w.days += 1;
        }
        if (r.net !== null) { w.net = (w.net || 0) + r.net; w.span += r.span; }
        w.added += r.added || 0;
        w.removed += r.removed || 0;
        w.last = r.index;
        weeks.set(key, w);
      }
      // a net-only week is partial unless its changes cover exactly its 7 days; it has no added/removed at all
      return Array.from(weeks.values()).map((w) => (segment.netOnly
        ? { ...w, added: null, removed: null, partial: w.span !== 7 }
        : { ...w, partial: w.days < 7 }));
    }
    return rows.map((r) => ({ ...r, first: r.index, last: r.index, days: r.total === null ? 0 : 1, partial: false }));
  }

  const DAY_MS = 86400000;
  const A_MONDAY = "2000-01-03";
  // the x axis spans the bars (half a bar each side), so one day or one week is never stretched over an axis
  // of milliseconds; ticks fall on days, Mondays (weeks start on Monday) or months, never on Sundays
  function xAxis(rows) {
    const weekly = state.interval === "weekly";
    const first = rows.length ? rows[0].x : A_MONDAY, last = rows.length ? rows[rows.length - 1].x : A_MONDAY;
    const half = weekly ? 3.5 : 0.5;
    const edge = (iso, days) => new Date(Date.parse(iso + "T00:00:00Z") + days * DAY_MS).toISOString();
    const axis = { anchor: "y2", type: "date", range: [edge(first, -half), edge(last, half)] };
    const days = (Date.parse(last) - Date.parse(first)) / DAY_MS + 1;
    if (!weekly && days <= 14) {
      Object.assign(axis, { tickmode: "linear", tick0: A_MONDAY, dtick: DAY_MS, tickformat: "%b %-d" });
    } else if (days <= 140) {
      // a tick every 1, 2 or 4 weeks, on Mondays
      const weeks = days <= 42 ? 1 : days <= 84 ? 2 : 4;
      Object.assign(axis, { tickmode: "linear", tick0: A_MONDAY, dtick: weeks * 7 * DAY_MS, tickformat: "%b %-d" });
    } else {
      const months = days <= 400 ? 1 : days <= 800 ? 3 : 6;
      Object.assign(axis, { tickmode: "linear", tick0: "2000-01-01", dtick: "M" + months, tickformat: "%b %Y" });
    }
    return axis;
  }
  // members are whole numbers: a flat or one-point series gets a range at least MIN_SPAN wide, so the
  // automatic ticks are whole numbers too (never 1,614,426.5)
  const MIN_SPAN = 10;
  function yRange(values) {
    const present = values.filter((v) => v !== null && v !== undefined);
    if (!present.length) return undefined;
    const low = Math.min(...present), high = Math.max(...present);
    if (high - low >= MIN_SPAN) return undefined;
    const middle = Math.round((low + high) / 2);
    return [middle - MIN_SPAN / 2, middle + MIN_SPAN / 2];
  }
  // Plotly reads hover text as HTML-like markup: text from the data is shown as text
  const escapeText = (v) => String(v).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");

  function markers(segment, rows, items, text) {
    const x = [], y = [], hover = [];
    for (const item of items) {
      const row = rows.find((r) => item[0] >= r.first && item[0] <= r.last);
      if (!row) continue;
      x.push(row.x); y.push(row.total); hover.push(text(item));
    }
    return { x, y, hover };
  }

  // draw the chosen segment now if its chunk is unpacked, else once it is (if it is still the chosen one)
  function draw() {
    const segment = byKey.get(state.key);
    if (!segment) return Promise.resolve();
    if (!segment.loaded) {
      return load(segment).then(() => {
        if (state.key === segment.key) drawLoaded(segment);
      });
    }
    drawLoaded(segment);
    return Promise.resolve();
  }
  function drawLoaded(segment) {
    const rows = view(segment);
    const x = rows.map((r) => r.x);
    const changes = markers(segment, rows, segment.changes, (c) => escapeText(day(segment.start, c[0]) + ": " + c[1]));
    const anomalies = markers(segment, rows, segment.anomalies, (a) =>
      escapeText(day(segment.start, a[0]) + ": " + a[5].replace(/_/g, " ") + " — " + a[1].replace("_", " ") + " " +
      fmt.format(a[2]) + " vs usual " + fmt.format(a[3]) + " (robust z " + (a[4] > 0 ? "+" : "") + a[4] + ")"));
    const weekly = state.interval === "weekly";
    const unit = weekly ? "week" : "day";
    // partial weeks: hatched bars, and the hover says how many of the week's days the bar holds
    const period = rows.map((r) => (weekly ? "week of " + r.x + (r.partial ? " (partial: " + r.days + " of 7 days)" : "") : r.x));
    const pattern = { shape: rows.map((r) => (r.partial ? "/" : "")), solidity: 0.5 };
    const totals = rows.map((r) => r.total);
    const netOnly = segment.netOnly;
    const flows = netOnly ? rows.map((r) => r.net) : rows.flatMap((r) => [r.added, r.removed === null ? null : -r.removed]);
    // a net-only segment: the line joins its counts (markers on the counted days), one bar per count day
    // carries the net change since the previous count, hatched when it covers several days
    const netText = rows.map((r) => (r.net === null ? "" : (weekly ? "net change in the week of " + r.x + " (" + r.span + " day(s) of changes)"
      : "net change over " + r.span + " day(s) to " + r.x + (r.span > 1 ? ", since the count of " + day(segment.start, r.index - r.span) : ""))));
    const flowTraces = netOnly ? [
      { type: "bar", name: "Net change (only net is known)", x, y: rows.map((r) => r.net), yaxis: "y2", text: netText, textposition: "none",
        marker: { color: "#7b61c4", pattern: { shape: rows.map((r) => (weekly ? (r.partial ? "/" : "") : (r.span > 1 ? "x" : ""))), solidity: 0.5 } },
        hovertemplate: "%{y:+,}<extra>%{text}</extra>" },
    ] : [
      { type: "bar", name: "Members added", x, y: rows.map((r) => r.added), yaxis: "y2", text: period, textposition: "none",
        marker: { color: "#2fa36b", pattern }, hovertemplate: "+%{y:,} added<extra>%{text}</extra>" },
      { type: "bar", name: "Members removed", x, y: rows.map((r) => (r.removed === null ? null : -r.removed)), yaxis: "y2",
        text: period, textposition: "none", marker: { color: "#d64545", pattern }, customdata: rows.map((r) => r.removed),
        hovertemplate: "%{customdata:,} removed<extra>%{text}</extra>" },
    ];
    const traces = [
      { type: "scatter", mode: "lines+markers", name: "Total members", x, y: totals, line: { color: "#2f6fde", width: 2.5 },
        connectgaps: netOnly, marker: { size: rows.length === 1 || netOnly ? 7 : 3 }, text: period,
        hovertemplate: "%{y:,} members<extra>%{text}</extra>" },
      ...flowTraces,
      { type: "scatter", mode: "markers", name: "Definition changed", x: changes.x, y: changes.y, text: changes.hover,
        hovertemplate: "%{text}<extra></extra>", marker: { symbol: "diamond", size: 12, color: "#f0b429", line: { color: "#8d6708", width: 1 } } },
      { type: "scatter", mode: "markers", name: "Anomaly", x: anomalies.x, y: anomalies.y, text: anomalies.hover,
        hovertemplate: "%{text}<extra></extra>", marker: { symbol: "x", size: 12, color: "#b42318", line: { width: 2 } } },
    ];
    const partial = rows.filter((r) => r.partial).length;
    const layout = {
      margin: { l: 80, r: 20, t: 30, b: 40 },
      barmode: "relative",
      hovermode: "closest",
      legend: { orientation: "h", y: 1.08 },
      xaxis: xAxis(rows),
      yaxis: { domain: [0.42, 1], title: { text: "members" }, tickformat: ",", range: yRange(totals) },
      yaxis2: { domain: [0, 0.34], title: { text: "per " + unit }, tickformat: ",", range: yRange(flows) },
      shapes: changes.x.map((when) => ({ type: "line", xref: "x", yref: "paper", x0: when, x1: when, y0: 0, y1: 1,
        line: { color: "#f0b429", width: 1, dash: "dot" } })),
      annotations: [
        ...(partial && !netOnly ? [{ xref: "paper", yref: "paper", x: 1, y: 0.37, xanchor: "right", showarrow: false,
          font: { size: 11, color: "#616e7c" }, text: "hatched: partial week (fewer than 7 days in the range or in the data)" }] : []),
        ...(netOnly ? [{ xref: "paper", yref: "paper", x: 0, y: 0.37, xanchor: "left", showarrow: false,
          font: { size: 11, color: "#5b3fa8" }, text: segment.platformLabel + ": only the net change between counts is known (no members added or removed); hatched = a change over several days" }] : []),
      ],
    };
    Plotly.react(chart, traces, layout, { displaylogo: false, responsive: true });
    const tags = segment.tags.map((t) => '<span class="tag"></span>');
    const summary = document.getElementById("segment-summary");
    summary.innerHTML = "<strong></strong> <span class=note></span>" +
      (netOnly ? ' <span class="net-only" id="net-only-mark">only net change is known</span>' : "") + "<br>" +
      fmt.format(segment.latest || 0) + " members · net 30 days " + (segment.net30 === null ? "n/a" : signed(segment.net30)) +
      " (" + (segment.growth30 === null ? "n/a" : pct(segment.growth30)) + ")" + tags.join("");
    summary.querySelector("strong").textContent = segment.name;
    summary.querySelector(".note").textContent = segment.platformLabel + " · " + segment.account + " / " + segment.id;
    summary.querySelectorAll(".tag").forEach((el, i) => (el.textContent = segment.tags[i]));
    chart.dataset.segment = segment.key;
    chart.dataset.interval = state.interval;
    chart.dataset.partial = String(partial);
    chart.dataset.netOnly = String(netOnly);
  }

  // picker: every segment of every account, filtered by the search box (name, id, account or tag)
  const picker = document.getElementById("segment-picker");
  const search = document.getElementById("segment-search");
  function fillPicker() {
    const needle = search.value.trim().toLowerCase();
    picker.innerHTML = "";
    for (const s of SEGMENTS) {
      const haystack = (s.name + " " + s.id + " " + s.account + " " + s.platformLabel + " " + s.tags.join(" ")).toLowerCase();
      if (needle && !haystack.includes(needle)) continue;
      const option = document.createElement("option");
      option.value = s.key;
      // segments with an anomaly in the last 30 days stand out in the list too
      const flag = s.recent ? "⚠ " : "";
      // with several platforms each segment says which, and a net-only one is marked (Δ: net change only)
      const platform = Object.keys(DATA.platforms).length > 1 ? "[" + s.platformLabel + (s.netOnly ? " Δ" : "") + "] " : "";
      option.textContent = flag + platform + s.name + (DATA.accounts.length > 1 ? " · " + s.account : "") + " (" + fmt.format(s.latest || 0) + ")";
      option.dataset.platform = s.platform;
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
    // a leading = + - @ (or tab, return) would make a spreadsheet run the name as a formula: such a text
    // starts with ' instead (OWASP's advice for CSV injection)
    const quote = (v) => '"' + String(v).replace(/^[=+\-@\t\r]/, "'$&").replace(/"/g, '""') + '"';
    for (const r of view(segment)) {
      lines.push([quote(segment.account), quote(segment.id), quote(segment.name), r.x, r.total ?? "", r.added ?? "", r.removed ?? ""].join(","));
    }
    const link = document.createElement("a");
    link.href = URL.createObjectURL(new Blob([lines.join("\n")], { type: "text/csv" }));
    link.download = "segment-growth-" + segment.id + "-" + state.interval + ".csv";
    link.click();
  });

  // movers: a row per segment with a 30-day trend line drawn by Plotly
  function moverRows(tableId, keys) {
    const body = document.querySelector("#" + tableId + " tbody");
    if (!keys.length) { body.innerHTML = '<tr><td colspan="6" class="note">none</td></tr>'; return; }
    for (const key of keys) {
      const s = byKey.get(key);
      const row = document.createElement("tr");
      const flagged = s.recent;
      if (flagged) row.classList.add("anomalous");
      row.innerHTML = "<td></td><td></td><td></td><td></td><td class=spark></td><td></td>";
      const cells = row.children;
      cells[0].textContent = s.name;
      cells[1].textContent = fmt.format(s.latest || 0);
      cells[2].textContent = signed(s.net30);
      cells[3].textContent = pct(s.growth30);
      cells[3].className = s.growth30 > 0 ? "up" : "down";
      cells[5].textContent = flagged ? String(flagged) : "";
      row.dataset.segment = key;
      row.addEventListener("click", () => select(key));
      body.appendChild(row);
      Plotly.newPlot(cells[4], [{ type: "scatter", mode: "lines", y: DATA.sparks[key] || [], line: { color: s.growth30 > 0 ? "#1d7a46" : "#b42318", width: 1.5 } }],
        { width: 130, height: 32, margin: { l: 2, r: 2, t: 2, b: 2 }, xaxis: { visible: false }, yaxis: { visible: false },
          paper_bgcolor: "rgba(0,0,0,0)", plot_bgcolor: "rgba(0,0,0,0)", showlegend: false }, { staticPlot: true });
    }
  }
  moverRows("growing", DATA.movers.growing);
  moverRows("shrinking", DATA.movers.shrinking);

  // the newest anomalies of the last 30 days (chosen and counted by the report step): at most
  // DATA.recent_anomalies.length rows, the mart marts.segment_anomalies has them all
  const anomalyBody = document.querySelector("#anomalies tbody");
  const recent = DATA.recent_anomalies;
  if (!recent.length) anomalyBody.innerHTML = '<tr><td colspan="6" class="note">no anomalies in the last 30 days</td></tr>';
  for (const [key, when, reason, value, usual, z] of recent) {
    const s = byKey.get(key);
    const row = document.createElement("tr");
    row.className = "anomalous";
    row.innerHTML = "<td></td><td></td><td></td><td></td><td></td><td></td>";
    const values = [s.name, when, reason.replace(/_/g, " "), fmt.format(value), fmt.format(usual), (z > 0 ? "+" : "") + z];
    values.forEach((v, i) => (row.children[i].textContent = v));
    row.dataset.segment = key;
    row.addEventListener("click", () => select(key));
    anomalyBody.appendChild(row);
  }
  if (DATA.anomaly_count_30d > recent.length) {
    const more = document.createElement("tr");
    more.innerHTML = '<td colspan="6" class="note"></td>';
    more.firstChild.textContent = fmt.format(DATA.anomaly_count_30d - recent.length) + " more in marts.segment_anomalies";
    anomalyBody.appendChild(more);
  }

  fillPicker();
  await draw();
  // the first chart is on screen: how long it took since navigation started (the benchmark reads it)
  document.body.dataset.firstChartMs = String(Math.round(performance.now()));
  document.body.dataset.ready = "true";
})();
