#!/usr/bin/env bash
# Runs every fuzz target (crates/rap-fuzz/tests/fuzz.rs and the server's request parsers in
# crates/rap-server/tests/server/fuzz.rs) for longer than CI does, with a new random seed:
#
#   tools/fuzz/run.sh [SECONDS_PER_TARGET] [SEED]     (default 300 s, a random seed)
#
# Prints each target's execs and slowest input. An input that makes a target panic is saved
# under $RAP_FUZZ_FINDINGS (default target/fuzz-findings) and the run fails naming it; commit
# it under crates/rap-fuzz/corpus/TARGET/regressions/ with the fix (every run replays it).
set -euo pipefail
cd "$(dirname "$0")/../.."
export RAP_FUZZ_SECONDS="${1:-300}"
export RAP_FUZZ_SEED="${2:-$(od -An -N8 -tu8 /dev/urandom | tr -d ' ')}"
export RAP_FUZZ_FINDINGS="${RAP_FUZZ_FINDINGS:-$PWD/target/fuzz-findings}"
echo "fuzzing each target for ${RAP_FUZZ_SECONDS} s, random seed ${RAP_FUZZ_SEED}"
status=0
cargo test -p rap-fuzz --test fuzz -- --nocapture --test-threads="${RAP_FUZZ_THREADS:-2}" || status=1
cargo test -p rap-server --test server fuzz:: -- --nocapture || status=1
exit $status
