#!/usr/bin/env bash
# The test command: sets up what the tests need, builds, runs every Swift suite and the Python
# end-to-end tests (Tests/e2e), and prints one summary line.
#
#   ./scripts/test.sh [PYTEST_ARGS...]     e.g. ./scripts/test.sh -k reconnect
#
# Safe to run again and again: installed packages, the venv and the builds are reused.
# Environment: SKIP_SWIFT_TESTS=1 runs only the end-to-end tests (the builds still run);
# SKIP_BENCH_SMOKE=1 and SKIP_FUZZ_SMOKE=1 skip those smokes.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

# Debian packages the test suites rely on (nginx and nchan: proxy tests; chromium: browser tests).
APT_PACKAGES=(zlib1g-dev nginx libnginx-mod-nchan chromium chromium-driver fonts-liberation redis-server)
VENV="$ROOT/.venv"
REQUIREMENTS="$ROOT/Tests/e2e/requirements.txt"
STAMP="$VENV/.requirements.sha256"
E2E_DIR="$ROOT/Tests/e2e"

START=$SECONDS
RESULTS="$(mktemp -d "${TMPDIR:-/tmp}/tailgate-test.XXXXXX")"
trap 'rm -rf "$RESULTS"' EXIT

say()  { printf '\n==> %s   [%ss]\n' "$*" "$((SECONDS - START))"; }
die()  { printf '\ntest.sh: FAILED at step "%s"%s\n' "$1" "${2:+: $2}" >&2; exit 1; }

# Runs a setup step; stops everything when it fails.
step() {
    local name="$1"; shift
    say "$name"
    "$@" || die "$name" "exit $?"
}

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"
    elif command -v sudo >/dev/null; then sudo -n "$@"
    else echo "need root (or sudo) for: $*" >&2; return 1
    fi
}

installed() { [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" = "installed" ]; }

python_can_venv() { "$1" -c 'import venv, ensurepip' >/dev/null 2>&1; }

# ---------------------------------------------------------------- Debian packages
install_debian_packages() {
    local missing=() pkg
    PYTHON="$(command -v python3 || true)"
    for pkg in "${APT_PACKAGES[@]}"; do installed "$pkg" || missing+=("$pkg"); done
    if [ -z "$PYTHON" ] || ! python_can_venv "$PYTHON"; then
        installed python3-venv || missing+=(python3-venv)
        PYTHON=/usr/bin/python3
        installed python3 || missing+=(python3)
    fi
    if [ ${#missing[@]} -eq 0 ]; then echo "all present: ${APT_PACKAGES[*]}"; return 0; fi
    echo "installing: ${missing[*]}"
    # Keep package scripts from starting services (nginx would take port 80): the tests start
    # their own servers. Only a policy file this script created is removed again.
    local policy=/usr/sbin/policy-rc.d made_policy=0
    if [ ! -e "$policy" ]; then
        as_root sh -c "printf '#!/bin/sh\nexit 101\n' > $policy && chmod +x $policy" && made_policy=1
    fi
    local rc=0
    as_root env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 update -q </dev/null || rc=$?
    if [ $rc -eq 0 ]; then
        as_root env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends \
            "${missing[@]}" </dev/null || rc=$?
    fi
    [ $made_policy -eq 1 ] && as_root rm -f "$policy"
    return $rc
}

# ---------------------------------------------------------------- Python venv
setup_venv() {
    local want have=""
    if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
        echo "creating $VENV with ${PYTHON:-python3}"
        rm -rf "$VENV"
        "${PYTHON:-python3}" -m venv "$VENV" || return 1
    fi
    want="$(cat "$REQUIREMENTS" clients/python/pyproject.toml | sha256sum | cut -d' ' -f1)"
    [ -f "$STAMP" ] && have="$(cat "$STAMP")"
    if [ "$want" = "$have" ]; then echo "venv up to date ($(basename "$STAMP") matches)"; return 0; fi
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r "$REQUIREMENTS" </dev/null || return 1
    # The Python logging handler from this repository (editable: the tests run the working tree).
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e clients/python </dev/null || return 1
    echo "$want" > "$STAMP"
}

step "install Debian packages" install_debian_packages
step "Python venv (.venv) and Tests/e2e/requirements.txt" setup_venv
step "swift build" swift build
step "swift build --build-tests" swift build --build-tests
BIN_DIR="$(swift build --show-bin-path)" || die "swift build --show-bin-path"
TAILGATE_BIN="$BIN_DIR/tailgate"
[ -x "$TAILGATE_BIN" ] || die "swift build" "no executable at $TAILGATE_BIN"

FAILED_STEPS=()

# ---------------------------------------------------------------- Swift tests
if [ "${SKIP_SWIFT_TESTS:-0}" != 1 ]; then
    say "swift test --skip-build"
    export TAILGATE_REQUIRE_REDIS=1  # the Redis client's tests start their own redis-server: its absence fails them
    swift test --skip-build --xunit-output "$RESULTS/swift.xml" </dev/null
    rc=$?
    [ $rc -eq 0 ] || FAILED_STEPS+=("swift test (exit $rc)")
fi

# ---------------------------------------------------------------- usable as a dependency
# A tagged clone of the working tree, depended on by version from a tiny package: SwiftPM loads the
# graph (and would refuse unsafeFlags) in seconds. The full check builds and runs the consumer, which
# takes many minutes from clean: `scripts/check-dependents.sh` by itself (README, "Depending on Tailgate").
say "versioned dependency (scripts/check-dependents.sh --graph-only)"
./scripts/check-dependents.sh --graph-only </dev/null
rc=$?
[ $rc -eq 0 ] || FAILED_STEPS+=("check-dependents --graph-only (exit $rc)")

# ---------------------------------------------------------------- end-to-end tests
say "pytest Tests/e2e (TAILGATE_BIN=$TAILGATE_BIN)"
TAILGATE_BIN="$TAILGATE_BIN" "$VENV/bin/python" -m pytest "$E2E_DIR" -q \
    --junitxml="$RESULTS/pytest.xml" -p no:cacheprovider "$@" </dev/null
rc=$?
if [ $rc -eq 5 ]; then
    # Nothing collected: fine when a -k/-m filter selected nothing, a failure when there are no tests.
    if [ -z "$(find "$E2E_DIR" -name 'test_*.py' -print -quit)" ]; then
        FAILED_STEPS+=("pytest: no tests in Tests/e2e")
    fi
elif [ $rc -ne 0 ]; then
    FAILED_STEPS+=("pytest Tests/e2e (exit $rc)")
fi

# ---------------------------------------------------------------- benchmark smoke
# A few seconds of tiny loads against the gateway and the C ceiling: it asserts that every scenario
# ran and the output is well-formed, never timings (speed targets live in the full benchmark).
if [ "${SKIP_BENCH_SMOKE:-0}" != 1 ]; then
    say "benchmark smoke (Benchmarks/tailgate-bench --smoke)"
    TAILGATE_BIN="$TAILGATE_BIN" "$VENV/bin/python" Benchmarks/tailgate-bench --smoke --no-build </dev/null
    rc=$?
    [ $rc -eq 0 ] || FAILED_STEPS+=("benchmark smoke (exit $rc)")
fi

# ---------------------------------------------------------------- fuzz smoke
# Every libFuzzer target (Fuzz/README.md) for a few seconds from its seed corpus: it must build and
# find no crash. The long runs are documented, not part of the test command.
if [ "${SKIP_FUZZ_SMOKE:-0}" != 1 ]; then
    say "fuzz smoke (scripts/fuzz.sh ${FUZZ_SMOKE_SECONDS:-5})"
    ./scripts/fuzz.sh "${FUZZ_SMOKE_SECONDS:-5}" </dev/null
    rc=$?
    [ $rc -eq 0 ] || FAILED_STEPS+=("fuzz smoke (exit $rc)")
fi

# ---------------------------------------------------------------- summary
# Counts come from the runners' JUnit XML files (XCTest, Swift Testing, pytest); the last line printed
# is "N passed, M failed".
say "summary ($((SECONDS - START)) s)"
if [ ${#FAILED_STEPS[@]} -gt 0 ]; then
    printf 'test.sh: FAILED step: %s\n' "${FAILED_STEPS[@]}"
else
    echo "test.sh: every step passed"
fi
"$VENV/bin/python" - "$RESULTS" "${SKIP_SWIFT_TESTS:-0}" <<'PY' || echo "(counts unavailable: see the runners' own closing lines above)"
import os, sys
import xml.etree.ElementTree as ET

results, skipped_swift = sys.argv[1], sys.argv[2] == "1"
files = [("swift.xml", "Swift XCTest"), ("swift-swift-testing.xml", "Swift Testing"), ("pytest.xml", "pytest e2e")]
total_passed = total_failed = 0
for name, label in files:
    path = os.path.join(results, name)
    if not os.path.exists(path):
        # XCTest writes no file when there are no XCTest tests.
        if name != "swift.xml" and not (skipped_swift and name.startswith("swift")):
            print(f"  {label:<14} no results file (did the runner start?)")
        continue
    passed = failed = skipped = 0
    for case in ET.parse(path).getroot().iter("testcase"):
        kinds = {child.tag for child in case}
        if kinds & {"failure", "error"}:
            failed += 1
        elif "skipped" in kinds:
            skipped += 1
        else:
            passed += 1
    total_passed += passed
    total_failed += failed
    print(f"  {label:<14} {passed} passed, {failed} failed, {skipped} skipped")
print(f"{total_passed} passed, {total_failed} failed")
PY

[ ${#FAILED_STEPS[@]} -eq 0 ]
