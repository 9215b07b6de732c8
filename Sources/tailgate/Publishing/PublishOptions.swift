import ArgumentParser
import TailgateCore

/// The options `tailgate run` and `tailgate pipe` share: where to publish, and how much to buffer.
struct PublishOptions: ParsableArguments {
    @Option(help: ArgumentHelp("The worker to publish into (created on first publish).", valueName: "id"))
    var worker: String

    @Option(help: ArgumentHelp("The gateway's address: http://HOST[:PORT][/PREFIX].", valueName: "url"))
    var gateway = "http://127.0.0.1:8080"

    @Option(name: .customLong("buffer-lines"), help: ArgumentHelp(
        "Lines kept while the gateway is unreachable or slow; lines beyond are dropped and counted in one WARNING record once it is back.",
        valueName: "n"))
    var bufferLines = 10_000

    @Option(name: .customLong("drain-timeout"), help: ArgumentHelp(
        "Seconds to keep trying to deliver buffered lines once input has ended, before giving up (and saying how many were not delivered).",
        valueName: "seconds"))
    var drainTimeout = 30.0

    @Option(name: .customLong("max-line-bytes"), help: ArgumentHelp(
        "Longest line published whole; the rest of a longer line is cut (and the cut noted at its end).", valueName: "bytes"))
    var maxLineBytes = 16 << 10

    @Flag(help: "Report connections, acknowledgements (with line offsets) and retries on standard error.")
    var verbose = false

    func validate() throws {
        guard WorkerID(worker) != nil else {
            throw ValidationError("--worker '\(worker)' is not a worker id: 1 to 128 of A-Z a-z 0-9 . _ : - (starting with a letter or digit)")
        }
        guard GatewayAddress(gateway) != nil else {
            throw ValidationError("--gateway '\(gateway)' is not an address such as http://127.0.0.1:8080 (only http:// is spoken)")
        }
        guard bufferLines >= 1 else { throw ValidationError("--buffer-lines must be at least 1") }
        guard drainTimeout >= 0 else { throw ValidationError("--drain-timeout must be 0 or more") }
        guard maxLineBytes >= 64 else { throw ValidationError("--max-line-bytes must be at least 64") }
    }

    /// The publisher these options describe, over a new queue; its publisher id is `prefix-` and 12
    /// random characters.
    func makePublisher(idPrefix prefix: String) -> GatewayPublisher {
        var settings = GatewayPublisher.Settings(gateway: GatewayAddress(gateway)!, worker: WorkerID(worker)!,
                                                 publisher: .random(prefix: prefix))
        settings.verbose = verbose
        return GatewayPublisher(settings: settings, queue: OutgoingQueue(capacity: bufferLines))
    }

    /// Waits for the publisher to deliver everything, reports what it could not; `false` when something
    /// was not delivered (refused, or the drain time-out passed).
    func drain(_ publisher: GatewayPublisher) -> Bool {
        switch publisher.wait(timeout: drainTimeout) {
        case .delivered:
            return true
        case .refused:
            let left = publisher.queue.status.held
            if left > 0 { printError("tailgate: \(left) line\(left == 1 ? "" : "s") not published") }
            return false
        case .running:
            let left = publisher.queue.status.held
            printError("tailgate: gateway \(gateway) still unreachable after --drain-timeout \(drainTimeout) s: \(left) line\(left == 1 ? "" : "s") not published (or not confirmed)")
            return false
        }
    }
}
