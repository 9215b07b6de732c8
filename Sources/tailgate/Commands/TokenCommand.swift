import ArgumentParser
import TailgateCore
import TailgateServer

/// `tailgate token`: prints a signed, expiring access token.
struct TokenCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "token",
        abstract: "Print a signed, expiring access token for streams, the API or publishing.",
        discussion: """
            Tokens are JSON Web Tokens signed with HMAC-SHA256 (HS256), with the key's id as "kid" and the \
            claims {"workers":[…],"scope":"read publish","exp":…}: an identity service that holds the same \
            secret can mint them too (docs/PROTOCOL.md, "Auth and proxies").

            The gateway checks tokens when it runs with --auth-secret-file (the same file as here). The file \
            holds one key per line, "KID SECRET" (or just the secret, for a file of one key, whose id is \
            "default"); the first signs unless --kid says otherwise, and the gateway accepts every key in it, \
            so a secret is rotated by adding the new key first and removing the old one once its tokens expire.

            Browsers pass the token as ?access_token=… (on the page URL, which carries it to the API and \
            streams); scripts may send Authorization: Bearer ….
            Example: tailgate token --secret-file /etc/tailgate/secret --worker 002050.SZ --ttl 1h
            """)

    @Option(name: .customLong("secret-file"), help: "The file holding the signing secret (as given to serve --auth-secret-file).")
    var secretFile: String

    @Option(name: .customLong("worker"), help: "A worker id the token covers (repeatable); '*' covers every worker.")
    var workers: [String]

    @Option(help: "How long the token is valid: e.g. 90s, 30m, 1h, 7d.")
    var ttl = "1h"

    @Option(help: "What it allows: read, publish, metrics (GET /metrics), or several: read,publish.")
    var scope = "read"

    @Option(help: "The id of the key that signs it (a secret file may hold several, one 'KID SECRET' per line; default: the first).")
    var kid: String?

    func validate() throws {
        guard !workers.isEmpty else { throw ValidationError("give at least one --worker (or '*')") }
        for worker in workers where worker != "*" && WorkerID(worker) == nil {
            throw ValidationError("'\(worker)' is not a worker id")
        }
        guard TokenScope(names: scope) != nil else { throw ValidationError("--scope must be read, publish, metrics or several of them separated by commas (read,publish)") }
        guard let seconds = TimeSpan.seconds(in: ttl) else {
            throw ValidationError("--ttl '\(ttl)' is not a duration such as 90s, 30m, 1h or 7d")
        }
        guard seconds <= Self.longestTTL else { throw ValidationError("--ttl may be at most \(Self.longestTTL / 86_400)d") }
    }

    /// Ten years: long enough for any service account, short enough that `exp` stays a sane date.
    static let longestTTL: Int64 = 3650 * 86_400

    func run() throws {
        let keys: SigningKeys
        do {
            keys = try AccessPolicy.loadKeys(path: secretFile)
        } catch {
            throw ValidationError(error.description)
        }
        guard let key = keys.signingKey(id: kid) else {
            throw ValidationError("no key '\(kid ?? "")' in \(secretFile); it holds \(keys.keys.map(\.id).joined(separator: ", "))")
        }
        guard let seconds = TimeSpan.seconds(in: ttl), seconds <= Self.longestTTL else { throw ValidationError("--ttl is out of range") }
        let now = Timestamp.now().microseconds / 1_000_000
        let token = AccessToken(workers: workers, scope: TokenScope(names: scope)!, expiresAt: now + seconds)
        print(token.signed(with: key))
    }
}

/// A span of time as given on the command line (`90s`, `30m`, `1h`, `7d`).
enum TimeSpan {
    /// Seconds in `90s`, `30m`, `1h`, `7d` or a bare number of seconds.
    /// Seconds in `text`, nil when it is not a positive duration or does not fit in Int64.
    static func seconds(in text: String) -> Int64? {
        let units: [(Character, Int64)] = [("s", 1), ("m", 60), ("h", 3600), ("d", 86400)]
        for (unit, factor) in units where text.last == unit {
            guard let value = Int64(text.dropLast()), value > 0 else { return nil }
            let (seconds, overflow) = value.multipliedReportingOverflow(by: factor)
            return overflow ? nil : seconds
        }
        guard let value = Int64(text), value > 0 else { return nil }
        return value
    }
}
