#!/usr/bin/env bash
# Installs the rock from this checkout into a temporary tree with Debian's luarocks
# (offline: no dependency is fetched), then uses it from a directory outside the
# checkout: the modules and the library must come from the tree.
# Prints "rockspec: N passed, M failed".
set -uo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
tree=$(mktemp -d)
trap 'rm -rf "$tree"' EXIT
n=0 f=0
check() { if "$@"; then n=$((n+1)); else f=$((f+1)); echo "FAILED: $*"; fi; }

if luarocks --lua-version=5.1 make --tree="$tree" wsserver-scm-1.rockspec > "$tree/make.log" 2>&1; then
  n=$((n+1))
else
  f=$((f+1)); cat "$tree/make.log"
fi
check test -f "$tree/share/lua/5.1/LibMongoose.lua"
# every module of the LibMongoose package (the rockspec lists each one by hand)
for m in lua/LibMongoose/*.lua; do check test -f "$tree/share/lua/5.1/LibMongoose/${m##*/}"; done
check test -f "$tree/share/lua/5.1/mongoose.lua"
check test -f "$tree/share/lua/5.1/wsserver_cdefs.lua"
check test -f "$tree/lib/lua/5.1/libwsserver.so"

# From /: no project directory nearby, no WSSERVER_LIB; only the tree on the paths.
out=$(cd / && env -u WSSERVER_LIB LUA_PATH="$tree/share/lua/5.1/?.lua;;" LUA_CPATH="$tree/lib/lua/5.1/?.so;;" luajit -e '
  local lm = require("LibMongoose")
  local mg = require("mongoose")
  local mgr = assert(lm.new())
  local l = assert(mgr:listen("http://127.0.0.1:0", { http = function(req, res) res:text("rock " .. req.path) end }))
  local got
  assert(mgr:connect("tcp://127.0.0.1:" .. l:port(), {
    connect = function(c) c:send("GET /ok HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n") end,
    read = function(_, d) got = (got or "") .. d end,
  }))
  for _ = 1, 400 do mgr:poll(5) if got and got:find("rock /ok", 1, true) then break end end
  print(mg.path)
  print(got and got:match("rock /ok") or "no answer")
' 2>&1)
echo "$out"
check grep -q "^$tree/share/lua/5.1/../../../lib/lua/5.1/libwsserver.so$" <<<"$out"
check grep -q "^rock /ok$" <<<"$out"
echo "rockspec: $n passed, $f failed"
[ "$f" = 0 ]
