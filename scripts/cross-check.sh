#!/usr/bin/env bash
# The turmoil cross-check: every library scenario, already run on the event
# world by scripts/library-check.sh into OUT/<name>/, runs again on turmoil
# (1 ms tick, same seed) into OUT/turmoil/<name>/, and
# scripts/cross_check.py compares the two summaries (same verdicts, same
# requests, latencies within turmoil's tick quantization).
#
# usage: scripts/cross-check.sh [MESHSIM] [OUT_DIR] [JOBS] [SKIP…]
# SKIP names scenarios left out (rec-peak on turmoil at 1 ms costs about
# 400 CPU seconds; BENCHMARKS.md "Event world vs turmoil" has its figures).
set -euo pipefail
meshsim=${1:-target/release/meshsim}
out=${2:-results/ci}
jobs=${3:-2}
shift $(($# < 3 ? $# : 3))
skip=" $* "
mkdir -p "$out/turmoil"

check_one() {
  local meshsim=$1 out=$2 scenario=$3
  local name
  name=$(basename "$scenario" .toml)
  if "$meshsim" run "$scenario" --set sim.network=turmoil --out "$out/turmoil/$name" \
    > "$out/turmoil/$name.log" 2>&1 || [[ $? == 1 ]]; then
    python3 scripts/cross_check.py "$out/$name/summary.json" "$out/turmoil/$name/summary.json"
  else
    echo "CROSS-CHECK FAILED $name: the turmoil run did not complete"
    cat "$out/turmoil/$name.log"
    return 1
  fi
}
export -f check_one

scenarios=()
for scenario in scenarios/library/*.toml; do
  [[ $skip == *" $(basename "$scenario" .toml) "* ]] || scenarios+=("$scenario")
done
if printf '%s\n' "${scenarios[@]}" |
  xargs -P "$jobs" -I{} bash -c 'check_one "$@"' _ "$meshsim" "$out" {}; then
  echo "cross-check: every scenario agrees on both simulated networks"
else
  echo "cross-check: the networks disagree (see CROSS-CHECK FAILED above)" >&2
  exit 1
fi
