import ArgumentParser
import TailgateCore
import TailgateServer

/// `tailgate token`: prints a signed, expiring access token.
struct TokenCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "token",
        abstract: "Print a signed, expiring access token for streams, the API or publishing.",
        discussion: """
            The gateway checks tokens when it runs with --auth-secret-file (the same file as here). Browsers pass \
            the token as ?access_token=… (on the page URL, which carries it to the API and streams); scripts may \
            send Authorization: Bearer ….
            Example: tailgate token --secret-file /etc/tailgate/secret --worker 002050.SZ --ttl 1h
            """)

    @Option(name: .customLong("secret-file"), help: "The file holding the signing secret (as given to serve --auth-secret-file).")
    var secretFile: String

    @Option(name: .customLong("worker"), help: "A worker id the token covers (repeatable); '*' covers every worker.")
    var workers: [String]

    @Option(help: "How long the token is valid: e.g. 90s, 30m, 1h, 7d.")
    var ttl = "1h"

    @Option(help: "What it allows: read, publish, or read,publish.")
    var scope = "read"

    func validate() throws {
        guard !workers.isEmpty else { throw ValidationError("give at least one --worker (or '*')") }
        for worker in workers where worker != "*" && WorkerID(worker) == nil {
            throw ValidationError("'\(worker)' is not a worker id")
        }
        guard TokenScope(names: scope) != nil else { throw ValidationError("--scope must be read, publish or read,publish") }
        guard TimeSpan.seconds(in: ttl) != nil else { throw ValidationError("--ttl '\(ttl)' is not a duration such as 90s, 30m, 1h or 7d") }
    }

    func run() throws {
        let secret = try AccessPolicy.loadSecret(path: secretFile)
        let expiresAt = Timestamp.now().microseconds / 1_000_000 + TimeSpan.seconds(in: ttl)!
        let token = AccessToken(workers: workers, scope: TokenScope(names: scope)!, expiresAt: expiresAt)
        print(token.signed(with: secret))
    }
}

/// A span of time as given on the command line (`90s`, `30m`, `1h`, `7d`).
enum TimeSpan {
    /// Seconds in `90s`, `30m`, `1h`, `7d` or a bare number of seconds.
    static func seconds(in text: String) -> Int64? {
        let units: [(Character, Int64)] = [("s", 1), ("m", 60), ("h", 3600), ("d", 86400)]
        for (unit, factor) in units where text.last == unit {
            guard let value = Int64(text.dropLast()), value > 0 else { return nil }
            return value * factor
        }
        guard let value = Int64(text), value > 0 else { return nil }
        return value
    }
}
