#!/usr/bin/env bash
# Coverage-guided fuzzing on the stable toolchain: the same instrumentation `cargo fuzz` adds
# (sancov), without AddressSanitizer (which needs nightly; safe Rust needs it least).
# Usage: fuzz/run.sh TARGET SECONDS   (targets: verify_delivery, parse_payload)
set -euo pipefail
cd "$(dirname "$0")"
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
 -Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
 -Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing -Cdebug-assertions -Coverflow-checks"
# An explicit --target keeps the instrumentation out of build scripts and proc macros.
host=$(rustc -vV | sed -n 's/^host: //p')
cargo build --release --bin "$1" --target-dir target/instrumented --target "$host"
mkdir -p "corpus/$1"
exec "target/instrumented/$host/release/$1" "corpus/$1" -max_total_time="${2:-60}" -max_len=8192
