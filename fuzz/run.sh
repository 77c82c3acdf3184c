#!/usr/bin/env bash
# Bounded fuzzing of the pure parsers: authorize redirect, callback query/sealed state, the
# callback pre-filter (paths, parameter names, bodies),
# egress client form (app credentials, grant allowlist), resource path mapping and JWE decryption.
# CI runs FUZZ_SECONDS=20 per target on stable (`-s none`); by hand, run longer, e.g.
#   FUZZ_SECONDS=1800 bash fuzz/run.sh        # 30 min per target
#   RUSTC_BOOTSTRAP=1 cargo fuzz run authorize_redirect   # with AddressSanitizer
set -euo pipefail
cd "$(dirname "$0")"
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked --quiet
secs=${FUZZ_SECONDS:-20}
for target in authorize_redirect callback_query prefilter egress_form resource_path jwe; do
  echo "fuzz: $target for ${secs}s"
  log=$(mktemp)
  if ! cargo fuzz run -s none "$target" -- -max_total_time="$secs" >"$log" 2>&1; then
    tail -40 "$log" >&2
    echo "fuzz: $target failed (crash or build error); artifacts: $(ls artifacts/"$target" 2>/dev/null)" >&2
    exit 1
  fi
  grep -E "^Done" "$log" || true
done
