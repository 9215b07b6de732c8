import NIOCore

/// Where a Redis server is and how to talk to it: what `redis://[user:password@]host[:port][/db]`
/// says, plus timeouts and the reconnect backoff, each with a documented default.
public struct RedisConfiguration: Sendable, Equatable {
    /// Host name or address (`127.0.0.1`, `redis.internal`, `::1`).
    public var host: String
    /// TCP port; default 6379.
    public var port: Int = 6379
    /// ACL user for `AUTH user password`; `nil` with a password sends `AUTH password` (`requirepass`).
    public var user: String?
    /// Password; `nil` sends no `AUTH`.
    public var password: String?
    /// Database number for `SELECT`; default 0 (no `SELECT` is sent).
    public var database: Int = 0
    /// How long a TCP connect may take; default 3 s.
    public var connectTimeout: TimeAmount = .seconds(3)
    /// How long a reply may take (blocking commands add their own blocking time); default 5 s.
    public var commandTimeout: TimeAmount = .seconds(5)
    /// The delays between reconnect attempts: doubling from `initial` up to `maximum`.
    public var backoff: RedisBackoff = RedisBackoff()
    /// What the reply decoder accepts.
    public var decoderLimits: RESPDecoder.Limits = RESPDecoder.Limits()

    public init(host: String, port: Int = 6379, user: String? = nil, password: String? = nil, database: Int = 0) {
        self.host = host
        self.port = port
        self.user = user
        self.password = password
        self.database = database
    }

    public static func == (lhs: RedisConfiguration, rhs: RedisConfiguration) -> Bool {
        lhs.host == rhs.host && lhs.port == rhs.port && lhs.user == rhs.user && lhs.password == rhs.password
            && lhs.database == rhs.database && lhs.connectTimeout == rhs.connectTimeout && lhs.commandTimeout == rhs.commandTimeout
            && lhs.backoff == rhs.backoff
    }

    /// `host:port/db`, without the credentials (for logs and start-up lines).
    public var displayAddress: String {
        let hostPart = host.contains(":") ? "[\(host)]" : host
        return "redis://\(hostPart):\(port)/\(database)"
    }
}

/// Capped exponential backoff: `initial`, `2 × initial`, `4 × initial`, … never above `maximum`.
public struct RedisBackoff: Sendable, Equatable {
    /// The first delay; default 50 ms.
    public var initial: TimeAmount = .milliseconds(50)
    /// The longest delay; default 5 s.
    public var maximum: TimeAmount = .seconds(5)

    public init(initial: TimeAmount = .milliseconds(50), maximum: TimeAmount = .seconds(5)) {
        self.initial = initial
        self.maximum = maximum
    }

    /// The delay before attempt `attempt` (0 is the first retry).
    public func delay(attempt: Int) -> TimeAmount {
        let shift = min(attempt, 30)
        let (scaled, overflow) = initial.nanoseconds.multipliedReportingOverflow(by: Int64(1) << shift)
        return overflow ? maximum : .nanoseconds(min(scaled, maximum.nanoseconds))
    }
}
