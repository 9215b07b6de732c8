import NIOCore

/// What went wrong talking to Redis. Each case reads as a sentence in a log or a health report.
public enum RedisError: Error, Sendable, Equatable, CustomStringConvertible {
    /// Redis answered with an error reply; the text is Redis's own (`WRONGTYPE Operation against a key
    /// holding the wrong kind of value`, `NOAUTH Authentication required.`, `ERR unknown command …`).
    case server(String)
    /// The bytes from the server are not RESP, or break one of the decoder's limits.
    case protocolViolation(String)
    /// A `redis://` URL that cannot be used, and why.
    case invalidURL(String, reason: String)
    /// A command was sent while the client has no connection; carries the reason it has none.
    case notConnected(String)
    /// The connection closed before the command's reply came.
    case connectionClosed
    /// No reply within the command timeout; the connection is closed (later replies could not be
    /// matched to their commands any more).
    case timeout(command: String, after: TimeAmount)
    /// A reply of a shape the caller did not expect.
    case unexpectedReply(String)
    /// The client was closed.
    case clientClosed

    /// The first word of a server error (`WRONGTYPE`, `NOAUTH`, `WRONGPASS`, `ERR`), else `nil`.
    public var serverCode: String? {
        guard case .server(let text) = self else { return nil }
        return text.split(separator: " ", maxSplits: 1).first.map(String.init)
    }

    public var description: String {
        switch self {
        case .server(let text): return text
        case .protocolViolation(let why): return "Redis protocol error: \(why)"
        case .invalidURL(let url, let reason): return "invalid Redis URL \"\(url)\": \(reason)"
        case .notConnected(let why): return "not connected to Redis: \(why)"
        case .connectionClosed: return "the connection to Redis closed before the reply"
        case .timeout(let command, let after):
            return "Redis did not answer \(command) within \(Double(after.nanoseconds) / 1e9) s (connection closed)"
        case .unexpectedReply(let what): return "unexpected reply from Redis: \(what)"
        case .clientClosed: return "the Redis client is closed"
        }
    }
}
