/// How a worker is stopped once everything is published: `POST /api/workers/{id}/stop`, with the exit
/// status of the program when there was one (`tailgate run`), so that the run ends `succeeded` or
/// `failed` rather than `stopped`.
struct WorkerStop: Sendable, Equatable {
    /// The program's exit status (128 + the signal when a signal killed it); `nil`: no status.
    var exitCode: Int32?
    /// Why it stopped, in words (at most 200 bytes are sent); `nil`: the gateway's default
    /// (`worker stopped`, or `exited with status N`).
    var reason: String?

    /// A stop without a status (`tailgate pipe`).
    static let plain = WorkerStop()

    /// The query of the stop request: empty, or `?exit_code=N&reason=…` (percent-encoded).
    var query: String {
        var parameters: [String] = []
        if let exitCode { parameters.append("exit_code=\(exitCode)") }
        if let reason { parameters.append("reason=" + QueryText.encoded(Self.cut(reason, toBytes: 200))) }
        return parameters.isEmpty ? "" : "?" + parameters.joined(separator: "&")
    }

    /// The longest start of `text` of at most `limit` UTF-8 bytes (the gateway takes 200 characters).
    private static func cut(_ text: String, toBytes limit: Int) -> String {
        var kept = String.UnicodeScalarView()
        var bytes = 0
        for scalar in text.unicodeScalars {
            bytes += UTF8.width(scalar)
            if bytes > limit { break }
            kept.append(scalar)
        }
        return String(kept)
    }
}
