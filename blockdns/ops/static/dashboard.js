/* blockdns dashboard: reads /api/stats and /api/querylog, pauses and resumes blocking with the API token.
   Reads send the token too once it is known: a server whose API is not bound to loopback (or has
   [api] read_token = true) answers reads only with it, and the page asks for it on the first 401.
   No dependencies and no network but this server. Everything from the server is written with textContent. */
"use strict";

(function () {
  const REFRESH_MS = 5000;
  const TOKEN_KEY = "blockdns.api-token";
  const SVG = "http://www.w3.org/2000/svg";
  const numberFormat = new Intl.NumberFormat();
  let pendingChange = null;
  let refreshTimer = null;
  let refreshFailed = false;

  const $ = (id) => document.getElementById(id);
  const num = (n) => (n === null || n === undefined ? "–" : numberFormat.format(n));
  const pct = (x) => (x === null || x === undefined ? "–" : (100 * x).toFixed(1) + " %");
  const clock = (ts) => new Date(ts * 1000).toLocaleTimeString();

  function duration(seconds) {
    // The two largest non-zero units: "2d 3h", "30m", "4m 10s", "0s".
    let rest = Math.max(0, Math.round(seconds));
    const parts = [];
    for (const [size, unit] of [[86400, "d"], [3600, "h"], [60, "m"], [1, "s"]]) {
      const count = Math.floor(rest / size);
      rest -= count * size;
      if (count) parts.push(count + unit);
    }
    return parts.length ? parts.slice(0, 2).join(" ") : "0s";
  }

  function stamp(ts, withDate) {
    const when = new Date(ts * 1000);
    if (!withDate) return when.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    return when.toLocaleString([], { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
  }

  function setText(id, text) {
    const node = $(id);
    if (node) node.textContent = text;
  }

  function showMessage(text, kind) {
    const node = $("message");
    node.textContent = text;
    node.dataset.kind = kind || "info";
    node.hidden = !text;
  }

  function withToken(headers) {
    const token = sessionStorage.getItem(TOKEN_KEY);
    return token ? Object.assign({ Authorization: "Bearer " + token }, headers) : headers;
  }

  async function getJSON(path) {
    const response = await fetch(path, { cache: "no-store", headers: withToken({ Accept: "application/json" }) });
    const body = await response.json().catch(() => ({}));
    return { status: response.status, ok: response.ok, body: body };
  }

  // ------------------------------------------------------------------------------------------ token

  function askToken(then) {
    pendingChange = then;
    $("token-panel").hidden = false;
    $("token-input").value = "";
    $("token-input").focus();
  }

  function hideToken() {
    $("token-panel").hidden = true;
    pendingChange = null;
  }

  $("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const value = $("token-input").value.trim();
    if (!value) return;
    sessionStorage.setItem(TOKEN_KEY, value);
    const then = pendingChange;
    hideToken();
    showMessage("Token saved for this tab.", "info");
    if (then) then();
  });
  $("token-cancel").addEventListener("click", hideToken);
  $("token-btn").addEventListener("click", () => askToken(refresh));

  async function change(path, body) {
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (!token) {
      askToken(() => change(path, body));
      return;
    }
    let response;
    try {
      response = await fetch(path, {
        method: "POST",
        cache: "no-store",
        headers: { "Content-Type": "application/json", Authorization: "Bearer " + token },
        body: JSON.stringify(body || {}),
      });
    } catch (err) {
      showMessage("The server did not answer: " + err, "error");
      return;
    }
    const data = await response.json().catch(() => ({}));
    if (response.status === 401) {
      sessionStorage.removeItem(TOKEN_KEY);
      showMessage("The server refused that token; enter it again.", "error");
      askToken(() => change(path, body));
      return;
    }
    if (!response.ok) {
      showMessage(data.error || "The server said HTTP " + response.status, "error");
      return;
    }
    showMessage(data.paused ? "Blocking paused until " + clock(data.paused_until) + "." : "Blocking is on.", "info");
    refresh();
  }

  $("pause-btn").addEventListener("click", () => change("/api/pause", { duration: "5m" }));
  $("resume-btn").addEventListener("click", () => change("/api/resume", {}));

  // -------------------------------------------------------------------------------------- rendering

  function fillTable(id, rows, cells, emptyText) {
    const tbody = $(id).querySelector("tbody");
    tbody.replaceChildren();
    if (!rows || rows.length === 0) {
      const tr = document.createElement("tr");
      const td = document.createElement("td");
      td.colSpan = $(id).querySelectorAll("thead th").length;
      td.className = "empty";
      td.textContent = emptyText;
      tr.appendChild(td);
      tbody.appendChild(tr);
      return;
    }
    for (const row of rows) {
      const tr = document.createElement("tr");
      for (const [value, className] of cells(row)) {
        const td = document.createElement("td");
        td.textContent = value === null || value === undefined || value === "" ? "–" : String(value);
        if (className) td.className = className;
        tr.appendChild(td);
      }
      tbody.appendChild(tr);
    }
  }

  function renderPause(stats) {
    const pill = $("paused-state");
    if (stats.paused) {
      pill.dataset.state = "paused";
      pill.textContent = "Paused until " + clock(stats.paused_until) + " (" + duration(stats.paused_until - stats.now) + " left)";
    } else {
      pill.dataset.state = "on";
      pill.textContent = "Blocking on";
    }
    $("pause-btn").disabled = stats.paused;
    $("resume-btn").disabled = !stats.paused;
  }

  // With [cluster] redis the cards are this replica's; the note under Queries gives the cluster's total.
  function clusterScope(cluster) {
    if (!cluster || !cluster.enabled) return "since start";
    if (!cluster.totals) return "this replica (the cluster's Redis is not reachable)";
    return "this replica; " + num(cluster.totals.queries.total) + " on all " + num(cluster.replicas) + " replicas";
  }

  // "udp 1,204 · tcp 3 · DoT 40 · DoH 17": how the queries came in, plain and encrypted.
  function transportSplit(byTransport) {
    const names = { udp: "udp", tcp: "tcp", tls: "DoT", https: "DoH" };
    const parts = Object.keys(names).filter((key) => byTransport[key]).map((key) => names[key] + " " + num(byTransport[key]));
    return parts.length ? parts.join(" · ") : "–";
  }

  function renderCards(stats) {
    const q = stats.queries;
    setText("version", "v" + stats.version);
    setText("total-queries", num(q.total));
    setText("queries-scope", clusterScope(stats.cluster));
    setText("queries-transports", transportSplit(q.by_transport || {}));
    setText("blocked-queries", num(q.blocked));
    setText("block-rate", pct(q.block_rate) + " of queries");
    setText("cache-hit-rate", pct(stats.cache.hit_rate));
    setText("cache-entries", num(stats.cache.entries) + " entries, " + num(stats.cache.hits) + " hits");
    const latency = stats.upstream.mean_latency_ms;
    setText("upstream-latency", latency === null ? "–" : latency.toFixed(1) + " ms");
    setText("upstream-errors", num(stats.upstream.timeouts) + " timeouts, " + num(stats.upstream.errors) + " errors");
    setText("uptime", duration(stats.uptime_seconds));
    setText("policy-size", num(stats.policy.entries) + " policy entries");
    const p = stats.problems;
    const ratelimited = p.ratelimited_slipped + p.ratelimited_dropped;
    const problems = p.refused_clients + p.bad_packets + p.dropped_overload + p.handler_failures + p.querylog_dropped
      + p.reloads_refused + ratelimited;
    setText("problems", num(problems));
    setText("problems-detail", num(p.refused_clients) + " refused, " + num(p.bad_packets) + " bad packets, "
      + num(p.querylog_dropped) + " log rows dropped"
      + (ratelimited ? ", " + num(ratelimited) + " over the rate limit" : "")
      + (p.reloads_refused ? ", " + num(p.reloads_refused) + " reloads refused" : ""));
  }

  function svg(tag, attributes) {
    const node = document.createElementNS(SVG, tag);
    for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, String(value));
    return node;
  }

  function renderChart(summary) {
    const box = $("chart");
    box.replaceChildren();
    if (!summary) {
      setText("chart-note", "(the query log is off, so there is no history)");
      return;
    }
    const points = summary.series.points;
    // Draw in the box's own pixels so labels are not stretched.
    const width = Math.max(box.clientWidth, 320), height = 180, left = 44, bottom = 18, top = 8;
    const peak = Math.max(1, ...points.map((p) => p.queries));
    const slot = (width - left) / Math.max(points.length, 1);
    const scale = (value) => ((height - bottom - top) * value) / peak;
    const chart = svg("svg", { viewBox: "0 0 " + width + " " + height, role: "img" });
    chart.appendChild(svg("line", { x1: left, y1: height - bottom, x2: width, y2: height - bottom, class: "axis" }));
    const label = (x, y, text, anchor) => {
      const node = svg("text", { x: x, y: y, "text-anchor": anchor || "start" });
      node.textContent = text;
      chart.appendChild(node);
    };
    label(left - 4, top + 10, num(peak), "end");
    label(left - 4, height - bottom, "0", "end");
    points.forEach((point, index) => {
      const x = left + index * slot + 0.5;
      const w = Math.max(slot - 1, 1);
      const all = scale(point.queries), blocked = scale(point.blocked);
      const bar = svg("rect", { x: x, y: height - bottom - all, width: w, height: all, class: "bar-all" });
      const title = svg("title", {});
      title.textContent = clock(point.ts) + ": " + num(point.queries) + " queries, " + num(point.blocked) + " blocked";
      bar.appendChild(title);
      chart.appendChild(bar);
      if (point.blocked) {
        chart.appendChild(svg("rect", { x: x, y: height - bottom - blocked, width: w, height: blocked, class: "bar-blocked" }));
      }
    });
    if (points.length) {
      const first = points[0].ts, last = points[points.length - 1].ts;
      const withDate = last - first >= 12 * 3600;
      label(left, height - 4, stamp(first, withDate));
      label(width, height - 4, stamp(last, withDate), "end");
    }
    box.appendChild(chart);
    setText("chart-note", "(" + duration(summary.series.bucket_seconds) + " per bar)");
    setText("log-totals", "· " + num(summary.total) + " queries, " + num(summary.blocked) + " blocked (" + pct(summary.block_rate) + ")");
  }

  // A client as people know it: "laptop-anna.home.arpa (192.168.1.23)", or the address alone.
  function clientLabel(address, name) {
    return name ? name + " (" + address + ")" : address;
  }

  function renderTops(stats, summary) {
    const vendors = summary ? summary.top_vendors : stats.top_vendors;
    fillTable("top-vendors", vendors, (row) => [[row.vendor || "(no vendor)"], [row.category], [num(row.count), "num"]],
      "nothing blocked yet");
    fillTable("top-domains", summary ? summary.top_domains : [],
      (row) => [[row.name], [row.vendor], [num(row.count), "num"]],
      summary ? "nothing blocked yet" : "the query log is off");
    fillTable("top-clients", summary ? summary.top_clients : [],
      (row) => [[clientLabel(row.client, row.name)], [num(row.queries), "num"], [num(row.blocked), "num"]],
      summary ? "nothing blocked yet" : "the query log is off");
  }

  function renderRecent(result) {
    const rows = result && result.ok ? result.body.rows : [];
    const empty = result && result.status === 404 ? "the query log is off" : "no blocked queries yet";
    fillTable("recent-blocked", rows,
      (row) => [[clock(row.ts)], [clientLabel(row.client, row.client_name)], [row.group], [row.name], [row.qtype], [row.vendor], [row.rule]], empty);
  }

  function askTokenForReads() {
    const refused = sessionStorage.getItem(TOKEN_KEY) !== null;
    sessionStorage.removeItem(TOKEN_KEY);
    showMessage(refused ? "The server refused that token; enter it again."
      : "This server shows its statistics only with the API token.", "error");
    askToken(refresh);
  }

  async function refresh() {
    clearTimeout(refreshTimer);
    let again = true;
    try {
      const [statsResult, recent] = await Promise.all([
        getJSON("/api/stats"),
        getJSON("/api/querylog?blocked=1&limit=20"),
      ]);
      if (statsResult.status === 401) {
        again = false; // polling resumes once a token is entered
        askTokenForReads();
        return;
      }
      if (!statsResult.ok) throw new Error(statsResult.body.error || "HTTP " + statsResult.status);
      const stats = statsResult.body;
      const summary = stats.querylog && stats.querylog.summary ? stats.querylog.summary : null;
      renderPause(stats);
      renderCards(stats);
      renderChart(summary);
      renderTops(stats, summary);
      renderRecent(recent);
      setText("updated", new Date().toLocaleTimeString());
      document.body.dataset.loaded = "true";
      if (refreshFailed) showMessage("", "info");
      refreshFailed = false;
    } catch (err) {
      refreshFailed = true;
      showMessage("Cannot read the server's statistics: " + err.message, "error");
    } finally {
      if (again) refreshTimer = setTimeout(refresh, REFRESH_MS);
    }
  }

  refresh();
})();
