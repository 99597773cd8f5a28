"""The results table (text and Markdown) and the ratio chart, from a run's results JSON.

    python -m benchmarks.report [benchmarks/results/latest.json] [--markdown] [--png PATH]

Every row is one figure: influent's value, the peer's, influent / peer, which direction is
better, the target (never asserted, only reported) and whether it is met.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import click

DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "latest.json"


@dataclass
class Row:
    group: str
    metric: str
    influent: float | None
    peer: float | None
    unit: str
    higher_is_better: bool
    target: str = ""
    met: bool | None = None
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.influent is None or self.peer in (None, 0):
            return None
        return self.influent / self.peer

    @property
    def better(self) -> bool | None:
        r = self.ratio
        if r is None:
            return None
        return r >= 1 if self.higher_is_better else r <= 1


def _get(d: dict, *path, default=None):
    for p in path:
        if not isinstance(d, dict) or p not in d:
            return default
        d = d[p]
    return d


def rows(results: dict) -> list[Row]:
    out: list[Row] = []
    ing = results.get("ingest", {})
    b = ing.get("batched")
    if b:
        ratio = b["influent"]["lines_per_s"] / b["peer"]["lines_per_s"]
        out.append(Row("ingest", f"lines/s, {b['lines_per_message']}-line msgs vs "
                       f"{b['peer_batch']}-line /write", b["influent"]["lines_per_s"],
                       b["peer"]["lines_per_s"], "lines/s", True, ">= 2x peer (goal 5x)",
                       ratio >= 2))
        out.append(Row("ingest", "CPU s per M lines (worker vs influxd)",
                       b["influent"]["worker_cpu_s_per_m_lines"], b["peer"]["cpu_s_per_m_lines"],
                       "CPU s", False))
        out.append(Row("ingest", "CPU s per M lines (worker+Kafka+Redis+API vs influxd)",
                       b["influent"]["pipeline_cpu_s_per_m_lines"],
                       b["peer"]["cpu_s_per_m_lines"], "CPU s", False, "<= peer",
                       b["influent"]["pipeline_cpu_s_per_m_lines"]
                       <= b["peer"]["cpu_s_per_m_lines"]))
        out += _amplification(b["influent"], f"{b['lines_per_message']}-line msgs")
    s = ing.get("single")  # runs made before benchmarks.ingest_sizes took this part
    if s:
        out.append(Row("ingest", "lines/s, one line per msg / request",
                       s["influent"]["lines_per_s"], s["peer"]["lines_per_s"], "lines/s", True))
        out.append(Row("ingest", "CPU s per M lines, one line per msg (worker)",
                       s["influent"]["worker_cpu_s_per_m_lines"], s["peer"]["cpu_s_per_m_lines"],
                       "CPU s", False))
    for size, r in sorted(ing.get("sizes", {}).items(), key=lambda kv: int(kv[0])):
        inf, peer = r["influent"], r["peer"]
        what = f"{size}-line msgs / requests, {r['lines']:,} lines"
        one = int(size) == 1
        out.append(Row("ingest", f"lines/s, {what}", inf["lines_per_s"], peer["lines_per_s"],
                       "lines/s", True, ">= 10 000 lines/s" if one else "",
                       inf["lines_per_s"] >= 10_000 if one else None))
        out.append(Row("ingest", f"CPU s per M lines, whole system vs influxd ({size}-line)",
                       inf["pipeline_cpu_s_per_m_lines"], peer["cpu_s_per_m_lines"], "CPU s",
                       False, "<= peer",
                       inf["pipeline_cpu_s_per_m_lines"] <= peer["cpu_s_per_m_lines"]))
        out += _amplification(inf, f"{size}-line msgs")
    for name, f in results.get("freshness", {}).items():
        i, p = f["influent"], f["peer"]
        load = f"{f['rate_msgs_per_s']:g} msg/s x {f['lines_per_msg']} lines"
        out.append(Row("freshness", f"p50 produce->visible ({name}: {load})", i["p50_s"],
                       p["p50_s"], "s", False))
        out.append(Row("freshness", f"p99 produce->visible ({name}: {load})", i["p99_s"],
                       p["p99_s"], "s", False, "p99 < 1 s", i["p99_s"] < 1 and not i["lost"],
                       f"{i['lost']} probes lost" if i["lost"] else ""))
    qs = _get(results, "queries", "types", default={})
    for kind, q in qs.items():
        ok = q["answers"] in ("identical", "floats ~1e-12", "tie order")
        out.append(Row("queries", f"{kind} median", q["influent_median_s"], q["peer_median_s"],
                       "s", False, "<= peer, same answers",
                       ok and q["influent_median_s"] <= q["peer_median_s"], q["answers"]))
    lc = _get(results, "queries", "lastpoint_cache", default={})
    if lc.get("with_cache_median_s") is not None:  # benchmarks/lastpoint_cache.py
        ok = lc["answers"] in ("identical", "floats ~1e-12", "tie order")
        out.append(Row("queries", "lastpoint median with a last value cache",
                       lc["with_cache_median_s"], lc["peer_median_s"], "s", False,
                       "<= 10 ms, same answers", ok and lc["with_cache_median_s"] <= 0.010,
                       f"{lc['answers']}; from_cache={lc['from_cache']}; without cache "
                       f"{lc['without_cache_median_s'] * 1000:.1f} ms"))
    out.extend(query_load_rows(results.get("query_load")))
    st = results.get("storage")
    if st:
        inf, peer = st["influent"], st["peer"]
        out.append(Row("storage", "bytes per row (Parquet vs compacted TSM)",
                       inf["bytes_per_row"], peer["bytes_per_row"], "B/row", False,
                       "Parquet <= 1/15 of LP", inf["ratio"] >= 15,
                       f"Parquet = 1/{inf['ratio']:.1f} of LP"))
        comp = st.get("influent_compacted")
        if comp:
            out.append(Row("storage", f"bytes per row after compaction ({comp['l0_files']} L0 "
                           f"files, {comp['l0_bytes_per_row']:.2f} B/row -> "
                           f"{comp['compacted_files']} L1)", comp["bytes_per_row"],
                           peer["bytes_per_row"], "B/row", False))
        pers = st.get("influent_persisted_during_ingest", {})
        if pers.get("bytes_per_row"):
            out.append(Row("storage", f"bytes per row, the {pers['files']} files persisted "
                           "during ingest", pers["bytes_per_row"], peer["bytes_per_row"],
                           "B/row", False))
    out.extend(compaction_rows(results))
    rec = results.get("recovery")
    if rec:
        peer_s = _get(rec, "peer", "ready_s")
        big = rec["rows"] >= 1_000_000
        for store, r in rec.get("influent", {}).items():
            out.append(Row("recovery", f"start->ready after kill -9, {rec['rows']:,} buffered "
                           f"rows ({store} vs influxd WAL replay)", r["ready_s"], peer_s, "s",
                           False, "< 10 s for 1M rows" if big else "",
                           r["ready_s"] < 10 if big else None,
                           f"{r.get('recovered_batches')} batches recovered"))
        for store, r in rec.get("influent_clean_stop", {}).items():
            out.append(Row("recovery", f"start->ready after clean stop ({store}; "
                           "benchmarks.recovery: buffers were persisted at stop)",
                           r["ready_s"], peer_s, "s", False))
    return out


def _amplification(inf: dict, what: str) -> list[Row]:
    """influent's bytes written to Kafka (after the writes topic) and Redis per input byte."""
    if "after_writes_topic" not in inf:
        return []
    topics = ", ".join(f"{t}: {v}" for t, v in inf["kafka_bytes_per_input_byte"].items())
    return [Row("ingest", f"bytes written per input byte after the writes topic ({what})",
                inf["after_writes_topic"], None, "x", False,
                note=f"{topics}; redis: {inf['redis_bytes_per_input_byte']}")]


def compaction_rows(results: dict) -> list[Row]:
    """The compaction phase: after vs before in one run (the peer column holds *before*), and
    bytes per row of the compacted files vs the peer's compacted TSM."""
    c = results.get("compaction")
    if not c:
        return []
    b, a = c["before"], c["after"]
    same = sum(1 for v in c["answers"].values() if v in ("identical", "floats ~1e-12", "tie order"))
    before_q, after_q = sum(b["query_median_s"].values()), sum(a["query_median_s"].values())
    parts = max(1, len(a["partitions"]))
    out = [Row("compaction", f"files per partition after / before ({b['files']} L0 files -> "
               f"{a['files']} in {c['compaction_s']:.0f} s; peer column: before)",
               a["files"] / parts, b["files"] / max(1, len(b["partitions"])), "files", False),
           Row("compaction", "object-store MB after / before (peer column: before)",
               a["object_store_bytes"] / 1e6, b["object_store_bytes"] / 1e6, "MB", False),
           Row("compaction", f"sum of {len(a['query_median_s'])} query medians after / before "
               "(peer column: before)", after_q, before_q, "s", False, "same answers",
               same == len(c["answers"]), f"{same}/{len(c['answers'])} answers identical")]
    peer = _get(results, "storage", "peer", "bytes_per_row")
    if a["rows"]:
        out.append(Row("compaction", "bytes per row of the compacted files (worker) vs "
                       "compacted TSM", a["bytes"] / a["rows"], peer, "B/row", False))
    return out


def query_load_rows(r: dict | None) -> list[Row]:
    """benchmarks.query_load: latency under ingest and queries per second of many clients."""
    if not r:
        return []
    i, p = r["influent"], r["peer"]
    load = f"{r['kind']} under {r['rate']:,} lines/s ingest"
    return [
        Row("query load", f"{load}, p50", i["under_ingest"]["p50_s"], p["under_ingest"]["p50_s"],
            "s", False),
        Row("query load", f"{load}, p99", i["under_ingest"]["p99_s"], p["under_ingest"]["p99_s"],
            "s", False, "p99 <= 50 ms", i["under_ingest"]["p99_s"] <= 0.05),
        Row("query load", f"{r['kind']} queries/s, {i['concurrent']['clients']} clients",
            i["concurrent"]["qps"], p["concurrent"]["qps"], "q/s", True),
    ]


def _fmt(v: float | None, unit: str) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if unit == "s":
        return f"{v * 1000:.1f} ms" if v < 1 else f"{v:.2f} s"
    if unit == "lines/s":
        return f"{v:,.0f}"
    return f"{v:.2f}"


def _ratio(r: Row) -> str:
    x = r.ratio
    if x is None:
        return "-"
    return f"{x:.2f}x" if x >= 0.01 else f"{x:.4f}x"


def _met(r: Row) -> str:
    if r.met is None:
        return ""
    return "met" if r.met else "NOT MET"


def header(results: dict) -> list[str]:
    m = results.get("machine", {})
    d = results.get("data", {})
    return [
        f"commit {results.get('commit')}  ({results.get('command')}, {results.get('started_at')})",
        f"machine: {m.get('nproc')} CPUs ({m.get('cpu_model')}), {m.get('memory_gib')} GiB, "
        f"load at start {' '.join(m.get('loadavg_at_start', []))}; peer {m.get('peer')}",
        f"data: {d.get('generator')}, {d.get('hosts')} hosts x {d.get('hours')} h = "
        f"{d.get('lines', 0):,} lines; run took {results.get('elapsed_s', 0):.0f} s",
    ]


def render_text(results: dict) -> str:
    table = rows(results)
    lines = header(results) + [""]
    w = max([len(r.metric) for r in table] + [10])
    lines.append(f"{'':<10} {'metric':<{w}} {'influent':>12} {'peer':>12} {'infl/peer':>10}  "
                 f"{'better':<7} target")
    for r in table:
        better = "" if r.better is None else ("yes" if r.better else "no")
        target = f"{r.target} -> {_met(r)}" if r.target else ""
        note = f" [{r.note}]" if r.note else ""
        lines.append(f"{r.group:<10} {r.metric:<{w}} {_fmt(r.influent, r.unit):>12} "
                     f"{_fmt(r.peer, r.unit):>12} {_ratio(r):>10}  {better:<7} {target}{note}")
    bad = mismatches(results)
    if bad:
        lines.append("")
        lines.append("!!! WRONG ANSWERS from influent for: " + ", ".join(bad))
    return "\n".join(lines)


def render_markdown(results: dict) -> str:
    out = ["| | metric | influent | peer | influent / peer | target |",
           "| --- | --- | ---: | ---: | ---: | --- |"]
    for r in rows(results):
        arrow = "↑" if r.higher_is_better else "↓"
        target = f"{r.target}: **{_met(r)}**" if r.target else ""
        note = f" ({r.note})" if r.note else ""
        out.append(f"| {r.group} | {r.metric} {arrow}{note} | {_fmt(r.influent, r.unit)} | "
                   f"{_fmt(r.peer, r.unit)} | {_ratio(r)} | {target} |")
    return "\n".join(out)


def mismatches(results: dict) -> list[str]:
    qs = _get(results, "queries", "types", default={})
    compacted = _get(results, "compaction", "answers", default={})
    bad = [k for k, q in qs.items() if q["answers"] in ("MISMATCH", "ERROR")]
    bad += [f"{k} (after compaction)" for k, v in compacted.items() if v in ("MISMATCH", "ERROR")]
    lc = _get(results, "queries", "lastpoint_cache", default={})
    if lc.get("error") or lc.get("answers") in ("MISMATCH", "ERROR"):
        bad.append("lastpoint with a last value cache")
    return bad


def plot_ratios(results: dict, path: Path) -> Path | None:
    """Bar chart of influent / peer per figure (log scale); green where influent is better."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed (pip install -e '.[bench]'): no chart")
        return None
    table = [r for r in rows(results) if r.ratio]
    if not table:
        return None
    labels = [f"{r.group}: {r.metric} {'↑' if r.higher_is_better else '↓'}" for r in table]
    ratios = [r.ratio for r in table]
    colors = ["#2e7d32" if r.better else "#c62828" for r in table]
    fig, ax = plt.subplots(figsize=(13, 0.36 * len(table) + 1.8))
    y = list(range(len(table)))[::-1]
    # Bars grow from 1 (parity) to the ratio, so worse-than-parity and better point apart.
    ax.barh(y, [r - 1.0 for r in ratios], left=1.0, color=colors)
    ax.set_xscale("log")
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_yticks(y)
    ax.set_yticklabels(labels, fontsize=8)
    for yi, r in zip(y, ratios):
        ax.text(r, yi, f" {r:.3g}x " if r >= 1 else f" {r:.3g}x ", va="center",
                ha="left" if r >= 1 else "right", fontsize=7)
    lo, hi = min(ratios + [1.0]), max(ratios + [1.0])
    ax.set_xlim(lo / 4, hi * 4)
    d = results.get("data", {})
    fig.suptitle(f"influent / InfluxDB 1.x, same machine, same run; green = influent better "
                 f"(↑ higher is better, ↓ lower is better)\n{d.get('hosts')} hosts x "
                 f"{d.get('hours')} h TSBS cpu-only, commit {results.get('commit')}, "
                 f"{results.get('machine', {}).get('nproc')} CPUs", fontsize=9, x=0.01,
                 ha="left")
    ax.set_xlabel("influent / peer (log scale)")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


@click.command()
@click.argument("json_path", type=click.Path(exists=True, dir_okay=False),
                default=str(DEFAULT_JSON))
@click.option("--markdown", is_flag=True, help="print the Markdown table")
@click.option("--png", type=click.Path(dir_okay=False), default=None, help="write the chart")
def main(json_path: str, markdown: bool, png: str | None) -> None:
    results = json.loads(Path(json_path).read_text())
    print(render_markdown(results) if markdown else render_text(results))
    if png:
        plot_ratios(results, Path(png))


if __name__ == "__main__":
    main()
