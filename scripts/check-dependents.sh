#!/usr/bin/env bash
# Proves that Tailgate can be used as a versioned SwiftPM dependency, as a user would:
#   1. a clone of this repository in a temporary directory, with the working tree's files committed
#      (tracked and untracked-but-not-ignored; `--committed` uses HEAD as it is) and tagged 0.9.0;
#   2. a tiny package there that depends on it by version
#      (`.package(url: "file://…/tailgate", from: "0.9.0")`) and uses TailgateServer + TailgateLogging:
#      it starts a gateway on port 0 with a LogBus, publishes a record through the swift-log handler,
#      reads it back from the worker's ring, and exits;
#   3. builds it (debug, clean) and runs it.
# SwiftPM refuses a versioned dependency whose targets use `unsafeFlags`, so this fails if one comes back.
#
# Usage: scripts/check-dependents.sh [--committed] [--graph-only] [--keep]
#   --committed   depend on HEAD as committed (default: the working tree as it is now)
#   --graph-only  stop after SwiftPM has resolved and loaded the package graph (`swift package
#                 show-dependencies`): seconds, and enough to catch `unsafeFlags`, which SwiftPM
#                 rejects while loading the graph; scripts/test.sh runs this
#   --keep        keep the temporary directory (its path is printed)
# The full check's clean build of the consumer compiles SwiftNIO, swift-crypto (BoringSSL) and
# swift-prometheus from scratch (861 s on the loaded 2-core machine where it was written), so it is a
# separate check, not part of scripts/test.sh (README, "Depending on Tailgate").
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
committed=0
graph_only=0
keep=0
for arg in "$@"; do
    case "$arg" in
        --committed) committed=1 ;;
        --graph-only) graph_only=1 ;;
        --keep) keep=1 ;;
        *) echo "usage: $0 [--committed] [--graph-only] [--keep]" >&2; exit 2 ;;
    esac
done

tmp="$(mktemp -d "${TMPDIR:-/tmp}/tailgate-dependents.XXXXXX")"
cleanup() { if [ "$keep" = 1 ]; then echo "kept: $tmp"; else rm -rf "$tmp"; fi; }
trap cleanup EXIT
version=0.9.0

echo "== tagged clone of $repo ($([ $committed = 1 ] && echo HEAD || echo 'working tree')) as $version"
git clone -q --no-local "$repo" "$tmp/tailgate"
if [ "$committed" = 0 ]; then
    # Replace the clone's files by the working tree's: what is tracked or new (and not ignored).
    git -C "$tmp/tailgate" ls-files -z | (cd "$tmp/tailgate" && xargs -0 rm -f --)
    (cd "$repo" && git ls-files -z --cached --others --exclude-standard) \
        | (cd "$repo" && while IFS= read -r -d '' f; do [ -f "$f" ] && printf '%s\0' "$f"; done) \
        | (cd "$repo" && tar --null -T - -cf -) | tar -xf - -C "$tmp/tailgate"
    git -C "$tmp/tailgate" add -A
    git -C "$tmp/tailgate" -c user.name=check -c user.email=check@localhost \
        commit -q --allow-empty -m "working tree of $repo"
fi
git -C "$tmp/tailgate" tag "$version"

echo "== consumer package"
mkdir -p "$tmp/consumer/Sources/Consumer"
cat > "$tmp/consumer/Package.swift" <<EOF
// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "consumer",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(url: "file://$tmp/tailgate", from: "$version"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
    ],
    targets: [
        .executableTarget(
            name: "Consumer",
            dependencies: [
                .product(name: "TailgateServer", package: "tailgate"),
                .product(name: "TailgateLogging", package: "tailgate"),
                .product(name: "TailgateCore", package: "tailgate"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
    ]
)
EOF
cat > "$tmp/consumer/Sources/Consumer/main.swift" <<'EOF'
import Logging
import NIOPosix
import TailgateCore
import TailgateLogging
import TailgateServer

let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
let bus = LogBus(eventLoopGroup: group)
var configuration = ServerConfiguration()
configuration.host = "127.0.0.1"
configuration.port = 0
let server = try await GatewayServer.start(configuration: configuration, bus: bus, group: group)
precondition(server.port > 0, "the gateway did not report its port")

let worker = try bus.register(WorkerID("consumer-check")!)
let logger = Logger(label: "Consumer") { label in TailgateLogHandler(label: label, worker: worker) }
logger.warning("published through swift-log", metadata: ["check": "dependents"])

// The record reaches the ring once the worker's loop has drained it.
var seen = 0
for _ in 0..<500 where seen == 0 {
    try await Task.sleep(for: .milliseconds(10))
    seen = worker.withRing { ring, _ in ring.count }
}
precondition(seen == 1, "the record did not reach the worker's ring")
worker.stop()
await server.shutdown()
try await group.shutdownGracefully()
print("consumer: gateway on 127.0.0.1:\(server.port), 1 record published through swift-log: OK")
EOF

echo "== package graph (SwiftPM refuses a versioned dependency with unsafeFlags here)"
(cd "$tmp/consumer" && swift package show-dependencies >/dev/null)
echo "graph loaded: tailgate $version is accepted as a versioned dependency"
[ "$graph_only" = 1 ] && exit 0

echo "== build (clean, debug)"
start=$(date +%s)
(cd "$tmp/consumer" && swift build)
echo "build took $(( $(date +%s) - start )) s"
echo "== run"
(cd "$tmp/consumer" && swift run --skip-build Consumer)
