#!/usr/bin/env bash
# Builds the sidecar binary, meshsim-proxy, with profile-guided optimization
# (PGO): an instrumented build, a training run of a real mesh under load,
# then a build that lays out and inlines the code by what the training ran.
# A sidecar's request path crosses hyper, h2, rustls, tokio and the mesh;
# at 1k rps each request finds it cold in the caches, and PGO's layout took
# about 20 % of its instructions per request off on top of LTO
# (BENCHMARKS.md, "Session 11").
#
# Only meshsim-proxy is built this way: it runs sidecars and nothing else,
# so the training covers what it runs. The full meshsim binary would need a
# training of the simulator too (code a profile never saw is optimized for
# size), and it is copied beside it from the plain release build: `meshsim
# up` starts the meshsim-proxy that sits beside it.
#
# The training is not the benchmark's workload: benches/compare/
# pgo-training.toml (a synthetic upstream with sized bodies, GETs and POSTs
# at several rates), where benches/compare-proxy.sh proxies nginx's static
# 200 with GETs.
#
# Output: OUT_DIR/meshsim and OUT_DIR/meshsim-proxy (run `OUT_DIR/meshsim up
# ...`, or `MESHSIM=OUT_DIR/meshsim benches/compare-proxy.sh`).
#
# Usage: scripts/build-pgo.sh [OUT_DIR]   (default target/pgo; about 13 min)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-target/pgo}
BUILD=target/pgo-build
HOST=$(rustc -vV | sed -n 's/^host: //p')
PROFDATA="$(rustc --print sysroot)/lib/rustlib/$HOST/bin/llvm-profdata"
WORK=$(mktemp -d /tmp/build-pgo.XXXXXX)
UP_PID=""
cleanup() {
  [ -n "$UP_PID" ] && kill -TERM "$UP_PID" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

step() { printf '\n==> %s\n' "$*"; }

# llvm-profdata must match rustc's LLVM: the rustup component, not Debian's.
[ -x "$PROFDATA" ] || rustup component add llvm-tools

step "the full binary (plain release build)"
cargo build --release -p cli --bin meshsim

# --target keeps RUSTFLAGS off build scripts and proc macros, which would
# otherwise write profiles of the build itself.
sidecar_build() { # rustflags
  RUSTFLAGS="$1" cargo build --release -p cli --bin meshsim-proxy \
    --target "$HOST" --target-dir "$BUILD"
}

step "1/3 instrumented sidecar"
sidecar_build "-Cprofile-generate=$WORK/profiles"

step "2/3 training: a mesh under meshsim load"
mkdir -p "$WORK/bin"
cp target/release/meshsim "$BUILD/$HOST/release/meshsim-proxy" "$WORK/bin/"
. benches/compare/meshsim.sh
start_mesh() { # bin-dir state-dir -> sets UP_PID, CLIENT, SECRET
  MESHSIM="$1/meshsim" meshsim_up benches/compare/pgo-training.toml "$2" client
  CLIENT=$(address_field "$2" client-0 inbound | cut -d: -f1)
  SECRET=$(cat "$2/disk/client-0/pod-secret")
}
stop_mesh() { # the sidecars write their profiles as they exit
  kill -TERM "$UP_PID"
  wait "$UP_PID" || true
  UP_PID=""
}
start_mesh "$WORK/bin" "$WORK/mesh"
train() { # rate duration path [load options...]
  local rate=$1 duration=$2 path=$3
  shift 3
  target/release/meshsim load "http://$CLIENT:4140$path" -H "host: backend" \
    -H "x-meshsim-pod-secret: $SECRET" --rate "$rate" --duration "$duration" \
    --connections 64 --out "$WORK/load" "$@" >/dev/null
  echo "trained: $rate rps for $duration on $path $*"
}
train 500 5s /products
train 2000 5s /orders --method POST --body '{"item":"sku-1","quantity":2}'
train 4000 5s /products
stop_mesh
"$PROFDATA" merge -o "$WORK/sidecar.profdata" "$WORK/profiles"

step "3/3 optimized sidecar"
sidecar_build "-Cprofile-use=$WORK/sidecar.profdata"
mkdir -p "$OUT"
cp target/release/meshsim "$BUILD/$HOST/release/meshsim-proxy" "$OUT/"

step "the optimized sidecar serves a mesh"
start_mesh "$OUT" "$WORK/check"
status=$(curl -s -o /dev/null -w '%{http_code}' -H "host: backend" \
  -H "x-meshsim-pod-secret: $SECRET" "http://$CLIENT:4140/products")
stop_mesh
[ "$status" = 200 ] || { echo "the PGO sidecar answered $status, not 200" >&2; exit 1; }
echo "built $OUT/meshsim-proxy (PGO) beside $OUT/meshsim"
