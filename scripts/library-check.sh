#!/usr/bin/env bash
# Every library scenario: validate, run (must pass), parse its junit.xml with
# an XML parser, then replay it against
# the trace hash the run recorded (determinism). Two scenarios at a time:
# each simulation is single-threaded. Each scenario's output goes to
# OUT/<name>.log and is printed when it finishes.
#
# usage: scripts/library-check.sh [MESHSIM] [OUT_DIR] [JOBS]
set -euo pipefail
meshsim=${1:-target/release/meshsim}
out=${2:-results/ci}
jobs=${3:-2}
mkdir -p "$out"

check_one() {
  local meshsim=$1 out=$2 scenario=$3
  local name
  name=$(basename "$scenario" .toml)
  local started=$SECONDS
  if {
    "$meshsim" validate "$scenario" &&
      "$meshsim" run "$scenario" --out "$out/$name" &&
      python3 -c 'import sys, xml.etree.ElementTree as ET; cases = ET.parse(sys.argv[1]).getroot().iter("testcase"); print("junit.xml parses:", sum(1 for _ in cases), "testcases")' "$out/$name/junit.xml" &&
      "$meshsim" check-determinism "$scenario" --against "$out/$name"
  } > "$out/$name.log" 2>&1; then
    status=ok
  else
    status=FAILED
  fi
  {
    printf '\n==> %s: %s (%ss wall)\n' "$name" "$status" $((SECONDS - started))
    cat "$out/$name.log"
  }
  [[ $status == ok ]]
}
export -f check_one

if ls scenarios/library/*.toml |
  xargs -P "$jobs" -I{} bash -c 'check_one "$@"' _ "$meshsim" "$out" {}; then
  echo "library: every scenario passed and replayed identically"
else
  echo "library: some scenario failed (see FAILED above)" >&2
  exit 1
fi
