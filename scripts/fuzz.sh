#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for N seconds each (default 60), one
# after the other, one job each. Needs cargo-fuzz (`cargo install cargo-fuzz
# --locked`); on a stable toolchain RUSTC_BOOTSTRAP=1 lets it pass its -Z flags.
#
#   scripts/fuzz.sh            # 60 s per target
#   scripts/fuzz.sh 300        # 5 min per target
#   scripts/fuzz.sh 60 phone_number vonage_callback
#
# New inputs go to fuzz/corpus/<target>/ (commit only small, interesting ones);
# a crash stops its target, is saved under fuzz/artifacts/<target>/ and makes
# the script exit non-zero after the other targets ran. Executions per target
# are printed at the end (libFuzzer's "stat::number_of_executed_units").
# See docs/fuzzing.md.
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../fuzz"

secs="${1:-60}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(cargo fuzz list)
fi

export RUSTC_BOOTSTRAP="${RUSTC_BOOTSTRAP:-1}"
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-1}"
# Panics and overflow checks are what we look for: safe Rust needs no ASan,
# and without it each run does about twice the executions.
build_flags=(--sanitizer none --debug-assertions)
[ -n "${FUZZ_TARGET_DIR:-}" ] && build_flags+=(--target-dir "$FUZZ_TARGET_DIR")

cargo fuzz build "${build_flags[@]}" || exit 2

failed=()
summary=()
for target in "${targets[@]}"; do
    mkdir -p "corpus/$target" "artifacts/$target"
    log="artifacts/$target/last-run.log"
    echo "== $target: ${secs}s"
    # Generated inputs go to a scratch corpus so the committed one stays small;
    # `cargo fuzz cmin` can fold interesting ones back in.
    scratch="${TMPDIR:-/tmp}/verifyd-fuzz-corpus/$target"
    mkdir -p "$scratch"
    cargo fuzz run "${build_flags[@]}" "$target" "$scratch" "corpus/$target" -- \
        -max_total_time="$secs" -print_final_stats=1 -max_len=4096 -rss_limit_mb=1024 \
        >"$log" 2>&1
    status=$?
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
    summary+=("$target: ${execs:-?} executions, exit $status")
    if [ $status -ne 0 ]; then
        failed+=("$target")
        grep -E 'panicked|ERROR|Test unit written' "$log" | head -5
    fi
done

printf '%s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
    echo "crashed: ${failed[*]} (inputs under fuzz/artifacts/)"
    exit 1
fi
