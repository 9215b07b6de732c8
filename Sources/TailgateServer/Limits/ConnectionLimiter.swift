import Synchronization
import TailgateCore

/// Counts open connections (in all, per client address) and subscribers per worker, across event
/// loops, and says when a limit is reached.
final class ConnectionLimiter: Sendable {
    private struct Counts: ~Copyable {
        var total = 0
        var perAddress: [String: Int] = [:]
        var perWorker: [ObjectIdentifier: Int] = [:]
        var perProxiedClient: [String: Int] = [:]
    }

    private let counts = Lock(Counts())
    private let configuration: ServerConfiguration

    /// Connections over the limit still get a 503 answer, up to this many more; past that they are
    /// closed at once so that refusing costs nothing.
    static let refusalHeadroom = 256

    init(configuration: ServerConfiguration) { self.configuration = configuration }

    enum Admission {
        case admitted
        /// Answer the connection's request with this error, then close.
        case refused(GatewayError)
        /// Close at once.
        case dropped
    }

    /// Counts a new connection from `address` and says whether it may be served.
    /// `countPerAddress` is false for a trusted proxy, whose clients are counted by `reserveProxiedClient`.
    func admit(_ address: String, countPerAddress: Bool = true) -> Admission {
        counts.withLock { counts in
            counts.total += 1
            if countPerAddress { counts.perAddress[address, default: 0] += 1 }
            let total = counts.total
            let fromAddress = countPerAddress ? counts.perAddress[address]! : 0
            if total > configuration.maxConnections + Self.refusalHeadroom { return .dropped }
            if total > configuration.maxConnections {
                return .refused(.limitReached("too_many_connections",
                    "the gateway has reached its limit of \(configuration.maxConnections) connections; try again later",
                    retryAfter: configuration.retryAfterSeconds))
            }
            if fromAddress > configuration.maxConnectionsPerIP {
                if fromAddress > configuration.maxConnectionsPerIP + Self.refusalHeadroom { return .dropped }
                return .refused(.limitReached("too_many_connections_from_address",
                    "\(address) has reached the limit of \(configuration.maxConnectionsPerIP) connections per client address",
                    retryAfter: configuration.retryAfterSeconds))
            }
            return .admitted
        }
    }

    /// Forgets a connection counted by `admit`.
    func release(_ address: String, countedPerAddress: Bool = true) {
        counts.withLock { counts in
            counts.total -= 1
            if countedPerAddress { Self.decrement(&counts.perAddress, address) }
        }
    }

    /// Takes a subscriber place on `worker`, or says why not.
    func reserveSubscriber(of worker: Worker) -> GatewayError? {
        let limit = configuration.maxSubscribersPerWorker
        let taken = counts.withLock { Self.increment(&$0.perWorker, ObjectIdentifier(worker), limit: limit) }
        return taken ? nil : .limitReached("too_many_subscribers",
            "worker '\(worker.id)' has reached its limit of \(limit) subscribers", retryAfter: configuration.retryAfterSeconds)
    }

    /// Gives back a place taken by `reserveSubscriber`.
    func releaseSubscriber(of worker: Worker) {
        counts.withLock { Self.decrement(&$0.perWorker, ObjectIdentifier(worker)) }
    }

    /// Counts one more under `key` unless that reaches past `limit`; says whether it did.
    private static func increment<Key: Hashable>(_ table: inout [Key: Int], _ key: Key, limit: Int) -> Bool {
        let current = table[key, default: 0]
        guard current < limit else { return false }
        table[key] = current + 1
        return true
    }

    private static func decrement<Key: Hashable>(_ table: inout [Key: Int], _ key: Key) {
        if let count = table[key], count > 1 {
            table[key] = count - 1
        } else {
            table[key] = nil
        }
    }

    /// Takes a stream place for a client behind a trusted proxy (by its forwarded address), or says why not.
    func reserveProxiedClient(_ address: String) -> GatewayError? {
        let limit = configuration.maxConnectionsPerIP
        let taken = counts.withLock { Self.increment(&$0.perProxiedClient, address, limit: limit) }
        return taken ? nil : .limitReached("too_many_connections_from_address",
            "\(address) has reached the limit of \(limit) connections per client address", retryAfter: configuration.retryAfterSeconds)
    }

    /// Gives back a place taken by `reserveProxiedClient`.
    func releaseProxiedClient(_ address: String) {
        counts.withLock { Self.decrement(&$0.perProxiedClient, address) }
    }

    /// Open connections right now.
    var openConnections: Int { counts.withLock { $0.total } }
}
