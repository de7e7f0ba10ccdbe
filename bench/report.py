#!/usr/bin/env python3
"""Turns one benchmark run (bench/results/<stamp>/: meta.json, raw.jsonl, status.tsv)
into results.md (medians, ratios to the best peer), summary.json and chart.png (gnuplot).

    python3 bench/report.py bench/results/<stamp>

Standard library only."""
import json
import os
import shutil
import statistics
import subprocess
import sys

ECHO = [
    ("c", "libwsserver C", False),
    ("lua", "libwsserver LuaJIT", False),
    ("bun", "Bun", True),
    ("uws", "uWebSockets (native)", True),
    ("fastws", "fastwebsockets", True),
    ("tungstenite", "tokio-tungstenite", True),
    ("nodews", "Node ws", True),
    ("pyws", "Python websockets", True),
    ("picows", "picows", True),
    ("ceiling", "ceiling (raw echo)", False),
    ("uring", "ceiling (io_uring)", False),
]
# Not servers of WebSocket: rows that copy bytes back, for scale (in no ratio).
CEILINGS = ("ceiling", "uring")
HTTP = [("c", "libwsserver C", False), ("lua", "libwsserver LuaJIT", False), ("bun", "Bun.serve", True),
        ("uws", "uWebSockets (native)", True), ("node", "Node http", True)]
LABEL = {k: l for k, l, _ in ECHO}
HLABEL = {k: l for k, l, _ in HTTP}
PEERS = [k for k, _, p in ECHO if p]
HPEERS = [k for k, _, p in HTTP if p]


def idle_median(runs):
    """One idle row from its runs: the run of the median upgrade time, with the median RSS
    per connection of the successful runs; a failed run is shown when none succeeded."""
    ok = [r for r in runs if r["r"] and r["r"].get("ok")]
    if not ok:
        return runs[-1]
    ok.sort(key=lambda r: r["r"]["upgrade_s"])
    mid = dict(ok[len(ok) // 2])
    j = dict(mid["r"])
    kibs = sorted(r["r"]["rss_per_conn_kib"] for r in ok if r["r"].get("rss_per_conn_kib") is not None)
    if kibs:
        j["rss_per_conn_kib"] = kibs[len(kibs) // 2]
    j["runs"] = len(runs)
    j["ok_runs"] = len(ok)
    mid["r"] = j
    return mid


def load(out):
    meta = json.load(open(os.path.join(out, "meta.json")))
    rows = []
    with open(os.path.join(out, "raw.jsonl")) as f:
        for line in f:
            line = line.strip()
            if line:
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as e:
                    print(f"report: bad line in raw.jsonl: {e}: {line[:200]}", file=sys.stderr)
    status = {}
    p = os.path.join(out, "status.tsv")
    if os.path.exists(p):
        for line in open(p):
            if "\t" in line:
                k, v = line.rstrip("\n").split("\t", 1)
                status[k] = v
    return meta, rows, status


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fmt_rate(x):
    if x is None:
        return "n/a"
    if x >= 1e6:
        return f"{x / 1e6:.2f}M"
    if x >= 1e4:
        return f"{x / 1e3:.0f}k"
    if x >= 1e3:
        return f"{x / 1e3:.1f}k"
    return f"{x:.0f}"


def fmt_us(x):
    if x is None:
        return "n/a"
    if x >= 1000:
        return f"{x / 1000:.1f} ms"
    if x >= 100:
        return f"{x:.0f} µs"
    if x >= 10:
        return f"{x:.1f} µs"
    return f"{x:.2f} µs"


def fmt_ratio(a, b):
    if a is None or b is None or b == 0:
        return "n/a"
    return f"{a / b:.2f}×"


def main():
    out = sys.argv[1]
    meta, rows, status = load(out)
    runs = meta["runs"]
    md = []
    summary = {"meta": meta, "echo": {}, "http": {}, "idle": {}, "idlecpu": {}, "reuseport": {}}

    # ----- echo
    echo = {}  # (case, server) -> list of run results
    cases = []
    for r in rows:
        if r["kind"] != "echo":
            continue
        if r["case"] not in cases:
            cases.append(r["case"])
        echo.setdefault((r["case"], r["server"]), []).append(r)

    def echo_stats(case, k):
        rs = echo.get((case, k))
        if not rs:
            return None
        good = [x["r"] for x in rs if x["r"] and x["r"].get("ok")]
        bad = [x for x in rs if not (x["r"] and x["r"].get("ok"))]
        errs = []
        for x in bad:
            e = x.get("err") or ""
            if x["r"] and x["r"].get("first_errors"):
                e = (e + " " + "; ".join(x["r"]["first_errors"][:2])).strip()
            errs.append(e or "failed")
        s = {
            "runs": len(rs),
            "ok": len(good),
            "errors": errs,
            "msgs_per_s": med([g["msgs_per_s"] for g in good]),
            "min": min([g["msgs_per_s"] for g in good], default=None),
            "max": max([g["msgs_per_s"] for g in good], default=None),
            "cpu_per_msg_us": med([g.get("server_cpu_per_msg_us") for g in good]),
            "server_util": med([g.get("server_cpu_util") for g in good]),
            "loadgen_util": med([g.get("loadgen_cpu_util") for g in good]),
            # the load generator's own CPU per message: robust even on a shared machine
            "loadgen_cpu_per_msg_us": med([g["loadgen_cpu_util"] * g["duration_s"] / g["msgs"] * 1e6
                                           for g in good if g.get("msgs") and g.get("loadgen_cpu_util") is not None]),
            "p50_us": med([g["rtt_p50_us"] for g in good]),
            "p99_us": med([g["rtt_p99_us"] for g in good]),
            "max_us": med([g["rtt_max_us"] for g in good]),
            "deflate": sorted({g.get("deflate") for g in good}),
        }
        return s

    def na_reason(k, prefix="echo"):
        return status.get(f"{prefix}:{k}")

    md.append(f"# libwsserver benchmark — {meta['stamp']}")
    md.append("")
    md.append(f"- Command: `{meta['command']}`")
    md.append(f"- Machine: {meta['cpu']}, {meta['cores']} cores, {meta.get('mem_gib', '?')} GiB, kernel {meta['kernel']}; "
              f"load average at start {meta['loadavg_start']}")
    md.append(f"- Library: git {meta['git']}")
    srv_cpu, lg_cpus, lg_thr = meta.get("server_cpu", "0"), meta.get("loadgen_cpus", "1"), meta.get("loadgen_threads", 1)
    md.append(f"- Method: server pinned to CPU {srv_cpu}, load generator (`bench/loadgen`, {lg_thr} thread(s)) and wrk to CPU(s) {lg_cpus}, 127.0.0.1. "
              f"Medians of {runs} runs of {meta['duration_s']} s after {meta['warmup_s']} s of warm-up; runs interleaved "
              f"across servers. {'Text' if meta.get('text') else 'Binary'} messages; every echo checked (opcode, length, "
              f"content, order). Server CPU per message = (utime+stime of the server process over the measured "
              f"window) / messages.")
    v = meta.get("versions", {})
    md.append("- Peers: " + ", ".join(f"{k} {v[k]}" for k in v if v[k]) + "; Rust peers: see bench/peers/rust/Cargo.lock")
    if meta.get("quick"):
        md.append("- **--quick run**: the headline cases only; for checking the harness, not for quoting.")
    allr = [x["r"] for x in rows if x["kind"] == "echo" and x["r"] and x["r"].get("ok")
            and x["r"].get("server_cpu_util") is not None and x["server"] not in CEILINGS]
    starved = [x for x in allr if x["server_cpu_util"] < 0.8 and x["loadgen_cpu_util"] < 0.8]
    if allr and len(starved) > len(allr) / 3:
        md.append(f"- **Busy machine**: in {len(starved)} of {len(allr)} echo runs neither the server nor the load "
                  "generator used 80% of its core, so other work on the machine took CPU time from both: messages/s "
                  "are noisy here (see the min–max spread in the details). Server CPU per message is the steadier "
                  "number; regenerate on a quiet machine before quoting throughput.")
    md.append("")

    cols = [k for k, _, _ in ECHO]
    md.append("## WebSocket echo: messages/s (server CPU per message)")
    md.append("")
    md.append("| case | " + " | ".join(LABEL[k] for k in cols) + " | C ÷ best peer | C ÷ Bun | LuaJIT ÷ best peer | LuaJIT ÷ Bun |")
    md.append("|---|" + "---:|" * (len(cols) + 4))
    chart_rows = []
    footnotes = []
    for case in cases:
        stats = {k: echo_stats(case, k) for k in cols}
        summary["echo"][case] = stats
        cells = []
        for k in cols:
            s = stats[k]
            if s is None:
                if na_reason(k):
                    cells.append("n/a")
                elif "deflate" in case:
                    cells.append("—")
                else:
                    cells.append("n/a")
                continue
            if s["msgs_per_s"] is None:
                cells.append("failed")
                footnotes.append(f"{LABEL[k]}, {case}: {'; '.join(s['errors'])[:300]}")
                continue
            cell = f"{fmt_rate(s['msgs_per_s'])} ({fmt_us(s['cpu_per_msg_us'])})"
            ceil = max([stats[x]["msgs_per_s"] for x in CEILINGS if stats.get(x) and stats[x]["msgs_per_s"]], default=None)
            paced = (s["loadgen_util"] or 0) >= 0.85 or (ceil and s["msgs_per_s"] >= 0.9 * ceil)
            if k not in CEILINGS and paced:
                cell += " †"
            if s["ok"] < s["runs"]:
                cell += f" [{s['ok']}/{s['runs']} runs]"
                footnotes.append(f"{LABEL[k]}, {case}: {'; '.join(s['errors'])[:300]}")
            if "deflate" in case and s["deflate"] != ["on"]:
                cell += f" [deflate {','.join(s['deflate'])}]"
            cells.append(cell)
        peer_rates = [stats[k]["msgs_per_s"] for k in PEERS if stats[k] and stats[k]["msgs_per_s"]]
        best = max(peer_rates) if peer_rates else None
        bun = stats["bun"]["msgs_per_s"] if stats["bun"] else None
        c = stats["c"]["msgs_per_s"] if stats["c"] else None
        lua = stats["lua"]["msgs_per_s"] if stats["lua"] else None
        md.append(f"| {case} | " + " | ".join(cells) +
                  f" | {fmt_ratio(c, best)} | {fmt_ratio(c, bun)} | {fmt_ratio(lua, best)} | {fmt_ratio(lua, bun)} |")
        chart_rows.append((case, [stats[k]["msgs_per_s"] if stats[k] else None for k in cols]))
    md.append("")
    nas = [(LABEL[k], na_reason(k)) for k in cols if na_reason(k)]
    for name, why in nas:
        md.append(f"- {name}: {why}")
    cap = []
    for case in cases:
        s_ = summary["echo"][case].get("ceiling")
        if s_ and s_.get("loadgen_cpu_per_msg_us"):
            best_any = max([summary["echo"][case][k]["msgs_per_s"] for k in cols if k not in CEILINGS
                            and summary["echo"][case].get(k) and summary["echo"][case][k]["msgs_per_s"]], default=None)
            cap.append(f"{case}: {fmt_rate(1e6 / s_['loadgen_cpu_per_msg_us'])}"
                       + (f" ({1e6 / s_['loadgen_cpu_per_msg_us'] / best_any:.1f}× the best row)" if best_any else ""))
    if cap:
        md.append("- Load generator capacity on its core(s) (1 / its own CPU time per message against raw echo): " + "; ".join(cap) + ".")
    md.append("- † : the load generator used 85% or more of its core, or the row is within 10% of a ceiling row or above "
              "it: the load generator and loopback set this pace, not "
              "the server (at depth 1 the load generator does one send and one receive per message, as the server "
              "does, and on loopback the sender's CPU pays for the delivery too). Compare the server CPU per message "
              "in parentheses there: it is what a faster load generator would turn into messages/s.")
    md.append("- — : the server does not support permessage-deflate (fastwebsockets, tokio-tungstenite as built, picows).")
    md.append("- ceiling (raw echo): not a peer and in no ratio; `raw_echo` copies the bytes back with no WebSocket work, "
              "so it is what this load generator and loopback reach on this machine in each case. A server close to it "
              "is limited by the load generator, not by itself.")
    md.append("- ceiling (io_uring): the same byte copy over io_uring (`uring_echo`: a batch of completions answered "
              "in one system call instead of one `recv` and one `send` each), to show how much of a message's cost "
              "the system calls are, and how much is the TCP work in the kernel that no server design avoids.")
    for f in footnotes:
        md.append(f"- ⚠ {f}")
    md.append("")

    md.append("<details><summary>Echo details: spread, round-trip times, CPU use</summary>")
    md.append("")
    md.append("| case | server | msgs/s median (min–max) | RTT p50 | RTT p99 | RTT max | server CPU/msg | server CPU use | loadgen CPU use | loadgen CPU/msg | valid runs |")
    md.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for case in cases:
        for k in cols:
            s = summary["echo"][case].get(k)
            if not s:
                continue
            util = lambda x: "n/a" if x is None else f"{x * 100:.0f}%"
            md.append(f"| {case} | {LABEL[k]} | {fmt_rate(s['msgs_per_s'])} ({fmt_rate(s['min'])}–{fmt_rate(s['max'])}) | "
                      f"{fmt_us(s['p50_us'])} | {fmt_us(s['p99_us'])} | {fmt_us(s['max_us'])} | {fmt_us(s['cpu_per_msg_us'])} | "
                      f"{util(s['server_util'])} | {util(s['loadgen_util'])} | {fmt_us(s['loadgen_cpu_per_msg_us'])} | {s['ok']}/{s['runs']} |")
    md.append("")
    md.append("</details>")
    md.append("")

    # ----- http
    http = {}
    for r in rows:
        if r["kind"] == "http":
            http.setdefault(r["server"], []).append(r)
    md.append("## HTTP hello (wrk, 1 thread, 100 keep-alive connections): requests/s")
    md.append("")
    md.append("| server | requests/s | server CPU/request | latency p50 | latency p99 | ÷ best peer | ÷ Bun.serve |")
    md.append("|---|---:|---:|---:|---:|---:|---:|")
    hstats = {}
    for k, label, _ in HTTP:
        rs = http.get(k, [])
        good = [x["r"] for x in rs if x["r"] and not x["err"]]
        hstats[k] = {
            "rps": med([g["rps"] for g in good]),
            "cpu_per_req_us": med([g["server_cpu_per_req_us"] for g in good]),
            "p50_us": med([g["lat_p50_us"] for g in good]),
            "p99_us": med([g["lat_p99_us"] for g in good]),
            "wrk_util": med([g.get("wrk_cpu_util") for g in good if isinstance(g.get("wrk_cpu_util"), (int, float))]),
            "server_util": med([g["server_cpu_util"] for g in good]),
            "ok": len(good), "runs": len(rs), "errors": [x["err"] for x in rs if x["err"]],
        }
    summary["http"] = hstats
    hbest = max([hstats[k]["rps"] for k in HPEERS if hstats[k]["rps"]], default=None)
    for k, label, _ in HTTP:
        s = hstats[k]
        if not s["runs"]:
            md.append(f"| {label} | {status.get('http:' + k, 'n/a')} | | | | | |")
            continue
        extra = " †" if s["wrk_util"] is not None and s["wrk_util"] >= 0.9 else ""
        extra += "" if s["ok"] == s["runs"] else f" [{s['ok']}/{s['runs']} runs: {'; '.join(s['errors'])[:200]}]"
        md.append(f"| {label} | {fmt_rate(s['rps'])}{extra} | {fmt_us(s['cpu_per_req_us'])} | {fmt_us(s['p50_us'])} | "
                  f"{fmt_us(s['p99_us'])} | {fmt_ratio(s['rps'], hbest)} | {fmt_ratio(s['rps'], hstats['bun']['rps'])} |")
    wu = [hstats[k]["wrk_util"] for k in hstats if hstats[k]["wrk_util"] is not None]
    if wu:
        md.append("")
        md.append(f"wrk's own CPU use: {min(wu) * 100:.0f}–{max(wu) * 100:.0f}% of its core(s); † marks a row where "
                  "it was 90% or more: there wrk, not the server, set the pace (compare the server CPU per request).")
    md.append("")

    # ----- idle
    md.append(f"## Idle WebSocket connections ({meta['idle_conns']} upgraded and held)")
    md.append("")
    md.append("| server | server RSS per connection | time to upgrade all | upgraded | ÷ best peer (RSS) |")
    md.append("|---|---:|---:|---:|---:|")
    idle_runs = {}
    for r in rows:
        if r["kind"] == "idle":
            idle_runs.setdefault(r["server"], []).append(r)
    idle = {k: idle_median(v) for k, v in idle_runs.items()}
    ib = [idle[k]["r"]["rss_per_conn_kib"] for k in PEERS if k in idle and idle[k]["r"] and idle[k]["r"].get("ok")
          and idle[k]["r"].get("rss_per_conn_kib") is not None]
    ibest = min(ib) if ib else None
    for k, label, _ in ECHO:
        if k in CEILINGS:
            continue
        r = idle.get(k)
        if not r:
            md.append(f"| {label} | {status.get('echo:' + k, 'n/a')} | | | |")
            continue
        j = r["r"]
        summary["idle"][k] = j
        if not j:
            md.append(f"| {label} | failed: {r['err']} | | | |")
            continue
        kib = j.get("rss_per_conn_kib")
        note = "" if j.get("ok") else f" ⚠ {'; '.join(j.get('first_errors', []))[:150]}"
        md.append(f"| {label} | {'n/a' if kib is None else f'{kib:.2f} KiB'} | {j['upgrade_s']:.2f} s{note} | "
                  f"{j['upgraded']}/{j['conns']} | {fmt_ratio(kib, ibest) if j.get('ok') else 'n/a'} |")
    md.append("")
    n_idle = max((len(v) for v in idle_runs.values()), default=0)
    md.append(f"{'Medians of ' + str(n_idle) + ' runs' if n_idle > 1 else 'One run'} (each on a fresh server); "
              "upgraded: in the run of the median time. "
              "RSS per connection = (server VmRSS 1 s after the last upgrade − VmRSS before the first) / connections; "
              f"handshakes pipelined up to {next((idle[k]['r'].get('connect_concurrency') for k in idle if idle[k]['r']), '?')} at a time.")
    md.append("")

    # ----- idle cpu
    md.append(f"## Idle CPU (100 idle WebSocket connections, {meta['idle_cpu_secs']} s)")
    md.append("")
    md.append("| server | CPU used | share of a core |")
    md.append("|---|---:|---:|")
    seen = False
    for r in rows:
        if r["kind"] == "idlecpu" and r["r"]:
            seen = True
            name = {"lua-luv": "libwsserver LuaJIT, luv-attached (mode fd)", "c": "libwsserver C (ws_echo, reference)"}.get(
                r["server"], r["server"])
            summary["idlecpu"][r["server"]] = r["r"]
            md.append(f"| {name} | {r['r']['cpu_s'] * 1000:.1f} ms | {r['r']['cpu_pct']:.3f}% |")
    if "idlecpu:lua-luv" in status:
        md.append(f"| libwsserver LuaJIT, luv-attached | {status['idlecpu:lua-luv']} | |")
    md.append("")

    # ----- reuseport
    rp = {}
    for r in rows:
        if r["kind"] == "reuseport":
            rp.setdefault((r["case"], r["server"]), []).append(r)
    if rp:
        md.append("## SO_REUSEPORT: 1 and 2 worker processes on one port (bench/c/reuseport_workers.c)")
        md.append("")
        md.append("| test | 1 worker | 2 workers | 2 ÷ 1 | CPU use of each worker (2 workers) |")
        md.append("|---|---:|---:|---:|---|")
        for case in ["ws 100x16B d16", "http hello"]:
            key = "msgs_per_s" if case.startswith("ws") else "rps"
            vals, each = {}, ""
            for w in ("1", "2"):
                good = [x["r"] for x in rp.get((case, w), []) if x["r"] and (x["r"].get("ok", True))]
                vals[w] = med([g[key] for g in good])
                if w == "2" and good and good[-1].get("server_cpu_util_each"):
                    each = " / ".join(f"{u * 100:.0f}%" for u in good[-1]["server_cpu_util_each"] if u is not None)
                if w == "2" and good and not each and good[-1].get("server_cpu_util") is not None:
                    each = f"{good[-1]['server_cpu_util'] * 100:.0f}% in all"
            summary["reuseport"][case] = vals
            unit = " msgs/s" if key == "msgs_per_s" else " req/s"
            md.append(f"| {case} | {fmt_rate(vals['1'])}{unit} | {fmt_rate(vals['2'])}{unit} | {fmt_ratio(vals['2'], vals['1'])} | {each} |")
        md.append("")
        md.append(f"With {meta['cores']} cores the load generator cannot have a core of its own while 2 workers run: "
                  "here it runs unpinned (2 threads) in both configurations, the workers pinned one per core, so the "
                  "ratio understates what a machine with spare cores shows. What it does show: the kernel spreads the "
                  "connections over both workers and both do work.")
        md.append("")

    # ----- targets
    def r_(a, b):
        return None if a is None or b is None or not b else a / b

    def g(case, k):
        s = summary["echo"].get(case, {}).get(k)
        return s["msgs_per_s"] if s else None

    def gc(case, k):
        s = summary["echo"].get(case, {}).get(k)
        return s["cpu_per_msg_us"] if s else None

    # What the machine allows in this run, whatever the server does: the raw byte echo
    # (no WebSocket work, the same load generator and loopback) over the peer for echo;
    # for HTTP, what wrk could send on its core (requests/s over its CPU use, the most
    # of any server's runs) over the peer.
    def echo_bound(case, peer):
        return r_(g(case, "ceiling"), g(case, peer))

    wrk_caps = [hstats[k]["rps"] / hstats[k]["wrk_util"] for k in hstats
                if hstats[k]["rps"] and hstats[k]["wrk_util"]]
    wrk_cap = max(wrk_caps, default=None)

    tgt = []
    c16, c4 = "100x16B d1", "100x4KiB d1"
    # (name, ratio of throughput, goal, higher is better, ratio of CPU efficiency: peer CPU/unit ÷ ours,
    #  the most this run allows)
    tgt.append(("Echo C ÷ Bun, 100×16 B", r_(g(c16, "c"), g(c16, "bun")), 1.2, True, r_(gc(c16, "bun"), gc(c16, "c")),
                echo_bound(c16, "bun")))
    tgt.append(("Echo C ÷ Bun, 100×4 KiB", r_(g(c4, "c"), g(c4, "bun")), 1.7, True, r_(gc(c4, "bun"), gc(c4, "c")),
                echo_bound(c4, "bun")))
    # The level the issue names for C: native uWebSockets itself, measured in this run.
    tgt.append(("Echo C ÷ native uWebSockets, 100×16 B", r_(g(c16, "c"), g(c16, "uws")), 1.0, True,
                r_(gc(c16, "uws"), gc(c16, "c")), echo_bound(c16, "uws")))
    tgt.append(("Echo C ÷ native uWebSockets, 100×4 KiB", r_(g(c4, "c"), g(c4, "uws")), 1.0, True,
                r_(gc(c4, "uws"), gc(c4, "c")), echo_bound(c4, "uws")))
    tgt.append(("Echo LuaJIT ÷ Bun, 100×16 B", r_(g(c16, "lua"), g(c16, "bun")), 1.0, True,
                r_(gc(c16, "bun"), gc(c16, "lua")), echo_bound(c16, "bun")))
    tgt.append(("Echo LuaJIT ÷ Bun, 100×4 KiB", r_(g(c4, "lua"), g(c4, "bun")), 1.3, True,
                r_(gc(c4, "bun"), gc(c4, "lua")), echo_bound(c4, "bun")))
    tgt.append(("HTTP C ÷ Bun.serve", r_(hstats["c"]["rps"], hstats["bun"]["rps"]), 1.4, True,
                r_(hstats["bun"]["cpu_per_req_us"], hstats["c"]["cpu_per_req_us"]), r_(wrk_cap, hstats["bun"]["rps"])))
    tgt.append(("HTTP LuaJIT ÷ Bun.serve", r_(hstats["lua"]["rps"], hstats["bun"]["rps"]), 1.0, True,
                r_(hstats["bun"]["cpu_per_req_us"], hstats["lua"]["cpu_per_req_us"]), r_(wrk_cap, hstats["bun"]["rps"])))
    ic = idle.get("c", {}).get("r") if idle.get("c") else None
    tgt.append((f"Idle RSS per connection, C (KiB)", ic.get("rss_per_conn_kib") if ic else None, 0.5, False, None,
                None))
    tgt.append((f"Time to upgrade {meta['idle_conns']}, C (s)", ic.get("upgrade_s") if ic else None, 0.5, False, None,
                None))
    summary["targets"] = [{"target": n, "value": v, "goal": gl, "higher_is_better": h, "by_cpu": e, "bound": b}
                          for n, v, gl, h, e, b in tgt]
    rpw = summary["reuseport"].get("ws 100x16B d16", {})
    md.append("## Targets of issue 8 (from this run; no test asserts a timing)")
    md.append("")
    md.append("The throughput ratio is what the issue sets. Where a row is marked † (the load generator or wrk set the "
              "pace), the ratio of server CPU per message (Bun's ÷ ours) says more: it is the throughput ratio the "
              "two would show with the load generator out of the way.")
    md.append("")
    md.append("The last column is the most the throughput ratio can be in this run, whatever the server does: the "
              "raw byte echo (no WebSocket work; the same load generator, loopback and kernel) ÷ the peer, and for "
              "HTTP what wrk could send on its core ÷ the peer. A goal above it cannot be met on this machine in "
              "this run; a server there is as fast as the kernel and the load generator let it be (medians of "
              "separate runs, so a server can land a little above it).")
    md.append("")
    if allr and len(starved) > len(allr) / 3:
        md.append("")
        md.append("**This run was on a busy machine** (see the top): the throughput ratios and the met column are "
                  "noise-bound; read the CPU-per-message column.")
        md.append("")
    md.append("| target | this run (throughput) | by server CPU per message | goal | met (throughput) | "
              "most this run allows |")
    md.append("|---|---:|---:|---:|:---:|---:|")
    for name, val, goal, higher, eff, bound in tgt:
        e = "" if eff is None else f"{eff:.2f}"
        b = "" if bound is None else f"{bound:.2f}"
        if val is None:
            md.append(f"| {name} | n/a | {e} | {'≥' if higher else '≤'} {goal} | n/a | {b} |")
        else:
            ok = val >= goal if higher else val <= goal
            md.append(f"| {name} | {val:.2f} | {e} | {'≥' if higher else '≤'} {goal} | {'yes' if ok else 'no'} | {b} |")
    if rpw:
        v2 = r_(rpw.get("2"), rpw.get("1"))
        md.append(f"| SO_REUSEPORT 2 workers ÷ 1 (echo) | {'n/a' if v2 is None else f'{v2:.2f}'} | | scaling shown | "
                  f"{'n/a' if v2 is None else ('yes' if v2 > 1.05 else 'no')} | |")
    md.append("")
    if status:
        md.append("## Notes from this run")
        md.append("")
        for k, v in status.items():
            md.append(f"- {k}: {v}")
        md.append("")
    md.append("Raw results: raw.jsonl (one line per run); logs/ has every server's output. Chart: chart.png.")
    md.append("")

    open(os.path.join(out, "results.md"), "w").write("\n".join(md))
    json.dump(summary, open(os.path.join(out, "summary.json"), "w"), indent=1)

    # ----- chart
    busy = bool(allr) and len(starved) > len(allr) / 3
    if chart_rows and shutil.which("gnuplot"):
        present = [i for i, k in enumerate(cols) if any(r[1][i] for r in chart_rows)]
        with open(os.path.join(out, "chart.dat"), "w") as f:
            f.write("case " + " ".join(f'"{LABEL[cols[i]]}"' for i in present) + "\n")
            for case, vals in chart_rows:
                f.write(f'"{case}" ' + " ".join(f"{vals[i]:.1f}" if vals[i] else "-" for i in present) + "\n")
        hp = [(HLABEL[k], hstats[k]["rps"]) for k, _, _ in HTTP if hstats[k]["rps"]]
        with open(os.path.join(out, "chart-http.dat"), "w") as f:
            for i, (label, v) in enumerate(hp):
                f.write(f'{i} "{label}" {v:.1f}\n')
        ip = [(LABEL[k], idle[k]["r"]["rss_per_conn_kib"]) for k, _, _ in ECHO
              if k in idle and idle[k]["r"] and idle[k]["r"].get("rss_per_conn_kib") is not None]
        with open(os.path.join(out, "chart-idle.dat"), "w") as f:
            for i, (label, v) in enumerate(ip):
                f.write(f'{i} "{label}" {max(v, 0.01):.3f}\n')
        colors = ["#d62728", "#ff7f0e", "#1f77b4", "#17becf", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#d0d0d0", "#a0a0a0"]
        ncols = len(present)
        lo = min(v for _, vals in chart_rows for v in vals if v)
        ymin = 10 ** max(0, int(__import__("math").floor(__import__("math").log10(lo / 2))))
        d = lambda name: name  # gnuplot runs in the results folder: chart.gp stays valid when copied
        gp = f"""set terminal pngcairo size 1400,1000 font "DejaVu Sans,10"
set output "{d('chart.png')}"
set datafile missing "-"
set multiplot title "libwsserver benchmark {meta['stamp']} — {meta['cpu']}, {meta['cores']} cores, server on CPU 0, load generator on CPU 1{' — QUICK RUN' if meta.get('quick') else ''}{' — BUSY MACHINE: throughput noisy' if busy else ''}"
set origin 0,0.45
set size 1,0.52
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.9 border -1
set boxwidth 0.9
set key outside right top vertical noenhanced
set logscale y
set grid ytics mytics
set ylabel "WebSocket echo messages/s (log scale; higher is better)"
set xtics rotate by -20 nomirror
set yrange [{ymin}:*]
plot for [i=2:{ncols + 1}] "{d('chart.dat')}" using i:xtic(1) title columnhead(i) lc rgb word("{' '.join(colors[j] for j in present)}", i-1)
unset key
set style fill solid 0.9 border -1
set boxwidth 0.6
set xtics rotate by -20 nomirror
set origin 0,0
set size 0.45,0.45
unset logscale y
set yrange [0:*]
set ylabel "HTTP hello requests/s (wrk; higher is better)"
plot "{d('chart-http.dat')}" using 1:3:xtic(2) with boxes lc rgb "#1f77b4", "" using 1:3:(sprintf("%.0fk", $3/1000)) with labels offset 0,0.7 notitle
set origin 0.45,0
set size 0.55,0.45
set logscale y
set yrange [0.1:*]
set ylabel "server RSS per idle WebSocket connection, KiB (log; lower is better)"
plot "{d('chart-idle.dat')}" using 1:3:xtic(2) with boxes lc rgb "#2ca02c", "" using 1:3:(sprintf("%.2f", $3)) with labels offset 0,0.7 notitle
unset multiplot
"""
        open(os.path.join(out, "chart.gp"), "w").write(gp)
        r = subprocess.run(["gnuplot", "chart.gp"], cwd=out, capture_output=True, text=True)
        if r.returncode != 0:
            print("report: gnuplot failed: " + r.stderr[-500:], file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
