import NIOCore
import Testing
import TailgateCore
import TailgateServer

extension GatewayIntegrationTests {
    @Suite("REST API and health")
    struct RESTAPI {
        @Test("/healthz answers {\"status\":\"ok\"}")
        func health() async throws {
            try await withGateway { gateway in
                let response = try await gateway.get("/healthz")
                #expect(response.status == 200)
                #expect(try response.json() == .object(["status": .string("ok")]))
                #expect(response.header("content-type")?.hasPrefix("application/json") == true)
                let head = try await gateway.get("/healthz", method: "HEAD")
                #expect(head.status == 200)
            }
        }

        @Test("/api/workers lists workers sorted by id, with log_stream_url built from the Host header")
        func listWorkers() async throws {
            try await withGateway(configure: { $0.allowedHosts = ["logs.example"] }) { gateway in
                let beta = try gateway.register("beta")
                let alpha = try gateway.register("alpha")
                publish(3, to: beta)
                try await waitForRing(beta, lastSeq: 3)
                alpha.stop()
                try await waitUntil("alpha to stop") { alpha.snapshot().state == .stopped }

                let response = try await gateway.get("/api/workers", headers: [("Host", "logs.example:9000")])
                #expect(response.status == 200)
                let workers = try response.json()["workers"]
                guard case .array(let list)? = workers else {
                    Issue.record("no workers array in \(response.text)")
                    return
                }
                #expect(list.map { $0["id"] } == [.string("alpha"), .string("beta")])
                let a = list[0], b = list[1]
                #expect(a["state"] == .string("stopped"))
                #expect(a["stopped_at"]?.stringValue.flatMap(Timestamp.init(iso8601:)) != nil)
                #expect(b["state"] == .string("running"))
                #expect(b["stopped_at"] == .null)
                #expect(b["log_stream_path"] == .string("/ws/workers/beta"))
                #expect(b["log_stream_url"] == .string("ws://logs.example:9000/ws/workers/beta"))
                #expect(b["first_seq"]?.seq == 1)
                #expect(b["last_seq"]?.seq == 3)
                #expect(b["records_total"]?.seq == 3)
                #expect(b["subscribers"]?.intValue == 0)
                #expect(b["started_at"]?.stringValue.flatMap(Timestamp.init(iso8601:)) != nil)
            }
        }

        @Test("/api/workers/{id} gives one worker (subscribers counted), 404 when unknown, 400 for a bad id")
        func oneWorker() async throws {
            try await withGateway { gateway in
                _ = try gateway.register("002050.SZ")
                let client = try await gateway.subscribe("/ws/workers/002050.SZ")
                _ = try await client.nextMessage()
                let response = try await gateway.get("/api/workers/002050.SZ")
                #expect(response.status == 200)
                let worker = try response.json()
                #expect(worker["id"] == .string("002050.SZ"))
                #expect(worker["subscribers"]?.intValue == 1)
                #expect(worker["log_stream_url"] == .string("ws://127.0.0.1:\(gateway.port)/ws/workers/002050.SZ"))

                let missing = try await gateway.get("/api/workers/nobody")
                #expect(missing.status == 404)
                #expect(missing.errorCode == "worker_not_found")
                #expect(missing.errorMessage == "no worker 'nobody'")

                let bad = try await gateway.get("/api/workers/.bad")
                #expect(bad.status == 400)
                #expect(bad.errorCode == "bad_worker_id")

                let post = try await gateway.get("/api/workers", method: "DELETE")
                #expect(post.status == 405)
                #expect(post.errorCode != nil)
            }
        }

        @Test("/api/workers/{id}/logs gives NDJSON, honours since and limit")
        func logsNDJSON() async throws {
            try await withGateway { gateway in
                let worker = try gateway.register("w")
                publish(5, to: worker)
                try await waitForRing(worker, lastSeq: 5)

                let all = try await gateway.get("/api/workers/w/logs")
                #expect(all.status == 200)
                #expect(all.header("content-type")?.hasPrefix("application/x-ndjson") == true)
                #expect(all.header("content-disposition") == nil)
                #expect(try seqs(ofNDJSON: all.text) == [1, 2, 3, 4, 5])
                let first = try JSONParser.parse(String(all.text.split(separator: "\n")[0]))
                #expect(first["message"] == .string("record 1"))
                #expect(first["level"] == .string("INFO"))

                #expect(try seqs(ofNDJSON: await gateway.get("/api/workers/w/logs?since=2").text) == [3, 4, 5])
                #expect(try seqs(ofNDJSON: await gateway.get("/api/workers/w/logs?limit=2").text) == [4, 5])
                #expect(try seqs(ofNDJSON: await gateway.get("/api/workers/w/logs?since=1&limit=2").text) == [2, 3])
                #expect(try seqs(ofNDJSON: await gateway.get("/api/workers/w/logs?since=5").text) == [])

                let badSince = try await gateway.get("/api/workers/w/logs?since=-3")
                #expect(badSince.status == 400)
                #expect(badSince.errorCode == "bad_parameter")
                let badFormat = try await gateway.get("/api/workers/w/logs?format=xml")
                #expect(badFormat.status == 400)
                let missing = try await gateway.get("/api/workers/nobody/logs")
                #expect(missing.status == 404)
                #expect(missing.errorCode == "worker_not_found")
            }
        }

        @Test("/api/workers/{id}/logs?format=text gives console lines; download=1 adds Content-Disposition")
        func logsTextAndDownload() async throws {
            try await withGateway { gateway in
                let worker = try gateway.register("002050.SZ")
                worker.publish(.warning, "low margin", loggerName: "risk")
                worker.publish(.info, "filled 100")
                try await waitForRing(worker, lastSeq: 2)

                let text = try await gateway.get("/api/workers/002050.SZ/logs?format=text")
                #expect(text.status == 200)
                #expect(text.header("content-type")?.hasPrefix("text/plain") == true)
                let lines = text.text.split(separator: "\n")
                #expect(lines.count == 2)
                #expect(lines.first?.contains("WARNING") == true)
                #expect(lines.first?.contains("risk: low margin") == true)
                #expect(lines.first.map { Timestamp(iso8601: $0.prefix(27)) != nil } == true)
                #expect(lines.last?.hasSuffix("filled 100") == true)

                let download = try await gateway.get("/api/workers/002050.SZ/logs?download=1")
                #expect(download.status == 200)
                let disposition = try #require(download.header("content-disposition"))
                #expect(disposition.hasPrefix("attachment"))
                #expect(disposition.contains("002050.SZ.ndjson"))
                #expect(try seqs(ofNDJSON: download.text) == [1, 2])

                let textDownload = try await gateway.get("/api/workers/002050.SZ/logs?format=text&download=1")
                #expect(textDownload.header("content-disposition")?.hasPrefix("attachment") == true)
                #expect(textDownload.text.contains("filled 100"))
            }
        }

        @Test("/api/stats shows the server's counters")
        func stats() async throws {
            try await withGateway { gateway in
                _ = try await gateway.get("/api/workers/nobody")
                let stats = try await gateway.get("/api/stats").json()
                #expect(stats["refusals"]?.intValue ?? 0 >= 1)
                #expect(stats["max_buffered_bytes_per_stream"]?.intValue != nil)
                #expect(stats["connections_accepted"]?.intValue ?? 0 >= 2)
            }
        }

        @Test("a keep-alive connection serves several requests in turn")
        func keepAlive() async throws {
            try await withGateway { gateway in
                let client = try await gateway.rawConnection()
                for _ in 0..<3 {
                    try await client.send("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                    let response = try await client.readHTTPResponse()
                    #expect(response.status == 200)
                    #expect(response.text.contains("ok"))
                }
                await client.close()
            }
        }
    }
}

/// The `seq` of every line of an NDJSON body.
func seqs(ofNDJSON text: String) throws -> [UInt64] {
    try text.split(separator: "\n").map { line in
        guard let seq = try JSONParser.parse(String(line))["seq"]?.seq else { throw ConnectionEnded(waitingFor: "a seq in \(line)") }
        return seq
    }
}
