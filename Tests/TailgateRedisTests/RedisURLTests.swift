import Testing
@testable import TailgateRedis

@Suite struct RedisURLTests {
    static let valid: [(String, RedisConfiguration)] = [
        ("redis://localhost", RedisConfiguration(host: "localhost")),
        ("redis://127.0.0.1:6380", RedisConfiguration(host: "127.0.0.1", port: 6380)),
        ("redis://127.0.0.1:6380/3", RedisConfiguration(host: "127.0.0.1", port: 6380, database: 3)),
        ("redis://h/", RedisConfiguration(host: "h")),
        ("redis://:s3cret@h", RedisConfiguration(host: "h", password: "s3cret")),
        ("redis://s3cret@h", RedisConfiguration(host: "h", password: "s3cret")),
        ("redis://alice:p%40ss:w@h:1/2", RedisConfiguration(host: "h", port: 1, user: "alice", password: "p@ss:w", database: 2)),
        ("REDIS://[::1]:7000", RedisConfiguration(host: "::1", port: 7000)),
        ("redis://[::1]", RedisConfiguration(host: "::1")),
    ]

    @Test(arguments: 0..<valid.count)
    func validURLs(index: Int) throws {
        let (url, expected) = Self.valid[index]
        #expect(try RedisConfiguration(url: url) == expected)
    }

    static let invalid: [(String, String)] = [
        ("localhost:6379", "expected redis://"),
        ("http://h", "scheme must be redis://"),
        ("rediss://h", "TLS"),
        ("redis://", "no host"),
        ("redis://:6379", "no host"),
        ("redis://h:0", "port"),
        ("redis://h:70000", "port"),
        ("redis://h:abc", "port"),
        ("redis://h/x", "database"),
        ("redis://h/-1", "database"),
        ("redis://h?db=1", "query"),
        ("redis://[::1", "closing ]"),
        ("redis://u:%zz@h", "percent-escape"),
    ]

    @Test(arguments: 0..<invalid.count)
    func invalidURLs(index: Int) {
        let (url, words) = Self.invalid[index]
        #expect {
            _ = try RedisConfiguration(url: url)
        } throws: { error in
            guard let error = error as? RedisError, case .invalidURL = error else { return false }
            return error.description.contains(words)
        }
    }

    @Test func passwordsNeverAppearInErrors() {
        #expect {
            _ = try RedisConfiguration(url: "redis://alice:topsecret@h:badport")
        } throws: { error in
            "\(error)".contains("***") && !"\(error)".contains("topsecret")
        }
    }

    @Test func backoffDoublesUpToItsCap() {
        let backoff = RedisBackoff(initial: .milliseconds(50), maximum: .seconds(1))
        #expect((0..<7).map { backoff.delay(attempt: $0) } == [
            .milliseconds(50), .milliseconds(100), .milliseconds(200), .milliseconds(400), .milliseconds(800), .seconds(1), .seconds(1),
        ])
        #expect(backoff.delay(attempt: 500) == .seconds(1))
    }
}
