#!/usr/bin/env bash
# Runs every test suite. Called by `make test` (and so by .ci/run).
# Suites, in order: lint (fmt, clippy), rust (unit + integration tests over loopback),
# build (release library + C examples), symbols (wss_ prefix), c (C API, misuse and
# robustness tests in a plain C host, also under valgrind), install (pkg-config build
# against a temporary prefix), interop (Python websockets against ws_echo over ws:// and
# wss://, the library's client against a Python server), examples (the C examples as a
# user runs them, https:// and wss:// included), wspipe (the gwsocket-compatible pipe
# server, also under valgrind), lua (busted, under valgrind, headless Chromium, docs
# coverage, rockspec), autobahn (when ../shared/autobahn exists), soak (60 s), asan (the
# C tests and busted against an AddressSanitizer build), fuzz (every target for
# FUZZ_SECS, default 30); then leftovers: no process started by any suite may still be
# running (scripts/test-leftovers.sh lists and ends those that are).
#
#   scripts/test.sh                 every suite
#   scripts/test.sh build wspipe    only these, in this order (the leftovers check always
#                                   runs last; wspipe, c, symbols expect a build)
#
# Each suite prints a count line ("N passed, M failed" or cargo's "test result:");
# the script ends with one line per suite and exits non-zero if any failed.
set -uo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

# Every process a suite starts inherits this marker (and the suite's name), so the
# leftovers check can find it even after it has been re-parented.
export WSS_TEST_RUN="wss-test-$(date +%s)-$$-$RANDOM"

results=()
status=0
run() { # run NAME COMMAND...
  local name="$1"; shift
  echo
  echo "=== $name"
  export WSS_TEST_SUITE="$name"
  local t0=$SECONDS
  if "$@"; then
    results+=("ok    $name ($((SECONDS - t0)) s)")
  else
    results+=("FAIL  $name ($((SECONDS - t0)) s)")
    status=1
  fi
}

suite_lint() {
  cargo fmt --check && cargo clippy --locked --all-targets -- -D warnings
}

suite_rust() {
  cargo test --locked
}

suite_build() {
  make --no-print-directory all
}

suite_symbols() {
  # Every exported symbol carries the wss_ prefix (as mongoose's mg_prefix check).
  local bad
  bad=$(nm -D --defined-only build/libwsserver.so | awk '$2 ~ /^[TDBRVW]$/ {print $3}' | grep -v '^wss_' || true)
  local total
  total=$(nm -D --defined-only build/libwsserver.so | awk '$2 == "T"' | grep -c '^.* wss_')
  if [ -n "$bad" ]; then
    echo "exported symbols without the wss_ prefix:"; echo "$bad"
    echo "symbols: 0 passed, 1 failed"; return 1
  fi
  echo "symbols: $total passed, 0 failed (every exported function starts with wss_)"
}

suite_c() {
  local out=build/tests t ok=0 i
  mkdir -p "$out"
  # robustness_test's TLS listeners: a throwaway certificate for 127.0.0.1.
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=localhost \
    -addext subjectAltName=IP:127.0.0.1 -days 2 \
    -keyout "$out/robustness-key.pem" -out "$out/robustness-cert.pem" >/dev/null 2>&1 ||
    echo "openssl could not make the test certificate (robustness_test will fail its TLS cases)"
  # ring's AES-GCM false positives (see the script).
  scripts/valgrind-supp.sh > "$out/valgrind-ring.supp"
  for t in api_test misuse_test robustness_test; do
    cc -std=c11 -Wall -Wextra -Werror -Wpedantic -g -Iinclude -o "$out/$t" "tests/c/$t.c" \
       -Lbuild -lwsserver -lpthread -Wl,-rpath,"$PWD/build" || return 1
    # robustness_test forks a child per scenario; --valgrind shortens its thread phases
    # and stretches its time limits.
    local vgargs=""
    [ "$t" = robustness_test ] && vgargs=--valgrind
    WSS_TEST_TLS_CERT="$out/robustness-cert.pem" WSS_TEST_TLS_KEY="$out/robustness-key.pem" \
      "$out/$t" || ok=1
    echo "--- $t under valgrind"
    WSS_TEST_TLS_CERT="$out/robustness-cert.pem" WSS_TEST_TLS_KEY="$out/robustness-key.pem" \
      valgrind -q --fair-sched=yes --error-exitcode=9 --leak-check=full --errors-for-leak-kinds=definite \
      --suppressions="$out/valgrind-ring.supp" "$out/$t" $vgargs || ok=1
  done
  return $ok
}

suite_install() {
  # The temporary prefix goes on every path out, also the early failures.
  local prefix rc
  prefix=$(mktemp -d)
  install_check "$prefix"
  rc=$?
  rm -rf "$prefix"
  return $rc
}

install_check() { # PREFIX
  local prefix=$1
  make --no-print-directory install PREFIX="$prefix" >/dev/null || return 1
  local cflags libs
  cflags=$(PKG_CONFIG_PATH="$prefix/lib/pkgconfig" pkg-config --cflags wsserver) || return 1
  libs=$(PKG_CONFIG_PATH="$prefix/lib/pkgconfig" pkg-config --libs wsserver) || return 1
  # shellcheck disable=SC2086
  cc -std=c11 -Wall -Wextra -Werror -o "$prefix/hello" examples/http_hello.c $cflags $libs \
     -Wl,-rpath,"$prefix/lib" || return 1
  "$prefix/hello" 0 > "$prefix/out" 2>&1 &
  local pid=$!
  local port=""
  for _ in $(seq 50); do
    port=$(grep -o '[0-9]*$' "$prefix/out" 2>/dev/null || true)
    [ -n "$port" ] && break
    sleep 0.1
  done
  local body
  body=$(curl -s --max-time 5 "http://127.0.0.1:$port/")
  kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
  local n=0 f=0
  [ "$body" = "Hello, world!" ] && n=$((n+1)) || { f=$((f+1)); echo "installed hello answered: $body"; }
  [ -f "$prefix/share/lua/5.1/wsserver_cdefs.lua" ] && n=$((n+1)) || { f=$((f+1)); echo "Lua modules not installed"; }
  # LibMongoose (the package directory too) from the installed tree alone, with the installed library
  local lua_out
  lua_out=$(cd / && env -u WSSERVER_LIB LUA_PATH="$prefix/share/lua/5.1/?.lua" \
    luajit -e 'local lm = require("LibMongoose"); assert(lm.new()):close(); io.write(require("mongoose").path)' 2>&1)
  [ "$lua_out" = "$prefix/share/lua/5.1/../../../lib/libwsserver.so" ] && n=$((n+1)) ||
    { f=$((f+1)); echo "installed LibMongoose: $lua_out"; }
  [ -f "$prefix/include/wsserver.h" ] && n=$((n+1)) || f=$((f+1))
  echo "install: $n passed, $f failed"
  [ "$f" = 0 ]
}

suite_soak() {
  SOAK_SECS="${SOAK_SECS:-60}" cargo test --locked --release --test soak -- --ignored --nocapture
}

suite_interop() { scripts/test-interop.sh; }
suite_examples() { scripts/test-examples.sh; }
suite_wspipe() { WSPIPE_SKIP_BUILD=1 WSPIPE_VALGRIND=1 scripts/test-wspipe.sh; }
suite_lua() { scripts/test-lua.sh; }
suite_autobahn() { scripts/autobahn.sh; }
suite_asan() { scripts/asan.sh; }
suite_fuzz() { scripts/fuzz.sh "${FUZZ_SECS:-30}"; }

suite_leftovers() {
  # Without the marker in its own environment, or it would count itself.
  env -u WSS_TEST_RUN -u WSS_TEST_SUITE scripts/test-leftovers.sh "$WSS_TEST_RUN"
}

all_suites=(lint rust build symbols c install interop examples wspipe lua autobahn soak asan fuzz)
suites=("$@")
[ ${#suites[@]} -eq 0 ] && suites=("${all_suites[@]}")
for s in "${suites[@]}"; do
  if ! declare -F "suite_$s" >/dev/null || [ "$s" = leftovers ]; then
    echo "unknown suite: $s (suites: ${all_suites[*]})"
    exit 2
  fi
done
for s in "${suites[@]}"; do run "$s" "suite_$s"; done
run leftovers suite_leftovers

echo
echo "=== summary"
printf '%s\n' "${results[@]}"
exit $status
