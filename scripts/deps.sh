#!/bin/sh
# Installs what building needs, when it is missing (Debian, as root or with sudo);
# with --test, also what the test suites need (valgrind, Chromium, luarocks, clang's
# sanitizer runtime, Python venv, redis-server for the broker tests).
set -e
tests=false
[ "${1:-}" = "--test" ] && tests=true
need=""
have() { command -v "$1" >/dev/null 2>&1; }
pkg() { dpkg -s "$1" >/dev/null 2>&1 || need="$need $1"; }
have cc || need="$need gcc"
have make || need="$need make"
have pkg-config || need="$need pkg-config"
have curl || need="$need curl"
have openssl || need="$need openssl"
have luajit || need="$need luajit"
pkg libluajit-5.1-dev
pkg lua-luv
pkg lua-cjson
if $tests; then
  have valgrind || need="$need valgrind"
  pkg lua-busted
  pkg luarocks
  have chromium || need="$need chromium"
  pkg libclang-rt-22-dev
  have python3 || need="$need python3"
  python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need="$need python3-venv"
  have redis-server || need="$need redis-server"
fi
if [ -n "$need" ]; then
  echo "deps: installing$need"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $need >/dev/null
fi
# Rust: the Makefile puts ~/.cargo/bin on PATH, where rustup installs it.
if ! have cargo && [ ! -x "$HOME/.cargo/bin/cargo" ]; then
  echo "deps: installing Rust with rustup" >&2
  curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal --component clippy,rustfmt >/dev/null
fi
