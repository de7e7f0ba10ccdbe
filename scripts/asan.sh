#!/usr/bin/env bash
# AddressSanitizer run: the library built with -Zsanitizer=address (stable rustc with
# RUSTC_BOOTSTRAP), the C API test and the busted suite run with clang's ASan runtime
# preloaded (the programs themselves are not instrumented; the library is).
# Prints "asan: N passed, M failed".
set -uo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
rt=$(ls /usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.asan-x86_64.so 2>/dev/null | sort -V | tail -1)
if [ -z "$rt" ]; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq libclang-rt-22-dev >/dev/null 2>&1
  rt=$(ls /usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.asan-x86_64.so 2>/dev/null | sort -V | tail -1)
fi
[ -n "$rt" ] || { echo "asan: no libclang_rt.asan runtime (apt-get install libclang-rt-22-dev)"; echo "asan: 0 passed, 1 failed"; exit 1; }
target=x86_64-unknown-linux-gnu
dir=target/asan
RUSTC_BOOTSTRAP=1 RUSTFLAGS="-Zsanitizer=address" CARGO_TARGET_DIR="$dir" \
  cargo build --locked --target "$target" --lib -q || { echo "asan: 0 passed, 1 failed (build)"; exit 1; }
lib="$PWD/$dir/$target/debug/libwsserver.so"
mkdir -p build/asan
cp -f "$lib" build/asan/libwsserver.so.tmp && mv -f build/asan/libwsserver.so.tmp build/asan/libwsserver.so
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=0:exitcode=23"
pass=0; fail=0
for t in api_test misuse_test robustness_test; do
  cc -std=c11 -g -Iinclude -o "build/asan/$t" "tests/c/$t.c" -Lbuild/asan -lwsserver -lpthread \
     -Wl,--allow-shlib-undefined -Wl,-rpath,"$PWD/build/asan"
  if LD_PRELOAD="$rt" "build/asan/$t"; then pass=$((pass+1)); else fail=$((fail+1)); echo "asan: C $t failed"; fi
done
if command -v luajit >/dev/null; then
  # The busted specs, minus the browser and CPU-time ones (as under valgrind). Python
  # websockets from the Lua suite's venv when it exists.
  [ -x build/lua-venv/bin/python ] && export LM_PYTHON="$PWD/build/lua-venv/bin/python"
  if LD_PRELOAD="$rt" WSSERVER_LIB="$PWD/build/asan/libwsserver.so" \
       luajit /usr/bin/busted --ignore-lua --lpath='tests/lua/?.lua' -o tests/lua/count_handler.lua \
       --exclude-tags=browser,cpu tests/lua; then
    pass=$((pass+1))
  else
    fail=$((fail+1)); echo "asan: busted failed"
  fi
fi
echo "asan: $pass passed, $fail failed"
[ "$fail" = 0 ]
