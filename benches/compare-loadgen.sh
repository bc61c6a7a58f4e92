#!/usr/bin/env bash
# `meshsim load` against wrk and hey on the same nginx static target
# (one worker, pinned to CPU 1); each load generator pinned to CPU 0.
# Reports each tool's maximum rate with 64 connections, and the latency at
# a low fixed load where all three should agree (1 connection, closed loop
# for wrk and hey; 500 rps constant for meshsim load, whose "service" time
# is measured from the actual send like theirs). Also reports each tool's
# CPU time (user + system, /usr/bin/time) per request at its maximum rate.
#
# Usage: [ROUNDS=3] benches/compare-loadgen.sh [DURATION_S]   (needs a release build)
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-10}
MESHSIM=${MESHSIM:-target/release/meshsim}
WORK=$(mktemp -d /tmp/compare-loadgen.XXXXXX)
# Below the kernel's ephemeral range (32768-60999): a port in it can be held
# by some connection's TIME_WAIT, and nginx then cannot bind it.
URL=http://127.0.0.1:19080/

. benches/compare/install.sh
install_missing nginx wrk hey
[ -x "$MESHSIM" ] || cargo build --release -p cli

cat >"$WORK/nginx.conf" <<CONF
worker_processes 1;
pid $WORK/nginx.pid;
error_log $WORK/nginx.err warn;
events { worker_connections 4096; }
http { access_log off; server { listen 127.0.0.1:19080; keepalive_requests 1000000; location / { return 200 'ok\n'; } } }
CONF
taskset -c 1 nginx -p "$WORK" -c "$WORK/nginx.conf"
trap 'nginx -p "$WORK" -c "$WORK/nginx.conf" -s quit 2>/dev/null || true' EXIT
sleep 0.5

ms() { # wrk/hey time with unit -> ms
  python3 -c "import re,sys;v=sys.argv[1];m=re.match(r'([0-9.]+)(us|ms|s)?',v);n=float(m.group(1));u=m.group(2) or 's';print(round(n*{'us':0.001,'ms':1,'s':1000}[u],3))" "$1"
}
# CPU µs per request: user + system seconds in $WORK/time, over $1 requests.
cpu_us() { python3 -c "u,s=open('$WORK/time').read().split()[-2:];print(round((float(u)+float(s))*1e6/max($1,1),2))"; }
timed() { /usr/bin/time -f "%U %S" -o "$WORK/time" "$@"; }
wrk_run() { # connections -> "rps p50 p99 cpu_us_per_request"
  local out; out=$(timed taskset -c 0 wrk -t1 -c"$1" -d"${DURATION}s" --latency "$URL")
  local n; n=$(echo "$out" | awk '/ requests in /{print $1}')
  echo "$(echo "$out" | awk '/Requests\/sec/{print $2}') $(ms "$(echo "$out" | awk '$1=="50%"{print $2}')") $(ms "$(echo "$out" | awk '$1=="99%"{print $2}')") $(cpu_us "$n")"
}
hey_run() { # connections -> "rps p50 p99 cpu_us_per_request"
  local out; out=$(timed taskset -c 0 hey -z "${DURATION}s" -c "$1" "$URL")
  local n; n=$(echo "$out" | awk '/\[[0-9]+\][ \t]+[0-9]+ responses/{n += $2} END{print n + 0}')
  echo "$(echo "$out" | awk '/Requests\/sec/{print $2}') $(echo "$out" | awk '/ 50% in/{print $3 * 1000}') $(echo "$out" | awk '/ 99% in/{print $3 * 1000}') $(cpu_us "$n")"
}
meshsim_run() { # rate connections [extra flags] -> "achieved p50 p99 (service time) cpu_us_per_request"
  local rate=$1 conns=$2; shift 2
  local out; out=$(timed taskset -c 0 "$MESHSIM" load "$URL" --rate "$rate" --duration "${DURATION}s" --connections "$conns" "$@" --out "$WORK/load" 2>&1 || true)
  local ok; ok=$(python3 -c "import json;print(json.load(open('$WORK/load/summary.json'))['requests']['ok'])")
  local service; service=$(echo "$out" | awk '$1=="service"{print $3, $5}' | tr -d 'ms')
  local intended; intended=$(echo "$out" | awk '$1=="latency"{print $3, $7}' | tr -d 'ms')
  echo "$(python3 -c "print(round($ok / $DURATION))") $service $(cpu_us "$ok") $intended"
}

# The maximum rates, in ROUNDS alternating rounds (wrk then meshsim load,
# then the other way round): on a shared machine the rate one tool gets
# drifts by 20 % within minutes, and a single back-to-back pair measured
# the drift as often as the tools. Each tool's row is its median round (by
# rate); every round's ratio is printed below the table.
# Open loop for meshsim load: offer far more than one core can send; what
# is achieved is the max.
ROUNDS=${ROUNDS:-3}
: >"$WORK/rounds"
for round in $(seq "$ROUNDS"); do
  if [ $((round % 2)) -eq 1 ]; then
    wrk=$(wrk_run 64); mesh=$(meshsim_run 200000 64)
  else
    mesh=$(meshsim_run 200000 64); wrk=$(wrk_run 64)
  fi
  echo "$wrk | $mesh" >>"$WORK/rounds"
done
median_round() { # column (1 = wrk, 2 = meshsim) -> that tool's median round
  python3 - "$WORK/rounds" "$1" <<'PY'
import sys
rows = [line.split("|")[int(sys.argv[2]) - 1].split() for line in open(sys.argv[1])]
rows.sort(key=lambda row: float(row[0]))
print(" ".join(rows[len(rows) // 2]))
PY
}
read -r WRK_MAX WRK_MAX_P50 WRK_MAX_P99 WRK_CPU < <(median_round 1)
read -r MESH_MAX MESH_MAX_P50 MESH_MAX_P99 MESH_CPU _ _ < <(median_round 2)
ROUND_RATIOS=$(python3 -c "import sys;print(', '.join('%.2f' % (float(l.split('|')[1].split()[0]) / float(l.split('|')[0].split()[0])) for l in open(sys.argv[1])))" "$WORK/rounds")
read -r HEY_MAX HEY_MAX_P50 HEY_MAX_P99 HEY_CPU < <(hey_run 64)
read -r WRK_RPS1 WRK_P50 WRK_P99 _ < <(wrk_run 1)
read -r HEY_RPS1 HEY_P50 HEY_P99 _ < <(hey_run 1)
read -r MESH_RPS1 MESH_P50 MESH_P99 _ MESH_INTENDED_P50 MESH_INTENDED_P99 < <(meshsim_run 500 1)

echo "one run, ${DURATION}s each; target nginx (1 worker, CPU 1); each tool on CPU 0 (taskset); max rates: median of $ROUNDS alternating rounds"
echo "| tool | max req/s (64 conns) | p50 / p99 at max (ms) | CPU µs/request at max | low load req/s | p50 / p99 at low load (ms) |"
echo "|---|---|---|---|---|---|"
echo "| meshsim load | $MESH_MAX | $MESH_MAX_P50 / $MESH_MAX_P99 | $MESH_CPU | $MESH_RPS1 (open loop, 500/s) | $MESH_P50 / $MESH_P99 |"
echo "| wrk | $WRK_MAX | $WRK_MAX_P50 / $WRK_MAX_P99 | $WRK_CPU | $WRK_RPS1 (closed loop, 1 conn) | $WRK_P50 / $WRK_P99 |"
echo "| hey | $HEY_MAX | $HEY_MAX_P50 / $HEY_MAX_P99 | $HEY_CPU | $HEY_RPS1 (closed loop, 1 conn) | $HEY_P50 / $HEY_P99 |"
echo "meshsim load at 500/s from each request's intended start (what it reports as latency): p50 $MESH_INTENDED_P50 / p99 $MESH_INTENDED_P99 ms"
python3 -c "print('ratio meshsim load / wrk max rate (medians): %.2f' % ($MESH_MAX / $WRK_MAX))"
echo "ratio in each round: $ROUND_RATIOS"
