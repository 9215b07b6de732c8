import Synchronization
// The three counters IngestSession touches (TailgateServer's GatewayStatistics holds them too).
final class GatewayStatistics: Sendable {
    let ingestAccepted = Atomic<Int>(0)
    let ingestRejected = Atomic<Int>(0)
    let ingestDuplicates = Atomic<Int>(0)
}
