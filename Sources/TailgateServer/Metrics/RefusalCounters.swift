import Synchronization

/// Refused requests counted by their stable code (`GatewayError.code`): one atomic counter per code
/// of a fixed table, so that `/metrics` has a bounded number of series whatever clients send.
///
/// A code missing from the table (a new one not added here) is counted as `other`, by status class.
public final class RefusalCounters: Sendable {
    /// Every refusal code the gateway answers with, and its HTTP status (docs/PROTOCOL.md).
    public static let known: [(code: String, status: Int)] = [
        ("bad_request", 400), ("bad_worker_id", 400), ("bad_epoch", 400), ("bad_parameter", 400), ("bad_path", 400),
        ("bad_origin", 400), ("bad_publisher", 400), ("bad_websocket_key", 400), ("bad_websocket_handshake", 400),
        ("auth_required", 401), ("token_invalid", 401), ("token_expired", 401), ("token_not_yet_valid", 401),
        ("scope_not_allowed", 403), ("worker_not_allowed", 403), ("publish_not_allowed", 403), ("cross_site_request", 403),
        ("origin_not_allowed", 403), ("host_not_allowed", 403), ("metrics_not_allowed", 403),
        ("not_found", 404), ("worker_not_found", 404), ("run_not_found", 404), ("no_public_directory", 404),
        ("method_not_allowed", 405), ("request_timeout", 408), ("publisher_idle", 408), ("worker_owned_in_process", 409),
        ("already_subscribed", 409),
        ("unsupported_media_type", 415), ("websocket_upgrade_required", 426), ("unsupported_websocket_version", 426),
        ("headers_too_large", 431), ("export_failed", 500),
        ("too_many_connections", 503), ("too_many_connections_from_address", 503), ("too_many_subscribers", 503),
        ("too_many_workers", 503), ("not_ready", 503), ("too_many_subscriptions", 503), ("worker_published_elsewhere", 503),
        ("run_starting", 503),
    ]

    /// The series of `other`: refusals whose code is not in `known`, by status class.
    public static let otherClasses = ["4xx", "5xx"]

    private static let index: [String: Int] = Dictionary(uniqueKeysWithValues: known.enumerated().map { ($1.code, $0) })

    private final class Slot: Sendable {
        let value = Atomic<Int>(0)
    }

    /// `known`'s counters, then `other` 4xx and 5xx.
    private let slots: [Slot] = (0..<(known.count + otherClasses.count)).map { _ in Slot() }

    init() {}

    /// Counts one refusal.
    func count(code: String?, status: Int) {
        let slot = code.flatMap { Self.index[$0] } ?? (Self.known.count + (status >= 500 ? 1 : 0))
        slots[slot].value.add(1, ordering: .relaxed)
    }

    /// One series of the table: its labels and its count so far.
    public struct Series: Sendable, Equatable {
        public var code: String
        public var status: String
        public var count: Int
    }

    /// Every series, zero or not, in the table's order.
    public func snapshot() -> [Series] {
        var series: [Series] = []
        series.reserveCapacity(slots.count)
        for (index, entry) in Self.known.enumerated() {
            series.append(Series(code: entry.code, status: String(entry.status), count: slots[index].value.load(ordering: .relaxed)))
        }
        for (offset, statusClass) in Self.otherClasses.enumerated() {
            series.append(Series(code: "other", status: statusClass, count: slots[Self.known.count + offset].value.load(ordering: .relaxed)))
        }
        return series
    }
}
