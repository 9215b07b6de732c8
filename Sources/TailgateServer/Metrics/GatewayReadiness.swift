import Synchronization
import TailgateCore

/// Where the gateway is in its life, for `GET /readyz`: starting until `GatewayServer.start` has bound
/// its socket and set everything up, ready, then shutting down from the first moment of `shutdown`.
final class GatewayReadiness: Sendable {
    enum Phase: Int {
        case starting = 0
        case ready = 1
        case shuttingDown = 2
    }

    private let value = Atomic<Int>(Phase.starting.rawValue)

    init() {}

    var phase: Phase { Phase(rawValue: value.load(ordering: .relaxed)) ?? .starting }

    /// Moves to `ready`; only from `starting`.
    func markReady() {
        _ = value.compareExchange(expected: Phase.starting.rawValue, desired: Phase.ready.rawValue, ordering: .relaxed)
    }

    /// Moves to `shuttingDown`, for good.
    func markShuttingDown() {
        value.store(Phase.shuttingDown.rawValue, ordering: .relaxed)
    }

    /// Why the gateway should not get traffic now (`starting`, `shutting_down`, `store_failed`), and
    /// in words; `nil` when it is ready.
    static func notReadyReason(phase: Phase, store: StoreHealth?) -> (reason: String, message: String)? {
        switch phase {
        case .starting:
            return ("starting", "the gateway is starting")
        case .shuttingDown:
            return ("shutting_down", "the gateway is shutting down")
        case .ready:
            guard let store, store.state == "failed" else { return nil }
            return ("store_failed", "the history store cannot write (see /api/stats store.last_error); streaming goes on from memory")
        }
    }
}
