#!/usr/bin/env bash
# WebSocket interop with a client and a server nobody here wrote: Python `websockets`.
#
#   scripts/test-interop.sh
#
# 1. Builds build/examples/ws_echo (make all; set WSS_INTEROP_SKIP_BUILD=1 to skip).
# 2. Sets up a virtual environment in build/venv with `websockets` from PyPI.
# 3. Python client -> ws_echo on ws://: text and binary echoes from 0 B to 16 MiB, with
#    and without permessage-deflate, whole and fragmented; ping; close codes; 1009.
# 4. Python client -> ws_echo --tls on wss:// (a certificate made now with openssl):
#    small and 16 MiB messages, with and without compression.
# 5. The library's own client -> a Python `websockets` server (a Rust test in
#    tests/ws_api.rs, ignored unless WSS_PYTHON is set), deflate on and off.
#
# Prints "N passed, M failed" (the sum over all parts) and exits non-zero on any failure.
# Every ws_echo it starts is stopped when it exits, also after a failure or a signal.
set -uo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
ROOT=$PWD
VENV=build/venv
PY=$VENV/bin/python
ECHO=build/examples/ws_echo

passed=0
failed=0
pids=()
tmp=$(mktemp -d)
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 129' HUP; trap 'exit 130' INT; trap 'exit 143' TERM # so that cleanup runs

count() { # count OUTPUT-FILE: adds its "N passed, M failed" line to the totals
  local line
  line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$1" | tail -1)
  if [ -z "$line" ]; then
    echo "(no result line: counted as one failure)"
    failed=$((failed + 1))
    return
  fi
  passed=$((passed + $(echo "$line" | awk '{print $1}')))
  failed=$((failed + $(echo "$line" | awk '{print $3}')))
}

fail_setup() {
  echo "setup failed: $*"
  echo "0 passed, 1 failed"
  exit 1
}

echo "=== build"
if [ "${WSS_INTEROP_SKIP_BUILD:-0}" != 1 ]; then
  make --no-print-directory all >"$tmp/make.log" 2>&1 || { tail -20 "$tmp/make.log"; fail_setup "make all"; }
fi
[ -x "$ECHO" ] || fail_setup "$ECHO missing"

echo "=== python venv ($VENV)"
if [ ! -x "$PY" ]; then
  python3 -m venv "$VENV" || fail_setup "python3 -m venv"
fi
if ! "$PY" -c 'import websockets.asyncio.client' 2>/dev/null; then
  "$PY" -m pip install -q --disable-pip-version-check 'websockets>=14' || fail_setup "pip install websockets"
fi
"$PY" -c 'import websockets, sys; print("websockets", websockets.__version__, "on Python", sys.version.split()[0])'

# start_echo OUT-FILE ARGS...: starts ws_echo on port 0 and sets $port to its port.
# Called as a plain command, never in $(...): in a command substitution the pid would
# be recorded in a subshell's copy of $pids, out of reach of cleanup (the server
# outlived the script), and fail_setup would end only that subshell.
start_echo() {
  local out=$1; shift
  "$ECHO" 0 "$@" >"$out" 2>&1 &
  pids+=($!)
  port=""
  for _ in $(seq 100); do
    port=$(sed -n 's/^ws_echo listening on wss\{0,1\}:\/\/127\.0\.0\.1:\([0-9]*\)$/\1/p' "$out" | head -1)
    [ -n "$port" ] && break
    sleep 0.05
  done
  [ -n "$port" ] || { cat "$out"; fail_setup "ws_echo did not start"; }
}

t0=$SECONDS
echo
echo "=== Python websockets client -> ws_echo (ws://)"
start_echo "$tmp/echo.out"
timeout 150 "$PY" tests/py/interop_client.py "ws://127.0.0.1:$port" --suite full | tee "$tmp/ws.out"
count "$tmp/ws.out"

echo
echo "=== Python websockets client -> ws_echo --tls (wss://)"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
  -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
  -keyout "$tmp/key.pem" -out "$tmp/cert.pem" 2>"$tmp/openssl.log" || { cat "$tmp/openssl.log"; fail_setup "openssl req"; }
start_echo "$tmp/echo-tls.out" --tls "$tmp/cert.pem" "$tmp/key.pem"
timeout 150 "$PY" tests/py/interop_client.py "wss://127.0.0.1:$port" --suite tls --cafile "$tmp/cert.pem" | tee "$tmp/wss.out"
count "$tmp/wss.out"

echo
echo "=== the library's client -> Python websockets server (cargo test --test ws_api -- --ignored python)"
# Built first, without a time limit: on a busy machine compiling the test can take
# longer than the limit, which is for the test (the timeout ended cargo mid-build).
cargo test --locked --test ws_api --no-run 2>&1 | tail -3
WSS_PYTHON="$ROOT/$PY" timeout 300 cargo test --locked --test ws_api -- --ignored python 2>&1 | tee "$tmp/rust.out"
line=$(grep -E '^test result:' "$tmp/rust.out" | tail -1)
if [ -n "$line" ]; then
  passed=$((passed + $(echo "$line" | sed -n 's/.* \([0-9]*\) passed.*/\1/p')))
  failed=$((failed + $(echo "$line" | sed -n 's/.* \([0-9]*\) failed.*/\1/p')))
else
  echo "(no cargo result line: counted as one failure)"
  failed=$((failed + 1))
fi

echo
echo "=== interop summary ($((SECONDS - t0)) s after the build)"
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
