#!/usr/bin/env bash
# Builds the libFuzzer targets (Fuzz/README.md) with -sanitize=fuzzer,address in .build-fuzz and runs
# each for SECONDS (default 60), starting from its committed seed corpus (Fuzz/corpus/<target>).
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]      e.g. scripts/fuzz.sh 600 FuzzToken
#
# New inputs go to .build-fuzz/corpus/<target> (not committed); a crash is written to
# .build-fuzz/crashes/<target>/ and makes the script exit 1. The test command runs it for a few
# seconds per target as a smoke; the long runs and their figures are in Fuzz/README.md.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
SECONDS_PER_TARGET="${1:-60}"
shift || true
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(FuzzRecordDecoder FuzzRequestTarget FuzzDeflate FuzzToken FuzzIngestLines FuzzStreamRequestHead)
SCRATCH="$ROOT/.build-fuzz"

for target in "${TARGETS[@]}"; do
    TAILGATE_FUZZ=1 swift build --scratch-path "$SCRATCH" -Xswiftc -sanitize=fuzzer,address -Xswiftc -parse-as-library \
        --product "$target" 2>&1 | grep -E "error|warning: unre|Build of product" || true
    [ -x "$SCRATCH/debug/$target" ] || { echo "fuzz.sh: $target did not build" >&2; exit 1; }
done

failed=0
for target in "${TARGETS[@]}"; do
    corpus="$SCRATCH/corpus/$target"
    crashes="$SCRATCH/crashes/$target"
    mkdir -p "$corpus" "$crashes"
    log="$SCRATCH/$target.log"
    echo "== $target: ${SECONDS_PER_TARGET} s"
    # -rss_limit_mb: a target that grows without bound fails; -timeout: so does one that hangs on an input.
    if "$SCRATCH/debug/$target" -max_total_time="$SECONDS_PER_TARGET" -rss_limit_mb=2048 -timeout=10 \
        -artifact_prefix="$crashes/" -print_final_stats=1 "$corpus" "Fuzz/corpus/$target" >"$log" 2>&1; then
        runs=$(grep -o "stat::number_of_executed_units: *[0-9]*" "$log" | grep -o "[0-9]*$" || echo "?")
        cov=$(grep -o "cov: [0-9]*" "$log" | tail -1 | grep -o "[0-9]*" || echo "?")
        echo "   ok: $runs executions, coverage $cov edges, corpus $(ls "$corpus" | wc -l) inputs"
    else
        echo "   FAILED: see $log and $crashes"
        tail -30 "$log"
        failed=1
    fi
done
exit $failed
