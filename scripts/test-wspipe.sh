#!/usr/bin/env bash
# End-to-end tests of build/wspipe, the gwsocket-compatible pipe server.
#
#   scripts/test-wspipe.sh            build, then run tests/wspipe/test_wspipe.py
#   WSPIPE_SKIP_BUILD=1 scripts/test-wspipe.sh     use the binary already built
#   WSPIPE_VALGRIND=1 scripts/test-wspipe.sh       also run the program under valgrind
#                                                  (memcheck) for the functional tests
#
# 1. Builds the library, the examples and build/wspipe (make all).
# 2. Sets up a virtual environment in build/wspipe-venv with `websockets` from PyPI.
# 3. Runs the tests: the program is started as a user starts gwsocket, the tests write
#    to its pipes and stdin, read its output pipe and stdout, and connect real WebSocket
#    clients (Python `websockets`); openssl makes a certificate for the wss:// test.
#
# Prints "N passed, M failed" and exits non-zero on any failure. About 15 s (a minute
# more with WSPIPE_VALGRIND=1).
set -uo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
VENV=build/wspipe-venv
PY=$VENV/bin/python
BIN=build/wspipe

fail_setup() {
  echo "setup failed: $*"
  echo "0 passed, 1 failed"
  exit 1
}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

echo "=== build"
if [ "${WSPIPE_SKIP_BUILD:-0}" != 1 ]; then
  make --no-print-directory all >"$tmp/make.log" 2>&1 || { tail -20 "$tmp/make.log"; fail_setup "make all"; }
fi
[ -x "$BIN" ] || fail_setup "$BIN missing"
command -v openssl >/dev/null || fail_setup "openssl not installed"

echo "=== python venv ($VENV)"
if [ ! -x "$PY" ]; then
  python3 -m venv "$VENV" || fail_setup "python3 -m venv"
fi
if ! "$PY" -c 'import websockets.asyncio.client' 2>/dev/null; then
  "$PY" -m pip install -q --disable-pip-version-check 'websockets>=14' || fail_setup "pip install websockets"
fi
"$PY" -c 'import websockets, sys; print("websockets", websockets.__version__, "on Python", sys.version.split()[0])'

passed=0
failed=0
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

t0=$SECONDS
echo
echo "=== wspipe end-to-end tests"
timeout 300 "$PY" tests/wspipe/test_wspipe.py --bin "$BIN" | tee "$tmp/out"
count "$tmp/out"

if [ "${WSPIPE_VALGRIND:-0}" = 1 ]; then
  echo
  echo "=== the same under valgrind (memcheck; timing-bound tests left out)"
  if command -v valgrind >/dev/null; then
    timeout 600 "$PY" tests/wspipe/test_wspipe.py --bin "$BIN" --valgrind | tee "$tmp/vg"
    count "$tmp/vg"
  else
    echo "valgrind not installed: skipped"
  fi
fi

echo
echo "=== wspipe summary ($((SECONDS - t0)) s after the build)"
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
