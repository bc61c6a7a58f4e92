#!/usr/bin/env bash
# Installs Debian's `prometheus` package with apt-get when the binary is
# missing, so the Prometheus scrape test runs against the real server.
# The package's own service is not needed (the test starts its own server on
# a temporary directory), so it is stopped if the package started it.
# Exit codes: 0 installed (or already there), 2 could not install.
set -euo pipefail

if command -v prometheus >/dev/null 2>&1; then
  exit 0
fi
echo "install-prometheus: installing prometheus (apt-get)" >&2
sudo=""
[[ $(id -u) -eq 0 ]] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
# The package's postinst would start a server on :9090; keep it from running.
policy=/usr/sbin/policy-rc.d
made_policy=""
if [[ ! -e $policy ]]; then
  printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
  $sudo chmod +x "$policy"
  made_policy=yes
fi
status=0
{ $sudo apt-get update -qq && \
  $sudo apt-get install -y -qq --no-install-recommends prometheus >/dev/null; } || status=$?
[[ -n $made_policy ]] && $sudo rm -f "$policy"
if [[ $status -ne 0 ]] || ! command -v prometheus >/dev/null 2>&1; then
  echo "install-prometheus: apt-get could not install prometheus" >&2
  exit 2
fi
prometheus --version 2>&1 | head -1 >&2
