#!/usr/bin/env bash
# Installs what the demo and the tests need on a fresh Debian machine (idempotent):
# cmake (pingora builds zlib-ng with it), openssl, node deps of the e2e harness,
# prometheus + promtool, nginx and wrk (benchmarks), the Python venv of the e2e compatibility
# matrix. Then builds par-sidecar.
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
for pair in cmake:cmake openssl:openssl python3:python3 prometheus:prometheus promtool:prometheus nginx:nginx node:nodejs wrk:wrk curl:curl pgrep:procps; do
  cmd=${pair%%:*}; pkg=${pair#*:}
  command -v "$cmd" >/dev/null 2>&1 || [ -x "/usr/sbin/$cmd" ] || need+=("$pkg")
done
# Debian's python3 makes venvs only with python3-venv (ensurepip).
python3 -c 'import ensurepip' >/dev/null 2>&1 || need+=(python3-venv)
if [ ${#need[@]} -gt 0 ]; then
  echo "bootstrap: installing ${need[*]}" >&2
  SUDO=; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  # The Debian prometheus package starts a system service; tests run their own.
  $SUDO systemctl disable --now prometheus prometheus-node-exporter nginx >/dev/null 2>&1 || true
fi
# Again when package-lock.json is newer than what npm last installed (a dependency was added).
if [ ! -d tests/e2e/node_modules/oidc-provider ] || [ tests/e2e/package-lock.json -nt tests/e2e/node_modules/.package-lock.json ]; then
  (cd tests/e2e && npm ci --no-audit --no-fund --loglevel=error)
fi
# The Python apps of the compatibility matrix run in their own venv with exact pins; made
# again only when it is missing or tests/e2e/requirements.txt changed (its hash is stamped).
req=tests/e2e/requirements.txt venv=tests/e2e/.venv
want=$(sha256sum "$req" | cut -d' ' -f1)
if [ "$(cat "$venv/.requirements.sha256" 2>/dev/null)" != "$want" ]; then
  echo "bootstrap: installing $req into $venv" >&2
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$req"
  echo "$want" >"$venv/.requirements.sha256"
fi
cargo build --locked --quiet --bin par-sidecar
