/* The explorer page: schema browser, SQL/InfluxQL editor with time ranges and history,
 * results as chart and table, live mode, pipeline panel and a line-protocol write box.
 * Everything it shows comes from the query API's own endpoints, with the API's token. */
(function () {
  "use strict";

  const $ = (id) => document.getElementById(id);
  const { seriesFromRows, drawChart, escapeHtml, formatValue } = window.InfluentChart;
  const HISTORY_KEY = "influent.explorer.history";
  const MAX_TABLE_ROWS = 1000;
  const state = { token: sessionStorage.getItem("influent.token") || "", running: false,
    liveTimer: null, pipelineTimer: null, tab: "chart", lastResult: null, runs: 0 };

  // ---- API access ------------------------------------------------------------------------
  async function api(path, init) {
    const headers = Object.assign({}, (init && init.headers) || {});
    if (state.token) headers.Authorization = `Bearer ${state.token}`;
    const response = await fetch(path, Object.assign({}, init || {}, { headers }));
    if (response.status === 401) showTokenDialog();
    return response;
  }

  /** The API's message for a failed response: its JSON "error" (with line details) or text. */
  async function errorText(response) {
    const text = await response.text();
    let message = text.trim() || response.statusText;
    try {
      const body = JSON.parse(text);
      if (body && typeof body === "object") {
        message = body.error || body.message || text;
        const data = Array.isArray(body.data) ? body.data : body.data ? [body.data] : [];
        const lines = data.filter((d) => d && d.error_message)
          .map((d) => `line ${d.line_number}: ${d.error_message}${d.original_line ? `: ${d.original_line}` : ""}`);
        if (lines.length) message += "\n" + lines.join("\n");
      }
    } catch (_) { /* plain text */ }
    if (response.status === 401) message = "unauthorized: this server needs a token (use the token button)";
    return `HTTP ${response.status}: ${message}`;
  }

  // ---- token -------------------------------------------------------------------------------
  function showTokenDialog() { $("token-dialog").hidden = false; $("token-input").focus(); }
  $("token-button").addEventListener("click", showTokenDialog);
  $("token-cancel").addEventListener("click", () => { $("token-dialog").hidden = true; });
  $("token-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    state.token = $("token-input").value.trim();
    sessionStorage.setItem("influent.token", state.token);
    $("token-dialog").hidden = true;
    loadDatabases();
  });

  // ---- databases and schema ----------------------------------------------------------------
  async function loadDatabases() {
    const select = $("database");
    try {
      const response = await api("/api/v3/configure/database?format=json");
      if (!response.ok) throw new Error(await errorText(response));
      const names = (await response.json()).map((r) => r["iox::database"]).sort();
      const wanted = select.value || localStorage.getItem("influent.explorer.db") || names[0] || "";
      select.innerHTML = names.map((n) => `<option value="${escapeHtml(n)}">${escapeHtml(n)}</option>`).join("");
      if (names.includes(wanted)) select.value = wanted;
      $("server-status").textContent = `${names.length} database${names.length === 1 ? "" : "s"}`;
      $("server-status").className = "status ok";
      if (!names.length) $("schema-tree").innerHTML = '<p class="muted">No databases yet: write some data.</p>';
      else loadSchema();
    } catch (err) {
      $("server-status").textContent = String(err.message || err);
      $("server-status").className = "status bad";
    }
  }

  async function influxqlRows(db, q) {
    const response = await api("/api/v3/query_influxql", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ db, q, format: "json" }) });
    if (!response.ok) throw new Error(await errorText(response));
    return response.json();
  }

  async function loadSchema() {
    const db = $("database").value;
    localStorage.setItem("influent.explorer.db", db);
    const tree = $("schema-tree");
    try {
      const [tags, fields] = await Promise.all([influxqlRows(db, "SHOW TAG KEYS"), influxqlRows(db, "SHOW FIELD KEYS")]);
      const tables = new Map();
      const table = (name) => { if (!tables.has(name)) tables.set(name, { tags: [], fields: [] }); return tables.get(name); };
      for (const r of tags) table(r["iox::measurement"]).tags.push(r.tagKey);
      for (const r of fields) table(r["iox::measurement"]).fields.push([r.fieldKey, r.fieldType]);
      state.schema = tables;
      if (!tables.size) { tree.innerHTML = '<p class="muted">No tables in this database.</p>'; return; }
      tree.innerHTML = [...tables.keys()].sort().map((name) => {
        const t = tables.get(name);
        const items = t.tags.map((k) => `<li><button type="button" class="column" data-column="${escapeHtml(k)}">${escapeHtml(k)}</button><span class="kind tag">tag</span></li>`)
          .concat(t.fields.map(([k, kind]) => `<li><button type="button" class="column" data-column="${escapeHtml(k)}">${escapeHtml(k)}</button><span class="kind">${escapeHtml(kind)}</span></li>`));
        return `<details><summary><button type="button" class="table-name" data-table="${escapeHtml(name)}" title="query this table">${escapeHtml(name)}</button>` +
          `<span class="muted">${t.tags.length} tags · ${t.fields.length} fields</span></summary><ul>${items.join("")}</ul></details>`;
      }).join("");
    } catch (err) {
      tree.innerHTML = `<p class="error">${escapeHtml(err.message || err)}</p>`;
    }
  }

  $("database").addEventListener("change", loadSchema);
  $("schema-tree").addEventListener("click", (ev) => {
    const tableButton = ev.target.closest(".table-name");
    if (tableButton) {
      ev.preventDefault();
      tableButton.closest("details").open = true;
      pickTable(tableButton.dataset.table);
      return;
    }
    const column = ev.target.closest(".column");
    if (column) insertAtCursor(quoteIdent(column.dataset.column));
  });

  function quoteIdent(name) { return `"${name.replace(/"/g, '\\"')}"`; }

  function insertAtCursor(text) {
    const editor = $("editor");
    const at = editor.selectionStart ?? editor.value.length;
    editor.value = editor.value.slice(0, at) + text + editor.value.slice(editor.selectionEnd ?? at);
    editor.focus();
    editor.selectionStart = editor.selectionEnd = at + text.length;
  }

  /** A starting query for a table: the mean of its first numeric field over time, per tag set
   * left to the user (InfluxQL), or the same with date_bin (SQL). */
  function pickTable(name) {
    const t = (state.schema && state.schema.get(name)) || { tags: [], fields: [] };
    const numeric = t.fields.find(([, kind]) => kind === "float" || kind === "integer" || kind === "unsigned");
    const table = quoteIdent(name);
    let q;
    if (language() === "influxql") {
      q = numeric ? `SELECT mean(${quoteIdent(numeric[0])}) FROM ${table} WHERE $timeFilter GROUP BY time($interval)`
        : `SELECT * FROM ${table} WHERE $timeFilter LIMIT 100`;
    } else {
      q = numeric ? `SELECT date_bin($interval, time) AS time, avg(${quoteIdent(numeric[0])}) AS ${quoteIdent(numeric[0])}\nFROM ${table} WHERE $timeFilter\nGROUP BY 1 ORDER BY 1`
        : `SELECT * FROM ${table} WHERE $timeFilter ORDER BY time DESC LIMIT 100`;
    }
    $("editor").value = q;
    run(true);
  }

  // ---- time ranges -----------------------------------------------------------------------
  const UNITS = { s: 1e3, m: 60e3, h: 3600e3, d: 86400e3 };
  const SQL_UNITS = { s: "seconds", m: "minutes", h: "hours", d: "days" };
  const INTERVALS = [1e3, 5e3, 10e3, 30e3, 60e3, 300e3, 600e3, 1800e3, 3600e3, 3 * 3600e3, 6 * 3600e3, 12 * 3600e3, 86400e3];

  function language() { return document.querySelector('input[name="language"]:checked').value; }

  /** The chosen range: {relative: "1h"} | {from, to} (ms) | null ("as written"). */
  function currentRange() {
    const v = $("range").value;
    if (!v) return null;
    if (v === "auto") return { relative: "1h", auto: true };
    if (v !== "custom") return { relative: v };
    const from = Date.parse($("range-from").value + "Z"), to = Date.parse($("range-to").value + "Z");
    return { from: Number.isNaN(from) ? null : from, to: Number.isNaN(to) ? null : to };
  }

  function rangeSpan(range, now) {
    if (!range) return null;
    if (range.relative) return UNITS[range.relative.slice(-1)] * parseInt(range.relative, 10);
    return (range.to ?? now) - (range.from ?? now - 3600e3);
  }

  function isoLiteral(ms) { return `'${new Date(ms).toISOString()}'`; }

  function timeFilter(lang, range) {
    if (!range) return "true";
    if (range.relative) {
      const n = parseInt(range.relative, 10), unit = range.relative.slice(-1);
      return lang === "influxql" ? `time >= now() - ${n}${unit}` : `time >= now() - interval '${n} ${SQL_UNITS[unit]}'`;
    }
    const parts = [];
    if (range.from !== null && range.from !== undefined) parts.push(`time >= ${isoLiteral(range.from)}`);
    if (range.to !== null && range.to !== undefined) parts.push(`time <= ${isoLiteral(range.to)}`);
    return parts.join(" AND ") || "true";
  }

  /** A GROUP BY width giving about 200 points over the range (1 m when there is none). */
  function autoInterval(lang, range, now) {
    const span = rangeSpan(range, now);
    const ms = span ? INTERVALS.find((i) => i >= span / 200) || INTERVALS[INTERVALS.length - 1] : 60e3;
    const s = ms / 1e3;
    return lang === "influxql" ? (s % 3600 === 0 ? `${s / 3600}h` : s % 60 === 0 ? `${s / 60}m` : `${s}s`)
      : `interval '${s} seconds'`;
  }

  /** Hide quoted text so keyword searches skip strings and quoted identifiers. */
  function masked(q) { return q.replace(/'(?:[^'\\]|\\.|'')*'|"(?:[^"\\]|\\.)*"/g, (m) => " ".repeat(m.length)); }

  /** The query as sent: ``$timeFilter`` and ``$interval`` expanded; for a plain SELECT without
   * them, the range is added to its WHERE clause (a subquery is left as written). */
  function prepareQuery(lang, q, range, now) {
    let text = q.trim().replace(/;\s*$/, "");
    if (/\$interval\b/.test(text)) text = text.replace(/\$interval\b/g, autoInterval(lang, range, now));
    if (/\$timeFilter\b/.test(text)) return text.replace(/\$timeFilter\b/g, timeFilter(lang, range));
    if (!range || !/^\s*select\b/i.test(text)) return text;
    const m = masked(text);
    if (/\(\s*select\b/i.test(m)) return text;
    const filter = timeFilter(lang, range);
    const where = m.search(/\bwhere\b/i);
    const endRe = /\b(group\s+by|order\s+by|limit|slimit|offset|soffset|fill|tz)\b/ig;
    if (where >= 0) {
      endRe.lastIndex = where;
      const end = endRe.exec(m);
      const stop = end ? end.index : text.length;
      return `${text.slice(0, where)}WHERE ${filter} AND (${text.slice(where + 5, stop).trim()})${stop < text.length ? " " + text.slice(stop) : ""}`;
    }
    const from = m.search(/\bfrom\b/i);
    endRe.lastIndex = Math.max(0, from);
    const end = endRe.exec(m);
    const stop = end ? end.index : text.length;
    return `${text.slice(0, stop).trimEnd()} WHERE ${filter}${stop < text.length ? " " + text.slice(stop) : ""}`;
  }

  /** Tables a query reads (the names after FROM; for "db"."rp"."m" the last part). */
  function tablesIn(q) {
    const text = q.replace(/'(?:[^'\\]|\\.|'')*'/g, (m) => " ".repeat(m.length));  // strings out
    const part = String.raw`(?:"(?:[^"\\]|\\.)*"|[\w-]+)`;
    const re = new RegExp(String.raw`\bfrom\s+(${part}(?:\.${part})*)`, "ig");
    const names = [];
    let hit;
    while ((hit = re.exec(text)) !== null) {
      const parts = hit[1].match(new RegExp(part, "g"));
      const last = parts[parts.length - 1];
      names.push(last.startsWith('"') ? last.slice(1, -1).replace(/\\(.)/g, "$1") : last);
    }
    return names;
  }

  /** Milliseconds of the newest point in ``tables`` of ``db``, from the catalog (pipeline
   * endpoint: file records and buffer snapshots), or null. */
  async function newestPoint(db, tables) {
    const response = await api("/api/v3/explorer/pipeline");
    if (!response.ok) return null;
    const found = (await response.json()).tables
      .filter((t) => t.db === db && tables.includes(t.table) && t.max_time !== null)
      .map((t) => t.max_time / 1e6);
    return found.length ? Math.max(...found) : null;
  }

  $("range").addEventListener("change", () => {
    const custom = $("range").value === "custom";
    $("custom-range").hidden = !custom;
    if (custom && !$("range-from").value) {
      const now = Date.now();
      $("range-from").value = new Date(now - 3600e3).toISOString().slice(0, 19);
      $("range-to").value = new Date(now).toISOString().slice(0, 19);
    }
  });

  // ---- running queries -------------------------------------------------------------------
  async function run(manual) {
    if (state.running) {  // a live run is in flight: the user's run follows it
      if (manual) state.rerun = true;
      return;
    }
    const db = $("database").value, lang = language(), q = $("editor").value;
    if (!q.trim()) return;
    state.running = true;
    document.body.classList.add("running");
    const range = currentRange();
    let text = prepareQuery(lang, q, range, Date.now());
    if (manual) remember({ lang, db, q });
    const started = performance.now();
    try {
      const path = lang === "influxql" ? "/api/v3/query_influxql" : "/api/v3/query_sql";
      const query = async (sent) => {
        const response = await api(path, { method: "POST", headers: { "Content-Type": "application/json" },
          body: JSON.stringify({ db, q: sent, format: "json" }) });
        return { response, rows: response.ok ? await response.json() : null };
      };
      let { response, rows } = await query(text);
      let note = "";
      if (response.ok && !rows.length && range && range.auto && text !== prepareQuery(lang, q, null, 0)) {
        // nothing in the last hour: the hour up to the newest point of the tables queried
        const newest = await newestPoint(db, tablesIn(q));
        if (newest !== null && newest < Date.now() - 3600e3) {
          text = prepareQuery(lang, q, { from: newest - 3600e3 + 1, to: newest }, Date.now());
          ({ response, rows } = await query(text));
          note = `no data in the last hour: showing the hour up to the newest point (${new Date(newest).toISOString().replace("T", " ").slice(0, 19)} UTC)\n`;
        }
      }
      $("sent").textContent = note + (text === q.trim() ? "" : `sent: ${text}`);
      if (!response.ok) { showError(await errorText(response)); return; }
      showResult(rows, performance.now() - started, manual);
    } catch (err) {
      showError(`request failed: ${err.message || err}`);
    } finally {
      state.running = false;
      state.runs += 1;
      document.body.classList.remove("running");
      document.body.dataset.runs = String(state.runs);
      if (manual) document.body.dataset.manualRuns = String((state.manualRuns = (state.manualRuns || 0) + 1));
      if (state.rerun) { state.rerun = false; setTimeout(() => run(true), 0); }
    }
  }

  function showError(message) {
    const box = $("error");
    box.textContent = message;
    box.hidden = false;
    $("summary").textContent = "";
  }

  function columnsOf(rows) {
    const seen = new Set();
    for (const row of rows) for (const k in row) seen.add(k);  // JSON rows leave out nulls
    const cols = [...seen];
    return cols.includes("time") ? ["time", ...cols.filter((c) => c !== "time")] : cols;
  }

  function showResult(rows, ms, manual) {
    $("error").hidden = true;
    const columns = columnsOf(rows);
    const series = rows.length ? seriesFromRows(columns, rows) : null;
    state.lastResult = { rows: rows.length, series: series ? series.length : 0 };
    $("summary").textContent = `${rows.length} row${rows.length === 1 ? "" : "s"}` +
      (series ? ` · ${series.length} series` : "") + ` · ${Math.round(ms)} ms · ${new Date().toISOString().slice(11, 19)} UTC`;
    renderTable(columns, rows);
    if (series) {
      state.pendingChart = series;  // drawn now, or when the chart tab is shown
      if (manual && state.tab === "table" && state.autoTable) selectTab("chart");
      else if (state.tab === "chart") drawChart($("chart"), series);
    } else {
      state.pendingChart = null;
      $("chart").innerHTML = `<p class="muted">${rows.length ? "This result has no time column with numeric columns: see the table." : "No rows."}</p>`;
      if (manual && rows.length && state.tab === "chart") { selectTab("table"); state.autoTable = true; }
    }
  }

  function renderTable(columns, rows) {
    const shown = rows.slice(0, MAX_TABLE_ROWS);
    const head = columns.map((c) => `<th>${escapeHtml(c)}</th>`).join("");
    const body = shown.map((r) => `<tr>${columns.map((c) => {
      const v = r[c];
      const cell = v === null || v === undefined ? "" : typeof v === "number" ? formatValue(v) : String(v);
      return `<td class="${typeof v === "number" ? "num" : ""}">${escapeHtml(cell)}</td>`;
    }).join("")}</tr>`).join("");
    const more = rows.length > shown.length ? `<p class="muted">first ${shown.length} of ${rows.length} rows</p>` : "";
    $("result-table").innerHTML = rows.length ? `<table><thead><tr>${head}</tr></thead><tbody>${body}</tbody></table>${more}` : '<p class="muted">No rows.</p>';
  }

  $("run").addEventListener("click", () => run(true));
  $("editor").addEventListener("keydown", (ev) => {
    if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) { ev.preventDefault(); run(true); }
  });
  document.querySelectorAll('input[name="language"]').forEach((r) => r.addEventListener("change", () => {
    $("editor").placeholder = language() === "influxql"
      ? "SELECT mean(usage_user) FROM cpu WHERE $timeFilter GROUP BY time($interval), hostname"
      : "SELECT * FROM cpu WHERE $timeFilter ORDER BY time DESC LIMIT 100";
  }));

  // ---- live mode -------------------------------------------------------------------------
  // Runs start every N seconds (fixed rate, never two at once): a run that takes longer than
  // the period is followed by the next one at once.
  async function liveTick() {
    if (!$("live").checked) return;
    state.liveStarted = performance.now();
    await run(false);
    scheduleLive();
  }

  function scheduleLive() {
    clearTimeout(state.liveTimer);
    if (!$("live").checked) return;
    const period = parseFloat($("live-interval").value) * 1000;
    state.liveTimer = setTimeout(liveTick, Math.max(0, (state.liveStarted || 0) + period - performance.now()));
  }
  $("live").addEventListener("change", () => { clearTimeout(state.liveTimer); liveTick(); });
  $("live-interval").addEventListener("change", scheduleLive);

  // ---- history ---------------------------------------------------------------------------
  function history() {
    try { return JSON.parse(localStorage.getItem(HISTORY_KEY) || "[]"); } catch (_) { return []; }
  }

  function remember(entry) {
    const items = [entry, ...history().filter((h) => h.q !== entry.q || h.lang !== entry.lang)].slice(0, 30);
    localStorage.setItem(HISTORY_KEY, JSON.stringify(items));
    renderHistory();
  }

  function renderHistory() {
    const items = history();
    $("history").innerHTML = '<option value="">history…</option>' + items.map((h, i) =>
      `<option value="${i}">${escapeHtml(`[${h.lang}] ${h.q.replace(/\s+/g, " ").slice(0, 80)}`)}</option>`).join("");
  }

  $("history").addEventListener("change", () => {
    const h = history()[parseInt($("history").value, 10)];
    $("history").value = "";
    if (!h) return;
    document.querySelector(`input[name="language"][value="${h.lang}"]`).checked = true;
    if (h.db && [...$("database").options].some((o) => o.value === h.db)) $("database").value = h.db;
    $("editor").value = h.q;
  });

  // ---- tabs ------------------------------------------------------------------------------
  function selectTab(name) {
    state.tab = name;
    state.autoTable = false;  // set again by the caller when the page chose the table itself
    document.querySelectorAll(".tabs button").forEach((b) => b.classList.toggle("active", b.dataset.tab === name));
    for (const t of ["chart", "table", "pipeline", "write"]) $(`tab-${t}`).hidden = t !== name;
    if (name === "chart" && state.pendingChart) drawChart($("chart"), state.pendingChart);
    clearInterval(state.pipelineTimer);
    if (name === "pipeline") { loadPipeline(); state.pipelineTimer = setInterval(loadPipeline, 2000); }
  }
  document.querySelectorAll(".tabs button").forEach((b) => b.addEventListener("click", () => selectTab(b.dataset.tab)));
  window.addEventListener("resize", () => { if (state.tab === "chart" && state.pendingChart) drawChart($("chart"), state.pendingChart); });

  // ---- pipeline panel --------------------------------------------------------------------
  function ago(unixSeconds) {
    if (!unixSeconds) return "never";
    const s = Math.max(0, Date.now() / 1000 - unixSeconds);
    if (s < 90) return `${Math.round(s)} s ago`;
    if (s < 5400) return `${Math.round(s / 60)} min ago`;
    return `${(s / 3600).toFixed(1)} h ago`;
  }

  function bytes(n) {
    if (n === null || n === undefined) return "";
    const units = ["B", "KiB", "MiB", "GiB"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
    return `${i ? n.toFixed(1) : n} ${units[i]}`;
  }

  function table(caption, columns, rows, empty) {
    if (!rows.length) return `<h3>${caption}</h3><p class="muted">${empty}</p>`;
    return `<h3>${caption}</h3><table><thead><tr>${columns.map(([h, , cls]) => `<th class="${cls || ""}">${h}</th>`).join("")}</tr></thead><tbody>` +
      rows.map((r) => `<tr>${columns.map(([, f, cls]) => `<td class="${cls || ""}">${escapeHtml(f(r) ?? "")}</td>`).join("")}</tr>`).join("") +
      "</tbody></table>";
  }

  function metricTotal(text, name) {
    let total = null;
    for (const line of text.split("\n")) {
      if (line.startsWith(name + " ") || line.startsWith(name + "{")) total = (total || 0) + parseFloat(line.split(" ").pop());
    }
    return total;
  }

  async function loadPipeline() {
    const target = $("pipeline");
    try {
      const [response, metrics] = await Promise.all([api("/api/v3/explorer/pipeline"), api("/metrics")]);
      if (!response.ok) throw new Error(await errorText(response));
      const p = await response.json();
      const mtext = metrics.ok ? await metrics.text() : "";
      const n = (v) => (v === null || v === undefined ? "–" : Number(v).toLocaleString("en-US"));
      const g = p.group || {};
      let html = `<p class="pipeline-head">worker group <b>${escapeHtml(g.id || "")}</b>: ${escapeHtml(g.state || "unknown")}, ` +
        `${n(g.members)} member${g.members === 1 ? "" : "s"} · this API process: ${n(metricTotal(mtext, "influent_lines_written_total"))} lines written, ` +
        `${n(metricTotal(mtext, "influent_lines_rejected_total"))} rejected · ${new Date(p.time * 1000).toISOString().slice(11, 19)} UTC</p>`;
      for (const problem of p.problems || []) html += `<p class="error">${escapeHtml(problem)}</p>`;
      html += table("Partitions", [["partition", (r) => r.partition, "num"], ["writes end", (r) => n(r.writes_end), "num"],
        ["committed", (r) => n(r.writes_committed), "num"], ["writes lag", (r) => n(r.writes_lag), "num"],
        ["accepted lag", (r) => n(r.accepted_lag), "num"], ["buffered batches", (r) => n(r.buffered_batches), "num"],
        ["buffered rows", (r) => n(r.buffered_rows), "num"], ["buffered bytes", (r) => bytes(r.buffered_bytes), "num"],
        ["files", (r) => n(r.files), "num"], ["last persist", (r) => ago(r.last_persist)]], p.partitions || [], "no partitions");
      html += table("Tables", [["database", (r) => r.db], ["table", (r) => r.table], ["buffered rows", (r) => n(r.buffered_rows), "num"],
        ["buffered bytes", (r) => bytes(r.buffered_bytes), "num"], ["files", (r) => n(r.files), "num"],
        ["rows in files", (r) => n(r.file_rows), "num"], ["file bytes", (r) => bytes(r.file_bytes), "num"]], p.tables || [], "no tables");
      html += table("Recent persists", [["when", (r) => ago(r.created_at)], ["database", (r) => r.database], ["table", (r) => r.table],
        ["partition key", (r) => r.partition_key], ["rows", (r) => n(r.rows), "num"], ["size", (r) => bytes(r.size), "num"],
        ["source", (r) => `p${r.source_partition} ${r.min_offset}–${r.max_offset}`]], p.persists || [], "no persist events yet");
      html += table("Triggers", [["database", (r) => r.db], ["trigger", (r) => r.name], ["plugin", (r) => r.plugin],
        ["specification", (r) => r.specification], ["state", (r) => (r.disabled ? "disabled" : "enabled")],
        ["calls", (r) => n(r.calls), "num"], ["errors", (r) => n(r.errors), "num"], ["lag", (r) => n(r.lag), "num"]], p.triggers || [], "no triggers");
      html += table("Subscriptions", [["database", (r) => r.db], ["subscription", (r) => r.name], ["destination", (r) => r.destination],
        ["lag", (r) => n(r.lag), "num"], ["delivered lines", (r) => n(r.delivered), "num"], ["failures", (r) => n(r.failures), "num"],
        ["dropped lines", (r) => n(r.dropped), "num"]], p.subscriptions || [], "no subscriptions");
      html += table("Last engine errors", [["when", (r) => ago(r.time)], ["database", (r) => r.db], ["trigger", (r) => r.trigger],
        ["message", (r) => r.text]], p.errors || [], "no errors");
      target.innerHTML = html;
    } catch (err) {
      target.innerHTML = `<p class="error">${escapeHtml(err.message || err)}</p>`;
    }
  }

  // ---- writes ----------------------------------------------------------------------------
  $("write").addEventListener("click", async () => {
    const db = $("database").value || "default";
    const out = $("write-result");
    const response = await api(`/api/v3/write_lp?db=${encodeURIComponent(db)}`, { method: "POST", body: $("write-body").value });
    out.className = response.ok ? "ok" : "error";
    out.textContent = response.ok ? `written to ${db}` : await errorText(response);
    if (response.ok && !$("database").value) loadDatabases();
  });

  window.explorer = { state, prepareQuery, tablesIn, run, loadDatabases, selectTab };
  renderHistory();
  loadDatabases();
})();
