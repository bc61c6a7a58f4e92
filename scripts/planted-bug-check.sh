#!/usr/bin/env bash
# Proves that exploration and shrinking work (issue "deterministic simulation
# engine"): explore the planted-bug fixture until it reports a failing seed,
# shrink that seed to a minimal schedule, and replay the shrunk file, which
# must still fail (exit 1).
#
# usage: scripts/planted-bug-check.sh [MESHSIM] [SEEDS] [OUT_DIR]
set -euo pipefail
meshsim=${1:-target/release/meshsim}
seeds=${2:-1..12}
out=${3:-results/ci/planted-bug}
fixture=scenarios/fixtures/planted-bug.toml
mkdir -p "$out"

set +e
"$meshsim" explore "$fixture" --seeds "$seeds" --out "$out/explore" | tee "$out/explore.txt"
explore_exit=${PIPESTATUS[0]}
set -e
if [[ $explore_exit -ne 1 ]]; then
  echo "planted-bug: explore exited $explore_exit; expected 1 (failing seeds found)" >&2
  exit 1
fi
seed=$(grep -m1 -o '^FAIL seed=[0-9]*' "$out/explore.txt" | cut -d= -f2)
echo "planted-bug: shrinking failing seed $seed"
"$meshsim" shrink "$fixture" --seed "$seed" --out "$out/shrunk.toml"

# The shrunk schedule: each [[faults]] entry with a duration is two actions
# (the fault and its undo).
entries=$(grep -c '^\[\[faults\]\]' "$out/shrunk.toml" || true)
timed=$(awk '/^\[\[faults\]\]/{f=1;next} /^\[/{f=0} f&&/^duration *=/{n++} END{print n+0}' "$out/shrunk.toml")
actions=$((entries + timed))
echo "planted-bug: shrunk schedule has $actions fault action(s)"
if [[ $actions -gt 2 ]]; then
  echo "planted-bug: expected at most 2 fault actions" >&2
  exit 1
fi

set +e
"$meshsim" run "$out/shrunk.toml" --out "$out/shrunk-run" > "$out/shrunk-run.txt"
replay_exit=$?
set -e
if [[ $replay_exit -ne 1 ]]; then
  echo "planted-bug: the shrunk file exited $replay_exit under meshsim run; expected 1" >&2
  exit 1
fi
echo "planted-bug: ok (seed $seed, $actions action(s), the shrunk file fails under meshsim run)"
