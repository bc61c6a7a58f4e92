# Sourced by benches/compare-proxy.sh and benches/count-proxy.sh: the
# meshsim pair (CA, control plane, client-0 and backend-0 sidecars), started
# with `$MESHSIM up`, and the names the other contestants share with it.
#
# meshsim_pair sets UP_PID, BACKEND_IP, CLIENT_IP, SERVER_NAME, POD_SECRET
# and UPSTREAM, and issues the client and server certificates the nginx
# and haproxy pairs present (into $WORK/client and $WORK/server).
meshsim_pair() {
  "$MESHSIM" up benches/compare/proxy-pair.toml --state-dir "$WORK/mesh" \
    --external-app client --external-app backend >"$WORK/up.log" 2>&1 &
  UP_PID=$!
  for _ in $(seq 600); do [ -f "$WORK/mesh/addresses.json" ] && break; sleep 0.1; done
  [ -f "$WORK/mesh/addresses.json" ] || { cat "$WORK/up.log"; exit 1; }
  field() { python3 -c "import json,sys;print(json.load(open('$WORK/mesh/addresses.json'))['$1']['$2'])"; }
  BACKEND_IP=$(field backend-0 inbound | cut -d: -f1)
  CLIENT_IP=$(field client-0 inbound | cut -d: -f1)
  SERVER_NAME=$(field backend-0 server_name)
  # client-0's outbound listener admits its own app only: the load presents
  # the pod secret, as the app would (mesh/src/pod_secret.rs).
  POD_SECRET=$(cat "$WORK/mesh/disk/client-0/pod-secret")
  "$MESHSIM" certs issue --state-dir "$WORK/mesh" --identity client --out "$WORK/client" >/dev/null
  "$MESHSIM" certs issue --state-dir "$WORK/mesh" --identity backend --out "$WORK/server" >/dev/null
  UPSTREAM="$BACKEND_IP:8080"
}

# The pair's two sidecar processes.
mesh_pids() { pgrep -f -- " proxy (client|backend) --replica 0 --state-dir $WORK/mesh" | tr '\n' ' '; }
