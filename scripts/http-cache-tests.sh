#!/usr/bin/env bash
# Runs the public HTTP caching test suite (npm package `http-cache-tests`, cache-tests.fyi) against
# its own origin server directly, then through rampart with a caching route in front of it, and
# prints how many tests pass each way. Not part of `scripts/test` (it downloads from npm).
#
#   bash scripts/http-cache-tests.sh
#
# Knobs: HTTP_CACHE_TESTS_DIR (where the package is installed; default target/http-cache-tests),
# RAMPART_BIN (default: $CARGO_TARGET_DIR/debug/rampart, built if missing), KEEP=1 keeps the
# results and logs. Needs node and npm. All traffic stays on 127.0.0.1.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
DIR="${HTTP_CACHE_TESTS_DIR:-$TARGET_DIR/http-cache-tests}"
RAMPART_BIN="${RAMPART_BIN:-$TARGET_DIR/debug/rampart}"
ORIGIN_PORT=18200
RAMPART_PORT=18201
ADMIN_PORT=18202

log() { printf '[http-cache-tests] %s\n' "$*" >&2; }
command -v node >/dev/null && command -v npm >/dev/null || { log "node and npm are needed"; exit 1; }

PKG="$DIR/node_modules/http-cache-tests"
if [[ ! -f "$PKG/cli.mjs" ]]; then
  log "installing http-cache-tests into $DIR"
  mkdir -p "$DIR"
  (cd "$DIR" && npm install --no-save --no-audit --no-fund --install-strategy=nested http-cache-tests >/dev/null)
fi
if [[ ! -x "$RAMPART_BIN" ]]; then
  log "building rampart"
  cargo build --bin rampart
fi

TMP="$(mktemp -d -t http-cache-tests.XXXXXX)"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [[ "${KEEP:-0}" == 1 ]]; then log "results kept in $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT

wait_port() { # port
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  log "nothing listens on $1"; return 1
}

# The suite's origin server.
(cd "$PKG" && exec env npm_config_port=$ORIGIN_PORT npm_config_protocol=http \
  npm_config_pidfile="$TMP/server.pid" node server/server.mjs) >"$TMP/origin.log" 2>&1 &
PIDS+=($!)
wait_port $ORIGIN_PORT

# rampart as a standards-following shared cache in front of it: only what the origin marks
# cacheable (ttl = "0s"), the RFC's heuristically cacheable statuses, writes purge, no security
# headers (a plain cache).
cat >"$TMP/rampart.toml" <<TOML
[server]
listen = ["127.0.0.1:$RAMPART_PORT"]
[admin]
listen = "127.0.0.1:$ADMIN_PORT"
[log]
level = "warn"
access_log = false
[security_headers]
enabled = false
[cache]
max_memory = "64MB"
[[upstream]]
name = "origin"
targets = ["127.0.0.1:$ORIGIN_PORT"]
[[route]]
name = "all"
upstream = "origin"
preserve_host = true
[route.cache]
ttl = "0s"
shared = true
statuses = [200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501]
purge_on_write = true
TOML
"$RAMPART_BIN" serve --config "$TMP/rampart.toml" >"$TMP/rampart.log" 2>&1 &
PIDS+=($!)
wait_port $RAMPART_PORT

run_suite() { # base-url output
  (cd "$PKG" && env npm_config_base="$1" npm_config_id="" npm_package_config_id="" node --no-warnings cli.mjs) >"$2"
}
log "running the suite against the origin directly"
run_suite "http://127.0.0.1:$ORIGIN_PORT" "$TMP/origin.json"
log "running the suite through rampart"
run_suite "http://127.0.0.1:$RAMPART_PORT" "$TMP/rampart.json"

node "$ROOT/scripts/http-cache-tests-summary.mjs" "$PKG" "$TMP/origin.json" "$TMP/rampart.json"
