import ArgumentParser
import Foundation
import TailgateCore
#if canImport(Glibc)
import Glibc
#endif

/// The options `tailgate run` and `tailgate pipe` share: where to publish, with which credentials, and
/// how much to buffer. `--worker`, `--gateway` and the token may come from the environment instead
/// (`TAILGATE_WORKER`, `TAILGATE_URL`, `TAILGATE_TOKEN`, as for the Python handler), and the trusted
/// certificates from `SSL_CERT_FILE`; a flag wins over its variable.
struct PublishOptions: ParsableArguments {
    @Option(help: ArgumentHelp(
        "The worker to publish into (created on first publish). Default: $TAILGATE_WORKER.", valueName: "id"))
    var worker: String?

    @Option(help: ArgumentHelp(
        "The gateway's address: http[s]://[USER:PASSWORD@]HOST[:PORT][/PREFIX], e.g. https://logs.example.com/tailgate behind a proxy (USER:PASSWORD: the proxy's basic auth). Default: $TAILGATE_URL, else http://127.0.0.1:8080.",
        valueName: "url"))
    var gateway: String?

    @Option(help: ArgumentHelp(
        "An access token of publish scope (tailgate token --scope publish), sent as Authorization: Bearer. Default: $TAILGATE_TOKEN. A flag's value shows in `ps`; prefer the variable or --token-file.",
        valueName: "token"))
    var token: String?

    @Option(name: .customLong("token-file"), help: ArgumentHelp(
        "A file holding the access token (read once, at start).", valueName: "file"))
    var tokenFile: String?

    @Option(name: .customLong("header"), help: ArgumentHelp(
        "A header sent with every request (repeatable), e.g. 'Authorization: Basic dXNlcjpwYXNz' for a proxy's basic auth; with --token as well, the token then goes in ?access_token=.",
        valueName: "'Name: value'"))
    var headers: [String] = []

    @Option(name: .customLong("cacert"), help: ArgumentHelp(
        "For https: a PEM file of the certificates to trust (your CA's, or a self-signed gateway's), instead of the system's store. Default: $SSL_CERT_FILE, else the system's store.",
        valueName: "file"))
    var caCertificateFile: String?

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

    /// Headers tailgate sets itself, which `--header` may not replace.
    private static let reservedHeaders: Set<String> = [
        "host", "content-length", "transfer-encoding", "content-type", "connection", "tailgate-publisher", "tailgate-offset",
    ]

    func validate() throws {
        guard let worker = resolvedWorker else {
            throw ValidationError("give the worker to publish into: --worker <id> (or TAILGATE_WORKER)")
        }
        guard WorkerID(worker) != nil else {
            throw ValidationError("--worker '\(worker)' is not a worker id: 1 to 128 of A-Z a-z 0-9 . _ : - (starting with a letter or digit)")
        }
        guard bufferLines >= 1 else { throw ValidationError("--buffer-lines must be at least 1") }
        guard drainTimeout >= 0 else { throw ValidationError("--drain-timeout must be 0 or more") }
        guard maxLineBytes >= 64 else { throw ValidationError("--max-line-bytes must be at least 64") }
        _ = try clientConfiguration()
    }

    /// The publisher these options describe, over a new queue; its publisher id is `prefix-` and 12
    /// random characters.
    func makePublisher(idPrefix prefix: String) throws -> GatewayPublisher {
        let client = try clientConfiguration()
        var settings = GatewayPublisher.Settings(client: client, worker: WorkerID(resolvedWorker ?? "")!,
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
            printError("tailgate: gateway \(publisher.settings.gateway) still unreachable after --drain-timeout \(drainTimeout) s: \(left) line\(left == 1 ? "" : "s") not published (or not confirmed)")
            return false
        }
    }

    // MARK: Flags and environment

    private var resolvedWorker: String? { worker ?? Self.environment("TAILGATE_WORKER") }

    /// The client the flags (and the environment) describe; throws a `ValidationError` that names the flag.
    private func clientConfiguration() throws -> GatewayClient {
        let text = gateway ?? Self.environment("TAILGATE_URL") ?? "http://127.0.0.1:8080"
        let from = gateway == nil && Self.environment("TAILGATE_URL") != nil ? "TAILGATE_URL" : "--gateway"
        guard let address = GatewayAddress(text) else {
            let shown = text.contains("@") ? "(with credentials)" : "'\(text)'"  // never echo a password
            throw ValidationError("\(from) \(shown) is not an address such as http://127.0.0.1:8080 or https://logs.example.com/tailgate")
        }
        var configuration = GatewayClient.Configuration(address: address)
        configuration.token = try resolvedToken()
        for header in headers {
            guard let colon = header.firstIndex(of: ":") else {
                throw ValidationError("--header '\(header)' is not 'Name: value'")
            }
            let name = String(header[..<colon])
            let value = String(header[header.index(after: colon)...].drop { $0 == " " || $0 == "\t" })
            guard !name.isEmpty, name.utf8.allSatisfy(Self.isTokenCharacter) else {
                throw ValidationError("--header '\(header)': '\(name)' is not a header name")
            }
            guard !value.utf8.contains(where: { $0 < 0x20 && $0 != 0x09 || $0 == 0x7F }) else {
                throw ValidationError("--header '\(name)': the value may not hold control characters")
            }
            guard !Self.reservedHeaders.contains(name.lowercased()) else {
                throw ValidationError("--header '\(name)' is set by tailgate itself")
            }
            configuration.headers.append((name, value))
        }
        if let userInfo = address.userInfo, !configuration.headers.contains(where: { $0.name.lowercased() == "authorization" }) {
            // https://user:password@host/: basic auth for a proxy, as curl and the Python handler read it.
            configuration.headers.append(("Authorization", "Basic " + Data(userInfo.utf8).base64EncodedString()))
        }
        if address.isSecure {
            configuration.caCertificateFile = caCertificateFile ?? Self.environment("SSL_CERT_FILE")
        }
        do {
            return try GatewayClient(configuration)
        } catch {
            throw ValidationError(caCertificateFile == nil && configuration.caCertificateFile != nil
                ? "SSL_CERT_FILE: \(error)" : "--cacert: \(error)")
        }
    }

    /// `--token`, else the first line of `--token-file`, else `TAILGATE_TOKEN`.
    private func resolvedToken() throws -> String? {
        if token != nil && tokenFile != nil { throw ValidationError("give --token or --token-file, not both") }
        var value = token
        var source = "--token"
        if let tokenFile {
            guard let contents = Self.readSmallFile(tokenFile) else {
                throw ValidationError("--token-file: cannot read '\(tokenFile)'")
            }
            value = String(contents.split(whereSeparator: \.isNewline).first ?? "")
            source = "--token-file"
        } else if value == nil, let fromEnvironment = Self.environment("TAILGATE_TOKEN") {
            value = fromEnvironment
            source = "TAILGATE_TOKEN"
        }
        guard var value else { return nil }
        while value.first == " " || value.first == "\t" { value.removeFirst() }
        while value.last == " " || value.last == "\t" || value.last == "\r" { value.removeLast() }
        guard !value.isEmpty, value.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else {
            throw ValidationError("\(source): not a token (printable characters without spaces are expected)")
        }
        return value
    }

    /// An environment variable, `nil` when unset or empty.
    static func environment(_ name: String) -> String? {
        guard let value = getenv(name) else { return nil }
        let text = String(cString: value)
        return text.isEmpty ? nil : text
    }

    private static func isTokenCharacter(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            true
        default:
            "!#$%&'*+-.^_`|~".utf8.contains(byte)
        }
    }

    /// The text of a file of at most 64 KiB; `nil` when it cannot be read.
    private static func readSmallFile(_ path: String) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while bytes.count <= 64 << 10 {
            let count = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if count < 0 && errno == EINTR { continue }
            guard count >= 0 else { return nil }
            if count == 0 { return String(decoding: bytes, as: UTF8.self) }
            bytes += chunk[0..<count]
        }
        return nil
    }
}
