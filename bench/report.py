#!/usr/bin/env python3
"""Parse the wrk outputs collected by bench/run.sh, print the table, write JSON.

Inputs (in the run's temp dir):
  manifest.tsv  scenario, target, conns, round, wrk-output-file  (one line per counted run)
  meta.tsv      scenario, key, value  (rampart RSS, skip reasons, access-log line counts)
Settings come from the BENCH_* environment variables exported by run.sh.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import statistics
import subprocess
import sys
from pathlib import Path

TARGET_ORDER = ["direct", "nginx", "haproxy", "floor", "rampart-base", "rampart"]
UNIT_TO_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}


def to_ms(text: str) -> float:
    """wrk prints times like 310.00us, 1.20ms, 2.01s, 1.00m."""
    m = re.fullmatch(r"([0-9.]+)(us|ms|s|m|h)", text.strip())
    if not m:
        raise ValueError(f"unparseable wrk time: {text!r}")
    return round(float(m.group(1)) * UNIT_TO_MS[m.group(2)], 4)


def parse_wrk(path: Path) -> dict:
    text = path.read_text(errors="replace")
    run: dict = {"file": path.name}
    m = re.search(r"^Requests/sec:\s+([0-9.]+)", text, re.M)
    run["rps"] = float(m.group(1)) if m else None
    for pct, key in (("50", "p50_ms"), ("99", "p99_ms")):
        m = re.search(rf"^\s+{pct}%\s+(\S+)", text, re.M)
        run[key] = to_ms(m.group(1)) if m else None
    m = re.search(r"^\s+(\d+) requests in", text, re.M)
    run["requests"] = int(m.group(1)) if m else None
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    run["socket_errors"] = sum(int(g) for g in m.groups()) if m else 0
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    run["non_2xx_3xx"] = int(m.group(1)) if m else 0
    run["ok"] = run["rps"] is not None and run["p99_ms"] is not None
    return run


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def tool_version(cmd: list[str]) -> str | None:
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    out = (p.stdout + p.stderr).strip().splitlines()
    return out[0] if out else None


def machine_info() -> dict:
    cpu = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpus": os.cpu_count(), "cpu_model": cpu, "kernel": platform.release()}


def fmt(v, spec: str, width: int) -> str:
    return f"{'-' if v is None else format(v, spec):>{width}}"


def ratio(v) -> str:
    return f"{'-' if v is None else format(v, '.2f') + 'x':>9}"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tmp", required=True, type=Path)
    ap.add_argument("--out", required=True, type=Path)
    args = ap.parse_args()

    runs: dict[str, dict[tuple[str, int], list[dict]]] = {}
    scen_order: list[str] = []
    for line in (args.tmp / "manifest.tsv").read_text().splitlines():
        if not line.strip():
            continue
        scen, target, conns, rnd, path = line.split("\t")
        if scen not in scen_order:
            scen_order.append(scen)
        run = parse_wrk(Path(path))
        run["round"] = int(rnd)
        runs.setdefault(scen, {}).setdefault((target, int(conns)), []).append(run)

    meta: dict[str, dict[str, str]] = {}
    for line in (args.tmp / "meta.tsv").read_text().splitlines():
        if line.strip():
            scen, key, value = line.split("\t", 2)
            meta.setdefault(scen, {})[key] = value
            if scen not in scen_order:
                scen_order.append(scen)

    result = {
        "generated_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "tools": {
            "wrk": tool_version(["wrk", "--version"]),
            "nginx": tool_version(["nginx", "-v"]),
            "haproxy": tool_version(["haproxy", "-v"]),
        },
        "settings": {
            "targets": os.environ.get("BENCH_ONLY"),
            "conns": [int(c) for c in os.environ.get("BENCH_CONNS", "").split()],
            "duration": os.environ.get("BENCH_DURATION"),
            "warmup": os.environ.get("BENCH_WARMUP"),
            "rounds": int(os.environ.get("BENCH_ROUNDS", "0")),
            "wrk_threads": int(os.environ.get("BENCH_THREADS", "0")),
            "aggregate": "median across rounds",
        },
        "scenarios": {},
    }

    problems: list[str] = []
    for scen in scen_order:
        m = meta.get(scen, {})
        by_key = runs.get(scen, {})
        rows = []
        for (target, conns), rs in sorted(
            by_key.items(), key=lambda kv: (kv[0][1], TARGET_ORDER.index(kv[0][0]))
        ):
            good = [r for r in rs if r["ok"]]
            if len(good) < len(rs):
                problems.append(f"{scen}/{target}/c{conns}: {len(rs) - len(good)} unparseable wrk run(s)")
            errors = sum(r["socket_errors"] + r["non_2xx_3xx"] for r in rs)
            if errors:
                problems.append(f"{scen}/{target}/c{conns}: {errors} socket errors / non-2xx responses")
            rps_rounds = [r["rps"] for r in good]
            if len(rps_rounds) >= 2 and median(rps_rounds):
                spread = (max(rps_rounds) - min(rps_rounds)) / median(rps_rounds)
                if spread > 0.25:
                    problems.append(
                        f"{scen}/{target}/c{conns}: req/s varied {spread:.0%} across rounds "
                        "(the machine was disturbed); trust the per-round ratios, or run again"
                    )
            rows.append(
                {
                    "target": target,
                    "conns": conns,
                    "rps": median(r["rps"] for r in good),
                    "p50_ms": median(r["p50_ms"] for r in good),
                    "p99_ms": median(r["p99_ms"] for r in good),
                    "errors": errors,
                    "rounds": rs,
                }
            )
        for row in rows:
            # Rounds alternate targets, so a round's ratio compares runs made moments apart.
            nginx_row = next(
                (r for r in rows if r["target"] == "nginx" and r["conns"] == row["conns"]), None
            )
            for ref in ("nginx", "rampart-base"):
                ref_row = next(
                    (r for r in rows if r["target"] == ref and r["conns"] == row["conns"]), None
                )
                if ref_row is not None:
                    row[f"per_round_ratio_to_{ref}"] = [
                        round(mine["rps"] / theirs["rps"], 3)
                        for mine, theirs in zip(row["rounds"], ref_row["rounds"])
                        if mine["ok"] and theirs["ok"] and theirs["rps"]
                    ]
            for ref in ("nginx", "direct"):
                base = next(
                    (r["rps"] for r in rows if r["target"] == ref and r["conns"] == row["conns"]), None
                )
                row[f"ratio_to_{ref}"] = (
                    round(row["rps"] / base, 4) if row["rps"] is not None and base else None
                )

        def kib(key):
            return int(m[key]) if m.get(key, "").isdigit() else None

        result["scenarios"][scen] = {
            "description": m.get("desc"),
            "path": m.get("path"),
            "results": rows,
            "rampart": {
                "skipped": m.get("rampart_skipped"),
                "idle_rss_kib": kib("rampart_idle_rss_kib"),
                "peak_rss_kib": kib("rampart_peak_rss_kib"),
                "died_during_run": m.get("rampart_died") == "yes",
            },
            "access_log_lines": {
                t: int(m[f"{t}_access_log_lines"])
                for t in ("nginx", "haproxy", "rampart")
                if m.get(f"{t}_access_log_lines", "").isdigit()
            },
        }

    # ---- table ----
    s = result["settings"]
    print()
    print(
        f"rounds={s['rounds']} (median), duration={s['duration']}, warmup={s['warmup']}, "
        f"wrk threads={s['wrk_threads']}, cpus={result['machine']['cpus']}"
    )
    for scen, data in result["scenarios"].items():
        print()
        print(f"scenario: {scen} -- {data['description']}")
        header = (
            f"{'target':<12} {'conns':>5} {'req/s':>11} {'p50 ms':>8} {'p99 ms':>8} "
            f"{'vs nginx':>9} {'vs direct':>9} {'errors':>7}"
        )
        print(header)
        print("-" * len(header))
        for r in data["results"]:
            print(
                f"{r['target']:<12} {r['conns']:>5} {fmt(r['rps'], ',.0f', 11)} "
                f"{fmt(r['p50_ms'], '.3f', 8)} {fmt(r['p99_ms'], '.3f', 8)} "
                f"{ratio(r['ratio_to_nginx'])} {ratio(r['ratio_to_direct'])} "
                f"{r['errors']:>7}"
            )
        rp = data["rampart"]
        if rp["skipped"]:
            print(f"rampart: SKIPPED ({rp['skipped']})")
        elif rp["idle_rss_kib"] is not None or rp["peak_rss_kib"] is not None:

            def mib(v):
                return "?" if v is None else f"{v / 1024:.1f} MiB"

            print(f"rampart RSS: idle {mib(rp['idle_rss_kib'])}, peak (VmHWM) {mib(rp['peak_rss_kib'])}")
            for row in data["results"]:
                for ref in ("nginx", "rampart-base"):
                    paired = row.get(f"per_round_ratio_to_{ref}")
                    if row["target"] in ("rampart", "floor") and paired:
                        listed = ", ".join(f"{p:.2f}" for p in paired)
                        print(
                            f"{row['target']}/{ref} per round (c={row['conns']}): {listed} "
                            f"(median {median(paired):.2f})"
                        )
            if rp["died_during_run"]:
                print("rampart: DIED during the run")
        if data["access_log_lines"]:
            print(
                "access log lines: "
                + ", ".join(f"{t} {n:,}" for t, n in data["access_log_lines"].items())
            )

    for p in problems:
        print(f"WARNING: {p}", file=sys.stderr)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nresults written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
