#!/usr/bin/env bash
# The processes a test run left behind, listed and ended; scripts/test.sh runs it last.
#
#   env -u WSS_TEST_RUN -u WSS_TEST_SUITE scripts/test-leftovers.sh TOKEN
#
# scripts/test.sh exports WSS_TEST_RUN=TOKEN (a new token per run) and, while a suite
# runs, WSS_TEST_SUITE=NAME. Every program a suite starts inherits both, and keeps them
# when its parent dies and it is re-parented: a leaked server no longer descends from the
# test script, so walking the process tree would miss exactly the processes this is
# for, while /proc/PID/environ still names the run and the suite. (A program that
# replaced its whole environment would escape; nothing the suites start does.) This
# script must run without WSS_TEST_RUN itself, or it would find itself and its helpers.
#
# It waits up to 3 s for processes that are still exiting (a server stopped at the end
# of its suite), then prints each one still running with its suite and command line,
# ends them (SIGTERM, SIGKILL after 2 s) and fails.
# Prints "leftovers: N passed, M failed" (1 passed when nothing was left running).
set -uo pipefail
token=${1:?usage: scripts/test-leftovers.sh TOKEN}
if [ -n "${WSS_TEST_RUN:-}" ]; then
  echo "leftovers: run with WSS_TEST_RUN removed from the environment (env -u WSS_TEST_RUN)"
  exit 2
fi

ours() { # the pids of the live processes whose environment carries the token
  local d
  for d in /proc/[0-9]*; do
    [ "${d#/proc/}" = $$ ] && continue
    # Zombies and other users' processes have no readable environment: not counted.
    grep -qsxzF "WSS_TEST_RUN=$token" "$d/environ" && echo "${d#/proc/}"
  done
}

describe() { # PID: one line with the suite that started it and its command line
  local p=$1 suite cmd
  suite=$(grep -sz '^WSS_TEST_SUITE=' "/proc/$p/environ" | tr -d '\0')
  cmd=$(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null)
  echo "  pid $p, suite ${suite#WSS_TEST_SUITE=}: ${cmd:-(exited)}"
}

left=()
for _ in 1 2 3 4 5 6; do
  mapfile -t left < <(ours)
  [ ${#left[@]} -eq 0 ] && break
  sleep 0.5
done
if [ ${#left[@]} -eq 0 ]; then
  echo "leftovers: 1 passed, 0 failed (no process of this run is still running)"
  exit 0
fi

echo "still running after the suite that started them ended:"
for p in "${left[@]}"; do describe "$p"; done
kill -TERM "${left[@]}" 2>/dev/null
for _ in $(seq 20); do
  mapfile -t still < <(ours)
  [ ${#still[@]} -eq 0 ] && break
  sleep 0.1
done
[ ${#still[@]} -eq 0 ] || kill -KILL "${still[@]}" 2>/dev/null
echo "leftovers: 0 passed, 1 failed (${#left[@]} process(es) left running; ended now)"
exit 1
