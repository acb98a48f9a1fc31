// The growth report's own logic: choose the data for the picked segment, range and interval; Plotly draws.
(function () {
  const DATA = JSON.parse(document.getElementById("report-data").textContent);
  const chart = document.getElementById(DATA.chart_id);
  const byKey = new Map(DATA.segments.map((s) => [s.key, s]));
  const state = { key: DATA.segments.length ? DATA.segments[0].key : null, range: 90, interval: "daily" };
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
        hovertemplate: "%{y:,} members<extra>%{x}</extra>" },
      { type: "bar", name: "Members added", x, y: rows.map((r) => r.added), yaxis: "y2", marker: { color: "#2fa36b" },
        hovertemplate: "+%{y:,} added<extra>%{x}</extra>" },
      { type: "bar", name: "Members removed", x, y: rows.map((r) => (r.removed === null ? null : -r.removed)), yaxis: "y2",
        marker: { color: "#d64545" }, customdata: rows.map((r) => r.removed), hovertemplate: "%{customdata:,} removed<extra>%{x}</extra>" },
      { type: "scatter", mode: "markers", name: "Definition changed", x: changes.x, y: changes.y, text: changes.hover,
        hovertemplate: "%{text}<extra></extra>", marker: { symbol: "diamond", size: 12, color: "#f0b429", line: { color: "#8d6708", width: 1 } } },
      { type: "scatter", mode: "markers", name: "Anomaly", x: anomalies.x, y: anomalies.y, text: anomalies.hover,
        hovertemplate: "%{text}<extra></extra>", marker: { symbol: "x", size: 12, color: "#b42318", line: { width: 2 } } },
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
      // segments with an anomaly in the last 30 days stand out in the list too
      const flag = recentAnomalies(s) ? "⚠ " : "";
      option.textContent = flag + s.name + (DATA.accounts.length > 1 ? " · " + s.account : "") + " (" + fmt.format(s.latest || 0) + ")";
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
    link.href = URL.createObjectURL(new Blob([lines.join("\n")], { type: "text/csv" }));
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
  // the newest first, at most ANOMALY_ROWS of them: the mart marts.segment_anomalies has them all
  const ANOMALY_ROWS = 20;
  for (const [s, a] of recent.slice(0, ANOMALY_ROWS)) {
    const row = document.createElement("tr");
    row.className = "anomalous";
    row.innerHTML = "<td></td><td></td><td></td><td></td><td></td><td></td>";
    const values = [s.name, day(s.start, a[0]), a[5].replace(/_/g, " "), fmt.format(a[2]), fmt.format(a[3]), (a[4] > 0 ? "+" : "") + a[4]];
    values.forEach((v, i) => (row.children[i].textContent = v));
    row.addEventListener("click", () => select(s.key));
    anomalyBody.appendChild(row);
  }
  if (recent.length > ANOMALY_ROWS) {
    const more = document.createElement("tr");
    more.innerHTML = '<td colspan="6" class="note"></td>';
    more.firstChild.textContent = (recent.length - ANOMALY_ROWS) + " more in marts.segment_anomalies";
    anomalyBody.appendChild(more);
  }

  fillPicker();
  draw();
  document.body.dataset.ready = "true";
})();
