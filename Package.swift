// swift-tools-version:6.0
import Foundation
import PackageDescription

let package = Package(
    name: "Tailgate",
    // Linux is what is built and tested. macOS 15 is the least the code needs (Synchronization's Mutex
    // and Atomic) and is not verified: see the README, "Depending on Tailgate".
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "TailgateCore", targets: ["TailgateCore"]),
        .library(name: "TailgateServer", targets: ["TailgateServer"]),
        .library(name: "TailgateStore", targets: ["TailgateStore"]),
        .library(name: "TailgateLogging", targets: ["TailgateLogging"]),
        .executable(name: "tailgate", targets: ["tailgate"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-crypto.git", from: "3.12.3"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
    ],
    targets: [
        .target(
            name: "TailgateCore",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
            ]
        ),
        .systemLibrary(
            name: "CZlib",
            providers: [.apt(["zlib1g-dev"])]
        ),
        .target(
            name: "TailgateServer",
            dependencies: [
                "TailgateCore",
                "CZlib",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ]
        ),
        .target(name: "CTailgateChecksum"),
        .target(
            name: "TailgateStore",
            dependencies: [
                "TailgateCore",
                "CZlib",
                "CTailgateChecksum",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .target(
            name: "TailgateDemo",
            dependencies: [
                "TailgateCore",
                .product(name: "NIOCore", package: "swift-nio"),
            ]
        ),
        .target(
            name: "TailgateLogging",
            dependencies: [
                "TailgateCore",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .executableTarget(
            name: "tailgate",
            dependencies: [
                "TailgateCore",
                "TailgateServer",
                "TailgateStore",
                "TailgateRedisStore",
                "TailgateLogging",
                "TailgateDemo",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ]
        ),
        .testTarget(
            name: "TailgateCoreTests",
            dependencies: [
                "TailgateCore",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ]
        ),
        .testTarget(
            name: "TailgateServerTests",
            dependencies: [
                "TailgateServer", "TailgateCore", "TailgateStore",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
            ]
        ),
        .testTarget(
            name: "TailgateStoreTests",
            dependencies: [
                "TailgateStore", "TailgateCore", "CTailgateChecksum",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ]
        ),
        .testTarget(
            name: "TailgateLoggingTests",
            dependencies: [
                "TailgateLogging", "TailgateCore",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // Our own RESP client on SwiftNIO (docs/REDIS.md): the shared store's link to Redis.
        .target(
            name: "TailgateRedis",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // The shared store: the RunStore protocol on Redis (docs/REDIS.md).
        .target(
            name: "TailgateRedisStore",
            dependencies: [
                "TailgateCore",
                "TailgateRedis",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // Times the client against redis-benchmark (docs/REDIS.md); build it with -c release.
        .executableTarget(
            name: "TailgateRedisBench",
            dependencies: [
                "TailgateRedis", "TailgateRedisStore", "TailgateCore",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ]
        ),
        .testTarget(
            name: "TailgateRedisTests",
            dependencies: [
                "TailgateRedis", "TailgateRedisStore", "TailgateCore",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
    ]
)

// libFuzzer targets, one per parser of untrusted bytes (Fuzz/README.md). Only in builds made by
// scripts/fuzz.sh, which sets TAILGATE_FUZZ and builds them with -sanitize=fuzzer,address.
if ProcessInfo.processInfo.environment["TAILGATE_FUZZ"] != nil {
    package.targets.append(.target(name: "FuzzSupport", path: "Fuzz/Sources/FuzzSupport"))
    for (name, dependencies) in [
        ("FuzzRecordDecoder", ["TailgateCore"]),
        ("FuzzRequestTarget", ["TailgateServer"]),
        ("FuzzDeflate", ["TailgateServer"]),
        ("FuzzToken", ["TailgateServer"]),
        ("FuzzIngestLines", ["TailgateServer", "TailgateCore"]),
        ("FuzzStreamRequestHead", ["TailgateServer"]),
    ] {
        package.targets.append(.executableTarget(
            name: name,
            dependencies: (dependencies + ["FuzzSupport"]).map { .target(name: $0) } + [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            path: "Fuzz/Sources/\(name)"))
    }
}
