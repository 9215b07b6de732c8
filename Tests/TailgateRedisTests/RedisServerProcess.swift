import Foundation
import Logging
import NIOCore
import NIOPosix
import Testing
@testable import TailgateRedis

/// A real `redis-server` for one test: its own temporary folder, a free loopback port, no persistence.
/// Killed (and its folder removed) by `stop()`; `kill()` and `restart()` simulate an outage.
final class RedisServerProcess: @unchecked Sendable {
    // @unchecked: `process` is only touched by the test that owns the server, one call at a time.

    static let notFound = "redis-server not found (scripts/test.sh installs it)"

    /// The `redis-server` executable: TAILGATE_REDIS_SERVER when set (a path that does not exist
    /// shows what happens without one), else the first on PATH.
    static let executable: String? = {
        if let chosen = ProcessInfo.processInfo.environment["TAILGATE_REDIS_SERVER"] {
            return FileManager.default.isExecutableFile(atPath: chosen) ? chosen : nil
        }
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        for folder in path.split(separator: ":") + ["/usr/bin", "/usr/local/bin"] {
            let candidate = "\(folder)/redis-server"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return nil
    }()

    /// Whether a missing `redis-server` fails the tests (TAILGATE_REQUIRE_REDIS=1, as scripts/test.sh sets).
    static let required = ProcessInfo.processInfo.environment["TAILGATE_REQUIRE_REDIS"] == "1"

    /// Whether the tests against a real server run: the server is there, or it is required (and then
    /// its absence fails them).
    static let shouldRun = executable != nil || required

    struct NotFound: Error, CustomStringConvertible {
        var description: String { RedisServerProcess.notFound }
    }

    private(set) var port = 0
    let folder: String
    let extraArguments: [String]
    private var process: Process?

    /// Starts a server; `arguments` are added to its command line (`--requirepass`, …).
    init(arguments: [String] = []) throws {
        guard Self.executable != nil else { throw NotFound() }
        folder = NSTemporaryDirectory() + "/tailgate-redis-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        extraArguments = arguments
        // The port was free when asked; a test running beside this one may take it first: try another.
        var attempt = 0
        while true {
            port = try Self.freePort()
            do {
                try start()
                return
            } catch let error as ServerDidNotStart where attempt < 3 {
                attempt += 1
                _ = error
            }
        }
    }

    /// The client configuration of this server.
    var configuration: RedisConfiguration {
        var configuration = RedisConfiguration(host: "127.0.0.1", port: port)
        configuration.backoff = RedisBackoff(initial: .milliseconds(20), maximum: .milliseconds(200))
        return configuration
    }

    /// Starts (again) on the same port and waits until it answers.
    func start() throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Self.executable!)
        process.arguments = ["--port", "\(port)", "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", folder,
                             "--enable-debug-command", "yes", "--logfile", folder + "/redis.log"] + extraArguments
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        self.process = process
        // Ready once it accepts a TCP connection.
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline {
            if Self.accepts(port: port) { return }
            guard process.isRunning else { break }
            usleep(10_000)
        }
        kill()
        throw ServerDidNotStart(port: port, log: (try? String(contentsOfFile: folder + "/redis.log", encoding: .utf8)) ?? "")
    }

    struct ServerDidNotStart: Error, CustomStringConvertible {
        var port: Int
        var log: String
        var description: String { "redis-server did not start on port \(port): \(log)" }
    }

    /// Kills the server (`SIGKILL`) and waits for it to exit.
    func kill() {
        guard let process, process.isRunning else { return }
        Foundation.kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        self.process = nil
    }

    /// Stops the server and removes its folder.
    func stop() {
        kill()
        try? FileManager.default.removeItem(atPath: folder)
    }

    deinit { stop() }

    /// A port nothing listens on now (the kernel's pick for a socket bound to port 0).
    static func freePort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer -> Int32 in
                guard bind(fd, pointer, length) == 0 else { return -1 }
                return getsockname(fd, pointer, &length)
            }
        }
        guard bound == 0 else { throw POSIXError(.EADDRINUSE) }
        return Int(UInt16(bigEndian: address.sin_port))
    }

    static func accepts(port: Int) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = UInt16(port).bigEndian
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
        }
    }
}

/// One event loop for a test, shut down by `stop()`.
final class TestLoop: Sendable {
    let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    var loop: EventLoop { group.next() }

    func stop() {
        try? group.syncShutdownGracefully()
    }
}

extension RESPValue {
    /// Shorthand for tests: a bulk string from text.
    static func bulk(_ text: String) -> RESPValue { .bulkString(ByteBuffer(string: text)) }
}

/// A logger that writes nothing (the client's reconnect warnings would fill the test output).
let quiet = Logger(label: "redis-test") { _ in SwiftLogNoOpLogHandler() }
