#!/usr/bin/env bash
# Runs every fuzz target for SECONDS seconds each (default 30), seeded from the
# committed corpora in fuzz/corpus/ (new inputs go to build/fuzz-corpus/, not into git).
# A crash leaves its input in fuzz/artifacts/TARGET/ and fails the run: turn it into a
# regression test (tests/fuzz_regressions.rs), then commit the input to fuzz/corpus/.
#   scripts/fuzz.sh            # every target, 30 s each (the test command's smoke run)
#   scripts/fuzz.sh 3600 http_request   # a long run of one target
set -uo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
SECONDS_EACH="${1:-30}"; shift || true
command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz >/dev/null 2>&1 || {
  echo "fuzz: cannot install cargo-fuzz"; echo "fuzz: 0 passed, 1 failed"; exit 1; }
cd fuzz
targets=("$@")
[ ${#targets[@]} -gt 0 ] || mapfile -t targets < <(RUSTC_BOOTSTRAP=1 cargo fuzz list)
# cargo-fuzz needs nightly flags (-Zsanitizer); RUSTC_BOOTSTRAP lets stable accept them.
export RUSTC_BOOTSTRAP=1
cargo fuzz build -O >/dev/null 2>&1 || cargo fuzz build -O || { echo "fuzz: 0 passed, 1 failed"; exit 1; }
pass=0; fail=0
for t in "${targets[@]}"; do
  work="../build/fuzz-corpus/$t"
  mkdir -p "$work"
  if cargo fuzz run -O "$t" "$work" "corpus/$t" -- -max_total_time="$SECONDS_EACH" -rss_limit_mb=2048 \
       >"../build/fuzz-$t.log" 2>&1; then
    pass=$((pass+1))
    echo "fuzz $t: ok ($(grep -o 'Done [0-9]* runs' "../build/fuzz-$t.log" | tail -1))"
  else
    fail=$((fail+1))
    echo "fuzz $t: FAILED"; tail -30 "../build/fuzz-$t.log"
  fi
done
echo "fuzz: $pass passed, $fail failed"
[ "$fail" = 0 ]
