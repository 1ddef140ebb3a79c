#!/usr/bin/env bash
# CPU time per proxied request, user and system, read from /proc under the plain scenario's load
# (wrk -t2 -c64): unlike instruction counts, this includes what instructions do not show, such as
# cache lines that bounce between cores, and unlike req/s it does not move with how the machine
# shares its cores between wrk, the upstream and the proxy.
#
#   bash bench/cpu.sh [--nginx] [--floor] [BIN...]     (default: target/release/rampart)
#
# --nginx adds nginx on bench/nginx.conf; --floor adds the bare hyper proxy of bench/floor.rs.
# Each round measures every target once, in the order given, for BENCH_DURATION (default 8s)
# after a 2 s warmup; BENCH_ROUNDS rounds (default 5). Prints each round's figures and the
# medians: requests/s, user and system µs per request. Builds nothing (see bench/instructions.sh).
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
PORT=18091
ADMIN=19991
ROUNDS="${BENCH_ROUNDS:-5}"
DURATION="${BENCH_DURATION:-8s}"
TICKS=$(getconf CLK_TCK)

install_missing wrk nginx
start_upstream "$PORT" "$ADMIN"
mkdir -p "$TMP/nginx"
sed -E "s/127\.0\.0\.1:18081/127.0.0.1:$PORT/" "$ROOT/bench/nginx.conf" >"$TMP/nginx.conf"

targets=()
for arg in "$@"; do
  case "$arg" in
    --nginx) targets+=(nginx) ;;
    --floor)
      [[ -x "$FLOOR_BIN" ]] || { echo "missing $FLOOR_BIN: build with cargo build --release --examples" >&2; exit 1; }
      targets+=("$FLOOR_BIN")
      ;;
    *) targets+=("$arg") ;;
  esac
done
((${#targets[@]})) || targets=("$TARGET_DIR/release/rampart")

# Ticks of user and system time of a process and its children that are alive now.
ticks() { # pid
  local pids=("$1") user=0 system=0 fields
  mapfile -t -O 1 pids < <(pgrep -P "$1" || true)
  for pid in "${pids[@]}"; do
    [[ -r "/proc/$pid/stat" ]] || continue
    read -r -a fields < <(sed 's/.*) //' "/proc/$pid/stat")
    user=$((user + fields[11]))
    system=$((system + fields[12]))
  done
  echo "$user $system"
}

start() { # target -> pid
  case "$1" in
    nginx) nginx -p "$TMP/nginx" -e stderr -c "$TMP/nginx.conf" >/dev/null 2>&1 & ;;
    "$FLOOR_BIN") "$1" "127.0.0.1:$PORT" 127.0.0.1:18080 >/dev/null 2>&1 & ;;
    *) "$1" serve --config "$TMP/rampart.toml" >"$TMP/access.log" 2>&1 & ;;
  esac
  echo $!
}

printf '%-5s %-40s %10s %9s %9s\n' round target req/s user-us sys-us
declare -A results
for round in $(seq "$ROUNDS"); do
  for target in "${targets[@]}"; do
    pid=$(start "$target")
    PIDS+=("$pid")
    for _ in $(seq 100); do
      curl -s -o /dev/null "http://127.0.0.1:$PORT/" && break
      sleep 0.1
    done
    wrk -t2 -c64 -d2s "http://127.0.0.1:$PORT/" >/dev/null 2>&1
    read -r user0 system0 < <(ticks "$pid")
    out=$(wrk -t2 -c64 -d"$DURATION" "http://127.0.0.1:$PORT/" 2>/dev/null)
    read -r user1 system1 < <(ticks "$pid")
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    rm -f "$TMP/access.log" "$TMP"/nginx/logs/* "$TMP"/nginx/access.log
    requests=$(awk '/requests in/{print $1}' <<<"$out")
    rate=$(awk '/Requests\/sec/{printf "%d", $2}' <<<"$out")
    user_us=$(awk -v t=$((user1 - user0)) -v r="$requests" -v hz="$TICKS" 'BEGIN{printf "%.2f", t / hz * 1e6 / r}')
    system_us=$(awk -v t=$((system1 - system0)) -v r="$requests" -v hz="$TICKS" 'BEGIN{printf "%.2f", t / hz * 1e6 / r}')
    printf '%-5s %-40s %10s %9s %9s\n' "$round" "$target" "$rate" "$user_us" "$system_us"
    results[$target]+="$rate $user_us $system_us"$'\n'
  done
done
echo
echo "medians over $ROUNDS rounds:"
for target in "${targets[@]}"; do
  median() { sort -n | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
  rate=$(printf '%s' "${results[$target]}" | awk '{print $1}' | median)
  user_us=$(printf '%s' "${results[$target]}" | awk '{print $2}' | median)
  system_us=$(printf '%s' "${results[$target]}" | awk '{print $3}' | median)
  printf '      %-40s %10s %9s %9s\n' "$target" "$rate" "$user_us" "$system_us"
done
