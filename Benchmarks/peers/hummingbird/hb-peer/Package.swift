// swift-tools-version:6.1
// Peer (c) of the fan-out benchmark: what a Swift developer would write instead of Tailgate —
// a Hummingbird WebSocket broadcast server. Its own package so the main build stays lean.
import PackageDescription

let package = Package(
    name: "hb-peer",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1"),
        .package(url: "https://github.com/hummingbird-project/hummingbird-websocket.git", from: "2.8.1"),
    ],
    targets: [
        .executableTarget(
            name: "hb-peer",
            dependencies: [
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdWebSocket", package: "hummingbird-websocket"),
            ]
        ),
    ]
)
