#!/usr/bin/env bash
# scripts/bench.sh: the libwsserver benchmark suite, in one command and one run.
#
#   scripts/bench.sh [--quick] [--runs N] [--duration SEC] [--warmup SEC] [--text]
#                    [--idle-conns N] [--idle-cpu-secs SEC] [--servers a,b,...] [--out DIR]
#                    [--server-cpu N] [--loadgen-cpus LIST] [--loadgen-threads N]
#
# Builds this library and the load generator, installs the peers from the registries
# (first run installs; later runs reuse), then measures side by side, server pinned to
# CPU 0 and load generator to CPU 1, on 127.0.0.1:
#   - WebSocket echo (messages/s, round trips, server CPU per message) for this library
#     from C (build/examples/ws_echo) and LuaJIT (examples/echo.lua) and every peer;
#   - HTTP hello requests/s with wrk;
#   - server RSS per idle WebSocket connection and the time to upgrade N of them;
#   - idle CPU of a luv-attached LuaJIT manager;
#   - SO_REUSEPORT scaling from 1 to 2 worker processes.
# Medians of --runs runs per row. Results: bench/results/<timestamp>/ and
# bench/results/latest/ (results.md, chart.png, raw.jsonl, logs/).
#
# Defaults: 3 runs of 2 s after 1 s of warm-up, the full case matrix (about 15-20
# minutes). --quick: 3 runs of 1 s over the headline cases (about 3 minutes), for checking.
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BENCH=$ROOT/bench
CMDLINE="scripts/bench.sh${*:+ $*}"

RUNS=3
DURATION=2
WARMUP=1
QUICK=0
TEXT=0
IDLE_CONNS=10000
IDLE_CPU_SECS=10
SERVERS=""
OUTBASE=$BENCH/results
SRV_CPU=0      # the CPU the server under test is pinned to
LG_CPUS=1      # the CPUs of the load generator (and wrk)
LG_THREADS=1   # load generator and wrk threads (more only with more CPUs in LG_CPUS)
usage() { sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1 ;;
    --runs) RUNS=$2; shift ;;
    --duration) DURATION=$2; shift ;;
    --warmup) WARMUP=$2; shift ;;
    --text) TEXT=1 ;;
    --idle-conns) IDLE_CONNS=$2; shift ;;
    --idle-cpu-secs) IDLE_CPU_SECS=$2; shift ;;
    --servers) SERVERS=$2; shift ;;
    --out) OUTBASE=$2; shift ;;
    --server-cpu) SRV_CPU=$2; shift ;;
    --loadgen-cpus) LG_CPUS=$2; shift ;;
    --loadgen-threads) LG_THREADS=$2; shift ;;
    -h|--help) usage ;;
    *) echo "bench: unknown option $1" >&2; usage ;;
  esac
  shift
done
if [ "$QUICK" = 1 ]; then
  # explicit options given after --quick still win: only fill what was left at default
  [ "$DURATION" = 2 ] && DURATION=1
  [ "$WARMUP" = 1 ] && WARMUP=0.5
  [ "$IDLE_CPU_SECS" = 10 ] && IDLE_CPU_SECS=4
fi

STAMP=$(date -u +%Y%m%d-%H%M%S)
OUT=$OUTBASE/$STAMP
LOGS=$OUT/logs
mkdir -p "$LOGS"
RAW=$OUT/raw.jsonl
: > "$RAW"
STATUS=$OUT/status.tsv # server-or-tool <TAB> note (why a row is n/a)
: > "$STATUS"

say() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
note() { printf '%s\t%s\n' "$1" "$2" >> "$STATUS"; say "$1: $2"; }

# ---------------------------------------------------------------------------------------
# Processes: every one started is remembered and ended on exit, failure or Ctrl-C.
PIDS=()
cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  sleep 0.2
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
  PIDS=()
}
trap 'cleanup' EXIT
trap 'say "interrupted"; cleanup; exit 130' INT TERM

stop_pid() {
  local p=$1 i
  kill "$p" 2>/dev/null
  for i in $(seq 30); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$p" 2>/dev/null
  wait "$p" 2>/dev/null
  local keep=()
  for i in "${PIDS[@]}"; do [ "$i" != "$p" ] && keep+=("$i"); done
  PIDS=("${keep[@]}")
}

# start_server NAME CPUS CMD... : runs CMD PORT=0 pinned to CPUS; sets SPORT, SPID, SPIDS
# (SPIDS: the worker PIDs a "pids=" listening line names, else SPID). Returns 1 on failure.
start_server() {
  local name=$1 cpus=$2; shift 2
  local out=$LOGS/$name.out err=$LOGS/$name.err i
  : > "$out"
  if [ -n "$cpus" ]; then
    taskset -c "$cpus" "$@" 0 >> "$out" 2>> "$err" &
  else
    "$@" 0 >> "$out" 2>> "$err" &
  fi
  SPID=$!
  PIDS+=("$SPID")
  for i in $(seq 150); do
    grep -q 'listening' "$out" 2>/dev/null && break
    kill -0 "$SPID" 2>/dev/null || break
    sleep 0.1
  done
  SPORT=$(grep -o '127\.0\.0\.1:[0-9]*' "$out" | head -1 | cut -d: -f2)
  if [ -z "$SPORT" ]; then
    note "$name" "did not start: $(tail -c 300 "$err" | tr '\n\t' '  ')"
    stop_pid "$SPID"
    return 1
  fi
  SPIDS=$(grep -o 'pids=[0-9,]*' "$out" | head -1 | cut -d= -f2)
  [ -z "$SPIDS" ] && SPIDS=$SPID
  return 0
}

# CPU seconds (utime+stime) of a process
TCK=$(getconf CLK_TCK)
cpu_of() { sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | awk -v t="$TCK" '{printf "%.3f", ($12+$13)/t}'; }
# CPU seconds on the CPU of all a process's threads, in nanoseconds' resolution (schedstat)
cpu_ns_of() { cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{s+=$1} END{printf "%.6f", s/1e9}'; }

# ---------------------------------------------------------------------------------------
# Build and install (first run installs; later runs reuse).
export PATH=$HOME/.cargo/bin:$PATH
ulimit -n "$(ulimit -Hn)" 2>/dev/null
NOFILE=$(ulimit -n)

need_apt=""
command -v wrk >/dev/null || need_apt="$need_apt wrk"
command -v gnuplot >/dev/null || need_apt="$need_apt gnuplot-nox"
command -v taskset >/dev/null || need_apt="$need_apt util-linux"
command -v node >/dev/null || need_apt="$need_apt nodejs npm"
command -v g++ >/dev/null || need_apt="$need_apt g++"
[ -e /usr/include/zlib.h ] || need_apt="$need_apt zlib1g-dev"
if [ -n "$need_apt" ]; then
  say "installing from Debian:$need_apt"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $need_apt; } \
    > "$LOGS/apt.log" 2>&1 || note apt "apt-get install$need_apt failed (see logs/apt.log)"
fi

say "building the library (make all)"
if ! make --no-print-directory -C "$ROOT" all > "$LOGS/make.log" 2>&1; then
  tail -20 "$LOGS/make.log" >&2
  say "make all failed: nothing to measure"
  exit 1
fi
say "building the load generator and the Rust peers"
if ! (cd "$BENCH/loadgen" && cargo build --release --locked) > "$LOGS/loadgen-build.log" 2>&1; then
  tail -20 "$LOGS/loadgen-build.log" >&2
  say "the load generator did not build"
  exit 1
fi
LOADGEN=$BENCH/loadgen/target/release/loadgen
RUST_PEERS=$BENCH/peers/rust/target/release
(cd "$BENCH/peers/rust" && cargo build --release --locked) > "$LOGS/rust-peers-build.log" 2>&1 ||
  note rust-peers "cargo build failed (see logs/rust-peers-build.log)"
mkdir -p "$BENCH/build"
cc -O2 -g -std=c11 -Wall -Wextra -I"$ROOT/include" -o "$BENCH/build/reuseport_workers" \
  "$BENCH/c/reuseport_workers.c" -L"$ROOT/build" -lwsserver -Wl,-rpath,"$ROOT/build" \
  > "$LOGS/reuseport-build.log" 2>&1 || note reuseport "reuseport_workers did not build"

# Native uWebSockets (the C++ library inside Bun): its sources come from crates.io, in the
# crate libuwebsockets-sys (pinned with its checksum in bench/peers/uws/Cargo.lock; that
# manifest is only fetched, never built). Compiled as uWebSockets' own build does it
# (build.c, uSockets/Makefile: -O3 -flto, no TLS), with zlib for permessage-deflate, but
# for the generic x86-64 target (no -march=native) as this library is built, which also
# lets valgrind run it (scripts/bench-instructions.sh).
UWS_DIR=$BENCH/peers/uws
UWS_BIN=$BENCH/build/uws/uws_echo
build_uws() {
  local meta src obj=$BENCH/build/uws
  (cd "$UWS_DIR" && cargo fetch --locked) || return 1
  meta=$(cd "$UWS_DIR" && cargo metadata --locked --format-version 1) || return 1
  src=$(printf '%s' "$meta" | python3 -c 'import json, os, sys
m = json.load(sys.stdin)
print(next(os.path.dirname(p["manifest_path"]) for p in m["packages"] if p["name"] == "libuwebsockets-sys"))')/uWebSockets
  [ -d "$src/src" ] && [ -d "$src/uSockets/src" ] || return 1
  mkdir -p "$obj" && rm -f "$obj"/*.o &&
    (cd "$obj" && gcc -O3 -flto -DLIBUS_NO_SSL -std=c11 -I"$src/uSockets/src" \
      -c "$src"/uSockets/src/*.c "$src"/uSockets/src/eventing/*.c "$src"/uSockets/src/crypto/*.c) &&
    g++ -O3 -flto -DLIBUS_NO_SSL -std=c++20 -I"$src/src" -I"$src/uSockets/src" \
      -o "$UWS_BIN" "$UWS_DIR/uws_echo.cpp" "$obj"/*.o -lz
}
if [ ! -x "$UWS_BIN" ] || [ "$UWS_DIR/uws_echo.cpp" -nt "$UWS_BIN" ] || [ "$UWS_DIR/Cargo.lock" -nt "$UWS_BIN" ] ||
   [ "$0" -nt "$UWS_BIN" ]; then
  say "building native uWebSockets (sources from crates.io: libuwebsockets-sys)"
  build_uws > "$LOGS/uws-build.log" 2>&1 || { rm -f "$UWS_BIN"; note uws "did not build (see logs/uws-build.log)"; }
fi

NODE_DIR=$BENCH/peers/node
if command -v npm >/dev/null; then
  if [ ! -x "$NODE_DIR/node_modules/bun/bin/bun.exe" ] || [ ! -d "$NODE_DIR/node_modules/ws" ] ||
     [ "$NODE_DIR/package-lock.json" -nt "$NODE_DIR/node_modules/.package-lock.json" ]; then
    say "installing the npm peers (bun, ws, bufferutil)"
    (cd "$NODE_DIR" && npm ci --no-audit --no-fund) > "$LOGS/npm.log" 2>&1 || note npm "npm ci failed (see logs/npm.log)"
  fi
fi
BUN=$NODE_DIR/node_modules/bun/bin/bun.exe
if [ -x "$BUN" ] && ! "$BUN" --version > "$LOGS/bun-version.log" 2>&1; then
  note bun "bun does not run here: $(tail -c 200 "$LOGS/bun-version.log" | tr '\n' ' ')"
fi

PY_DIR=$BENCH/peers/python
PY=$PY_DIR/.venv/bin/python
if [ ! -x "$PY" ] || ! "$PY" -c 'import websockets' 2>/dev/null; then
  say "installing the Python peers (websockets, picows) in a venv"
  { python3 -m venv "$PY_DIR/.venv" &&
    "$PY" -m pip install -q --disable-pip-version-check "$(grep '^websockets==' "$PY_DIR/requirements.txt")"; } \
    > "$LOGS/pip.log" 2>&1 || note python "venv or pip install websockets failed (see logs/pip.log)"
  # picows is optional: a failure to install leaves its rows n/a
  "$PY" -m pip install -q --disable-pip-version-check -r "$PY_DIR/requirements.txt" >> "$LOGS/pip.log" 2>&1 ||
    note picows "pip install picows failed (see logs/pip.log)"
fi

# ---------------------------------------------------------------------------------------
# Servers. Echo: key | label | deflate supported | command (PORT appended).
LUA_ECHO=$ROOT/examples/echo.lua
HAVE_LM=0; [ -f "$ROOT/lua/LibMongoose.lua" ] && HAVE_LM=1
export LUA_PATH="$ROOT/lua/?.lua;;"
declare -A LABEL CMD DEFLATE NA
ECHO_KEYS=(c lua bun uws fastws tungstenite nodews pyws picows ceiling uring)
LABEL[c]="libwsserver C";            CMD[c]="$ROOT/build/examples/ws_echo";        DEFLATE[c]=1
LABEL[lua]="libwsserver LuaJIT";     CMD[lua]="luajit $LUA_ECHO";                  DEFLATE[lua]=1
LABEL[bun]="Bun";                    CMD[bun]="$BUN $NODE_DIR/bun_ws.js";          DEFLATE[bun]=1
LABEL[uws]="uWebSockets (native)";  CMD[uws]="$UWS_BIN";                         DEFLATE[uws]=1
LABEL[fastws]="fastwebsockets";      CMD[fastws]="$RUST_PEERS/fastwebsockets_echo"; DEFLATE[fastws]=0
LABEL[tungstenite]="tokio-tungstenite"; CMD[tungstenite]="$RUST_PEERS/tungstenite_echo"; DEFLATE[tungstenite]=0
LABEL[nodews]="Node ws";             CMD[nodews]="node $NODE_DIR/node_ws.js";      DEFLATE[nodews]=1
LABEL[pyws]="Python websockets";     CMD[pyws]="$PY $PY_DIR/websockets_echo.py";   DEFLATE[pyws]=1
LABEL[picows]="picows";              CMD[picows]="$PY $PY_DIR/picows_echo.py";     DEFLATE[picows]=0
# Not a peer: raw_echo copies the bytes back (no WebSocket work at all), so its row is the
# ceiling of this load generator and loopback on this machine, case by case.
LABEL[ceiling]="ceiling (raw echo)";  CMD[ceiling]="$RUST_PEERS/raw_echo";          DEFLATE[ceiling]=0
# The same over io_uring: what a server with a fraction of the system calls reaches here.
LABEL[uring]="ceiling (io_uring)";    CMD[uring]="$RUST_PEERS/uring_echo";          DEFLATE[uring]=0
[ -f "$LUA_ECHO" ] || NA[lua]="n/a (examples/echo.lua missing)"
[ "$HAVE_LM" = 1 ] || [ -n "${NA[lua]:-}" ] || NA[lua]="n/a (lua/LibMongoose.lua missing)"
[ -x "$BUN" ] || NA[bun]="n/a (npm package bun not installed)"
grep -q '^bun	' "$STATUS" && NA[bun]="n/a (bun does not run here)"
[ -x "$UWS_BIN" ] || NA[uws]="n/a (did not build)"
[ -x "$RUST_PEERS/fastwebsockets_echo" ] || NA[fastws]="n/a (did not build)"
[ -x "$RUST_PEERS/tungstenite_echo" ] || NA[tungstenite]="n/a (did not build)"
[ -x "$RUST_PEERS/raw_echo" ] || NA[ceiling]="n/a (did not build)"
[ -x "$RUST_PEERS/uring_echo" ] || NA[uring]="n/a (did not build)"
[ -d "$NODE_DIR/node_modules/ws" ] && command -v node >/dev/null || NA[nodews]="n/a (ws not installed)"
"$PY" -c 'import websockets' 2>/dev/null || NA[pyws]="n/a (websockets not installed)"
"$PY" -c 'import picows' 2>/dev/null || NA[picows]="n/a (picows not installed)"

# HTTP hello: key | label | command
HTTP_KEYS=(c lua bun uws node)
declare -A HLABEL HCMD HNA
HLABEL[c]="libwsserver C";        HCMD[c]="$ROOT/build/examples/http_hello"
HLABEL[lua]="libwsserver LuaJIT"; HCMD[lua]="luajit $BENCH/lua/hello.lua"
HLABEL[bun]="Bun.serve";          HCMD[bun]="$BUN $NODE_DIR/bun_http.js"
HLABEL[uws]="uWebSockets (native)"; HCMD[uws]="$UWS_BIN"
HLABEL[node]="Node http";         HCMD[node]="node $NODE_DIR/node_http.js"
[ "$HAVE_LM" = 1 ] || HNA[lua]="n/a (lua/LibMongoose.lua missing)"
[ -n "${NA[bun]:-}" ] && HNA[bun]=${NA[bun]}
command -v node >/dev/null || HNA[node]="n/a (node missing)"
[ -n "${NA[uws]:-}" ] && HNA[uws]=${NA[uws]}

if [ -n "$SERVERS" ]; then
  for k in "${ECHO_KEYS[@]}"; do [[ ",$SERVERS," == *",$k,"* ]] || NA[$k]="skipped (--servers)"; done
  for k in "${HTTP_KEYS[@]}"; do [[ ",$SERVERS," == *",$k,"* ]] || HNA[$k]="skipped (--servers)"; done
fi

# Cases: name conns size depth deflate
if [ "$QUICK" = 1 ]; then
  CASES=("100x16B d1 100 16 1 0" "100x4KiB d1 100 4096 1 0" "100x4KiB d1 deflate 100 4096 1 1")
else
  CASES=("100x16B d1 100 16 1 0" "100x16B d16 100 16 16 0"
         "100x4KiB d1 100 4096 1 0" "100x4KiB d16 100 4096 16 0"
         "500x512B d1 500 512 1 0" "500x512B d16 500 512 16 0"
         "10x1MiB d1 10 1048576 1 0" "10x1MiB d16 10 1048576 16 0"
         "100x4KiB d1 deflate 100 4096 1 1" "500x512B d16 deflate 500 512 16 1")
fi
TEXTFLAG=""; [ "$TEXT" = 1 ] && TEXTFLAG="--text"

# ---------------------------------------------------------------------------------------
# The machine and the run
CPU_MODEL=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
{
  printf '{"stamp":"%s","command":"%s","cpu":"%s","cores":%s,"kernel":"%s","mem_gib":%s,' \
    "$STAMP" "$CMDLINE" "$CPU_MODEL" "$(nproc)" "$(uname -r)" "$(awk '/MemTotal/{printf "%.0f", $2/1048576}' /proc/meminfo)"
  printf '"loadavg_start":"%s","runs":%s,"duration_s":%s,"warmup_s":%s,"quick":%s,"text":%s,' \
    "$(cut -d' ' -f1-3 /proc/loadavg)" "$RUNS" "$DURATION" "$WARMUP" "$QUICK" "$TEXT"
  printf '"server_cpu":"%s","loadgen_cpus":"%s","loadgen_threads":%s,' "$SRV_CPU" "$LG_CPUS" "$LG_THREADS"
  printf '"nofile":%s,"idle_conns":%s,"idle_cpu_secs":%s,"git":"%s",' "$NOFILE" "$IDLE_CONNS" "$IDLE_CPU_SECS" \
    "$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null) $(git -C "$ROOT" status --porcelain 2>/dev/null | grep -q . && echo '(modified)')"
  printf '"versions":{"node":"%s","bun":"%s","ws":"%s","python":"%s","websockets":"%s","picows":"%s","luajit":"%s","wrk":"%s","uWebSockets":"%s"}}\n' \
    "$(node --version 2>/dev/null)" "$("$BUN" --version 2>/dev/null)" \
    "$(node -p 'require(process.argv[1]).version' "$NODE_DIR/node_modules/ws/package.json" 2>/dev/null)" \
    "$("$PY" -c 'import sys; print(sys.version.split()[0])' 2>/dev/null)" \
    "$("$PY" -c 'import websockets; print(websockets.__version__)' 2>/dev/null)" \
    "$("$PY" -c 'import importlib.metadata as m; print(m.version("picows"))' 2>/dev/null)" \
    "$(luajit -v 2>/dev/null | cut -d' ' -f2)" "$(wrk --version 2>&1 | head -1 | cut -d' ' -f2)" \
    "$(awk '/^name = "libuwebsockets-sys"/{getline; gsub(/"/, "", $3); print "(sources of libuwebsockets-sys " $3 ")"}' "$UWS_DIR/Cargo.lock" 2>/dev/null)"
} > "$OUT/meta.json"
for k in "${ECHO_KEYS[@]}"; do [ -n "${NA[$k]:-}" ] && printf 'echo:%s\t%s\n' "$k" "${NA[$k]}" >> "$STATUS"; done
for k in "${HTTP_KEYS[@]}"; do [ -n "${HNA[$k]:-}" ] && printf 'http:%s\t%s\n' "$k" "${HNA[$k]}" >> "$STATUS"; done
if [ "$NOFILE" -lt $((IDLE_CONNS + 200)) ]; then
  was=$IDLE_CONNS
  IDLE_CONNS=$((NOFILE - 200))
  note idle "RLIMIT_NOFILE is $NOFILE: idle test at $IDLE_CONNS connections instead of $was"
fi
say "machine: $CPU_MODEL, $(nproc) cores, kernel $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg)"

# record KIND SERVER CASE RUN JSON-OR-EMPTY ERR
record() {
  local r=$5
  [ -z "$r" ] && r=null
  printf '{"kind":"%s","server":"%s","case":"%s","run":%s,"r":%s,"err":"%s"}\n' "$1" "$2" "$3" "$4" "$r" \
    "$(printf '%s' "$6" | tr -d '"\\' | tr '\n\t' '  ' | cut -c1-300)" >> "$RAW"
}

LG_TIMEOUT=$(awk -v w="$WARMUP" -v d="$DURATION" 'BEGIN{printf "%d", w+d+60}')

# ---------------------------------------------------------------------------------------
# The servers in the order of run RUN (1-based): the list rotated by RUN-1 times its
# length over the number of runs, so that over the runs each server is measured early,
# in the middle and late.
rotated() {
  local run=$1; shift
  local n=$# i start
  local -a keys=("$@")
  start=$(( (run - 1) * ((n + RUNS - 1) / RUNS) % n ))
  for ((i = 0; i < n; i++)); do printf '%s ' "${keys[(start + i) % n]}"; done
}

# 1. WebSocket echo: every server stays up (idle while another is measured); runs are
# interleaved (run 1 of every server and case, then run 2, ...) so that drift in a shared
# machine spreads over all rows, and each run starts the order at a different server
# (see rotated), so that no server is always the first after a change of case.
declare -A EPORT EPID
for k in "${ECHO_KEYS[@]}"; do
  [ -n "${NA[$k]:-}" ] && continue
  # shellcheck disable=SC2086
  if start_server "echo-$k" "$SRV_CPU" ${CMD[$k]}; then EPORT[$k]=$SPORT; EPID[$k]=$SPID
  else NA[$k]="n/a (did not start: see logs/echo-$k.err)"; printf 'echo:%s\t%s\n' "$k" "${NA[$k]}" >> "$STATUS"; fi
done
say "echo: ${#EPORT[@]} servers up; ${#CASES[@]} cases x $RUNS runs of ${DURATION}s (+${WARMUP}s warm-up)"
for run in $(seq "$RUNS"); do
  read -ra ORDER <<< "$(rotated "$run" "${ECHO_KEYS[@]}")"
  for c in "${CASES[@]}"; do
    read -r cname1 cname2 rest <<< "$c"
    cname="$cname1 $cname2"
    set -- $rest
    if [ "$1" = deflate ]; then cname="$cname deflate"; shift; fi
    conns=$1 size=$2 depth=$3 defl=$4
    for k in "${ORDER[@]}"; do
      [ -z "${EPORT[$k]:-}" ] && continue
      [ "$defl" = 1 ] && [ "${DEFLATE[$k]}" = 0 ] && continue
      if ! kill -0 "${EPID[$k]}" 2>/dev/null; then
        record echo "$k" "$cname" "$run" "" "server died (see logs/echo-$k.err)"; continue
      fi
      dflag=""; [ "$defl" = 1 ] && dflag="--deflate"
      case $k in ceiling|uring) dflag="--allow-masked" ;; esac
      out=$(timeout --foreground -k 2 "$LG_TIMEOUT" taskset -c "$LG_CPUS" "$LOADGEN" echo --port "${EPORT[$k]}" --conns "$conns" \
        --threads "$LG_THREADS" \
        --size "$size" --depth "$depth" $dflag $TEXTFLAG --warmup "$WARMUP" --duration "$DURATION" \
        --pid "${EPID[$k]}" 2>> "$LOGS/loadgen.err")
      rc=$?
      line=$(printf '%s\n' "$out" | grep '^{' | tail -1)
      err=""; [ $rc -ne 0 ] && err="loadgen exit $rc"
      record echo "$k" "$cname" "$run" "$line" "$err"
      say "echo run $run $cname ${LABEL[$k]}: $(printf '%s' "$line" | grep -o '"msgs_per_s":[0-9.]*' | cut -d: -f2) msgs/s $err"
    done
  done
done
for k in "${!EPID[@]}"; do stop_pid "${EPID[$k]}"; done

# ---------------------------------------------------------------------------------------
# 2. HTTP hello with wrk: 100 keep-alive connections, one thread on CPU 1.
declare -A HPORT HPID
for k in "${HTTP_KEYS[@]}"; do
  [ -n "${HNA[$k]:-}" ] && continue
  # shellcheck disable=SC2086
  if start_server "http-$k" "$SRV_CPU" ${HCMD[$k]}; then HPORT[$k]=$SPORT; HPID[$k]=$SPID
  else HNA[$k]="n/a (did not start)"; printf 'http:%s\t%s\n' "$k" "${HNA[$k]}" >> "$STATUS"; fi
done
say "http: ${#HPORT[@]} servers up"
for run in $(seq "$RUNS"); do
  read -ra ORDER <<< "$(rotated "$run" "${HTTP_KEYS[@]}")"
  for k in "${ORDER[@]}"; do
    [ -z "${HPORT[$k]:-}" ] && continue
    url="http://127.0.0.1:${HPORT[$k]}/"
    taskset -c "$LG_CPUS" wrk -t"$LG_THREADS" -c100 -d"${WARMUP}s" "$url" > /dev/null 2>&1
    c0=$(cpu_of "${HPID[$k]}")
    wout=$(timeout --foreground -k 2 "$LG_TIMEOUT" /usr/bin/time -f 'WRKCPU %U %S %e' taskset -c "$LG_CPUS" wrk -t"$LG_THREADS" -c100 \
      -d"${DURATION}s" --latency "$url" 2>&1)
    c1=$(cpu_of "${HPID[$k]}")
    rps=$(printf '%s\n' "$wout" | awk '/^Requests\/sec/{print $2}')
    p50=$(printf '%s\n' "$wout" | awk '$1=="50%"{print $2}')
    p99=$(printf '%s\n' "$wout" | awk '$1=="99%"{print $2}')
    non2xx=$(printf '%s\n' "$wout" | awk '/Non-2xx/{print $NF}')
    sockerr=$(printf '%s\n' "$wout" | grep -o 'Socket errors:.*')
    wcpu=$(printf '%s\n' "$wout" | awk '/^WRKCPU/{printf "%.3f", ($2+$3)/$4}')
    printf '%s\n' "$wout" >> "$LOGS/wrk.log"
    if [ -z "$rps" ]; then
      record http "$k" "hello" "$run" "" "wrk failed: $(printf '%s' "$wout" | tail -2)"; continue
    fi
    j=$(awk -v rps="$rps" -v c0="$c0" -v c1="$c1" -v d="$DURATION" -v p50="$p50" -v p99="$p99" \
      -v n2="${non2xx:-0}" -v w="${wcpu:-null}" 'function us(s){ if (s ~ /us$/) return s+0; if (s ~ /ms$/) return s*1000; if (s ~ /s$/) return s*1e6; return s+0 }
      BEGIN{ cpu=c1-c0; printf "{\"rps\":%s,\"server_cpu_s\":%.3f,\"server_cpu_per_req_us\":%.3f,\"server_cpu_util\":%.3f,\"lat_p50_us\":%.1f,\"lat_p99_us\":%.1f,\"non2xx\":%d,\"wrk_cpu_util\":%s}", rps, cpu, (rps>0? cpu/(rps*d)*1e6 : 0), cpu/d, us(p50), us(p99), n2, w }')
    err=""; [ -n "$sockerr" ] && err="$sockerr"; [ "${non2xx:-0}" != 0 ] && err="$err non-2xx: $non2xx"
    record http "$k" "hello" "$run" "$j" "$err"
    say "http run $run ${HLABEL[$k]}: $rps req/s $err"
  done
done
for k in "${!HPID[@]}"; do stop_pid "${HPID[$k]}"; done

# ---------------------------------------------------------------------------------------
# 3. Idle connections: a fresh server each, IDLE_CONNS upgraded and held; RSS growth per
# connection and the time to upgrade them all. --runs runs each, interleaved (the time to
# upgrade moves with the machine's load like every other timing).
for run in $(seq "$RUNS"); do
for k in "${ECHO_KEYS[@]}"; do
  [ -n "${NA[$k]:-}" ] && continue
  case $k in ceiling|uring) continue ;; esac
  # shellcheck disable=SC2086
  start_server "idle-$k" "$SRV_CPU" ${CMD[$k]} || { record idle "$k" "$IDLE_CONNS" "$run" "" "did not start"; continue; }
  sleep 0.5
  out=$(timeout --foreground -k 2 120 taskset -c "$LG_CPUS" "$LOADGEN" idle --port "$SPORT" --conns "$IDLE_CONNS" --pid "$SPID" \
    --hold 1 --timeout 60 2>> "$LOGS/loadgen.err")
  rc=$?
  line=$(printf '%s\n' "$out" | grep '^{' | tail -1)
  err=""; [ $rc -ne 0 ] && err="loadgen exit $rc"
  record idle "$k" "$IDLE_CONNS" "$run" "$line" "$err"
  say "idle run $run ${LABEL[$k]}: $(printf '%s' "$line" | grep -o '"rss_per_conn_kib":[0-9.a-z]*' | cut -d: -f2) KiB/conn, $(printf '%s' "$line" | grep -o '"upgrade_s":[0-9.]*' | cut -d: -f2) s $err"
  stop_pid "$SPID"
  sleep 0.5
done
done

# ---------------------------------------------------------------------------------------
# 4. Idle CPU: 100 idle WebSocket connections held for IDLE_CPU_SECS; the server's CPU
# over that time. The luv-attached LuaJIT manager is the row that matters; C is the
# reference.
idle_cpu() { # key label cmd...
  local k=$1 label=$2; shift 2
  start_server "idlecpu-$k" "$SRV_CPU" "$@" || { record idlecpu "$k" "100 idle" 1 "" "did not start"; return; }
  local hold
  hold=$(awk -v s="$IDLE_CPU_SECS" 'BEGIN{print s+3}')
  taskset -c "$LG_CPUS" "$LOADGEN" idle --port "$SPORT" --conns 100 --pid "$SPID" --hold "$hold" --timeout 20 \
    > "$LOGS/idlecpu-$k.json" 2>> "$LOGS/loadgen.err" &
  local lg=$!
  PIDS+=("$lg")
  sleep 2
  local c0 c1
  c0=$(cpu_ns_of "$SPID")
  sleep "$IDLE_CPU_SECS"
  c1=$(cpu_ns_of "$SPID")
  wait "$lg" 2>/dev/null
  local j
  j=$(awk -v a="$c0" -v b="$c1" -v s="$IDLE_CPU_SECS" 'BEGIN{printf "{\"cpu_s\":%.6f,\"secs\":%s,\"cpu_pct\":%.4f}", b-a, s, (b-a)/s*100}')
  record idlecpu "$k" "100 idle" 1 "$j" ""
  say "idle cpu $label: $j"
  stop_pid "$SPID"
}
if [ "$HAVE_LM" = 1 ] && command -v luajit >/dev/null && lua_uv=$(luajit -e 'require("luv")' 2>&1); then
  idle_cpu lua-luv "LuaJIT + luv" luajit "$BENCH/lua/idle_luv.lua"
else
  note idlecpu:lua-luv "n/a (lua/LibMongoose.lua or lua-luv missing)"
fi
[ -z "${NA[c]:-}" ] && idle_cpu c "C" "${CMD[c]}"

# ---------------------------------------------------------------------------------------
# 5. SO_REUSEPORT: 1 and 2 worker processes on one port (bench/c/reuseport_workers.c).
# With 2 cores the load generator cannot have a core of its own when 2 workers run, so
# both configurations run it unpinned with 2 threads; workers are pinned one per core.
if [ -x "$BENCH/build/reuseport_workers" ] && [ -z "${NA[c]:-}" ]; then
  for run in $(seq "$RUNS"); do
    for w in 1 2; do
      cpus=0; [ "$w" = 2 ] && cpus=0,1
      start_server "reuseport-$w" "" "$BENCH/build/reuseport_workers" --workers "$w" --cpus "$cpus" || {
        record reuseport "$w" "ws 100x16B d16" "$run" "" "did not start"; continue; }
      out=$(timeout --foreground -k 2 "$LG_TIMEOUT" "$LOADGEN" echo --port "$SPORT" --conns 100 --size 16 --depth 16 \
        --threads 2 --warmup "$WARMUP" --duration "$DURATION" --pid "$SPIDS" 2>> "$LOGS/loadgen.err")
      rc=$?
      line=$(printf '%s\n' "$out" | grep '^{' | tail -1)
      err=""; [ $rc -ne 0 ] && err="loadgen exit $rc"
      record reuseport "$w" "ws 100x16B d16" "$run" "$line" "$err"
      say "reuseport ws run $run workers $w: $(printf '%s' "$line" | grep -o '"msgs_per_s":[0-9.]*' | cut -d: -f2) msgs/s $err"
      stop_pid "$SPID"
      start_server "reuseport-http-$w" "" "$BENCH/build/reuseport_workers" --http --workers "$w" --cpus "$cpus" || continue
      c0=0; for p in ${SPIDS//,/ }; do c0=$(awk -v a="$c0" -v b="$(cpu_of "$p")" 'BEGIN{print a+b}'); done
      wout=$(timeout --foreground -k 2 "$LG_TIMEOUT" wrk -t2 -c100 -d"${DURATION}s" "http://127.0.0.1:$SPORT/" 2>&1)
      c1=0; for p in ${SPIDS//,/ }; do c1=$(awk -v a="$c1" -v b="$(cpu_of "$p")" 'BEGIN{print a+b}'); done
      rps=$(printf '%s\n' "$wout" | awk '/^Requests\/sec/{print $2}')
      if [ -n "$rps" ]; then
        record reuseport "$w" "http hello" "$run" \
          "$(awk -v r="$rps" -v a="$c0" -v b="$c1" -v d="$DURATION" 'BEGIN{printf "{\"rps\":%s,\"server_cpu_util\":%.3f}", r, (b-a)/d}')" ""
      else
        record reuseport "$w" "http hello" "$run" "" "wrk failed"
      fi
      say "reuseport http run $run workers $w: $rps req/s"
      stop_pid "$SPID"
    done
  done
fi

# ---------------------------------------------------------------------------------------
# Report
cleanup
say "writing the report"
python3 "$BENCH/report.py" "$OUT" || say "report.py failed"
rm -rf "$OUTBASE/latest"
mkdir -p "$OUTBASE/latest"
cp -r "$OUT"/. "$OUTBASE/latest/"
say "results: $OUT/results.md (and bench/results/latest/)"
[ -f "$OUT/results.md" ] && cat "$OUT/results.md"
