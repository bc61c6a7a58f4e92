#!/usr/bin/env bash
# The same upstream (nginx, static 200) behind three TLS reverse-proxy pairs:
# meshsim sidecars (mTLS, HTTP/2 between them), nginx (mTLS, HTTP/1.1
# keep-alive) and haproxy (mTLS, HTTP/1.1 keep-alive). Each proxy gets one
# worker/thread. Measures the latency a pair adds over going straight to the
# upstream (p50/p99 at 1k and 5k rps, constant rate, `meshsim load`), the
# maximum throughput (wrk, 1 thread, 32 connections), the CPU time the pair
# spends per request (utime + stime of both proxy processes from /proc,
# during the wrk run and the 5k run), and the proxies' RSS idle and during
# the 1k rps run. Prints one table with ratios to nginx.
#
# Usage: benches/compare-proxy.sh [DURATION_S]   (needs a release build)
#        MESHSIM=target/pgo/meshsim benches/compare-proxy.sh   (the sidecar
#        built with profile-guided optimization by scripts/build-pgo.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-10}
MESHSIM=${MESHSIM:-target/release/meshsim}
WORK=$(mktemp -d /tmp/compare-proxy.XXXXXX)
PIDS=()

. benches/compare/install.sh
install_missing nginx haproxy wrk
[ -x "$MESHSIM" ] || cargo build --release -p cli

cleanup() {
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for conf in "$WORK"/nginx-*.conf; do [ -f "$conf" ] && nginx -p "$WORK" -c "$conf" -s quit 2>/dev/null || true; done
  [ -f "$WORK/haproxy-a.pid" ] && kill "$(cat "$WORK/haproxy-a.pid")" 2>/dev/null || true
  [ -f "$WORK/haproxy-b.pid" ] && kill "$(cat "$WORK/haproxy-b.pid")" 2>/dev/null || true
  sleep 1
}
trap cleanup EXIT

# 1. The meshsim pair: CA, control plane, client-0 and backend-0 sidecars.
. benches/compare/meshsim.sh
meshsim_pair
PIDS+=("$UP_PID")
cat "$WORK/client/cert.pem" "$WORK/client/key.pem" >"$WORK/client/haproxy.pem"
cat "$WORK/server/cert.pem" "$WORK/server/key.pem" >"$WORK/server/haproxy.pem"

. benches/compare/nginx.sh
nginx_upstream
nginx_pair
# haproxy pair: A (plain in) -> mTLS -> B -> upstream.
cat >"$WORK/haproxy-b.cfg" <<CONF
global
  nbthread 1
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  http-reuse always
frontend in
  bind 127.0.0.1:28443 ssl crt $WORK/server/haproxy.pem ca-file $WORK/mesh/ca.pem verify required ssl-min-ver TLSv1.3
  default_backend app
backend app
  server up $UPSTREAM
CONF
cat >"$WORK/haproxy-a.cfg" <<CONF
global
  nbthread 1
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  http-reuse always
frontend in
  bind 127.0.0.1:28080
  default_backend b
backend b
  server b 127.0.0.1:28443 ssl crt $WORK/client/haproxy.pem ca-file $WORK/mesh/ca.pem verify required sni str($SERVER_NAME) verifyhost $SERVER_NAME ssl-min-ver TLSv1.3
CONF
haproxy -f "$WORK/haproxy-b.cfg" -D -p "$WORK/haproxy-b.pid"
haproxy -f "$WORK/haproxy-a.cfg" -D -p "$WORK/haproxy-a.pid"
sleep 1

# Targets: name url host-header pids-of-the-pair
nginx_pids() { echo "$(pgrep -P "$(cat "$WORK/nginx-a.pid")") $(pgrep -P "$(cat "$WORK/nginx-b.pid")")"; }
haproxy_pids() { echo "$(cat "$WORK/haproxy-a.pid") $(cat "$WORK/haproxy-b.pid")"; }
rss_kb() { local total=0; for pid in $*; do total=$((total + $(awk '/VmRSS/{print $2}' /proc/"$pid"/status))); done; echo $total; }

# Extra header per target (only meshsim's pair needs one).
declare -A EXTRA=([direct]="x-none: 0" [meshsim]="x-meshsim-pod-secret: $POD_SECRET" [nginx]="x-none: 0" [haproxy]="x-none: 0")
check() { # url host name
  local code; code=$(curl -s -o /dev/null -w '%{http_code}' -H "host: $2" -H "${EXTRA[$3]}" "$1")
  [ "$code" = 200 ] || { echo "$1 (Host: $2) answered $code" >&2; exit 1; }
}
check "http://$UPSTREAM/" upstream direct
check "http://$CLIENT_IP:4140/" backend meshsim
check "http://127.0.0.1:18080/" upstream nginx
check "http://127.0.0.1:28080/" upstream haproxy

# CPU time (utime + stime, clock ticks) of the given processes so far.
cpu_ticks() { local total=0; for pid in $*; do total=$((total + $(awk '{print $14 + $15}' /proc/"$pid"/stat))); done; echo $total; }
# Microseconds of CPU per request, from two cpu_ticks readings.
cpu_us() { python3 -c "print(round(($2 - $1) * 1e6 / $(getconf CLK_TCK) / max($3, 1), 1))"; }
load() { # url host rate name -> "p50 p99 ok total"
  "$MESHSIM" load "$1" -H "host: $2" -H "${EXTRA[$4]}" --rate "$3" --duration "${DURATION}s" --connections 64 --out "$WORK/load" >/dev/null 2>&1 || true
  python3 -c "import json;d=json.load(open('$WORK/load/summary.json'));l=d['latency_ms'];r=d['requests'];print(l['p50'],l['p99'],r['ok'],r['total'])"
}
maxrate() { # url host name -> "requests/s requests"
  wrk -t1 -c32 -d"${DURATION}s" -H "Host: $2" -H "${EXTRA[$3]}" "$1" | awk '/Requests\/sec/{rps=$2} / requests in /{n=$1} END{print rps, n}'
}

declare -A P50_1K P99_1K P50_5K P99_5K MAX RSS_IDLE RSS_1K OK CPU_MAX CPU_5K
run_target() { # name url host pids-fn
  local name=$1 url=$2 host=$3 pids=""
  [ -n "$4" ] && pids=$($4)
  RSS_IDLE[$name]=$( [ -n "$pids" ] && rss_kb $pids || echo 0)
  ( sleep $((DURATION / 2)); if [ -n "$pids" ]; then rss_kb $pids >"$WORK/rss-$name"; fi ) &
  local sampler=$!
  read -r P50_1K[$name] P99_1K[$name] ok total < <(load "$url" "$host" 1000 "$name")
  wait "$sampler" || true
  RSS_1K[$name]=$(cat "$WORK/rss-$name" 2>/dev/null || echo 0)
  OK[$name]="$ok/$total"
  local before; before=$(cpu_ticks $pids)
  read -r P50_5K[$name] P99_5K[$name] ok total < <(load "$url" "$host" 5000 "$name")
  CPU_5K[$name]=$(cpu_us "$before" "$(cpu_ticks $pids)" "$total")
  OK[$name]="${OK[$name]} $ok/$total"
  before=$(cpu_ticks $pids)
  local requests; read -r MAX[$name] requests < <(maxrate "$url" "$host" "$name")
  CPU_MAX[$name]=$(cpu_us "$before" "$(cpu_ticks $pids)" "$requests")
}
run_target direct "http://$UPSTREAM/" upstream ""
run_target meshsim "http://$CLIENT_IP:4140/" backend mesh_pids
run_target nginx "http://127.0.0.1:18080/" upstream nginx_pids
run_target haproxy "http://127.0.0.1:28080/" upstream haproxy_pids

added() { python3 -c "print(f'{max($1 - $2, 0):.3f}')"; }
ratio() { python3 -c "print(f'{$1 / $2:.2f}' if $2 else 'n/a')"; }
echo
echo "meshsim: $MESHSIM, sidecars: $(dirname "$MESHSIM")/meshsim-proxy"
echo "one run, ${DURATION}s per measurement, $(nproc) cores shared by all processes; latency from intended start (constant rate, meshsim load); added = pair - direct"
printf "| %-8s | %-10s | %-10s | %-10s | %-10s | %-12s | %-12s | %-12s | %-9s | %-9s | %-14s |\n" target "add p50 1k" "add p99 1k" "add p50 5k" "add p99 5k" "max req/s" "CPU/req max" "CPU/req 5k" "RSS idle" "RSS 1k" "ok 1k / 5k"
echo "|---|---|---|---|---|---|---|---|---|---|---|"
for t in direct meshsim nginx haproxy; do
  cpu_max="${CPU_MAX[$t]} µs"; cpu_5k="${CPU_5K[$t]} µs"
  [ "$t" = direct ] && { cpu_max="—"; cpu_5k="—"; }
  printf "| %-8s | %-10s | %-10s | %-10s | %-10s | %-12s | %-12s | %-12s | %-9s | %-9s | %-14s |\n" "$t" \
    "$(added "${P50_1K[$t]}" "${P50_1K[direct]}")ms" "$(added "${P99_1K[$t]}" "${P99_1K[direct]}")ms" \
    "$(added "${P50_5K[$t]}" "${P50_5K[direct]}")ms" "$(added "${P99_5K[$t]}" "${P99_5K[direct]}")ms" \
    "${MAX[$t]}" "$cpu_max" "$cpu_5k" "$((RSS_IDLE[$t] / 1024)) MB" "$((RSS_1K[$t] / 1024)) MB" "${OK[$t]}"
done
echo "CPU/req: utime + stime of the pair's two proxy processes (/proc/PID/stat) per request, during wrk's run (max) and the 5k rps run"
echo
echo "raw p50/p99 (ms) at 1k: direct ${P50_1K[direct]}/${P99_1K[direct]}, meshsim ${P50_1K[meshsim]}/${P99_1K[meshsim]}, nginx ${P50_1K[nginx]}/${P99_1K[nginx]}, haproxy ${P50_1K[haproxy]}/${P99_1K[haproxy]}"
echo "raw p50/p99 (ms) at 5k: direct ${P50_5K[direct]}/${P99_5K[direct]}, meshsim ${P50_5K[meshsim]}/${P99_5K[meshsim]}, nginx ${P50_5K[nginx]}/${P99_5K[nginx]}, haproxy ${P50_5K[haproxy]}/${P99_5K[haproxy]}"
for t in meshsim haproxy; do
  echo "ratio $t/nginx: added p99 at 1k $(ratio "$(added "${P99_1K[$t]}" "${P99_1K[direct]}")" "$(added "${P99_1K[nginx]}" "${P99_1K[direct]}")"), max throughput $(ratio "${MAX[$t]}" "${MAX[nginx]}"), RSS at 1k $(ratio "${RSS_1K[$t]}" "${RSS_1K[nginx]}")"
done
