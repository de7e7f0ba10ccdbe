#!/usr/bin/env bash
# scripts/bench-instructions.sh [SIZE] [DEPTH] [SECONDS] [CONNECTIONS]
#
# Instructions per echoed message, counted by valgrind's callgrind: repeatable for the
# same binaries whatever else the machine does, unlike timings. Runs build/examples/ws_echo
# and native uWebSockets (bench/build/uws/uws_echo, built by scripts/bench.sh) in turn
# under callgrind, CONNECTIONS (default 100) of the load generator echoing SIZE-byte
# binary messages (default 16) with DEPTH in flight (default 1) for SECONDS (default 3), and
# prints the server process's instructions (user space: the kernel is not counted)
# divided by the messages echoed. Connection setup is included (under 1% of the total).
# Needs `make all`, the load generator (cd bench/loadgen && cargo build --release) and
# valgrind. Profiles are left in bench/build/callgrind/ for callgrind_annotate.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SIZE=${1:-16} DEPTH=${2:-1} SECS=${3:-3} CONNS=${4:-100}
LOADGEN=$ROOT/bench/loadgen/target/release/loadgen
OUT=$ROOT/bench/build/callgrind
mkdir -p "$OUT"
command -v valgrind >/dev/null || { echo "bench-instructions: valgrind is missing (apt-get install valgrind)" >&2; exit 1; }
[ -x "$LOADGEN" ] || { echo "bench-instructions: build the load generator first" >&2; exit 1; }

count() { # name binary
  local name=$1 bin=$2 port pid log=$OUT/$1.log msgs total
  [ -x "$bin" ] || { echo "$name: $bin missing (skipped)"; return; }
  valgrind --tool=callgrind --callgrind-out-file="$OUT/$name.out" "$bin" 0 > "$log" 2>&1 &
  pid=$!
  for _ in $(seq 100); do grep -q 'listening' "$log" && break; sleep 0.1; done
  port=$(grep -o '127\.0\.0\.1:[0-9]*' "$log" | head -1 | cut -d: -f2)
  [ -n "$port" ] || { kill "$pid"; echo "$name: did not start (see $log)"; return; }
  msgs=$("$LOADGEN" echo --port "$port" --conns "$CONNS" --size "$SIZE" --depth "$DEPTH" --warmup 0 \
    --duration "$SECS" 2>/dev/null | grep '^{' | grep -o '"msgs":[0-9]*' | cut -d: -f2)
  kill "$pid"; wait "$pid" 2>/dev/null || true
  total=$(callgrind_annotate "$OUT/$name.out" 2>/dev/null | awk '/PROGRAM TOTALS/{gsub(",", "", $1); print $1}')
  if [ -z "$msgs" ] || [ "$msgs" = 0 ] || [ -z "$total" ]; then echo "$name: no messages"; return; fi
  printf '%-22s %12s instructions / %8s messages = %6d per message\n' "$name" "$total" "$msgs" $((total / msgs))
}
echo "$CONNS x $SIZE B, depth $DEPTH, ${SECS} s under callgrind"
count libwsserver-c "$ROOT/build/examples/ws_echo"
count uwebsockets "$ROOT/bench/build/uws/uws_echo"
