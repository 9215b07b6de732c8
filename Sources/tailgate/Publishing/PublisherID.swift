import TailgateCore

/// The name a publishing process gives itself in `Tailgate-Publisher`, so that the gateway can keep,
/// per run, the offset of the last line it has taken from it (see `GatewayPublisher`).
///
/// One per process, random: `run-k3v9x0a1b2c3`. It has the syntax of a worker id, as the protocol asks.
struct PublisherID: Sendable, Equatable, CustomStringConvertible {
    let rawValue: String

    /// `prefix` (`run`, `pipe`), a dash and 12 random characters of `[0-9a-z]`.
    static func random(prefix: String) -> PublisherID {
        let alphabet = Array("0123456789abcdefghijklmnopqrstuvwxyz")
        var generator = SystemRandomNumberGenerator()
        let suffix = String((0..<12).map { _ in alphabet[Int(generator.next(upperBound: UInt32(alphabet.count)))] })
        return PublisherID(rawValue: "\(prefix)-\(suffix)")
    }

    var description: String { rawValue }
}
