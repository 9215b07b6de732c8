import NIOCore
import NIOHTTP1
import TailgateCore

/// `GET /metrics`: the gateway's metrics in the Prometheus text format, for the scrapers allowed.
enum MetricsEndpoint {
    static func metrics(_ request: Request, gateway: GatewayContext) throws(GatewayError) -> HTTPResponse {
        try request.requireGET()
        try authorizeScraper(request, gateway: gateway)
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: "text/plain; version=0.0.4; charset=utf-8")
        headers.add(name: "Cache-Control", value: "no-store")
        return HTTPResponse(status: .ok, headers: headers, body: gateway.metrics.render(gateway))
    }

    /// Who may scrape: a client on a `--metrics-from` address (behind a trusted proxy the forwarded
    /// client, so that relayed requests never count as local) and, with auth on, anyone showing a token
    /// of `metrics` scope (401 without a valid one). A client on an allowed address that shows no
    /// credentials needs none. Anyone else: 403 `metrics_not_allowed`, with the reason.
    static func authorizeScraper(_ request: Request, gateway: GatewayContext) throws(GatewayError) {
        let configuration = gateway.configuration
        let client = request.client(trustedProxies: configuration.trustedProxies).address
        let fromAllowedAddress = configuration.metricsFrom.contains { $0.contains(client) }
        let hasCredentials = request.target.value("access_token") != nil || request.headers.first(name: "authorization") != nil
        if configuration.access.isEnabled && (hasCredentials || !fromAllowedAddress) {
            let token = try configuration.access.token(query: request.target, headers: request.headers)
            guard let token, token.scope.contains(.metrics) else {
                throw GatewayError(.forbidden, "metrics_not_allowed",
                                   "the access token does not allow metrics (scope \(token?.scope.names.joined(separator: " ") ?? "none")); make one with --scope metrics")
            }
            return
        }
        guard fromAllowedAddress else {
            let allowed = configuration.metricsFrom.isEmpty ? "none" : configuration.metricsFrom.map(\.description).joined(separator: ", ")
            let how = configuration.access.isEnabled ? " or show a token with metrics scope" : ""
            throw GatewayError(.forbidden, "metrics_not_allowed",
                               "\(client) may not read metrics; allowed: \(allowed) (--metrics-from)\(how)")
        }
    }
}
