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
        if let reason { parameters.append("reason=" + Self.percentEncoded(Self.cut(reason, toBytes: 200))) }
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

    /// Every byte but the unreserved characters of RFC 3986 as `%XX` (a space as `%20`, never `+`).
    private static func percentEncoded(_ text: String) -> String {
        let hex = Array("0123456789ABCDEF".utf8)
        var bytes: [UInt8] = []
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                 UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"):
                bytes.append(byte)
            default:
                bytes += [UInt8(ascii: "%"), hex[Int(byte >> 4)], hex[Int(byte & 0x0F)]]
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
