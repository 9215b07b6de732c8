#!/usr/bin/env bash
# Runs the Swift suites under ThreadSanitizer (README, "Race detection"): builds in .build-tsan with
# -DTAILGATE_TSAN, so that Lock is a pthread mutex the sanitizer understands, and fails on any warning.
# Tests/tsan-suppressions.txt lists the only suppressed reports (inside the uninstrumented Swift runtime).
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
FLAGS=(--sanitize=thread -Xswiftc -DTAILGATE_TSAN --scratch-path .build-tsan)
swift build --build-tests "${FLAGS[@]}" || exit 1
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
TSAN_OPTIONS="suppressions=$ROOT/Tests/tsan-suppressions.txt ${TSAN_OPTIONS:-}" swift test --skip-build "${FLAGS[@]}" "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
warnings=$(grep -c "WARNING: ThreadSanitizer" "$log")
echo "tsan.sh: $warnings ThreadSanitizer warnings, swift test exit $status"
[ "$status" -eq 0 ] && [ "$warnings" -eq 0 ]
