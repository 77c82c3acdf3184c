#!/usr/bin/env bash
# README command 1: a real login through par-sidecar against a strict FAPI 2.0 AS.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tests/bootstrap.sh
exec node tests/e2e/demo.mjs "$@"
