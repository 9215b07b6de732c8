import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL

/// How `tailgate run` and `tailgate pipe` reach the gateway: its address, the credentials and headers
/// every request carries, TLS for `https://` — and the connections opened there: NIO's HTTP/1.1 client
/// codecs over a `ClientBootstrap` channel, with swift-nio-ssl's `NIOSSLClientHandler` before them for
/// https.
struct GatewayClient: Sendable {
    /// What the command line says about the gateway; the defaults are those of `tailgate run`.
    struct Configuration: Sendable {
        var address: GatewayAddress
        /// An access token (`tailgate token --scope publish`), sent as `Authorization: Bearer …` — or as
        /// `?access_token=…` when `headers` has an `Authorization` of its own (basic auth for a proxy).
        var token: String?
        /// Headers added to every request, such as `Authorization: Basic …` for a proxy.
        var headers: [(name: String, value: String)] = []
        /// A PEM file of the certificates trusted for https, instead of the system's store
        /// (`/etc/ssl/certs/ca-certificates.crt`); `nil`: the system's store.
        var caCertificateFile: String?
        /// How long connecting (TCP) may take.
        var connectTimeout: TimeAmount = .seconds(5)
        /// How long the gateway may take to answer once a request is sent whole, or to read the body
        /// being sent (TCP backpressure) before the connection counts as broken.
        var answerTimeout: TimeAmount = .seconds(60)

        init(address: GatewayAddress) {
            self.address = address
        }
    }

    /// Why a client could not be made from its configuration.
    struct SetupFailure: Error, CustomStringConvertible {
        var description: String
    }

    let configuration: Configuration
    /// The TLS context of an https gateway (`nil` for http).
    private let tls: NIOSSLContext?

    /// Loads the trusted certificates for an https gateway.
    init(_ configuration: Configuration) throws(SetupFailure) {
        self.configuration = configuration
        guard configuration.address.isSecure else {
            tls = nil
            return
        }
        var tlsConfiguration = TLSConfiguration.makeClientConfiguration()
        tlsConfiguration.minimumTLSVersion = .tlsv12
        if let file = configuration.caCertificateFile {
            let certificates: [NIOSSLCertificate]
            do {
                certificates = try NIOSSLCertificate.fromPEMFile(file)
            } catch {
                throw SetupFailure(description: "cannot read the certificates in '\(file)' (a PEM file is expected): \(error)")
            }
            guard !certificates.isEmpty else { throw SetupFailure(description: "'\(file)' holds no PEM certificate") }
            tlsConfiguration.trustRoots = .certificates(certificates)
        }
        do {
            tls = try NIOSSLContext(configuration: tlsConfiguration)
        } catch {
            throw SetupFailure(description: "cannot set up TLS: \(error)")
        }
    }

    // MARK: Connections

    /// Opens a connection on `eventLoop`: TCP (every address of the host, happy eyeballs), TLS for https,
    /// HTTP/1.1 client codecs, and an `HTTPAnswerCollector` at the end of the pipeline.
    func connect(on eventLoop: EventLoop, timeout: TimeAmount) -> EventLoopFuture<Channel> {
        let address = configuration.address
        let tls = self.tls
        return ClientBootstrap(group: eventLoop)
            .connectTimeout(timeout)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                do {
                    let pipeline = channel.pipeline.syncOperations
                    if let tls {
                        // Server Name Indication carries names only; an IP address is checked against
                        // the certificate's IP addresses instead.
                        let name = Self.isIPAddress(address.host) ? nil : address.host
                        try pipeline.addHandler(NIOSSLClientHandler(context: tls, serverHostname: name))
                    }
                    try pipeline.addHTTPClientHandlers()
                    try pipeline.addHandler(HTTPAnswerCollector())
                    return channel.eventLoop.makeSucceededVoidFuture()
                } catch {
                    return channel.eventLoop.makeFailedFuture(error)
                }
            }
            .connect(host: address.host, port: address.port)
    }

    /// The head of a request to `path` (below the gateway's path prefix), with `Host`, the credentials
    /// and the configured headers, then `extraHeaders`.
    func head(_ method: HTTPMethod, _ path: String, extraHeaders: [(String, String)]) -> HTTPRequestHead {
        let address = configuration.address
        var uri = address.pathPrefix + path
        var headers = HTTPHeaders()
        headers.add(name: "Host", value: address.hostHeader)
        headers.add(name: "User-Agent", value: TailgateVersion.userAgent)
        let proxyAuthorization = configuration.headers.contains { $0.name.lowercased() == "authorization" }
        if let token = configuration.token {
            if proxyAuthorization {
                uri += (uri.contains("?") ? "&" : "?") + "access_token=" + QueryText.encoded(token)
            } else {
                headers.add(name: "Authorization", value: "Bearer \(token)")
            }
        }
        for header in configuration.headers { headers.add(name: header.name, value: header.value) }
        for header in extraHeaders { headers.add(name: header.0, value: header.1) }
        return HTTPRequestHead(version: .http1_1, method: method, uri: uri, headers: headers)
    }

    // MARK: Helpers

    static func isIPAddress(_ host: String) -> Bool {
        (try? SocketAddress(ipAddress: host, port: 0)) != nil
    }
}
