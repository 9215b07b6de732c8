import Foundation
import NIOCore
import NIOEmbedded
import Testing
import TailgateCore
@testable import TailgateServer

/// `/metrics` and `/readyz` on `EmbeddedChannel`: routes, who may scrape, readiness, refusal counts.
@Suite("Metrics and readiness endpoints, on EmbeddedChannel")
struct MetricsEndpointTests {
    private static let key = SigningKey(id: "k1", secret: Array("a metrics test secret of enough length".utf8))!

    private static func token(_ scope: TokenScope, workers: [String] = ["*"]) -> String {
        AccessToken(workers: workers, scope: scope, expiresAt: Timestamp.now().microseconds / 1_000_000 + 3600).signed(with: key)
    }

    /// Sends `GET path` from `address` with `headers`; returns the response.
    private static func get(_ path: String, from address: String = "127.0.0.1", headers: String = "", method: String = "GET",
                            gateway: EmbeddedGateway) throws -> WrittenResponse {
        let channel = try gateway.connection(from: address)
        try channel.send("\(method) \(path) HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\(headers)Content-Length: 0\r\n\r\n")
        var written = try channel.written()
        return try #require(WrittenResponse.read(from: &written))
    }

    @Test("/metrics and /readyz are routes of their own; /healthz is unchanged", arguments: [
        ("/metrics", Route.metrics), ("/readyz", .readiness), ("/healthz", .health), ("/metrics/", .file("/metrics/")),
    ])
    func routes(path: String, route: Route) throws {
        #expect(try Route(path: path[...]) == route)
    }

    @Test("a loopback client reads the Prometheus text; HEAD has no body; other methods get 405")
    func loopbackScrape() throws {
        let gateway = try EmbeddedGateway()
        let response = try Self.get("/metrics", gateway: gateway)
        #expect(response.status == 200)
        #expect(response.header("Content-Type") == "text/plain; version=0.0.4; charset=utf-8")
        #expect(response.body.contains("# TYPE tailgate_connections_accepted_total counter"))
        #expect(response.body.contains("# TYPE tailgate_publish_to_write_seconds histogram"))
        #expect(response.body.contains("tailgate_store_state{state=\"memory-only\"} 1"))
        let head = try Self.get("/metrics", method: "HEAD", gateway: gateway)
        #expect(head.status == 200 && head.body.isEmpty)
        let post = try Self.get("/metrics", method: "POST", gateway: gateway)
        #expect(post.status == 405 && post.errorCode == "method_not_allowed")
    }

    @Test("who may scrape, by address (auth off)", arguments: [
        // (metrics-from, client address, trusted proxy and X-Forwarded-For, expected status)
        ([], "127.0.0.1", nil, 200),
        ([], "::1", nil, 200),
        ([], "10.1.2.3", nil, 403),
        (["10.0.0.0/8"], "10.1.2.3", nil, 200),
        (["10.0.0.0/8"], "127.0.0.1", nil, 403),
        // Relayed by a trusted proxy on loopback: the forwarded client counts, never the proxy.
        ([], "127.0.0.1", "203.0.113.5", 403),
        (["203.0.113.0/24"], "127.0.0.1", "203.0.113.5", 200),
    ] as [([String], String, String?, Int)])
    func scrapeByAddress(metricsFrom: [String], address: String, forwardedFor: String?, status: Int) throws {
        let gateway = try EmbeddedGateway(configure: { configuration in
            if !metricsFrom.isEmpty { configuration.metricsFrom = metricsFrom.map { AddressRange($0)! } }
            if forwardedFor != nil { configuration.trustedProxies = [AddressRange("127.0.0.1")!] }
        })
        let headers = forwardedFor.map { "X-Forwarded-For: \($0)\r\n" } ?? ""
        let response = try Self.get("/metrics", from: address, headers: headers, gateway: gateway)
        #expect(response.status == status)
        if status == 403 {
            #expect(response.errorCode == "metrics_not_allowed")
            #expect(response.body.contains("may not read metrics") && response.body.contains("--metrics-from"))
        }
    }

    @Test("who may scrape with auth on: a metrics-scope token from anywhere; read or publish tokens are not enough")
    func scrapeWithTokens() throws {
        let gateway = try EmbeddedGateway(configure: { $0.access = AccessPolicy(keys: SigningKeys(keys: [Self.key])) })
        let far = "10.9.8.7"
        #expect(try Self.get("/metrics", from: far, headers: "Authorization: Bearer \(Self.token(.metrics))\r\n", gateway: gateway).status == 200)
        #expect(try Self.get("/metrics?access_token=\(Self.token([.read, .metrics], workers: ["one"]))", from: far, gateway: gateway).status == 200)
        let readOnly = try Self.get("/metrics", from: far, headers: "Authorization: Bearer \(Self.token([.read, .publish]))\r\n", gateway: gateway)
        #expect(readOnly.status == 403 && readOnly.errorCode == "metrics_not_allowed")
        #expect(readOnly.body.contains("does not allow metrics"))
        let none = try Self.get("/metrics", from: far, gateway: gateway)
        #expect(none.status == 401 && none.errorCode == "auth_required")
        let bad = try Self.get("/metrics", from: far, headers: "Authorization: Bearer nonsense\r\n", gateway: gateway)
        #expect(bad.status == 401 && bad.errorCode == "token_invalid")
        // Loopback (the default --metrics-from) needs no token; one that is shown must be good.
        #expect(try Self.get("/metrics", gateway: gateway).status == 200)
        #expect(try Self.get("/metrics", headers: "Authorization: Bearer \(Self.token(.read))\r\n", gateway: gateway).status == 403)
        // A metrics token opens nothing else.
        let api = try Self.get("/api/workers", from: far, headers: "Authorization: Bearer \(Self.token(.metrics))\r\n", gateway: gateway)
        #expect(api.status == 403 && api.errorCode == "scope_not_allowed")
    }

    @Test("/readyz: 503 while starting, 200 when ready, 503 from the start of a shutdown; /healthz says ok throughout")
    func readiness() throws {
        let gateway = try EmbeddedGateway()
        let starting = try Self.get("/readyz", gateway: gateway)
        #expect(starting.status == 503)
        #expect(starting.body.contains("\"reason\":\"starting\""))
        gateway.context.readiness.markReady()
        let ready = try Self.get("/readyz", gateway: gateway)
        #expect(ready.status == 200 && ready.body == "{\"status\":\"ready\"}\n")
        gateway.context.readiness.markShuttingDown()
        gateway.context.readiness.markReady()  // never back from shutting down
        let stopping = try Self.get("/readyz", gateway: gateway)
        #expect(stopping.status == 503 && stopping.body.contains("\"reason\":\"shutting_down\""))
        #expect(try Self.get("/healthz", gateway: gateway).status == 200)
        #expect(gateway.context.statistics.refusalsByCode.snapshot().first { $0.code == "not_ready" }?.count == 2)
    }

    @Test("a failing store makes the gateway not ready; a memory-only one or a healthy one does not", arguments: [
        (nil, nil), ("ok", nil), ("memory-only", nil), ("failed", "store_failed"),
    ] as [(String?, String?)])
    func readinessByStore(state: String?, reason: String?) {
        let store = state.map { StoreHealth(state: $0, lastError: $0 == "failed" ? "No space left on device" : nil) }
        #expect(GatewayReadiness.notReadyReason(phase: .ready, store: store)?.reason == reason)
    }

    @Test("refusals are counted by their stable code; a code outside the table counts as other, by status class")
    func refusalCounts() throws {
        let gateway = try EmbeddedGateway()
        _ = try Self.get("/api/nothing", gateway: gateway)
        _ = try Self.get("/api/workers/ghost", gateway: gateway)
        _ = try Self.get("/metrics", from: "10.1.1.1", gateway: gateway)
        _ = try Self.get("/metrics", from: "10.1.1.1", gateway: gateway)
        let counters = gateway.context.statistics.refusalsByCode
        counters.count(code: "brand_new_code", status: 418)
        counters.count(code: nil, status: 502)
        let counts = Dictionary(uniqueKeysWithValues: counters.snapshot().map { ("\($0.code) \($0.status)", $0.count) })
        #expect(counts["not_found 404"] == 1)
        #expect(counts["worker_not_found 404"] == 1)
        #expect(counts["metrics_not_allowed 403"] == 2)
        #expect(counts["other 4xx"] == 1 && counts["other 5xx"] == 1)
        #expect(gateway.context.statistics.refusals.load(ordering: .relaxed) == 4)
        let text = try Self.get("/metrics", gateway: gateway).body
        #expect(text.contains("tailgate_http_refusals_total{code=\"metrics_not_allowed\",status=\"403\"} 2"))
        #expect(!text.contains("code=\"too_many_workers\""), "series appear once they count")
    }

    @Test("every refusal code in the server's sources is in the refusal table, with its status")
    func refusalTableIsComplete() throws {
        let sources = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("Sources/TailgateServer")
        let files = try #require(FileManager.default.enumerator(at: sources, includingPropertiesForKeys: nil))
        let direct = try NSRegularExpression(pattern: #"GatewayError\(\s*\.(?:init\(statusCode: (\d+)[^)]*\)|(\w+)),\s*"([a-z_]+)""#)
        let limits = try NSRegularExpression(pattern: #"limitReached\(\s*"([a-z_]+)""#)
        let statusOf = ["badRequest": 400, "unauthorized": 401, "forbidden": 403, "notFound": 404, "methodNotAllowed": 405,
                        "requestTimeout": 408, "conflict": 409, "unsupportedMediaType": 415, "upgradeRequired": 426,
                        "internalServerError": 500, "serviceUnavailable": 503]
        let table = Dictionary(uniqueKeysWithValues: RefusalCounters.known.map { ($0.code, $0.status) })
        var found = 0
        for case let url as URL in files where url.pathExtension == "swift" {
            let text = try String(contentsOf: url, encoding: .utf8)
            let range = NSRange(text.startIndex..., in: text)
            for match in direct.matches(in: text, range: range) {
                let code = String(text[Range(match.range(at: 3), in: text)!])
                let status = Range(match.range(at: 1), in: text).flatMap { Int(text[$0]) }
                    ?? statusOf[String(text[Range(match.range(at: 2), in: text)!])]
                #expect(table[code] != nil, "\(code) (\(url.lastPathComponent)) is missing from RefusalCounters.known")
                #expect(status == nil || table[code] == status, "\(code): status \(status ?? 0) in \(url.lastPathComponent)")
                found += 1
            }
            for match in limits.matches(in: text, range: range) {
                let code = String(text[Range(match.range(at: 1), in: text)!])
                #expect(table[code] == 503, "\(code) (\(url.lastPathComponent)) is missing from RefusalCounters.known")
                found += 1
            }
        }
        #expect(found > 30, "the sources were read")
    }

    @Test("tokens of metrics scope: parsed, written, verified; --scope's words")
    func metricsScope() throws {
        #expect(TokenScope(names: "metrics") == .metrics)
        #expect(TokenScope(names: "read,metrics") == [.read, .metrics])
        #expect(TokenScope(names: "read publish metrics") == [.read, .publish, .metrics])
        #expect(TokenScope(names: "metric") == nil)
        let token = AccessToken(workers: ["*"], scope: [.publish, .metrics], expiresAt: 2_000_000_000)
        let keys = SigningKeys(keys: [Self.key])
        #expect(try AccessToken.verify(token.signed(with: Self.key), keys: keys, now: 0) == token)
        #expect(token.scope.names == ["publish", "metrics"])
    }

    @Test("the timestamp of an encoded record is read for the latency sample")
    func recordTimestamp() {
        var buffer = ByteBuffer()
        let stamp = Timestamp(microseconds: 1_764_250_000_123_456)
        RecordEncoder.encode(LogRecord(message: "x"), seq: 42, timestamp: stamp, into: &buffer)
        #expect(StreamDeliveryCounters.timestamp(of: buffer) == stamp)
        #expect(StreamDeliveryCounters.timestamp(of: ByteBuffer(string: "{\"seq\":1}")) == nil)
        #expect(StreamDeliveryCounters.timestamp(of: ByteBuffer(string: "{\"seq\":1,\"timestamp\":\"2026-")) == nil)
    }
}
