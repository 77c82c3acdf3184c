#!/usr/bin/env bash
# Installs what the demo and the tests need on a fresh Debian machine (idempotent):
# cmake (pingora builds zlib-ng with it), openssl, node deps of the e2e harness,
# prometheus + promtool, nginx and wrk (benchmarks). Then builds par-sidecar.
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
for pair in cmake:cmake openssl:openssl prometheus:prometheus promtool:prometheus nginx:nginx node:nodejs wrk:wrk curl:curl pgrep:procps; do
  cmd=${pair%%:*}; pkg=${pair#*:}
  command -v "$cmd" >/dev/null 2>&1 || [ -x "/usr/sbin/$cmd" ] || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "bootstrap: installing ${need[*]}" >&2
  SUDO=; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  # The Debian prometheus package starts a system service; tests run their own.
  $SUDO systemctl disable --now prometheus prometheus-node-exporter nginx >/dev/null 2>&1 || true
fi
if [ ! -d tests/e2e/node_modules/oidc-provider ]; then
  (cd tests/e2e && npm ci --no-audit --no-fund --loglevel=error)
fi
cargo build --locked --quiet --bin par-sidecar
