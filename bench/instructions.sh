#!/usr/bin/env bash
# Instructions per proxied request, counted by callgrind: a measure of rampart's CPU work that
# does not move with the machine's load, for comparing two builds when req/s rounds swing.
#
#   bash bench/instructions.sh [--floor] [BIN...]     (default: target/release/rampart)
#
# --floor adds the bare hyper proxy of bench/floor.rs (example `bench-floor`): the least a proxy
# built on the same crates does per request, to read rampart's own share against.
#
# For each binary: starts the bench upstream and the binary under callgrind on
# bench/rampart.toml (its ports moved to 18090/19990), warms up for 3 s with wrk (8 connections),
# counts the instructions of the next 6 s of load, and prints requests, instructions and
# instructions per request. Instructions are not time: cache misses, atomics and system calls
# are not in them, so confirm a change with `BENCH_SCENARIO=ab bash bench/run.sh` too.
# Builds nothing: run `bash bench/run.sh` (or `cargo build --release --bin rampart --examples`)
# first. Installs valgrind and wrk when missing (Debian packages).
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
PORT=18090
ADMIN=19990
WARMUP=3s
MEASURE=6s

install_missing valgrind wrk
start_upstream "$PORT" "$ADMIN"

floor=0
bins=()
for arg in "$@"; do
  if [[ "$arg" == --floor ]]; then floor=1; else bins+=("$arg"); fi
done
((${#bins[@]})) || bins=("$TARGET_DIR/release/rampart")
if ((floor)); then
  [[ -x "$FLOOR_BIN" ]] || { echo "missing $FLOOR_BIN: build with cargo build --release --examples" >&2; exit 1; }
  bins=("$FLOOR_BIN" "${bins[@]}")
fi
printf '%-40s %10s %14s %10s\n' binary requests instructions per-request
for bin in "${bins[@]}"; do
  if [[ "$bin" == "$FLOOR_BIN" ]]; then
    command=("$bin" "127.0.0.1:$PORT" 127.0.0.1:18080)
  else
    command=("$bin" serve --config "$TMP/rampart.toml")
  fi
  valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$TMP/callgrind.out" \
    "${command[@]}" >/dev/null 2>"$TMP/valgrind.log" &
  vg=$!
  PIDS+=("$vg")
  for _ in $(seq 120); do
    curl -s -o /dev/null "http://127.0.0.1:$PORT/" && break
    sleep 0.5
  done
  wrk -t1 -c8 -d"$WARMUP" "http://127.0.0.1:$PORT/" >/dev/null 2>&1
  callgrind_control -i on "$vg" >/dev/null 2>&1
  out=$(wrk -t1 -c8 -d"$MEASURE" "http://127.0.0.1:$PORT/" 2>/dev/null)
  callgrind_control -i off "$vg" >/dev/null 2>&1
  callgrind_control -d "$vg" >/dev/null 2>&1
  sleep 1
  requests=$(awk '/requests in/{print $1}' <<<"$out")
  instructions=$(callgrind_annotate "$TMP/callgrind.out.1" 2>/dev/null |
    awk '/PROGRAM TOTALS/ && !done {gsub(",", "", $1); print $1; done = 1}')
  kill "$vg" 2>/dev/null || true
  wait "$vg" 2>/dev/null || true
  rm -f "$TMP"/callgrind.out*
  printf '%-40s %10d %14d %10d\n' "$bin" "$requests" "$instructions" $((instructions / requests))
done
