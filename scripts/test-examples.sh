#!/usr/bin/env bash
# Runs the C examples as a user would (built by `make`): http_hello over http:// and
# https:// (a certificate made here with openssl), static_server on a directory, ws_echo
# over wss:// (its plain ws:// service is covered by Autobahn and the interop suite).
# Prints "examples: N passed, M failed". Every server it starts is stopped when it exits,
# also on a failed check, an interrupt or SIGTERM; every client has a time limit.
set -uo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done; rm -rf "$tmp"; }
trap cleanup EXIT
trap 'exit 129' HUP; trap 'exit 130' INT; trap 'exit 143' TERM # so that cleanup runs
pass=0; fail=0
check() { # NAME CONDITION-EXIT-STATUS
  if [ "$2" = 0 ]; then pass=$((pass+1)); echo "ok   $1"; else fail=$((fail+1)); echo "FAIL $1"; fi
}
run() { # NAME PROGRAM ARGS... ; sets $port from the program's first line. Not to be
  # called in $(...): the pid must reach this shell's $pids, or cleanup cannot stop it.
  local name=$1; shift; "$@" >"$tmp/$name.log" 2>&1 & pids+=($!); port="";
  for _ in $(seq 100); do port=$(grep -o ':[0-9]*$' "$tmp/$name.log" 2>/dev/null | head -1 | tr -d :); [ -n "$port" ] && return 0; sleep 0.05; done
  echo "$name did not start:"; cat "$tmp/$name.log"; return 1; }

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=localhost \
  -addext subjectAltName=DNS:localhost,IP:127.0.0.1 -keyout "$tmp/key.pem" -out "$tmp/cert.pem" >/dev/null 2>&1

run hello build/examples/http_hello 0
body=$(curl -s --max-time 5 "http://127.0.0.1:$port/x")
[ "$body" = "Hello, world!" ]; check "http_hello over http://" $?

run hello_tls build/examples/http_hello 0 --tls "$tmp/cert.pem" "$tmp/key.pem"
out=$(curl -s -v --max-time 5 --cacert "$tmp/cert.pem" "https://localhost:$port/a" "https://localhost:$port/b" 2>&1)
[ "$(grep -c 'Hello, world!' <<<"$out")" = 2 ]; check "http_hello --tls over https://, two requests" $?
grep -q "Re-using existing connection" <<<"$out"; check "http_hello --tls keeps the connection alive" $?

timeout 10 build/examples/http_hello 0 --tls 2>/dev/null; [ $? = 2 ]; check "http_hello with a bad command line exits 2" $?

mkdir -p "$tmp/www/sub"; echo "<p>home</p>" >"$tmp/www/index.html"; echo "deep" >"$tmp/www/sub/f.txt"
echo "secret" >"$tmp/secret.txt"
run static build/examples/static_server 0 "$tmp/www"
[ "$(curl -s --max-time 5 "http://127.0.0.1:$port/")" = "<p>home</p>" ]; check "static_server serves index.html" $?
[ "$(curl -s --max-time 5 --range 1-2 "http://127.0.0.1:$port/sub/f.txt")" = "ee" ]; check "static_server serves a range" $?
code=$(curl -s -o /dev/null -w '%{http_code}' --path-as-is --max-time 5 "http://127.0.0.1:$port/../secret.txt")
[ "$code" = 403 ] || [ "$code" = 404 ]; check "static_server keeps to its root ($code)" $?

run echo_tls build/examples/ws_echo 0 --tls "$tmp/cert.pem" "$tmp/key.pem"
py=$(command -v python3)
[ -x build/venv/bin/python ] && py=build/venv/bin/python
if "$py" -c 'import websockets' 2>/dev/null; then
  timeout 60 "$py" - "$port" "$tmp/cert.pem" <<'PY'
import asyncio, ssl, sys
import websockets
async def main():
    ctx = ssl.create_default_context(cafile=sys.argv[2])
    async with websockets.connect(f"wss://localhost:{sys.argv[1]}/any", ssl=ctx, max_size=None) as ws:
        for msg in ["hi", b"\x00\x01" * 40000]:
            await ws.send(msg)
            assert await ws.recv() == msg
asyncio.run(main())
PY
  check "ws_echo --tls echoes over wss:// (Python websockets)" $?
else
  echo "FAIL ws_echo --tls: no Python websockets (scripts/test-interop.sh makes build/venv)"; fail=$((fail+1))
fi
echo "examples: $pass passed, $fail failed"
[ "$fail" = 0 ]
