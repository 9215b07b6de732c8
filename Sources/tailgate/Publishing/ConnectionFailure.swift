import NIOCore
import NIOPosix
import NIOSSL
#if canImport(Glibc)
import Glibc
#endif

/// Why talking to the gateway failed, in words, and whether trying again can help.
enum ConnectionFailure: Error, CustomStringConvertible {
    /// The gateway could not be reached, the connection broke, or no answer came in time: the
    /// publisher tries again (with backoff).
    case broken(String)
    /// TLS could not be agreed on — the certificate is not trusted or does not name the host, or the
    /// other end does not speak TLS: trying again cannot help, so it counts as a refusal.
    case tls(String)

    var description: String {
        switch self {
        case .broken(let text), .tls(let text): text
        }
    }

    /// Describes an error NIO or swift-nio-ssl reported for a connection to `address`.
    init(_ error: Error, address: GatewayAddress) {
        switch error {
        case let failure as ConnectionFailure:
            self = failure
        case let connectionError as NIOConnectionError:
            let first = connectionError.connectionErrors.first.map { Self.words(for: $0.error) }
                ?? connectionError.dnsAError.map { "cannot resolve \(address.host): \($0)" }
                ?? "no address for \(address.host)"
            self = .broken("cannot connect to \(address): \(first)")
        case ChannelError.connectTimeout:
            self = .broken("cannot connect to \(address): timed out")
        case let tlsError as NIOSSLError:
            switch tlsError {
            case .handshakeFailed(let detail):
                let text = String(describing: detail)
                if text.contains("CERTIFICATE_VERIFY_FAILED") {
                    self = .tls("the TLS certificate of \(address) is not trusted (CERTIFICATE_VERIFY_FAILED); "
                        + "trust the certificate of its issuer with --cacert FILE (or SSL_CERT_FILE)")
                } else if text.contains("EOF during handshake") {
                    self = .broken("the connection to \(address) closed during the TLS handshake")
                } else if text.contains("WRONG_VERSION_NUMBER") || text.contains("PACKET_LENGTH_TOO_LONG") {
                    self = .tls("\(address) does not speak TLS (is it an http:// address?)")
                } else {
                    self = .tls("the TLS handshake with \(address) failed: \(text)")
                }
            case .uncleanShutdown:
                self = .broken("the TLS connection to \(address) was cut")
            default:
                self = .broken("TLS with \(address): \(tlsError)")
            }
        case let extra as NIOSSLExtraError where extra == .failedToValidateHostname:
            self = .tls("the TLS certificate of \(address) does not name \(address.host)")
        case let ioError as IOError:
            self = .broken("connection to \(address) broke: \(String(cString: strerror(ioError.errnoCode)))")
        case ChannelError.ioOnClosedChannel, ChannelError.alreadyClosed, ChannelError.eof:
            self = .broken("the connection to \(address) closed")
        default:
            self = .broken("connection to \(address) failed: \(error)")
        }
    }

    private static func words(for error: Error) -> String {
        if let ioError = error as? IOError { return String(cString: strerror(ioError.errnoCode)) }
        if case ChannelError.connectTimeout = error { return "timed out" }
        return String(describing: error)
    }
}
