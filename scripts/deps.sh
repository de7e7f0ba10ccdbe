#!/bin/sh
# Installs what building and testing need, when it is missing (Debian, as root or with sudo).
set -e
need=""
have() { command -v "$1" >/dev/null 2>&1; }
pkg() { dpkg -s "$1" >/dev/null 2>&1 || need="$need $1"; }
have cc || need="$need gcc"
have make || need="$need make"
have pkg-config || need="$need pkg-config"
have curl || need="$need curl"
have openssl || need="$need openssl"
have valgrind || need="$need valgrind"
have luajit || need="$need luajit"
pkg libluajit-5.1-dev
pkg lua-busted
pkg lua-luv
pkg lua-cjson
have python3 || need="$need python3"
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need="$need python3-venv"
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
