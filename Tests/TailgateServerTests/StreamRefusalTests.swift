import NIOCore
import NIOHTTP1
import Testing
import TailgateCore
import TailgateServer

/// A stream request the gateway must refuse before upgrading, and how.
struct RefusalCase: Sendable, CustomTestStringConvertible {
    var name: String
    var path: String
    var headers: [(String, String)] = HTTPTestClient.upgradeHeaders()
    var status: Int
    var code: String

    var testDescription: String { name }
}

extension GatewayIntegrationTests {
    @Suite("Stream refusals before the upgrade")
    struct StreamRefusals {
        static let cases: [RefusalCase] = [
            RefusalCase(name: "encoded space in id", path: "/ws/workers/bad%20id", status: 400, code: "bad_worker_id"),
            RefusalCase(name: "id starting with a dot", path: "/ws/workers/.x", status: 400, code: "bad_worker_id"),
            RefusalCase(name: "empty id", path: "/ws/workers/", status: 400, code: "bad_worker_id"),
            RefusalCase(name: "id of 129 characters", path: "/ws/workers/" + String(repeating: "a", count: 129), status: 400, code: "bad_worker_id"),
            RefusalCase(name: "id with a slash", path: "/ws/workers/w1/x", status: 400, code: "bad_worker_id"),
            RefusalCase(name: "negative since", path: "/ws/workers/w1?since=-1", status: 400, code: "bad_parameter"),
            RefusalCase(name: "since not a number", path: "/ws/workers/w1?since=1e3", status: 400, code: "bad_parameter"),
            RefusalCase(name: "tail not a number", path: "/ws/workers/w1?tail=abc", status: 400, code: "bad_parameter"),
            RefusalCase(name: "empty tail", path: "/ws/workers/w1?tail=", status: 400, code: "bad_parameter"),
            RefusalCase(name: "foreign origin", path: "/ws/workers/w1",
                        headers: HTTPTestClient.upgradeHeaders() + [("Origin", "http://evil.example")], status: 403, code: "origin_not_allowed"),
            RefusalCase(name: "origin with another port", path: "/ws/workers/w1",
                        headers: HTTPTestClient.upgradeHeaders() + [("Origin", "http://127.0.0.1:1")], status: 403, code: "origin_not_allowed"),
            RefusalCase(name: "unknown worker", path: "/ws/workers/nobody", status: 404, code: "worker_not_found"),
            RefusalCase(name: "plain GET without upgrade", path: "/ws/workers/w1", headers: [], status: 426, code: "websocket_upgrade_required"),
            RefusalCase(name: "WebSocket version 8", path: "/ws/workers/w1",
                        headers: [("Upgrade", "websocket"), ("Connection", "Upgrade"), ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
                                  ("Sec-WebSocket-Version", "8")], status: 426, code: "unsupported_websocket_version"),
        ]

        @Test("refused with its status and a JSON error body", arguments: cases)
        func refusal(_ refusal: RefusalCase) async throws {
            try await withGateway { gateway in
                let worker = try gateway.register("w1")
                worker.publish(.info, "hello")
                let response = try await gateway.get(refusal.path, headers: refusal.headers)
                #expect(response.status == refusal.status, "\(response.text)")
                #expect(response.errorCode == refusal.code, "\(response.text)")
                #expect(response.errorMessage?.isEmpty == false)
                #expect(response.header("content-type")?.hasPrefix("application/json") == true)
                #expect(response.header("sec-websocket-accept") == nil)
                if refusal.code == "websocket_upgrade_required" {
                    #expect(response.header("upgrade")?.lowercased() == "websocket")
                }
                // The same refusal seen by a real WebSocket client.
                if !refusal.headers.isEmpty && refusal.code != "unsupported_websocket_version" {
                    let extra = refusal.headers.filter { $0.0 == "Origin" }
                    do {
                        _ = try await gateway.subscribe(refusal.path, headers: extra)
                        Issue.record("the WebSocket client was upgraded")
                    } catch let refused as WebSocketRefused {
                        #expect(Int(refused.status.code) == refusal.status)
                        #expect((try? JSONParser.parse(refused.body))?["error"]?["code"] == .string(refusal.code))
                    }
                }
                #expect(gateway.statistics.refusals.load(ordering: .relaxed) >= 1)
            }
        }

        @Test("an Origin whose host:port equals Host is allowed")
        func originMatchingHost() async throws {
            try await withGateway(configure: { $0.allowedHosts = ["logs.example"] }) { gateway in
                _ = try gateway.register("w1")
                let sameHost = try await gateway.subscribe("/ws/workers/w1", headers: [("Origin", "http://127.0.0.1:\(gateway.port)")])
                #expect(try await sameHost.nextMessage()["type"] == .string("hello"))
                // Scheme default ports: Origin http://logs.example equals Host logs.example:80.
                let named = try await gateway.subscribe("/ws/workers/w1", headers: [("Origin", "http://logs.example")], hostHeader: "logs.example:80")
                #expect(try await named.nextMessage()["type"] == .string("hello"))
                // A different host is still refused.
                let refused = try await gateway.get("/ws/workers/w1", headers: HTTPTestClient.upgradeHeaders() + [("Origin", "http://other.example")])
                #expect(refused.status == 403)
            }
        }

        @Test("an Origin listed in allowedOrigins is allowed")
        func originListed() async throws {
            try await withGateway(configure: { $0.allowedOrigins = ["https://dashboard.example"] }) { gateway in
                _ = try gateway.register("w1")
                let client = try await gateway.subscribe("/ws/workers/w1", headers: [("Origin", "https://dashboard.example")])
                let hello = try await client.nextMessage()
                #expect(hello["type"] == .string("hello"))
                #expect(hello["worker"] == .string("w1"))
                let other = try await gateway.get("/ws/workers/w1", headers: HTTPTestClient.upgradeHeaders() + [("Origin", "https://evil.example")])
                #expect(other.status == 403)
                #expect(other.errorCode == "origin_not_allowed")
            }
        }

        @Test("503 with Retry-After once a worker has maxSubscribersPerWorker subscribers")
        func subscriberLimit() async throws {
            try await withGateway(configure: { $0.maxSubscribersPerWorker = 2; $0.retryAfterSeconds = 7 }) { gateway in
                _ = try gateway.register("w1")
                _ = try gateway.register("w2")
                let first = try await gateway.subscribe("/ws/workers/w1")
                let second = try await gateway.subscribe("/ws/workers/w1")
                _ = try await first.nextMessage()
                _ = try await second.nextMessage()
                let refused = try await gateway.get("/ws/workers/w1", headers: HTTPTestClient.upgradeHeaders())
                #expect(refused.status == 503, "\(refused.text)")
                #expect(refused.header("retry-after") == "7")
                #expect(refused.errorCode == "too_many_subscribers", "\(refused.text)")
                // Another worker is not affected.
                let other = try await gateway.subscribe("/ws/workers/w2")
                #expect(try await other.nextMessage()["type"] == .string("hello"))
                // A place given back can be taken again.
                await first.closeAbruptly()
                try await waitUntil("the subscriber place to be released") {
                    gateway.bus.worker(WorkerID("w1")!)!.fanOut.subscriberCount == 1
                }
                // The limiter forgets the place when the connection's close completes, just after the
                // fan-out does: retry briefly.
                var third: WebSocketTestClient?
                for _ in 0..<100 where third == nil {
                    do {
                        third = try await gateway.subscribe("/ws/workers/w1")
                    } catch is WebSocketRefused {
                        try await Task.sleep(for: .milliseconds(10))
                    }
                }
                #expect(try await third?.nextMessage()["type"] == .string("hello"))
            }
        }

        @Test("503 with Retry-After once maxConnections are open")
        func connectionLimit() async throws {
            try await withGateway(configure: { $0.maxConnections = 2 }) { gateway in
                _ = try gateway.register("w1")
                let first = try await gateway.subscribe("/ws/workers/w1")
                let second = try await gateway.subscribe("/ws/workers/w1")
                _ = try await first.nextMessage()
                _ = try await second.nextMessage()
                let refused = try await gateway.get("/ws/workers/w1", headers: HTTPTestClient.upgradeHeaders())
                #expect(refused.status == 503, "\(refused.text)")
                #expect(refused.header("retry-after") == "5")
                #expect(refused.errorCode == "too_many_connections", "\(refused.text)")
                let plain = try await gateway.get("/healthz")
                #expect(plain.status == 503)
                await first.closeAbruptly()
                try await waitUntil("a connection to be released") { gateway.server.openConnections <= 1 }
                let again = try await gateway.get("/healthz")
                #expect(again.status == 200)
            }
        }

        @Test("503 with Retry-After once maxConnectionsPerIP are open from one address")
        func perAddressLimit() async throws {
            try await withGateway(configure: { $0.maxConnectionsPerIP = 2 }) { gateway in
                _ = try gateway.register("w1")
                let first = try await gateway.subscribe("/ws/workers/w1")
                let second = try await gateway.subscribe("/ws/workers/w1")
                _ = try await first.nextMessage()
                _ = try await second.nextMessage()
                let refused = try await gateway.get("/ws/workers/w1", headers: HTTPTestClient.upgradeHeaders())
                #expect(refused.status == 503, "\(refused.text)")
                #expect(refused.header("retry-after") == "5")
                #expect(refused.errorCode == "too_many_connections_from_address", "\(refused.text)")
                await #expect(throws: WebSocketRefused.self) { _ = try await gateway.subscribe("/ws/workers/w1") }
            }
        }
    }
}
