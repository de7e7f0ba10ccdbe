#!/usr/bin/env bash
# Runs the Autobahn|Testsuite fuzzingclient against build/examples/ws_echo when the
# shared runner (../shared/autobahn, not part of this project) is present; otherwise
# says so and succeeds. Every case must be OK or INFORMATIONAL, in behaviour and in
# closing behaviour. Prints "autobahn: N passed, M failed".
#   scripts/autobahn.sh            cases 1.*-10.* and a permessage-deflate selection
#   scripts/autobahn.sh all        every case, 12.* and 13.* in full (~15-25 min)
set -uo pipefail
cd "$(dirname "$0")/.."
RUNNER="${AUTOBAHN_DIR:-../shared/autobahn}"
if [ ! -x "$RUNNER/run.sh" ]; then
  echo "autobahn: skipped ($RUNNER not found; the project's own conformance tests ran)"
  exit 0
fi
export AB_HOME="${AB_HOME:-$PWD/build/autobahn}"
if [ ! -x "$AB_HOME/venv/bin/wstest" ]; then
  "$RUNNER/install.sh" >build/autobahn-install.log 2>&1 || {
    tail -20 build/autobahn-install.log; echo "autobahn: 0 passed, 1 failed (install)"; exit 1; }
fi
[ -x build/examples/ws_echo ] || make --no-print-directory all >/dev/null || exit 1
OUT=build/autobahn-report
rm -rf "$OUT"; mkdir -p "$OUT"
build/examples/ws_echo 0 >"$OUT/server.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null' EXIT
trap 'exit 129' HUP; trap 'exit 130' INT; trap 'exit 143' TERM # so that the server is stopped
port=""
for _ in $(seq 50); do
  port=$(grep -o '[0-9]*$' "$OUT/server.log" 2>/dev/null | head -1)
  [ -n "$port" ] && break
  sleep 0.1
done
[ -n "$port" ] || { echo "ws_echo did not start"; echo "autobahn: 0 passed, 1 failed"; exit 1; }
status=0
run_cases() { # OUTDIR CASES
  "$RUNNER/run.sh" 127.0.0.1 "$port" "$1" "$2" || status=1
}
if [ "${1:-}" = all ]; then
  run_cases "$OUT/all" all
else
  run_cases "$OUT/core" "*"
  # One or more cases per permessage-deflate configuration (the full 12.*/13.* set
  # takes 15-25 minutes; `scripts/autobahn.sh all` runs it).
  run_cases "$OUT/deflate" "12.1.*,13.1.*,13.2.*,13.3.1,13.3.8,13.4.1,13.4.8,13.5.1,13.5.8,13.6.1,13.6.8,13.7.1,13.7.8"
fi
python3 - "$OUT" <<'PY' || status=1
import glob, json, sys
ok = bad = 0
for idx in glob.glob(sys.argv[1] + "/*/index.json"):
    for agent in json.load(open(idx)).values():
        for case, r in agent.items():
            good = {"OK", "INFORMATIONAL"}
            if r["behavior"] in good and r["behaviorClose"] in good:
                ok += 1
            else:
                bad += 1
                print(f"  {case}: {r['behavior']} / close {r['behaviorClose']}")
print(f"autobahn: {ok} passed, {bad} failed")
sys.exit(1 if bad or not ok else 0)
PY
exit $status
