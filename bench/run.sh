#!/usr/bin/env bash
# Benchmark harness: rampart vs nginx vs HAProxy vs the bare upstream.
#
#   bash bench/run.sh
#
# Everything is documented in bench/README.md. Knobs (environment variables):
#   BENCH_ONLY      targets to run          (default: direct,nginx,haproxy,floor,rampart,rampart-base)
#   BENCH_CONNS     wrk connection counts   (default: "64"; e.g. "16 64 256")
#   BENCH_DURATION  measured wrk run        (default: 10s)
#   BENCH_WARMUP    uncounted warmup run    (default: 2s)
#   BENCH_ROUNDS    rounds (median is kept) (default: 3)
#   BENCH_THREADS   wrk threads             (default: 2)
#   BENCH_SCENARIO  scenarios, or "all"     (default: plain)
#   BENCH_KEEP_TMP  1 = keep the temp dir (wrk outputs, logs) after the run
#   BENCH_NO_BUILD  1 = skip `cargo build`, use the binaries already in the target dir
#   BENCH_BASE_BIN  rampart binary for the "rampart-base" target (default: the one just built);
#                   with the "ab" scenario, compares two builds of rampart in one run
#   BENCH_PGO       1 = measure the profile-guided build of scripts/release-pgo (target/pgo/rampart),
#                   the one to deploy; builds it unless BENCH_NO_BUILD=1
#
# All load goes to 127.0.0.1 only.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BENCH="$ROOT/bench"
cd "$ROOT"

: "${BENCH_ONLY:=direct,nginx,haproxy,floor,rampart,rampart-base}"
: "${BENCH_CONNS:=64}"
: "${BENCH_DURATION:=10s}"
: "${BENCH_WARMUP:=2s}"
: "${BENCH_ROUNDS:=3}"
: "${BENCH_THREADS:=2}"
: "${BENCH_SCENARIO:=plain}"
: "${BENCH_KEEP_TMP:=0}"
: "${BENCH_NO_BUILD:=0}"
: "${BENCH_PGO:=0}"
BENCH_ONLY=${BENCH_ONLY// /}
export BENCH_ONLY BENCH_CONNS BENCH_DURATION BENCH_WARMUP BENCH_ROUNDS BENCH_THREADS BENCH_SCENARIO

TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
UPSTREAM_BIN="$TARGET_DIR/release/examples/bench-upstream"
FLOOR_BIN="$TARGET_DIR/release/examples/bench-floor"
RAMPART_BIN="$TARGET_DIR/release/rampart"
[[ "$BENCH_PGO" == 1 ]] && RAMPART_BIN="$TARGET_DIR/pgo/rampart"
RAMPART_BASE_BIN="${BENCH_BASE_BIN:-$RAMPART_BIN}"

# Fixed addresses. rampart's come from the scenario's config file and must match.
UPSTREAM_ADDR=127.0.0.1:18080
NGINX_ADDR=127.0.0.1:18081
HAPROXY_ADDR=127.0.0.1:18082
RAMPART_ADDR=127.0.0.1:18083
RAMPART_ADMIN=127.0.0.1:19901
# A second rampart, for scenarios that measure a feature's cost against rampart itself.
RAMPART_BASE_ADDR=127.0.0.1:18084
RAMPART_BASE_ADMIN=127.0.0.1:19902
# The bare hyper proxy of bench/floor.rs: the least a proxy on rampart's crates does per request.
FLOOR_ADDR=127.0.0.1:18087
RAMPART_READY_TIMEOUT=20   # seconds

ALL_TARGETS=(direct nginx haproxy floor rampart rampart-base)

log() { printf '[bench] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# ---------------------------------------------------------------------------
# Scenarios
#
# A scenario is a function `scenario_<name>` that sets:
#   SCEN_DESC            one line, printed and stored in the JSON
#   SCEN_PATH            request path wrk hits (on every target)
#   SCEN_WRK_ARGS        array of extra wrk arguments (e.g. -H 'Accept-Encoding: gzip')
#   SCEN_TARGETS         targets that make sense for it (intersected with BENCH_ONLY)
#   SCEN_RAMPART_CONFIG  rampart config (must listen on $RAMPART_ADDR, admin on $RAMPART_ADMIN)
#   SCEN_NGINX_CONF      nginx config   (listen $NGINX_ADDR)
#   SCEN_HAPROXY_CFG     HAProxy config (bind $HAPROXY_ADDR)
#   SCEN_RAMPART_BASE_CONFIG  optional: a second rampart ("rampart-base", on $RAMPART_BASE_ADDR,
#                        admin $RAMPART_BASE_ADMIN) that "rampart" is compared with
# and is listed in SCENARIOS below. See bench/README.md, "Adding a scenario".
# ---------------------------------------------------------------------------
SCENARIOS=(plain ab security security-es256 ratelimit-memory ratelimit-redis resilience resilience-3 observability cache-hit compress traces)

scenario_plain() {
  SCEN_DESC="GET / proxied to the upstream (31-byte JSON body), no cache, no compression"
  SCEN_PATH="/"
  SCEN_WRK_ARGS=()
  SCEN_TARGETS="direct,nginx,haproxy,floor,rampart"
  SCEN_RAMPART_CONFIG="$BENCH/rampart.toml"
  SCEN_RAMPART_BASE_CONFIG=""
  SCEN_NGINX_CONF="$BENCH/nginx.conf"
  SCEN_HAPROXY_CFG="$BENCH/haproxy.cfg"
}

# Plain proxying by two builds of rampart with the same config: "rampart" is the one just built,
# "rampart-base" is $BENCH_BASE_BIN (e.g. a copy of the previous build).
scenario_ab() {
  scenario_plain
  SCEN_DESC="GET / proxied by this build of rampart vs BENCH_BASE_BIN (${BENCH_BASE_BIN:-the same build})"
  SCEN_TARGETS="nginx,rampart,rampart-base"
  SCEN_RAMPART_BASE_CONFIG="$BENCH/rampart-base.toml"
}

# The full edge-security stack (JWT verification, security headers, CORS, attack filtering in
# block mode) against the same rampart as a plain proxy, in alternating runs.
scenario_security() {
  SCEN_DESC="GET /api/items?page=2&sort=name with a Bearer JWT (HS256) and an Origin: JWT + headers + CORS + attack filter vs plain rampart"
  SCEN_PATH="/api/items?page=2&sort=name"
  SCEN_WRK_ARGS=(-H "Authorization: Bearer $(cat "$TMP/hs256.jwt")" -H "Origin: https://app.example.com"
    -H "User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36"
    -H "Accept: application/json" -H "Accept-Language: en-US,en;q=0.9" -H "Cookie: theme=dark; consent=yes")
  SCEN_TARGETS="nginx,rampart,rampart-base"
  SCEN_RAMPART_CONFIG="$BENCH/rampart-security.toml"
  SCEN_RAMPART_BASE_CONFIG="$BENCH/rampart-base.toml"
  SCEN_NGINX_CONF="$BENCH/nginx.conf"
  SCEN_HAPROXY_CFG="$BENCH/haproxy.cfg"
}

scenario_security-es256() {
  scenario_security
  SCEN_DESC="as security, with an ES256 JWT verified against a PEM public key"
  SCEN_WRK_ARGS[1]="Authorization: Bearer $(cat "$TMP/es256.jwt")"
  SCEN_RAMPART_CONFIG="$BENCH/rampart-security-es256.toml"
}

# A rate-limit policy per client address on every request, against plain rampart.
scenario_ratelimit-memory() {
  SCEN_DESC="GET / with one rate-limit policy per client IP (memory store) vs plain rampart"
  SCEN_PATH="/"
  SCEN_WRK_ARGS=()
  SCEN_TARGETS="nginx,rampart,rampart-base"
  SCEN_RAMPART_CONFIG="$BENCH/rampart-ratelimit-memory.toml"
  SCEN_RAMPART_BASE_CONFIG="$BENCH/rampart-base.toml"
  SCEN_NGINX_CONF="$BENCH/nginx.conf"
  SCEN_HAPROXY_CFG="$BENCH/haproxy.cfg"
}

# The same policy in Redis (127.0.0.1:6379, REDIS_URL is not read): one script call per request.
# Redis's command counts are reset before and read after, to report commands per request.
scenario_ratelimit-redis() {
  scenario_ratelimit-memory
  SCEN_DESC="GET / with one rate-limit policy per client IP (Redis store) vs plain rampart"
  SCEN_RAMPART_CONFIG="$BENCH/rampart-ratelimit-redis.toml"
  SCEN_BEFORE=redis_reset_stats
  SCEN_AFTER=redis_commands_per_request
}

# Default observability (a JSON access line per request, metrics) against rampart without the
# access log: what the default logging costs.
scenario_observability() {
  SCEN_DESC="GET / with rampart's default observability (JSON access log, metrics) vs no access log"
  SCEN_PATH="/"
  SCEN_WRK_ARGS=()
  SCEN_TARGETS="nginx,rampart,rampart-base"
  SCEN_RAMPART_CONFIG="$BENCH/rampart.toml"
  SCEN_RAMPART_BASE_CONFIG="$BENCH/rampart-quiet.toml"
  SCEN_NGINX_CONF="$BENCH/nginx.conf"
  SCEN_HAPROXY_CFG="$BENCH/haproxy.cfg"
}

# Every request a cache hit (GET / cached for 300 s in memory), against plain rampart proxying.
scenario_cache-hit() {
  SCEN_DESC="GET / answered from rampart's memory cache vs plain rampart proxying it"
  SCEN_PATH="/"
  SCEN_WRK_ARGS=()
  SCEN_TARGETS="nginx,rampart,rampart-base"
  SCEN_RAMPART_CONFIG="$BENCH/rampart-cache.toml"
  SCEN_RAMPART_BASE_CONFIG="$BENCH/rampart-base.toml"
  SCEN_NGINX_CONF="$BENCH/nginx.conf"
  SCEN_HAPROXY_CFG="$BENCH/haproxy.cfg"
}

# A 10 KB JSON response compressed on the fly (the client accepts gzip, br and zstd: zstd is
# chosen) against the same response uncompressed through plain rampart; compare p99.
scenario_compress() {
  SCEN_DESC="GET /json10k (10 KB JSON) compressed by rampart (Accept-Encoding: gzip, br, zstd) vs uncompressed"
  SCEN_PATH="/json10k"
  SCEN_WRK_ARGS=(-H "Accept-Encoding: gzip, br, zstd")
  SCEN_TARGETS="rampart,rampart-base"
  SCEN_RAMPART_CONFIG="$BENCH/rampart-compress.toml"
  SCEN_RAMPART_BASE_CONFIG="$BENCH/rampart-base.toml"
  SCEN_NGINX_CONF="$BENCH/nginx.conf"
  SCEN_HAPROXY_CFG="$BENCH/haproxy.cfg"
}

# Tracing on at a 10% sampling ratio (traceparent on every upstream request, spans for the
# sampled tenth exported as OTLP/HTTP JSON to the bench upstream) against plain rampart; the
# issue asks rampart/rampart-base >= 0.9.
scenario_traces() {
  SCEN_DESC="GET / with [tracing] at sample_ratio 0.1, spans exported to the bench upstream vs plain rampart"
  SCEN_PATH="/"
  SCEN_WRK_ARGS=()
  SCEN_TARGETS="nginx,rampart,rampart-base"
  SCEN_RAMPART_CONFIG="$BENCH/rampart-traces.toml"
  SCEN_RAMPART_BASE_CONFIG="$BENCH/rampart-base.toml"
  SCEN_NGINX_CONF="$BENCH/nginx.conf"
  SCEN_HAPROXY_CFG="$BENCH/haproxy.cfg"
}

# P2C over three upstream processes, a circuit breaker and a retry policy on every request,
# against plain rampart proxying to one.
scenario_resilience() {
  SCEN_DESC="GET / balanced by P2C over three targets, with breaker, passive ejection and retry budget vs plain rampart"
  SCEN_PATH="/"
  SCEN_WRK_ARGS=()
  SCEN_TARGETS="nginx,rampart,rampart-base"
  SCEN_RAMPART_CONFIG="$BENCH/rampart-resilience.toml"
  SCEN_RAMPART_BASE_CONFIG="$BENCH/rampart-base.toml"
  SCEN_NGINX_CONF="$BENCH/nginx.conf"
  SCEN_HAPROXY_CFG="$BENCH/haproxy.cfg"
  SCEN_BEFORE=start_extra_upstreams
  SCEN_AFTER=stop_extra_upstreams
}

# The same policies against plain rampart over the same three targets (round robin, nothing
# else): what the policies cost, without the cost of three upstream processes on two cores.
scenario_resilience-3() {
  scenario_resilience
  SCEN_DESC="as resilience, against plain rampart round-robin over the same three targets"
  SCEN_RAMPART_BASE_CONFIG="$BENCH/rampart-base-3.toml"
}

start_extra_upstreams() { # scenario
  local addr
  for addr in 127.0.0.1:18085 127.0.0.1:18086; do
    port_in_use "$addr" && die "$addr already in use"
    start_bg "upstream-${addr##*:}" "$TMP/upstream-${addr##*:}.out" "$TMP/upstream-${addr##*:}.err" "$UPSTREAM_BIN" "$addr"
    wait_http "upstream-${addr##*:}" "http://$addr/" 10 || die "extra upstream $addr did not start"
  done
}

stop_extra_upstreams() { # scenario
  local scen=$1 errors
  errors=$(curl -s "http://$RAMPART_ADMIN/metrics" | awk '/^rampart_upstream_errors_total/ {sum += $2} END {print sum + 0}')
  meta "$scen" upstream_errors "$errors"
  stop_proc upstream-18085
  stop_proc upstream-18086
}

redis_reset_stats() { # scenario
  redis-cli -p 6379 CONFIG RESETSTAT >/dev/null || die "Redis is not answering on 6379"
}

redis_commands_per_request() { # scenario
  local scen=$1 calls requests
  # Only what clients sent: the commands a script runs inside Redis are counted apart.
  calls=$(redis-cli -p 6379 INFO commandstats | tr -d '\r' |
    awk -F'[:=,]' '/^cmdstat_(evalsha|eval|evalsha_ro|eval_ro|script\|load):/ {sum += $3} END {print sum + 0}')
  requests=$(cat "$TMP/$scen"/wrk-rampart-c*.txt* 2>/dev/null |
    awk '/requests in/ {sum += $1} END {print sum + 0}')
  meta "$scen" redis_commands "$calls"
  meta "$scen" rampart_requests "$requests"
  log "$scen: $calls Redis script calls for $requests rampart requests"
}

# ---------------------------------------------------------------------------
# Process bookkeeping and cleanup
# ---------------------------------------------------------------------------
declare -A PID_OF=()   # name -> pid of every process this script started
TMP=""
FINISHED=0

stop_proc() { # name
  local name=$1 pid=${PID_OF[$1]:-}
  [[ -n "$pid" ]] || return 0
  unset "PID_OF[$name]"
  kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
  local children
  children=$(pgrep -P "$pid" 2>/dev/null || true)   # e.g. nginx workers
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 50); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    log "$name (pid $pid) ignored SIGTERM; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  for c in $children; do kill -KILL "$c" 2>/dev/null || true; done
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  for name in "${!PID_OF[@]}"; do stop_proc "$name"; done
  if [[ -n "$TMP" && -d "$TMP" ]]; then
    if [[ "$BENCH_KEEP_TMP" == 1 ]]; then
      log "temp dir kept: $TMP"
    elif [[ $FINISHED != 1 ]]; then
      # Keep wrk outputs and server stderr for diagnosis; access logs can be
      # hundreds of MB, so drop them.
      find "$TMP" -name access.log -delete 2>/dev/null || true
      log "run did not finish; wrk outputs and server logs kept in $TMP"
    else
      rm -rf "$TMP"
    fi
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT
trap 'log "terminated"; exit 143' TERM

start_bg() { # name stdout-file stderr-file cmd...
  local name=$1 out=$2 err=$3
  shift 3
  "$@" >"$out" 2>"$err" &
  PID_OF[$name]=$!
}

port_in_use() { # host:port
  (exec 3<>"/dev/tcp/${1%:*}/${1##*:}") 2>/dev/null
}

wait_http() { # name url timeout-seconds
  local name=$1 url=$2 timeout=$3 pid=${PID_OF[$1]}
  local deadline=$((SECONDS + timeout))
  while ((SECONDS < deadline)); do
    kill -0 "$pid" 2>/dev/null || return 1
    if [[ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "$url" || true)" == 200 ]]; then
      return 0
    fi
    sleep 0.1
  done
  return 1
}

proc_status_kib() { # pid field  -> value in KiB (e.g. VmRSS, VmHWM), empty if gone
  awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status" 2>/dev/null || true
}

csv_has() { [[ ",$1," == *",$2,"* ]]; }

to_seconds() { # 10s | 2m | 500ms | 10 -> seconds (for the time estimate only)
  local d=$1
  case "$d" in
    *ms) echo 0 ;;
    *s) echo "${d%s}" ;;
    *m) echo $((${d%m} * 60)) ;;
    *h) echo $((${d%h} * 3600)) ;;
    *) echo "$d" ;;
  esac
}

# ---------------------------------------------------------------------------
# 1. Tools
# ---------------------------------------------------------------------------
install_tools() {
  local missing=()
  command -v wrk >/dev/null || missing+=(wrk)
  command -v nginx >/dev/null || missing+=(nginx)
  command -v haproxy >/dev/null || missing+=(haproxy)
  command -v curl >/dev/null || missing+=(curl)
  command -v python3 >/dev/null || missing+=(python3)
  command -v pgrep >/dev/null || missing+=(procps)
  ((${#missing[@]} == 0)) && return 0
  log "installing: ${missing[*]}"
  local sudo=()
  ((EUID == 0)) || sudo=(sudo)
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # Debian keeps nginx/haproxy in /usr/sbin, which a non-root PATH may lack.
  PATH="$PATH:/usr/sbin:/sbin"
  for t in wrk nginx haproxy curl python3; do
    command -v "$t" >/dev/null || die "$t still missing after apt-get install"
  done
}

# ---------------------------------------------------------------------------
# 2. Build
# ---------------------------------------------------------------------------
RAMPART_BUILT=0
build() {
  if [[ "$BENCH_NO_BUILD" == 1 ]]; then
    log "BENCH_NO_BUILD=1: using existing binaries in $TARGET_DIR/release"
    [[ -x "$UPSTREAM_BIN" ]] || die "$UPSTREAM_BIN missing"
    [[ -x "$RAMPART_BIN" ]] && RAMPART_BUILT=1
    return 0
  fi
  command -v cargo >/dev/null || die "cargo not found"
  if csv_has "$BENCH_ONLY" rampart && [[ "$BENCH_PGO" == 1 ]]; then
    log "bash scripts/release-pgo (the profile-guided build of rampart)"
    if bash "$ROOT/scripts/release-pgo"; then
      RAMPART_BUILT=1
    else
      log "RAMPART: the profile-guided build failed; rampart will be skipped, benchmarking the others"
    fi
  elif csv_has "$BENCH_ONLY" rampart; then
    log "cargo build --release --bin rampart --example bench-upstream --example bench-floor"
    if cargo build --release --bin rampart --example bench-upstream --example bench-floor; then
      RAMPART_BUILT=1
      return 0
    fi
    log "RAMPART: build failed; rampart will be skipped, benchmarking the others"
  fi
  log "cargo build --release --example bench-upstream --example bench-floor"
  cargo build --release --example bench-upstream --example bench-floor || die "bench-upstream failed to build"
}

# ---------------------------------------------------------------------------
# 3-5. Servers
# ---------------------------------------------------------------------------
start_upstream() {
  port_in_use "$UPSTREAM_ADDR" && die "$UPSTREAM_ADDR already in use"
  start_bg upstream "$TMP/upstream.out" "$TMP/upstream.err" "$UPSTREAM_BIN" "$UPSTREAM_ADDR"
  wait_http upstream "http://$UPSTREAM_ADDR/" 10 || die "upstream did not start (see $TMP/upstream.err)"
  log "upstream ready on $UPSTREAM_ADDR (pid ${PID_OF[upstream]})"
}

start_nginx() { # scenario
  local dir="$TMP/$1/nginx"
  mkdir -p "$dir"
  port_in_use "$NGINX_ADDR" && die "$NGINX_ADDR already in use"
  local extra=()
  # As root the workers would otherwise drop to `nobody`; keep the current user.
  ((EUID == 0)) && extra=(-g "user root;")
  nginx -t -q -p "$dir" -e stderr -c "$SCEN_NGINX_CONF" "${extra[@]}" 2>"$dir/configtest.err" \
    || die "nginx config test failed: $(cat "$dir/configtest.err")"
  start_bg nginx "$dir/stdout" "$dir/stderr" nginx -p "$dir" -e stderr -c "$SCEN_NGINX_CONF" "${extra[@]}"
  wait_http nginx "http://$NGINX_ADDR$SCEN_PATH" 10 || die "nginx did not start (see $dir/stderr)"
  log "nginx ready on $NGINX_ADDR (pid ${PID_OF[nginx]})"
}

start_haproxy() { # scenario
  local dir="$TMP/$1/haproxy"
  mkdir -p "$dir"
  port_in_use "$HAPROXY_ADDR" && die "$HAPROXY_ADDR already in use"
  haproxy -c -q -f "$SCEN_HAPROXY_CFG" >"$dir/configtest.err" 2>&1 \
    || die "haproxy config check failed: $(cat "$dir/configtest.err")"
  # -db: stay in the foreground; stdout is the access log (log stdout ...).
  start_bg haproxy "$dir/access.log" "$dir/stderr" haproxy -db -f "$SCEN_HAPROXY_CFG"
  wait_http haproxy "http://$HAPROXY_ADDR$SCEN_PATH" 10 || die "haproxy did not start (see $dir/stderr)"
  log "haproxy ready on $HAPROXY_ADDR (pid ${PID_OF[haproxy]})"
}

# Returns non-zero if the floor proxy is not built (the run goes on without it).
start_floor() { # scenario
  local dir="$TMP/$1/floor"
  mkdir -p "$dir"
  [[ -x "$FLOOR_BIN" ]] || return 1
  port_in_use "$FLOOR_ADDR" && die "$FLOOR_ADDR already in use"
  start_bg floor "$dir/stdout" "$dir/stderr" "$FLOOR_BIN" "$FLOOR_ADDR" "$UPSTREAM_ADDR"
  wait_http floor "http://$FLOOR_ADDR$SCEN_PATH" 10 || die "the floor proxy did not start (see $dir/stderr)"
  log "floor ready on $FLOOR_ADDR (pid ${PID_OF[floor]})"
}

# Returns non-zero (and says why) if rampart can't be benchmarked; never dies.
start_rampart() { # scenario name addr admin config
  local name=$2 addr=$3 admin=$4 config=$5
  local dir="$TMP/$1/$name"
  local bin=$RAMPART_BIN
  [[ $name == rampart-base ]] && bin=$RAMPART_BASE_BIN
  mkdir -p "$dir"
  if ((RAMPART_BUILT != 1)) || [[ ! -x "$bin" ]]; then
    RAMPART_SKIP_REASON="not built"
    return 1
  fi
  if port_in_use "$addr" || port_in_use "$admin"; then
    RAMPART_SKIP_REASON="$addr or $admin already in use"
    return 1
  fi
  # stdout is rampart's access log.
  start_bg "$name" "$dir/access.log" "$dir/stderr" env BENCH_TMP="$TMP" "$bin" serve --config "$config"
  if ! wait_http "$name" "http://$admin/health/ready" "$RAMPART_READY_TIMEOUT"; then
    if kill -0 "${PID_OF[$name]}" 2>/dev/null; then
      RAMPART_SKIP_REASON="not ready after ${RAMPART_READY_TIMEOUT}s"
    else
      RAMPART_SKIP_REASON="exited at startup: $(tail -q -n 3 "$dir/stderr" "$dir/access.log" 2>/dev/null | tr "\n" " " | cut -c1-300)"
    fi
    stop_proc "$name"
    return 1
  fi
  log "$name ready on $addr (pid ${PID_OF[$name]})"
}

target_url() { # target
  case "$1" in
    direct) echo "http://$UPSTREAM_ADDR$SCEN_PATH" ;;
    nginx) echo "http://$NGINX_ADDR$SCEN_PATH" ;;
    haproxy) echo "http://$HAPROXY_ADDR$SCEN_PATH" ;;
    floor) echo "http://$FLOOR_ADDR$SCEN_PATH" ;;
    rampart) echo "http://$RAMPART_ADDR$SCEN_PATH" ;;
    rampart-base) echo "http://$RAMPART_BASE_ADDR$SCEN_PATH" ;;
  esac
}

meta() { # scenario key value   (collected into the JSON by report.py)
  printf '%s\t%s\t%s\n' "$1" "$2" "$3" >>"$TMP/meta.tsv"
}

# ---------------------------------------------------------------------------
# 6. Load
# ---------------------------------------------------------------------------
run_wrk() { # url conns duration outfile
  local threads=$BENCH_THREADS
  (($2 < threads)) && threads=$2
  # Run wrk in the background and `wait` for it: wrk catches SIGINT itself, and
  # bash would then skip our INT trap if wrk were a foreground command (Ctrl-C
  # would only end the current wrk run). `wait` returns at once on a signal.
  start_bg wrk "$4" "$4.stderr" wrk -t "$threads" -c "$2" -d "$3" --latency "${SCEN_WRK_ARGS[@]}" "$1"
  local rc=0
  wait "${PID_OF[wrk]}" || rc=$?
  unset 'PID_OF[wrk]'
  ((rc == 0)) || log "wrk exited with status $rc for $1 (see $4 and $4.stderr)"
}

summarize_wrk() { # file -> "N req/s, p99 X"
  awk '/^Requests\/sec:/ { rps = $2 } $1 == "99%" { p99 = $2 }
       END { printf "%s req/s, p99 %s", (rps == "" ? "?" : rps), (p99 == "" ? "?" : p99) }' "$1"
}

run_scenario() { # name
  local scen=$1
  "scenario_$scen"
  log "=== scenario $scen: $SCEN_DESC"
  meta "$scen" desc "$SCEN_DESC"
  meta "$scen" path "$SCEN_PATH"

  local targets=()
  for t in "${ALL_TARGETS[@]}"; do
    csv_has "$BENCH_ONLY" "$t" && csv_has "$SCEN_TARGETS" "$t" && targets+=("$t")
  done

  local active=()
  for t in "${targets[@]}"; do
    case "$t" in
      direct) active+=(direct) ;;
      nginx) start_nginx "$scen"; active+=(nginx) ;;
      haproxy) start_haproxy "$scen"; active+=(haproxy) ;;
      floor)
        if start_floor "$scen"; then active+=(floor); else log "FLOOR SKIPPED ($scen): $FLOOR_BIN not built"; fi
        ;;
      rampart-base)
        [[ -n "$SCEN_RAMPART_BASE_CONFIG" ]] || continue
        RAMPART_SKIP_REASON=""
        if start_rampart "$scen" rampart-base "$RAMPART_BASE_ADDR" "$RAMPART_BASE_ADMIN" "$SCEN_RAMPART_BASE_CONFIG"; then
          active+=(rampart-base)
        else
          log "RAMPART-BASE SKIPPED ($scen): $RAMPART_SKIP_REASON"
        fi
        ;;
      rampart)
        RAMPART_SKIP_REASON=""
        if start_rampart "$scen" rampart "$RAMPART_ADDR" "$RAMPART_ADMIN" "$SCEN_RAMPART_CONFIG"; then
          active+=(rampart)
          sleep 0.5
          meta "$scen" rampart_idle_rss_kib "$(proc_status_kib "${PID_OF[rampart]}" VmRSS)"
        else
          log "RAMPART SKIPPED ($scen): $RAMPART_SKIP_REASON -- benchmarking the others"
          meta "$scen" rampart_skipped "$RAMPART_SKIP_REASON"
        fi
        ;;
    esac
  done
  ((${#active[@]} > 0)) || { log "no targets for scenario $scen"; return 0; }

  local round conns t out
  [[ -n "${SCEN_BEFORE:-}" ]] && "$SCEN_BEFORE" "$scen"
  for round in $(seq "$BENCH_ROUNDS"); do
    for conns in $BENCH_CONNS; do
      for t in "${active[@]}"; do
        out="$TMP/$scen/wrk-$t-c$conns-r$round.txt"
        run_wrk "$(target_url "$t")" "$conns" "$BENCH_WARMUP" "$out.warmup"
        run_wrk "$(target_url "$t")" "$conns" "$BENCH_DURATION" "$out"
        printf '%s\t%s\t%s\t%s\t%s\n' "$scen" "$t" "$conns" "$round" "$out" >>"$TMP/manifest.tsv"
        log "$scen round $round/$BENCH_ROUNDS c=$conns $t: $(summarize_wrk "$out")"
      done
    done
  done

  [[ -n "${SCEN_AFTER:-}" ]] && "$SCEN_AFTER" "$scen"
  SCEN_BEFORE="" SCEN_AFTER=""
  if [[ -n "${PID_OF[rampart]:-}" ]]; then
    meta "$scen" rampart_peak_rss_kib "$(proc_status_kib "${PID_OF[rampart]}" VmHWM)"
    kill -0 "${PID_OF[rampart]}" 2>/dev/null || meta "$scen" rampart_died "yes"
  fi
  sleep 0.5   # let buffered access logs settle before counting lines
  for t in nginx haproxy floor rampart rampart-base; do
    [[ -n "${PID_OF[$t]:-}" ]] || continue
    stop_proc "$t"   # flushes nginx's buffered access log
    local logfile="$TMP/$scen/$t/access.log"
    [[ -f "$logfile" ]] || continue
    meta "$scen" "${t}_access_log_lines" "$(wc -l <"$logfile")"
    [[ "$BENCH_KEEP_TMP" == 1 ]] || rm -f "$logfile"   # can be hundreds of MB
  done
}

# ---------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------
main() {
  local scenarios=()
  if [[ "$BENCH_SCENARIO" == all ]]; then
    scenarios=("${SCENARIOS[@]}")
  else
    for s in ${BENCH_SCENARIO//,/ }; do
      declare -F "scenario_$s" >/dev/null || die "unknown scenario '$s' (known: ${SCENARIOS[*]})"
      scenarios+=("$s")
    done
  fi
  for t in ${BENCH_ONLY//,/ }; do
    [[ " ${ALL_TARGETS[*]} " == *" $t "* ]] || die "unknown target '$t' in BENCH_ONLY (known: ${ALL_TARGETS[*]})"
  done

  install_tools
  build

  ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
  TMP="$(mktemp -d -t rampart-bench.XXXXXX)"
  : >"$TMP/manifest.tsv"
  : >"$TMP/meta.tsv"
  python3 "$BENCH/make_tokens.py" "$TMP" || die "could not make the benchmark tokens"

  local ntargets=0 nconns
  for t in ${BENCH_ONLY//,/ }; do ntargets=$((ntargets + 1)); done
  nconns=$(wc -w <<<"$BENCH_CONNS")
  local est=$((${#scenarios[@]} * BENCH_ROUNDS * nconns * ntargets *
    ($(to_seconds "$BENCH_DURATION") + $(to_seconds "$BENCH_WARMUP"))))
  log "scenarios: ${scenarios[*]}; targets: $BENCH_ONLY; conns: $BENCH_CONNS;" \
    "rounds: $BENCH_ROUNDS x ($BENCH_WARMUP warmup + $BENCH_DURATION); load phase ~${est}s"

  start_upstream
  for s in "${scenarios[@]}"; do run_scenario "$s"; done
  stop_proc upstream

  mkdir -p "$BENCH/results"
  python3 "$BENCH/report.py" --tmp "$TMP" --out "$BENCH/results/latest.json"
  FINISHED=1
}

main "$@"
