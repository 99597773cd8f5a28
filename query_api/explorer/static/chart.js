/* A small time-series line chart drawn as SVG, with no dependencies.
 *
 * seriesFromRows(columns, rows): rows (objects) -> [{name, points: [[ms, value|null], ...]}]:
 *   the time column gives x; each numeric column is a value; every other (string) column is
 *   part of the series key, so group-by tags become series.
 * drawChart(container, series, options): renders the lines, axes, legend and a hover readout.
 */
(function () {
  "use strict";

  const PALETTE = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948",
    "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac", "#1f77b4", "#d62728", "#2ca02c", "#9467bd",
    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf", "#393b79"];
  const SVG = "http://www.w3.org/2000/svg";

  /** Milliseconds since the epoch of a time cell (ISO string without zone = UTC, or ns). */
  function timeMs(value) {
    if (typeof value === "number") return value / 1e6;
    if (typeof value !== "string") return NaN;
    const iso = /[zZ]|[+-]\d\d:?\d\d$/.test(value) ? value : value + "Z";
    return Date.parse(iso);
  }

  function isNumber(v) { return typeof v === "number" && Number.isFinite(v); }

  /** Which columns are time, values and series keys; null when the rows cannot be charted. */
  function chartShape(columns, rows) {
    const time = columns.find((c) => c === "time") ||
      columns.find((c) => rows.some((r) => typeof r[c] === "string" && !Number.isNaN(timeMs(r[c])) && /^\d{4}-\d\d-\d\dT/.test(r[c])));
    if (!time) return null;
    const values = columns.filter((c) => c !== time &&
      rows.some((r) => isNumber(r[c])) && rows.every((r) => r[c] === null || r[c] === undefined || isNumber(r[c])));
    if (!values.length) return null;
    const keys = columns.filter((c) => c !== time && !values.includes(c));
    return { time, values, keys };
  }

  function seriesFromRows(columns, rows) {
    const shape = chartShape(columns, rows);
    if (!shape) return null;
    const varying = shape.keys.filter((k) => rows.some((r) => r[k] !== rows[0][k]));
    const byName = new Map();
    for (const row of rows) {
      const x = timeMs(row[shape.time]);
      if (Number.isNaN(x)) continue;
      const tagPart = varying.map((k) => `${k}=${row[k] === null || row[k] === undefined ? "" : row[k]}`).join(",");
      for (const v of shape.values) {
        const name = shape.values.length > 1 || !tagPart ? (tagPart ? `${v} ${tagPart}` : v) : tagPart;
        if (!byName.has(name)) byName.set(name, []);
        const y = row[v];
        byName.get(name).push([x, isNumber(y) ? y : null]);
      }
    }
    const series = [];
    for (const [name, points] of byName) {
      points.sort((a, b) => a[0] - b[0]);
      series.push({ name, points });
    }
    return series;
  }

  /** About `count` round tick values covering [lo, hi]. */
  function niceTicks(lo, hi, count) {
    if (lo === hi) { lo -= 1; hi += 1; }
    const raw = (hi - lo) / Math.max(1, count);
    const mag = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) || 10 * mag;
    const ticks = [];  // from the round value at or below lo to the one at or above hi
    for (let t = Math.floor(lo / step) * step; t < hi + step * 0.999; t += step) ticks.push(+t.toPrecision(12));
    return { ticks, step };
  }

  const TIME_STEPS = [1e3, 2e3, 5e3, 10e3, 15e3, 30e3, 60e3, 120e3, 300e3, 600e3, 900e3, 1800e3,
    3600e3, 7200e3, 10800e3, 21600e3, 43200e3, 86400e3, 2 * 86400e3, 7 * 86400e3, 30 * 86400e3,
    90 * 86400e3, 365 * 86400e3];

  function timeTicks(lo, hi, count) {
    const raw = (hi - lo) / Math.max(1, count);
    const step = TIME_STEPS.find((s) => s >= raw) || Math.ceil(raw / TIME_STEPS[TIME_STEPS.length - 1]) * TIME_STEPS[TIME_STEPS.length - 1];
    const ticks = [];
    for (let t = Math.ceil(lo / step) * step; t <= hi; t += step) ticks.push(t);
    return { ticks, step };
  }

  function pad(n) { return String(n).padStart(2, "0"); }

  function formatTime(ms, step) {
    const d = new Date(ms);
    const date = `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())}`;
    const hm = `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}`;
    if (step >= 86400e3) return date;
    if (step < 60e3) return `${hm}:${pad(d.getUTCSeconds())}`;
    return hm;
  }

  function formatValue(v) {
    if (v === null || v === undefined) return "null";
    const a = Math.abs(v);
    if (a !== 0 && (a >= 1e9 || a < 1e-3)) return v.toExponential(2);
    return (+v.toPrecision(6)).toLocaleString("en-US", { maximumFractionDigits: 6 });
  }

  function el(name, attrs, parent) {
    const node = document.createElementNS(SVG, name);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    if (parent) parent.appendChild(node);
    return node;
  }

  function drawChart(container, series, options) {
    const opts = Object.assign({ height: 360 }, options || {});
    container.textContent = "";
    const width = Math.max(320, container.clientWidth || 800);
    const height = opts.height;
    const margin = { top: 12, right: 18, bottom: 28, left: 64 };
    let xmin = Infinity, xmax = -Infinity, ymin = Infinity, ymax = -Infinity;
    for (const s of series) {
      for (const [x, y] of s.points) {
        xmin = Math.min(xmin, x); xmax = Math.max(xmax, x);
        if (y !== null) { ymin = Math.min(ymin, y); ymax = Math.max(ymax, y); }
      }
    }
    if (!Number.isFinite(xmin)) { xmin = Date.now() - 3600e3; xmax = Date.now(); }
    if (!Number.isFinite(ymin)) { ymin = 0; ymax = 1; }
    if (xmin === xmax) { xmin -= 30e3; xmax += 30e3; }
    const yt = niceTicks(ymin, ymax, 6);
    const ylo = Math.min(ymin, yt.ticks[0]), yhi = Math.max(ymax, yt.ticks[yt.ticks.length - 1]);
    const plotW = width - margin.left - margin.right, plotH = height - margin.top - margin.bottom;
    const sx = (x) => margin.left + ((x - xmin) / (xmax - xmin)) * plotW;
    const sy = (y) => margin.top + plotH - ((y - ylo) / ((yhi - ylo) || 1)) * plotH;

    const svg = el("svg", { width, height, viewBox: `0 0 ${width} ${height}`, class: "chart-svg",
      role: "img", "aria-label": `time-series chart with ${series.length} series` }, container);
    const grid = el("g", { class: "grid" }, svg);
    for (const t of yt.ticks) {
      if (t < ylo || t > yhi) continue;
      el("line", { x1: margin.left, x2: width - margin.right, y1: sy(t), y2: sy(t) }, grid);
      const label = el("text", { x: margin.left - 8, y: sy(t) + 4, "text-anchor": "end", class: "tick" }, svg);
      label.textContent = formatValue(t);
    }
    const xt = timeTicks(xmin, xmax, Math.max(2, Math.floor(plotW / 110)));
    for (const t of xt.ticks) {
      el("line", { x1: sx(t), x2: sx(t), y1: margin.top, y2: margin.top + plotH, class: "vgrid" }, grid);
      const label = el("text", { x: sx(t), y: height - 8, "text-anchor": "middle", class: "tick" }, svg);
      label.textContent = formatTime(t, xt.step);
    }
    el("rect", { x: margin.left, y: margin.top, width: plotW, height: plotH, class: "frame" }, svg);

    const lines = el("g", { class: "lines" }, svg);
    series.forEach((s, i) => {
      const color = PALETTE[i % PALETTE.length];
      let d = "", pen = false;
      for (const [x, y] of s.points) {
        if (y === null) { pen = false; continue; }
        d += `${pen ? "L" : "M"}${sx(x).toFixed(1)},${sy(y).toFixed(1)}`;
        pen = true;
      }
      const path = el("path", { d: d || "M0,0", stroke: color, class: "series", "data-series": s.name }, lines);
      const title = el("title", {}, path);
      title.textContent = s.name;
      const solo = s.points.filter((p) => p[1] !== null);
      if (solo.length <= 2 || s.points.length <= 60) {
        for (const [x, y] of solo) el("circle", { cx: sx(x), cy: sy(y), r: 2.5, fill: color, class: "dot" }, lines);
      }
    });

    const cursor = el("line", { y1: margin.top, y2: margin.top + plotH, class: "cursor", visibility: "hidden" }, svg);
    const readout = document.createElement("div");
    readout.className = "chart-readout";
    readout.hidden = true;
    container.appendChild(readout);
    svg.addEventListener("mousemove", (ev) => {
      const box = svg.getBoundingClientRect();
      const px = ev.clientX - box.left;
      if (px < margin.left || px > width - margin.right) { cursor.setAttribute("visibility", "hidden"); readout.hidden = true; return; }
      const x = xmin + ((px - margin.left) / plotW) * (xmax - xmin);
      let best = null;
      for (const s of series) for (const p of s.points) if (!best || Math.abs(p[0] - x) < Math.abs(best - x)) best = p[0];
      if (best === null) return;
      cursor.setAttribute("x1", sx(best)); cursor.setAttribute("x2", sx(best));
      cursor.setAttribute("visibility", "visible");
      const rowsHtml = series.slice(0, 12).map((s, i) => {
        const p = s.points.find((q) => q[0] === best);
        return p ? `<div><span class="swatch" style="background:${PALETTE[i % PALETTE.length]}"></span>${escapeHtml(s.name)}: <b>${formatValue(p[1])}</b></div>` : "";
      }).join("");
      readout.innerHTML = `<div class="when">${new Date(best).toISOString().replace("T", " ").replace("Z", " UTC")}</div>${rowsHtml}`;
      readout.hidden = false;
      readout.style.left = `${Math.min(px + 14, width - 260)}px`;
    });
    svg.addEventListener("mouseleave", () => { cursor.setAttribute("visibility", "hidden"); readout.hidden = true; });

    const legend = document.createElement("div");
    legend.className = "legend";
    series.forEach((s, i) => {
      const item = document.createElement("span");
      item.className = "legend-item";
      item.innerHTML = `<span class="swatch" style="background:${PALETTE[i % PALETTE.length]}"></span>${escapeHtml(s.name)}`;
      legend.appendChild(item);
    });
    container.appendChild(legend);
  }

  function escapeHtml(text) {
    return String(text).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
  }

  window.InfluentChart = { seriesFromRows, drawChart, timeMs, escapeHtml, formatValue };
})();
