import NIOCore
import NIOPosix
import Testing
@testable import TailgateRedis

/// The client against a real `redis-server` started by each test (skipped without one, unless
/// TAILGATE_REQUIRE_REDIS=1, which makes its absence a failure).
@Suite(.enabled(if: RedisServerProcess.shouldRun, Comment(rawValue: RedisServerProcess.notFound)))
struct RedisClientTests {
    /// Runs `body` with a fresh server and a connected client; stops both afterwards.
    private func withClient(serverArguments: [String] = [], configure: (inout RedisConfiguration) -> Void = { _ in },
                            _ body: (RedisClient, RedisServerProcess) async throws -> Void) async throws {
        let server = try RedisServerProcess(arguments: serverArguments)
        defer { server.stop() }
        let loop = TestLoop()
        defer { loop.stop() }
        var configuration = server.configuration
        configure(&configuration)
        let client = RedisClient(configuration: configuration, eventLoop: loop.loop, logger: quiet)
        try await client.waitUntilConnected(within: .seconds(10)).get()
        try await body(client, server)
        try await client.close().get()
    }

    @Test func everyReplyTypeFromARealServer() async throws {
        try await withClient { client, _ in
            #expect(try await client.send(RedisCommand("PING")).get() == .simpleString("PONG"))
            #expect(try await client.send(RedisCommand("INCR", "n")).get() == .integer(1))
            #expect(try await client.send(RedisCommand("SET", "k", "v\r\nw")).get() == .simpleString("OK"))
            #expect(try await client.send(RedisCommand("GET", "k")).get() == .bulk("v\r\nw"))
            #expect(try await client.send(RedisCommand("GET", "missing")).get() == .null)
            #expect(try await client.send(RedisCommand("LRANGE", "missing", "0", "-1")).get() == .array([]))
            _ = try await client.send(RedisCommand("RPUSH", "l", "a", "b")).get()
            #expect(try await client.send(RedisCommand("LRANGE", "l", "0", "-1")).get() == .array([.bulk("a"), .bulk("b")]))
            #expect(try await client.send(RedisCommand("BLPOP", "missing", "0.01")).get() == .null)  // *-1
            // RESP3 types, as Redis 7 sends them after HELLO 3 (DEBUG PROTOCOL answers each type).
            _ = try await client.send(RedisCommand("HELLO", "3")).get()
            let expected: [(String, (RESPValue) -> Bool)] = [
                ("string", { $0 == .bulk("Hello World") }),
                ("integer", { $0 == .integer(12345) }),
                ("double", { $0 == .double(3.141) }),
                ("bignum", { $0 == .bigNumber("1234567999999999999999999999999999999") }),
                ("null", { $0 == .null }),
                ("array", { $0 == .array([.integer(0), .integer(1), .integer(2)]) }),
                ("set", { $0 == .set([.integer(0), .integer(1), .integer(2)]) }),
                ("map", { if case .map(let pairs) = $0 { return pairs.count == 3 } else { return false } }),
                ("attrib", { $0 == .bulk("Some real reply following the attribute") }),
                ("verbatim", { $0 == .verbatimString(format: "txt", text: ByteBuffer(string: "This is a verbatim\nstring")) }),
                ("true", { $0 == .boolean(true) }),
                ("false", { $0 == .boolean(false) }),
            ]
            for (type, check) in expected {
                let reply = try await client.send(RedisCommand("DEBUG", "PROTOCOL", type)).get()
                #expect(check(reply), "DEBUG PROTOCOL \(type) gave \(reply)")
            }
            // A push message before the reply is skipped: the reply still reaches its command.
            let push = try await client.send(RedisCommand("DEBUG", "PROTOCOL", "push")).get()
            #expect(push == .bulk("Some real reply following the push reply"))
            #expect(try await client.send(RedisCommand("PING")).get() == .simpleString("PONG"))
        }
    }

    @Test func tenThousandPipelinedCommandsKeepTheirOrder() async throws {
        try await withClient { client, _ in
            var commands: [RedisCommand] = []
            for index in 0..<10_000 {
                commands.append(index % 2 == 0 ? RedisCommand("INCR", "counter") : RedisCommand("ECHO", "\(index)"))
            }
            let replies = try await EventLoopFuture.whenAllSucceed(client.send(commands), on: client.eventLoop).get()
            #expect(replies.count == 10_000)
            for (index, reply) in replies.enumerated() {
                let expected: RESPValue = index % 2 == 0 ? .integer(Int64(index / 2 + 1)) : .bulk("\(index)")
                if reply != expected {
                    Issue.record("reply \(index) is \(reply), expected \(expected)")
                    break
                }
            }
            // Sent one by one without waiting: still in order.
            let singles = (0..<1_000).map { client.send(RedisCommand("ECHO", "\($0)")) }
            for (index, future) in singles.enumerated() { #expect(try await future.get() == .bulk("\(index)")) }
        }
    }

    @Test func redisErrorRepliesKeepRedisText() async throws {
        try await withClient { client, _ in
            _ = try await client.send(RedisCommand("SET", "s", "x")).get()
            await #expect {
                _ = try await client.send(RedisCommand("LPUSH", "s", "y")).get()
            } throws: { error in
                (error as? RedisError) == .server("WRONGTYPE Operation against a key holding the wrong kind of value")
                    && (error as? RedisError)?.serverCode == "WRONGTYPE"
            }
            await #expect {
                _ = try await client.send(RedisCommand("NOSUCHCOMMAND", "a")).get()
            } throws: { error in
                "\(error)".hasPrefix("ERR unknown command 'NOSUCHCOMMAND'")
            }
            // An error fails its own command only: the pipeline around it goes on.
            let replies = client.send([RedisCommand("INCR", "n"), RedisCommand("INCR", "s"), RedisCommand("INCR", "n")])
            #expect(try await replies[0].get() == .integer(1))
            await #expect(throws: RedisError.server("ERR value is not an integer or out of range")) { try await replies[1].get() }
            #expect(try await replies[2].get() == .integer(2))
        }
    }

    @Test func requirepassGivesNoauthAndWrongpass() async throws {
        let server = try RedisServerProcess(arguments: ["--requirepass", "s3cret"])
        defer { server.stop() }
        let loop = TestLoop()
        defer { loop.stop() }

        let anonymous = RedisClient(configuration: server.configuration, eventLoop: loop.loop, logger: quiet)
        try await anonymous.waitUntilConnected(within: .seconds(5)).get()
        await #expect {
            _ = try await anonymous.send(RedisCommand("GET", "k")).get()
        } throws: { ($0 as? RedisError)?.serverCode == "NOAUTH" }
        try await anonymous.close().get()

        var wrong = server.configuration
        wrong.password = "nope"
        let refused = RedisClient(configuration: wrong, eventLoop: loop.loop, logger: quiet)
        await #expect(throws: RedisError.self) { try await refused.waitUntilConnected(within: .milliseconds(500)).get() }
        #expect(refused.lastError?.hasPrefix("WRONGPASS invalid username-password pair") == true, "\(refused.lastError ?? "")")
        await #expect {
            _ = try await refused.send(RedisCommand("PING")).get()
        } throws: { error in
            guard case .notConnected(let why) = error as? RedisError else { return false }
            return why.contains("WRONGPASS")
        }
        try await refused.close().get()

        var right = server.configuration
        right.password = "s3cret"
        let allowed = RedisClient(configuration: right, eventLoop: loop.loop, logger: quiet)
        try await allowed.waitUntilConnected(within: .seconds(5)).get()
        #expect(try await allowed.send(RedisCommand("PING")).get() == .simpleString("PONG"))
        try await allowed.close().get()
    }

    @Test func anACLUserAuthenticates() async throws {
        try await withClient { admin, server in
            _ = try await admin.send(RedisCommand("ACL", "SETUSER", "alice", "on", ">wonder land", "~tailgate:*", "+@all")).get()
            var alice = server.configuration
            alice.user = "alice"
            alice.password = "wonder land"
            let client = RedisClient(configuration: alice, eventLoop: admin.eventLoop, logger: quiet)
            try await client.waitUntilConnected(within: .seconds(5)).get()
            #expect(try await client.send(RedisCommand("ACL", "WHOAMI")).get() == .bulk("alice"))
            #expect(try await client.send(RedisCommand("SET", "tailgate:x", "1")).get() == .simpleString("OK"))
            await #expect {
                _ = try await client.send(RedisCommand("SET", "other", "1")).get()
            } throws: { ($0 as? RedisError)?.serverCode == "NOPERM" }
            try await client.close().get()

            alice.password = "wrong"
            let refused = RedisClient(configuration: alice, eventLoop: admin.eventLoop, logger: quiet)
            await #expect(throws: RedisError.self) { try await refused.waitUntilConnected(within: .milliseconds(500)).get() }
            #expect(refused.lastError?.hasPrefix("WRONGPASS") == true)
            try await refused.close().get()
        }
    }

    @Test func selectChoosesTheDatabase() async throws {
        try await withClient(configure: { $0.database = 3 }) { client, server in
            _ = try await client.send(RedisCommand("SET", "where", "db3")).get()
            let other = RedisClient(configuration: server.configuration, eventLoop: client.eventLoop, logger: quiet)
            try await other.waitUntilConnected(within: .seconds(5)).get()
            #expect(try await other.send(RedisCommand("GET", "where")).get() == .null)
            #expect(try await other.send(RedisCommand("SELECT", "3")).get() == .simpleString("OK"))
            #expect(try await other.send(RedisCommand("GET", "where")).get() == .bulk("db3"))
            try await other.close().get()
        }
        // A database the server does not have: SELECT's own error.
        let server = try RedisServerProcess()
        defer { server.stop() }
        let loop = TestLoop()
        defer { loop.stop() }
        var configuration = server.configuration
        configuration.database = 99
        let client = RedisClient(configuration: configuration, eventLoop: loop.loop, logger: quiet)
        await #expect(throws: RedisError.self) { try await client.waitUntilConnected(within: .milliseconds(500)).get() }
        #expect(client.lastError == "ERR DB index is out of range")
        try await client.close().get()
    }

    @Test func aBlockingReadHasItsOwnConnection() async throws {
        try await withClient { client, _ in
            let read = client.sendBlocking(RedisCommand("XREAD", ["BLOCK", "10000", "STREAMS", "s", "$"], timeout: .seconds(15)))
            // The blocked read holds up nothing on the command connection.
            for index in 0..<100 { #expect(try await client.send(RedisCommand("ECHO", "\(index)")).get() == .bulk("\(index)")) }
            // Wait until the read is really blocked in Redis, then add an entry.
            var blocked = false
            for _ in 0..<500 where !blocked {
                let clients = try await client.send(RedisCommand("CLIENT", "LIST")).get().string ?? ""
                blocked = clients.contains("cmd=xread")
                if !blocked { try await Task.sleep(for: .milliseconds(10)) }
            }
            #expect(blocked)
            _ = try await client.send(RedisCommand("XADD", "s", "5-1", "field", "value")).get()
            let reply = try await read.get()
            #expect(reply == .array([.array([.bulk("s"), .array([.array([.bulk("5-1"), .array([.bulk("field"), .bulk("value")])])])])]))
        }
    }

    @Test func reconnectsAfterTheServerIsKilledAndRestarted() async throws {
        try await withClient { client, server in
            _ = try await client.send(RedisCommand("SET", "k", "v")).get()
            let inFlight = client.send(RedisCommand("BLPOP", ["nothing", "5"], timeout: .seconds(10)))
            server.kill()
            await #expect(throws: RedisError.connectionClosed) { try await inFlight.get() }
            // While it is down: commands fail at once, saying why.
            var failedFast = false
            for _ in 0..<200 where !failedFast {
                do {
                    _ = try await client.send(RedisCommand("PING")).get()
                    try await Task.sleep(for: .milliseconds(5))
                } catch let error as RedisError {
                    guard case .notConnected(let why) = error else { continue }
                    #expect(why.contains("127.0.0.1:\(server.port)"))
                    failedFast = true
                }
            }
            #expect(failedFast)
            #expect(!client.isConnected)
            try server.start()
            try await client.waitUntilConnected(within: .seconds(5)).get()
            #expect(try await client.send(RedisCommand("PING")).get() == .simpleString("PONG"))
            #expect(try await client.send(RedisCommand("GET", "k")).get() == .null)  // no persistence: a new server
        }
    }

    @Test func aCommandTimeoutClosesAndTheClientReconnects() async throws {
        try await withClient(configure: { $0.commandTimeout = .milliseconds(200) }) { client, _ in
            let slow = client.send(RedisCommand("DEBUG", "SLEEP", "1"))
            let behind = client.send(RedisCommand("PING"))
            await #expect(throws: RedisError.timeout(command: "DEBUG", after: .milliseconds(200))) { try await slow.get() }
            await #expect(throws: RedisError.connectionClosed) { try await behind.get() }
            try await client.waitUntilConnected(within: .seconds(5)).get()
            // Give the server time to finish sleeping, then the new connection answers.
            var answered = false
            for _ in 0..<50 where !answered {
                answered = (try? await client.send(RedisCommand("PING")).get()) == .simpleString("PONG")
                if !answered { try await Task.sleep(for: .milliseconds(50)) }
            }
            #expect(answered)
        }
    }
}
