#!/usr/bin/env bash
# Runs every Lua suite of libwsserver; scripts/test.sh calls it.
#
#   scripts/test-lua.sh            all suites
#   scripts/test-lua.sh busted     one suite: busted valgrind browser docs rockspec
#
# Suites:
#   busted     the busted specs under LuaJIT (tests/lua/*_spec.lua), real sockets on
#              127.0.0.1; clients: the library's own, curl, openssl, luv, Python websockets
#   valgrind   the same specs under valgrind: no error, no definite leak (ring's AES-GCM
#              assembly false positives are suppressed: scripts/valgrind-supp.sh); the
#              CPU-time check is left out (valgrind inflates CPU time)
#   browser    headless Chromium chats through examples/chat.lua
#   docs       every public function has its heading in docs/lua-api.md
#   rockspec   luarocks make into a temporary tree, then use the installed rock
#
# Each suite prints a count line ("busted: N passed, N failed, N skipped" and alike);
# the script ends with one line per suite and exits non-zero if any failed.
set -uo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

results=()
status=0
run() { # run NAME COMMAND...
  local name="$1"; shift
  echo
  echo "=== lua $name"
  local t0=$SECONDS
  if "$@"; then
    results+=("ok    lua $name ($((SECONDS - t0)) s)")
  else
    results+=("FAIL  lua $name ($((SECONDS - t0)) s)")
    status=1
  fi
}

# The library under test: the release build of this checkout (a no-op when fresh).
if [ -z "${WSSERVER_LIB:-}" ]; then
  cargo build --release --locked --quiet || { echo "lua: cargo build failed"; exit 1; }
  export WSSERVER_LIB="$PWD/target/release/libwsserver.so"
fi
echo "lua: testing $WSSERVER_LIB"

BUSTED=$(command -v busted || echo /usr/bin/busted)
busted_cmd=(luajit "$BUSTED" --ignore-lua --lpath='tests/lua/?.lua' -o tests/lua/count_handler.lua)

# Python websockets, an independent WebSocket peer, in a venv under build/ (made once).
venv=${LM_VENV:-build/lua-venv}
if [ -z "${LM_PYTHON:-}" ]; then
  if ! "$venv/bin/python" -c 'import websockets' 2>/dev/null; then
    echo "lua: creating $venv with websockets"
    mkdir -p "$(dirname "$venv")"
    python3 -m venv "$venv" && "$venv/bin/pip" install -q websockets || echo "lua: no Python websockets: those specs will be skipped"
  fi
  if "$venv/bin/python" -c 'import websockets' 2>/dev/null; then export LM_PYTHON="$PWD/$venv/bin/python"; fi
fi

suite_busted() {
  "${busted_cmd[@]}" --exclude-tags=browser tests/lua
}

suite_valgrind() {
  mkdir -p build && scripts/valgrind-supp.sh > build/valgrind-ring.supp || return 1
  valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite \
    --suppressions=build/valgrind-ring.supp \
    "${busted_cmd[@]}" --exclude-tags=browser,cpu tests/lua
}

suite_browser() {
  if ! command -v chromium >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      echo "lua: installing chromium"
      DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null || true
    fi
  fi
  "${busted_cmd[@]}" --tags=browser tests/lua
}

suite_docs() {
  luajit tests/lua/docscov.lua
}

suite_rockspec() {
  tests/lua/rockspec_test.sh
}

suites=("$@")
[ ${#suites[@]} -eq 0 ] && suites=(busted valgrind browser docs rockspec)
for s in "${suites[@]}"; do
  case "$s" in
    busted|valgrind|browser|docs|rockspec) run "$s" "suite_$s" ;;
    *) echo "unknown suite: $s"; exit 2 ;;
  esac
done

echo
echo "=== lua summary"
printf '%s\n' "${results[@]}"
exit $status
