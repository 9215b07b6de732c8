// swift-tools-version:6.1
// Micro-benchmarks of Tailgate's hot path (ordo-one/benchmark): publish, record encoding, batch building,
// ring append/eviction, frame building. A package of its own so the main build stays lean.
// Run: cd Benchmarks/micro && swift package --disable-sandbox benchmark
import PackageDescription

let package = Package(
    name: "tailgate-micro",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(path: "../.."),
        .package(url: "https://github.com/ordo-one/benchmark.git", from: "1.38.1", traits: ["MallocInterposer"]),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
    ],
    targets: [
        .executableTarget(
            name: "TailgateMicro",
            dependencies: [
                .product(name: "Benchmark", package: "benchmark"),
                .product(name: "TailgateCore", package: "main"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            path: "Benchmarks/TailgateMicro",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
    ]
)
