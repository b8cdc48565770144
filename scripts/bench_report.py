#!/usr/bin/env python3
"""Summarises a scripts/bench.sh result directory: per shape and server, the median over
repetitions of each N; capacity at the limits (loss <= 0.1 %, p99 <= 20 ms); ratios to the raw
relay (and to Janus when present). Writes results.md, summary.json and plot.png (when
matplotlib is importable). Usage: bench_report.py DIR"""
import glob
import json
import os
import statistics
import sys

d = sys.argv[1]
runs = []
for f in sorted(glob.glob(os.path.join(d, "w*-*-n*-r*.json"))):
    try:
        with open(f) as fh:
            runs.append(json.load(fh))
    except (OSError, ValueError) as e:
        print(f"skipping {f}: {e}", file=sys.stderr)
if not runs:
    sys.exit(f"no reports in {d}")


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


cells = {}
for r in runs:
    cells.setdefault((r["shape"], r["label"], r["n"]), []).append(r)

rows = []
for (shape, server, n), rs in sorted(cells.items()):
    video = shape == "w2"
    lat = "latency_video_ms" if video else "latency_audio_ms"
    rows.append({
        "shape": shape, "server": server, "n": n, "reps": len(rs),
        "sessions": rs[0]["sessions"],
        "connected": min(r["connected"] for r in rs),
        "pps": med([r["forwarded_pps"] for r in rs]),
        "pkts_per_cpu_s": med([r["server"]["forwarded_packets_per_cpu_s"] for r in rs]),
        "us_per_pkt": med([r["server"]["cpu_us_per_forwarded_packet"] for r in rs]),
        "cpu_user": med([(r["server"]["cpu"] or {}).get("user_s") for r in rs]),
        "cpu_sys": med([(r["server"]["cpu"] or {}).get("system_s") for r in rs]),
        "server_core": med([r["server"]["cpu_core_fraction"] for r in rs]),
        "loss": med([r["loss"] for r in rs]),
        "p50": med([r[lat]["p50_ms"] for r in rs]),
        "p99": med([r[lat]["p99_ms"] for r in rs]),
        "p999": med([r[lat]["p999_ms"] for r in rs]),
        "rss_kb": med([r["server"]["rss_per_session_kb"] for r in rs]),
        "join_ms_cpu": med([r["server"]["setup_cpu_ms_per_join"] for r in rs]),
        "gen_core": med([r["generator"]["cpu_core_fraction"] for r in rs]),
        "gen_wait": med([r["generator"].get("run_queue_wait_fraction") for r in rs]),
        "srv_wait": med([r["server"].get("run_queue_wait_fraction") for r in rs]),
        "gen_saturated": any(r["generator"]["saturated"] for r in rs),
        "ok": all(r["within_slo"] for r in rs),
        "ttfm_p50": med([(r.get("churn") or {}).get("time_to_first_media_ms", {}).get("p50_ms") for r in rs]),
        "ttfm_p99": med([(r.get("churn") or {}).get("time_to_first_media_ms", {}).get("p99_ms") for r in rs]),
        "joins_per_s": med([(r.get("churn") or {}).get("joins_per_s") for r in rs]),
    })


def f(v, fmt="{:.0f}"):
    return "-" if v is None else fmt.format(v)


lines = ["| shape | server | N | sessions | fwd pps | pkts/CPU-s | µs CPU/pkt | user/sys s | loss % | p50 / p99 / p99.9 ms | RSS kB/session | gen core (+wait) | server wait | within limits |",
         "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
for r in rows:
    lines.append("| {shape} | {server} | {n} | {sess} | {pps} | {ppc} | {us} | {u}/{s} | {loss} | {p50} / {p99} / {p999} | {rss} | {gen} (+{gw}){sat} | {sw} | {ok} |".format(
        shape=r["shape"].upper(), server=r["server"], n=r["n"], sess=f"{r['connected']}/{r['sessions']}",
        pps=f(r["pps"]), ppc=f(r["pkts_per_cpu_s"]), us=f(r["us_per_pkt"], "{:.1f}"),
        u=f(r["cpu_user"], "{:.2f}"), s=f(r["cpu_sys"], "{:.2f}"),
        loss="n/a" if r["loss"] is None else f"{r['loss'] * 100:.3f}",
        p50=f(r["p50"], "{:.2f}"), p99=f(r["p99"], "{:.2f}"), p999=f(r["p999"], "{:.2f}"),
        rss=f(r["rss_kb"], "{:.0f}"), gen=f(r["gen_core"], "{:.2f}"),
        gw=f(r["gen_wait"], "{:.2f}"), sw=f(r["srv_wait"], "{:.2f}"),
        sat=" (sat.)" if r["gen_saturated"] else "", ok="yes" if r["ok"] else "**no**"))

# Per shape and server: capacity = largest N within the limits; efficiency at the largest
# N measured within the limits (else at the largest N measured).
summary = {}
for r in rows:
    key = (r["shape"], r["server"])
    s = summary.setdefault(key, {"capacity": None, "best": None, "last": None})
    s["last"] = r
    if r["ok"] and not r["gen_saturated"]:
        s["capacity"] = r["n"]
        s["best"] = r

def ratio(a, b):
    return None if a is None or b is None or b == 0 else a / b

sl = ["| shape | server | capacity N (limits) | pkts/CPU-s | ×raw | ×janus | µs CPU/pkt | p99 ms | RSS kB/session | ×raw RSS |",
      "|---|---|---|---|---|---|---|---|---|---|"]
out_summary = []
for (shape, server), s in sorted(summary.items()):
    at = s["best"] or s["last"]
    raw = summary.get((shape, "raw"), {})
    raw_at = raw.get("best") or raw.get("last")
    jan = summary.get((shape, "janus"), {})
    jan_at = jan.get("best") or jan.get("last")
    cap = s["capacity"]
    cap_txt = f"≥{cap}" if cap is not None and s["last"] and s["last"]["ok"] else f(cap)
    rr = ratio(at["pkts_per_cpu_s"], raw_at and raw_at["pkts_per_cpu_s"])
    rj = ratio(at["pkts_per_cpu_s"], jan_at and jan_at["pkts_per_cpu_s"])
    rm = ratio(at["rss_kb"], raw_at and raw_at["rss_kb"])
    sl.append(f"| {shape.upper()} | {server} | {cap_txt} (at N={at['n']}) | {f(at['pkts_per_cpu_s'])} | {f(rr, '{:.2f}')} | {f(rj, '{:.2f}')} | {f(at['us_per_pkt'], '{:.1f}')} | {f(at['p99'], '{:.2f}')} | {f(at['rss_kb'])} | {f(rm, '{:.1f}')} |")
    out_summary.append({"shape": shape, "server": server, "capacity_n": cap, "at": at,
                        "ratio_pkts_per_cpu_s_vs_raw": rr, "ratio_pkts_per_cpu_s_vs_janus": rj})

churn = [r for r in rows if r["shape"] == "w6"]
cl = []
if churn:
    cl = ["| server | calls × 4 | joins/s | first media p50 / p99 ms | server CPU ms per join (setup) |", "|---|---|---|---|---|"]
    for r in churn:
        cl.append(f"| {r['server']} | {r['n']} | {f(r['joins_per_s'], '{:.1f}')} | {f(r['ttfm_p50'], '{:.1f}')} / {f(r['ttfm_p99'], '{:.1f}')} | {f(r['join_ms_cpu'], '{:.2f}')} |")

caps = sorted({r["server"].get("cpu_cap_pct") for r in runs}, key=lambda c: (c is None, c))
if caps == [None]:
    cap_line = "Servers uncapped (one core each, pinned)."
else:
    cap_line = "Server CPU cap (cgroup): " + ", ".join(
        "none" if c is None else f"{c} % of one core" for c in caps) + "."
text = cap_line + "\n\n## Summary (ratios are ours ÷ baseline for forwarded packets per server CPU-second)\n\n" + "\n".join(sl)
text += "\n\n## All cells (median over repetitions)\n\n" + "\n".join(lines)
if cl:
    text += "\n\n## W6 churn\n\n" + "\n".join(cl)
print(text)
with open(os.path.join(d, "results.md"), "w") as fh:
    fh.write(text + "\n")
with open(os.path.join(d, "summary.json"), "w") as fh:
    json.dump({"cpu_cap_pct": caps[0] if len(caps) == 1 else caps, "cells": rows,
               "summary": out_summary}, fh, indent=1)

try:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
except ImportError:
    print("matplotlib not available: no plot (apt-get install python3-matplotlib)", file=sys.stderr)
    sys.exit(0)

COLORS = {"rtcd": "tab:green", "raw": "tab:orange", "janus": "tab:blue"}
shapes = sorted({r["shape"] for r in rows})
fig, axes = plt.subplots(len(shapes), 2, figsize=(11, 3.2 * len(shapes)), squeeze=False)
for i, shape in enumerate(shapes):
    for server in sorted({r["server"] for r in rows if r["shape"] == shape}):
        rs = [r for r in rows if r["shape"] == shape and r["server"] == server]
        ns = [r["n"] for r in rs]
        c = COLORS.get(server)
        axes[i][0].plot(ns, [r["pkts_per_cpu_s"] or 0 for r in rs], marker="o", label=server, color=c)
        axes[i][1].plot(ns, [max(r["p99"] or 0, 0.01) for r in rs], marker="o", label=server, color=c)
    axes[i][0].set_title(f"{shape.upper()}: forwarded packets per server CPU-second")
    axes[i][1].set_title(f"{shape.upper()}: p99 added latency (ms)")
    axes[i][1].axhline(20, color="grey", linestyle=":", linewidth=1)
    axes[i][1].set_yscale("log")
    for ax in axes[i]:
        ax.set_xlabel("N")
        ax.grid(True, alpha=0.3)
        ax.legend()
fig.tight_layout()
fig.savefig(os.path.join(d, "plot.png"), dpi=90)
print(f"plot: {os.path.join(d, 'plot.png')}")
