# Sourced by benches/compare-proxy.sh and benches/count-proxy.sh: the nginx
# side of the proxy comparison, written once.
#
# Uses WORK (configs, pids, logs), UPSTREAM (host:port of the shared
# upstream), SERVER_NAME (backend-0's mTLS name) and the certificates
# `meshsim certs issue` wrote to $WORK/client and $WORK/server.
# NGINX_UNDER, if set, is a command to run a pair proxy under (callgrind):
# that proxy then runs as one process in the foreground, in the background
# of the script.

nginx_conf() { # name, server block, [under]
  local single=""
  [ -n "${3:-}" ] && single="daemon off; master_process off;"
  cat >"$WORK/nginx-$1.conf" <<CONF
worker_processes 1; $single
pid $WORK/nginx-$1.pid;
error_log $WORK/nginx-$1.err warn;
events { worker_connections 4096; }
http {
  access_log off;
  $2
}
CONF
  if [ -n "${3:-}" ]; then
    $3 nginx -p "$WORK" -c "$WORK/nginx-$1.conf" 2>"$WORK/nginx-$1.under.log" &
  else
    nginx -p "$WORK" -c "$WORK/nginx-$1.conf"
  fi
}

# The shared upstream: a static 200 on backend-0's app port.
nginx_upstream() {
  nginx_conf upstream "server { listen $UPSTREAM; keepalive_requests 100000; location / { return 200 'ok\n'; } }"
}

# The nginx pair: A (plain in, 127.0.0.1:18080) -> mTLS -> B
# (127.0.0.1:18443) -> upstream, keep-alive on both hops.
nginx_pair() {
  nginx_conf b "upstream app { server $UPSTREAM; keepalive 64; keepalive_requests 100000; }
  server { listen 127.0.0.1:18443 ssl; ssl_protocols TLSv1.3;
    ssl_certificate $WORK/server/cert.pem; ssl_certificate_key $WORK/server/key.pem;
    ssl_client_certificate $WORK/mesh/ca.pem; ssl_verify_client on; ssl_verify_depth 2;
    keepalive_requests 100000;
    location / { proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection \"\"; } }" "${NGINX_UNDER:-}"
  nginx_conf a "upstream b { server 127.0.0.1:18443; keepalive 64; keepalive_requests 100000; }
  server { listen 127.0.0.1:18080; keepalive_requests 100000;
    location / { proxy_pass https://b; proxy_http_version 1.1; proxy_set_header Connection \"\";
      proxy_ssl_certificate $WORK/client/cert.pem; proxy_ssl_certificate_key $WORK/client/key.pem;
      proxy_ssl_trusted_certificate $WORK/mesh/ca.pem; proxy_ssl_verify on; proxy_ssl_verify_depth 2;
      proxy_ssl_name $SERVER_NAME; proxy_ssl_server_name on; proxy_ssl_protocols TLSv1.3;
      proxy_ssl_session_reuse on; } }" "${NGINX_UNDER:-}"
}
