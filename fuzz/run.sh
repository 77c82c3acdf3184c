#!/usr/bin/env bash
# Bounded fuzzing of the two parsers (authorize redirect, callback query/sealed state).
# CI runs FUZZ_SECONDS=20 per target on stable (`-s none`); by hand, run longer, e.g.
#   FUZZ_SECONDS=1800 bash fuzz/run.sh        # 30 min per target
#   RUSTC_BOOTSTRAP=1 cargo fuzz run authorize_redirect   # with AddressSanitizer
set -euo pipefail
cd "$(dirname "$0")"
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked --quiet
secs=${FUZZ_SECONDS:-20}
for target in authorize_redirect callback_query; do
  echo "fuzz: $target for ${secs}s"
  cargo fuzz run -s none "$target" -- -max_total_time="$secs" -print_final_stats=1 2>&1 | grep -E "^(Done|stat::number_of_executed_units|==|SUMMARY)|panicked" || true
  # cargo fuzz exits non-zero on a crash; re-check explicitly so CI fails on findings.
  if ls artifacts/"$target"/crash-* >/dev/null 2>&1; then
    echo "fuzz: crash found in $target: $(ls artifacts/"$target"/crash-*)" >&2
    exit 1
  fi
done
