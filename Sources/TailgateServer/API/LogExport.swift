import NIOCore
import TailgateCore

/// `GET /api/workers/{id}/logs`: the ring's records as NDJSON (the stored bytes, one per line) or as
/// console text (`timestamp LEVEL logger: message`).
enum LogExport {
    enum Format: String {
        case ndjson
        case text
    }

    /// `GET /api/workers/{id}/logs?since=&limit=&format=&download=`.
    static func respond(to request: Request, id: WorkerID, gateway: GatewayContext) throws(GatewayError) -> HTTPResponse {
        try request.requireGET()
        try APIEndpoints.requireRead(request, on: id, gateway: gateway)
        let target = request.target
        let since = try target.unsignedValue("since")
        let limit = try target.unsignedValue("limit", max: 10_000_000).map { Int($0) }
        let formatText = target.value("format") ?? "ndjson"
        guard let format = Format(rawValue: formatText) else {
            throw .badParameter("format", "expected 'ndjson' or 'text', got '\(formatText.prefix(40))'")
        }
        let download = target.value("download")
        guard download == nil || download == "0" || download == "1" else {
            throw .badParameter("download", "expected 0 or 1")
        }
        guard let worker = gateway.bus.worker(id) else { throw GatewayError.workerNotFound(id) }
        var response = HTTPResponse(body: render(worker, since: since, limit: limit, format: format))
        response.headers.add(name: "Content-Type", value: format == .ndjson ? "application/x-ndjson; charset=utf-8" : "text/plain; charset=utf-8")
        response.headers.add(name: "Cache-Control", value: "no-store")
        if download == "1" {
            let name = "\(String(id.rawValue.map { $0 == ":" ? "_" : $0 })).\(format == .ndjson ? "ndjson" : "log")"
            response.headers.add(name: "Content-Disposition", value: "attachment; filename=\"\(name)\"")
        }
        return response
    }

    /// The records after `since` (all held when `nil`), at most `limit` of them: the first ones after
    /// `since`, or the newest ones when there is no `since`.
    static func render(_ worker: Worker, since: UInt64?, limit: Int?, format: Format) -> ByteBuffer {
        var records: [ByteBuffer] = []
        worker.withRing { ring, _ in
            var from = since.map { $0 + 1 } ?? ring.firstSeq
            if since == nil, let limit, ring.count > limit { from = ring.lastSeq + 1 - UInt64(limit) }
            records.reserveCapacity(min(ring.count, limit ?? ring.count))
            ring.forEachRecord(from: from) { _, bytes in
                records.append(bytes)
                return limit.map { records.count < $0 } ?? true
            }
        }
        var out = ByteBufferAllocator().buffer(capacity: records.reduce(0) { $0 + $1.readableBytes + 1 })
        for record in records {
            switch format {
            case .ndjson:
                out.writeImmutableBuffer(record)
                out.writeStaticString("\n")
            case .text:
                writeText(record, into: &out)
            }
        }
        return out
    }

    /// One console line: `2026-11-27T13:16:40.123456Z INFO    logger: message`.
    static func writeText(_ record: ByteBuffer, into out: inout ByteBuffer) {
        let value = record.withUnsafeReadableBytes { raw in
            try? JSONParser.parse(raw.assumingMemoryBound(to: UInt8.self))
        }
        guard let value else { return }
        out.writeString(value["timestamp"]?.stringValue ?? "")
        out.writeStaticString(" ")
        let level = value["level"]?.stringValue ?? "INFO"
        out.writeString(level)
        for _ in level.count..<8 { out.writeStaticString(" ") }
        if let logger = value["logger_name"]?.stringValue, !logger.isEmpty {
            out.writeString(logger)
            out.writeStaticString(": ")
        }
        out.writeString(value["message"]?.stringValue ?? "")
        out.writeStaticString("\n")
    }
}
