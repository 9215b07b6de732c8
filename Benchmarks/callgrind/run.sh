#!/usr/bin/env bash
# Instruction counts (callgrind: exactly repeatable, whatever the machine's load) of the publish, drain
# and fan-out path and of the HTTP ingest session, per record and per subscriber visit.
#
#   Benchmarks/callgrind/run.sh                 # the code as it is
#   Benchmarks/callgrind/run.sh --flag          # the same with -enforce-exclusivity=unchecked (the flag
#                                               # the package used to set), for the before/after in FINDINGS.md
#
# It copies Sources/TailgateCore and Sources/TailgateServer/Ingest/IngestSession.swift into a scratch
# package (Driver/ holds the driver and a stub of the three counters IngestSession touches), builds it
# in release, and runs the driver under callgrind: 0 and 50,000 records, without and with 100
# in-process subscribers, and the ingest session alone. Start-up is removed by subtracting the 0-record runs.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
FLAG=""
[ "${1:-}" = "--flag" ] && FLAG='.unsafeFlags(["-enforce-exclusivity=unchecked"])'
command -v valgrind >/dev/null || { echo "valgrind is missing (apt-get install valgrind)" >&2; exit 1; }
WORK="${CALLGRIND_WORK:-/tmp/tailgate-callgrind}"
rm -rf "$WORK/tailgate/Sources" "$WORK/driver/Sources"
mkdir -p "$WORK/tailgate/Sources" "$WORK/driver/Sources/Driver"
cp -r "$ROOT/Sources/TailgateCore" "$WORK/tailgate/Sources/"
cp "$ROOT/Benchmarks/callgrind/Driver/"*.swift "$ROOT/Sources/TailgateServer/Ingest/IngestSession.swift" "$WORK/driver/Sources/Driver/"
cat > "$WORK/tailgate/Package.swift" <<PKG
// swift-tools-version:6.0
import PackageDescription
let package = Package(
    name: "tailgate", platforms: [.macOS(.v15)],
    products: [.library(name: "TailgateCore", targets: ["TailgateCore"])],
    dependencies: [.package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2")],
    targets: [.target(name: "TailgateCore", dependencies: [.product(name: "NIOCore", package: "swift-nio")],
                      swiftSettings: [$FLAG])])
PKG
cat > "$WORK/driver/Package.swift" <<PKG
// swift-tools-version:6.0
import PackageDescription
let package = Package(
    name: "driver", platforms: [.macOS(.v15)],
    dependencies: [.package(path: "../tailgate"), .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2")],
    targets: [.executableTarget(name: "Driver", dependencies: [
        .product(name: "TailgateCore", package: "tailgate"), .product(name: "NIOCore", package: "swift-nio"),
        .product(name: "NIOEmbedded", package: "swift-nio")], swiftSettings: [$FLAG])])
PKG
(cd "$WORK/driver" && swift build -c release >/dev/null)
# callgrind cannot read the driver's debug info: count a stripped copy (function names stay).
strip --strip-debug -o "$WORK/Driver" "$WORK/driver/.build/release/Driver"
count() { valgrind --tool=callgrind --callgrind-out-file="$WORK/cg.out" "$WORK/Driver" "$@" >/dev/null 2>&1
          grep -o 'summary: [0-9]*' "$WORK/cg.out" | awk '{print $2}'; }
a0=$(count 0 0); a1=$(count 50000 0); b0=$(count 0 100); b1=$(count 50000 100)
s0=$(count 0 0 session); s1=$(count 50000 0 session)
echo "totals (Ir): 0/50000 records, no subscriber: $a0 / $a1; with 100: $b0 / $b1; ingest session: $s0 / $s1"
echo "decode + enqueue + drain: $(( (a1 - a0) / 50000 )) Ir per record"
echo "fan-out: $(( ((b1 - b0) - (a1 - a0)) / 4900 )) Ir per subscriber visit (49 drains x 100 subscribers)"
echo "HTTP ingest session (split, decode, enqueue, drain): $(( (s1 - s0) / 50000 )) Ir per record"
