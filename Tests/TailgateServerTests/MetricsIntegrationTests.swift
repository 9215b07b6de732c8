import NIOCore
import Testing
import TailgateCore
@testable import TailgateServer

extension GatewayIntegrationTests {
    @Suite("Metrics and readiness on a real gateway")
    struct MetricsAndReadiness {
        /// `GET /metrics`, parsed: each series (name and labels as printed) to its value.
        static func scrape(_ gateway: TestGateway) async throws -> [String: Double] {
            let response = try await gateway.get("/metrics")
            try #require(response.status == 200, "\(response.text)")
            var values: [String: Double] = [:]
            for line in response.text.split(separator: "\n") where !line.hasPrefix("#") {
                guard let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...]) else {
                    Issue.record("unparsable line \(line)")
                    continue
                }
                values[String(line[..<space])] = value
            }
            return values
        }

        @Test("records published, delivered and their bytes are counted as they flow; latency and loop delay are sampled")
        func countersFollowRecords() async throws {
            try await withGateway { gateway in
                let worker = try gateway.register("metered")
                let client = try await gateway.subscribe("/ws/workers/metered?tail=0")
                var transcript = StreamTranscript(hello: try await client.nextMessage())
                publish(20, to: worker)
                try await transcript.read(client, through: 20)
                #expect(transcript.violations.isEmpty)
                var metrics = try await Self.scrape(gateway)
                #expect(metrics["tailgate_records_published_total"] == 20)
                #expect(metrics["tailgate_records_delivered_total"] == 20)
                #expect((metrics["tailgate_stream_payload_bytes_total"] ?? 0) > 20 * 50)
                #expect((metrics["tailgate_stream_wire_bytes_total"] ?? 0) > (metrics["tailgate_stream_payload_bytes_total"] ?? 0),
                        "uncompressed: the frames' headers come on top")
                #expect(metrics["tailgate_streams_open"] == 1)
                #expect(metrics["tailgate_streams_opened_total"] == 1)
                #expect(metrics["tailgate_workers{state=\"running\",owner=\"in-process\"}"] == 1)
                #expect(metrics["tailgate_ready"] == 1)
                #expect((metrics["tailgate_publish_to_write_seconds_count"] ?? 0) >= 1)
                #expect((metrics["tailgate_connections_accepted_total"] ?? 0) >= 2)

                // More records, one more scrape: the counters moved by exactly what flowed.
                publish(5, to: worker, prefix: "more")
                try await transcript.read(client, through: 25)
                metrics = try await Self.scrape(gateway)
                #expect(metrics["tailgate_records_published_total"] == 25)
                #expect(metrics["tailgate_records_delivered_total"] == 25)
                // The loops are measured four times a second.
                let clock = ContinuousClock()
                let deadline = clock.now + .seconds(5)
                while (metrics["tailgate_event_loop_delay_seconds_count"] ?? 0) < 1 && clock.now < deadline {
                    try await Task.sleep(for: .milliseconds(100))
                    metrics = try await Self.scrape(gateway)
                }
                #expect((metrics["tailgate_event_loop_delay_seconds_count"] ?? 0) >= 1)
                worker.stop()
                try await transcript.readToEnd(client)
            }
        }

        @Test("per-worker series (behind the flag) follow each run and leave with their worker")
        func perWorkerSeries() async throws {
            try await withGateway(bus: BusConfiguration(retention: .milliseconds(200)), configure: { $0.metricsPerWorker = true }) { gateway in
                let first = try gateway.register("solo")
                publish(5, to: first)
                try await waitForRing(first, lastSeq: 5)
                var metrics = try await Self.scrape(gateway)
                #expect(metrics["tailgate_worker_records_published_total{worker=\"solo\"}"] == 5)
                #expect(metrics["tailgate_worker_subscribers{worker=\"solo\"}"] == 0)
                #expect((metrics["tailgate_worker_ring_bytes{worker=\"solo\"}"] ?? 0) > 0)

                // A new run of the id starts its series over; the total keeps counting.
                first.stop()
                try await waitUntil("the run to stop") { first.snapshot().state == .stopped }
                let second = try gateway.register("solo")
                publish(3, to: second)
                try await waitForRing(second, lastSeq: 3)
                metrics = try await Self.scrape(gateway)
                #expect(metrics["tailgate_worker_records_published_total{worker=\"solo\"}"] == 3)
                #expect(metrics["tailgate_records_published_total"] == 8)

                second.stop()
                try await waitUntil("the worker to be removed") { gateway.bus.worker(WorkerID("solo")!) == nil }
                metrics = try await Self.scrape(gateway)
                #expect(!metrics.keys.contains { $0.contains("worker=\"solo\"") }, "\(metrics.keys.filter { $0.contains("solo") })")
                #expect(metrics["tailgate_records_published_total"] == 8)
            }
        }

        @Test("without the flag there is no per-worker series")
        func noPerWorkerSeriesByDefault() async throws {
            try await withGateway { gateway in
                let worker = try gateway.register("quiet")
                publish(2, to: worker)
                try await waitForRing(worker, lastSeq: 2)
                let metrics = try await Self.scrape(gateway)
                #expect(!metrics.keys.contains { $0.contains("worker=") })
                #expect(metrics["tailgate_records_published_total"] == 2)
            }
        }

        @Test("/readyz answers 200 once started and 503 shutting_down on a kept-alive connection once shutdown begins")
        func readinessDuringShutdown() async throws {
            try await withGateway { gateway in
                let connection = try await gateway.rawConnection()
                let request = "GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
                try await connection.send(request)
                let ready = try await connection.readHTTPResponse()
                #expect(ready.status == 200 && ready.text == "{\"status\":\"ready\"}\n")
                let stopping = Task { await gateway.server.shutdown(timeout: .seconds(1)) }
                try await waitUntil("the shutdown to begin") { !gateway.server.isReady }
                try await connection.send(request)
                let notReady = try await connection.readHTTPResponse()
                #expect(notReady.status == 503)
                #expect(try notReady.json()["reason"] == .string("shutting_down"))
                await stopping.value
                await connection.close()
            }
        }
    }
}
