import NIOHTTP1
import TailgateCore

/// A refusal the gateway answers with an HTTP status and a JSON body
/// `{"error":{"code":…,"message":…}}`.
public struct GatewayError: Error, Equatable, CustomStringConvertible {
    /// The HTTP status.
    public var status: HTTPResponseStatus
    /// A stable, machine-readable code.
    public var code: String
    /// What went wrong, for people.
    public var message: String
    /// Extra response headers (`Retry-After`, `Allow`, …).
    public var headers: [(String, String)] = []

    public init(_ status: HTTPResponseStatus, _ code: String, _ message: String, headers: [(String, String)] = []) {
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers
    }

    public var description: String { "\(status.code) \(code): \(message)" }

    public static func == (lhs: GatewayError, rhs: GatewayError) -> Bool {
        lhs.status == rhs.status && lhs.code == rhs.code && lhs.message == rhs.message
    }

    static func badWorkerID(_ text: Substring) -> GatewayError {
        GatewayError(.badRequest, "bad_worker_id",
                     "'\(text.prefix(140))' is not a worker id (1-128 characters: letters, digits, '.', '_', ':' or '-', starting with a letter or digit)")
    }

    static func workerNotFound(_ id: WorkerID) -> GatewayError {
        GatewayError(.notFound, "worker_not_found", "no worker '\(id)'")
    }

    static func runNotFound(_ id: WorkerID, _ epoch: some StringProtocol) -> GatewayError {
        GatewayError(.notFound, "run_not_found", "worker '\(id)' has no stored run '\(epoch.prefix(40))'")
    }

    static func badParameter(_ name: String, _ why: String) -> GatewayError {
        GatewayError(.badRequest, "bad_parameter", "invalid '\(name)': \(why)")
    }

    static func limitReached(_ code: String, _ message: String, retryAfter: Int) -> GatewayError {
        GatewayError(.serviceUnavailable, code, message, headers: [("Retry-After", String(retryAfter))])
    }

    static func methodNotAllowed(_ allowed: String) -> GatewayError {
        GatewayError(.methodNotAllowed, "method_not_allowed", "this path accepts \(allowed)", headers: [("Allow", allowed)])
    }

    static let notFound = GatewayError(.notFound, "not_found", "no such path")
}
