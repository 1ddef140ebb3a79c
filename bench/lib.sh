# Sourced by bench/instructions.sh and bench/cpu.sh: the paths, missing tools installed, a temp
# dir and the processes started, cleaned up on exit, and the bench upstream with rampart's plain
# config moved to other ports.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
UPSTREAM_BIN="$TARGET_DIR/release/examples/bench-upstream"
FLOOR_BIN="$TARGET_DIR/release/examples/bench-floor"
# Debian keeps nginx in /usr/sbin, which a non-root PATH may lack.
export PATH="$PATH:/usr/sbin"

# Installs, with apt-get, each Debian package named whose command of the same name is missing.
install_missing() { # package...
  local missing=() tool
  for tool in "$@"; do
    command -v "$tool" >/dev/null || missing+=("$tool")
  done
  ((${#missing[@]})) || return 0
  local sudo=()
  ((EUID == 0)) || sudo=(sudo)
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

TMP=$(mktemp -d)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$TMP"
}
trap cleanup EXIT

# Starts the bench upstream on 127.0.0.1:18080 and writes $TMP/rampart.toml: bench/rampart.toml
# listening on PORT, its admin on ADMIN.
start_upstream() { # port admin
  [[ -x "$UPSTREAM_BIN" ]] || { echo "missing $UPSTREAM_BIN: build with cargo build --release --examples" >&2; exit 1; }
  "$UPSTREAM_BIN" 127.0.0.1:18080 2>/dev/null &
  PIDS+=($!)
  sed -E "s/127\.0\.0\.1:18083/127.0.0.1:$1/; s/127\.0\.0\.1:19901/127.0.0.1:$2/" \
    "$ROOT/bench/rampart.toml" >"$TMP/rampart.toml"
}
