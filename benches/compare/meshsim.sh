# Sourced by benches/compare-proxy.sh and benches/count-proxy.sh: the
# meshsim pair (CA, control plane, client-0 and backend-0 sidecars), started
# with `$MESHSIM up`, and the names the other contestants share with it.
#
# meshsim_pair sets UP_PID, BACKEND_IP, CLIENT_IP, SERVER_NAME, POD_SECRET
# and UPSTREAM, and issues the client and server certificates the nginx
# and haproxy pairs present (into $WORK/client and $WORK/server).

# Starts `$MESHSIM up SCENARIO` with state in STATE_DIR (log beside it,
# STATE_DIR.log) and the named apps external, and waits until it has
# written its addresses. Sets UP_PID. Also used by scripts/build-pgo.sh.
meshsim_up() { # scenario state-dir external-app...
  local scenario=$1 state=$2 app external=()
  shift 2
  for app in "$@"; do external+=(--external-app "$app"); done
  "$MESHSIM" up "$scenario" --state-dir "$state" "${external[@]}" >"$state.log" 2>&1 &
  UP_PID=$!
  for _ in $(seq 600); do [ -f "$state/addresses.json" ] && break; sleep 0.1; done
  [ -f "$state/addresses.json" ] || { cat "$state.log"; exit 1; }
}
# One field of one host in STATE_DIR/addresses.json.
address_field() { # state-dir host field
  python3 -c "import json,sys;print(json.load(open(sys.argv[1]))[sys.argv[2]][sys.argv[3]])" "$1/addresses.json" "$2" "$3"
}

meshsim_pair() {
  meshsim_up benches/compare/proxy-pair.toml "$WORK/mesh" client backend
  BACKEND_IP=$(address_field "$WORK/mesh" backend-0 inbound | cut -d: -f1)
  CLIENT_IP=$(address_field "$WORK/mesh" client-0 inbound | cut -d: -f1)
  SERVER_NAME=$(address_field "$WORK/mesh" backend-0 server_name)
  # client-0's outbound listener admits its own app only: the load presents
  # the pod secret, as the app would (mesh/src/pod_secret.rs).
  POD_SECRET=$(cat "$WORK/mesh/disk/client-0/pod-secret")
  "$MESHSIM" certs issue --state-dir "$WORK/mesh" --identity client --out "$WORK/client" >/dev/null
  "$MESHSIM" certs issue --state-dir "$WORK/mesh" --identity backend --out "$WORK/server" >/dev/null
  UPSTREAM="$BACKEND_IP:8080"
}

# The pair's two sidecar processes.
mesh_pids() { pgrep -f -- " proxy (client|backend) --replica 0 --state-dir $WORK/mesh" | tr '\n' ' '; }
