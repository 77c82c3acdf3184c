#!/usr/bin/env bash
# The test command (README, .ci/run): unit + in-process integration tests, then the
# end-to-end suites against the real strict AS, the legacy app and a real Prometheus.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tests/bootstrap.sh
cargo test --locked
bash deploy/check.sh
rm -rf tests/e2e/work
(cd tests/e2e && node --test --test-concurrency=1 --test-reporter=spec ./*.test.mjs)
