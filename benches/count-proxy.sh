#!/usr/bin/env bash
# User-space instructions per request of each proxy in the meshsim and
# nginx pairs, counted by callgrind: a figure a noisy neighbour cannot move
# (two runs agree to 0.1 %), where benches/compare-proxy.sh's wall-clock
# and CPU-time figures move by 10 % or more on this kind of machine.
#
# Each pair proxies the same upstream as in compare-proxy.sh (nginx, static
# 200, not counted). Both proxies of a pair run under callgrind; after a
# warm-up on the same 32 kept-alive connections, the counters are zeroed,
# REQUESTS requests are sent over them (a closed loop), and the counters
# are dumped. No handshake falls inside the count: nginx's upstream
# connections are told to live for 100,000 requests (its default, 1,000,
# re-handshook inside earlier counts and doubled nginx's figure).
# Instructions, not time: callgrind counts each byte a `rep movsb` copies
# as one instruction, so bulk copies weigh more here than in CPU time, and
# the kernel's share (syscalls, TCP) is not counted at all.
#
# Usage: benches/count-proxy.sh [REQUESTS]   (needs a release build)
set -euo pipefail
cd "$(dirname "$0")/.."
REQUESTS=${1:-3200}
BUILT=${MESHSIM:-target/release/meshsim}
WORK=$(mktemp -d /tmp/count-proxy.XXXXXX)
CALLGRIND="valgrind --tool=callgrind --dump-instr=no --callgrind-out-file=$WORK/callgrind.%p"

. benches/compare/install.sh
install_missing nginx valgrind
[ -x "$BUILT" ] || cargo build --release -p cli

cleanup() {
  [ -n "${UP_PID:-}" ] && kill -TERM "$UP_PID" 2>/dev/null || true
  for conf in "$WORK"/nginx-*.conf; do [ -f "$conf" ] && nginx -p "$WORK" -c "$conf" -s quit 2>/dev/null || true; done
  pkill -f -- "--callgrind-out-file=$WORK/" 2>/dev/null || true
  sleep 1
}
trap cleanup EXIT

# meshsim: copies of the binaries, whose meshsim-proxy (what `up` starts
# beside meshsim) runs the real one under callgrind.
mkdir -p "$WORK/bin"
cp "$BUILT" "$WORK/bin/meshsim"
cp "$(dirname "$BUILT")/meshsim-proxy" "$WORK/bin/meshsim-proxy.real"
cat >"$WORK/bin/meshsim-proxy" <<WRAP
#!/bin/sh
exec $CALLGRIND "\$(dirname "\$0")/meshsim-proxy.real" "\$@"
WRAP
chmod +x "$WORK/bin/meshsim-proxy"
MESHSIM="$WORK/bin/meshsim"
. benches/compare/meshsim.sh
meshsim_pair
. benches/compare/nginx.sh
nginx_upstream
NGINX_UNDER=$CALLGRIND nginx_pair
sleep 3

# The callgrind processes whose command line contains $1.
counted() { pgrep -f -- "--callgrind-out-file=$WORK/.*$1" | tr '\n' ' '; }
# Closed loop: 32 connections, REQUESTS in all; fails unless every answer is 200.
send() { # url host header requests
  python3 - "$1" "$2" "$3" "$4" <<'PY'
import socket, sys, threading
url, host, header, total = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
address, port = url.split("/")[2].split(":")
request = f"GET / HTTP/1.1\r\nHost: {host}\r\n{header}\r\n\r\n".encode()
ok = []
def connection():
    sock = socket.create_connection((address, int(port)))
    reader = sock.makefile("rb")
    for _ in range(total // 32):
        sock.sendall(request)
        status = reader.readline()
        length = 0
        while (line := reader.readline()) not in (b"\r\n", b""):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        reader.read(length)
        ok.append(b" 200 " in status)
threads = [threading.Thread(target=connection) for _ in range(32)]
for thread in threads: thread.start()
for thread in threads: thread.join()
if not all(ok) or len(ok) != total // 32 * 32:
    sys.exit(f"{url}: {ok.count(True)} of {total} answered 200")
PY
}
# Instructions per request of each process in $4 (after warm-up and zeroing).
count() { # name url host header pids -> "ir_a ir_b"
  # The warm-up opens every connection the count will use, on both hops.
  send "$2" "$3" "$4" 640
  for pid in $5; do callgrind_control -z "$pid" >/dev/null; done
  send "$2" "$3" "$4" "$REQUESTS"
  for pid in $5; do callgrind_control -d "$pid" >/dev/null; done
  sleep 1
  for pid in $5; do
    python3 -c "import sys; ir=int([l for l in open(sys.argv[1]) if l.startswith('summary:')][0].split()[1]); print(ir // int(sys.argv[2]))" \
      "$WORK/callgrind.$pid.1" "$REQUESTS"
  done | tr '\n' ' '
  echo
}
read -r MESH_A MESH_B < <(count meshsim "http://$CLIENT_IP:4140/" backend "x-meshsim-pod-secret: $POD_SECRET" "$(counted 'proxy client') $(counted 'proxy backend')")
read -r NGINX_A NGINX_B < <(count nginx "http://127.0.0.1:18080/" upstream "x-none: 0" "$(counted nginx-a.conf) $(counted nginx-b.conf)")

echo
echo "user-space instructions per request (callgrind), $REQUESTS requests over 32 connections after a warm-up"
echo "| pair | A (plain in) | B (mTLS in, to upstream) | pair | pair / nginx |"
echo "|---|---|---|---|---|"
declare -A A=([meshsim]=$MESH_A [nginx]=$NGINX_A) B=([meshsim]=$MESH_B [nginx]=$NGINX_B)
for pair in meshsim nginx; do
  printf "| %s | %s | %s | %s | %s |\n" "$pair" "${A[$pair]}" "${B[$pair]}" "$((A[$pair] + B[$pair]))" \
    "$(python3 -c "print(f'{(${A[$pair]} + ${B[$pair]}) / ($NGINX_A + $NGINX_B):.2f}')")"
done
