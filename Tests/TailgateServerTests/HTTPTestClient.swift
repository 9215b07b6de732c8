import NIOCore
import TailgateCore

/// An HTTP/1.1 response as a test client read it off the wire.
struct HTTPTestResponse: Sendable {
    var status: Int
    var headers: [(String, String)]
    var body: ByteBuffer

    /// The first value of header `name` (case-insensitive).
    func header(_ name: String) -> String? {
        headers.first { $0.0.lowercased() == name.lowercased() }?.1
    }

    var text: String { String(buffer: body) }

    /// The body parsed as JSON.
    func json() throws -> JSONValue { try JSONParser.parse(text) }

    /// The `error.code` of a JSON error body.
    var errorCode: String? { (try? json())?["error"]?["code"]?.stringValue }
    /// The `error.message` of a JSON error body.
    var errorMessage: String? { (try? json())?["error"]?["message"]?.stringValue }

    /// Takes a complete response head (status line and headers) from the front of `buffer`, or returns
    /// `nil` when it is not all there yet.
    static func parseHead(_ buffer: inout ByteBuffer) -> (status: Int, headers: [(String, String)])? {
        let view = buffer.readableBytesView
        let terminator: [UInt8] = Array("\r\n\r\n".utf8)
        guard let end = view.firstRange(of: terminator) else { return nil }
        let headLength = end.upperBound - view.startIndex
        let head = buffer.readString(length: headLength)!
        var lines = head.split(separator: "\r\n", omittingEmptySubsequences: true)
        let statusLine = lines.removeFirst().split(separator: " ", maxSplits: 2)
        let status = statusLine.count > 1 ? Int(statusLine[1]) ?? 0 : 0
        let headers = lines.compactMap { line -> (String, String)? in
            guard let colon = line.firstIndex(of: ":") else { return nil }
            return (String(line[..<colon]), line[line.index(after: colon)...].trimmingSpaces)
        }
        return (status, headers)
    }
}

extension Substring {
    var trimmingSpaces: String {
        String(drop(while: { $0 == " " || $0 == "\t" }).reversed().drop(while: { $0 == " " || $0 == "\t" }).reversed())
    }
}

/// A tiny HTTP/1.1 client over a raw loopback socket: one request per connection.
enum HTTPTestClient {
    /// `GET path` (or another method) with `Connection: close`, and its response.
    static func get(
        port: Int, _ path: String, headers: [(String, String)] = [], method: String = "GET", group: EventLoopGroup
    ) async throws -> HTTPTestResponse {
        var request = "\(method) \(path) HTTP/1.1\r\n"
        if !headers.contains(where: { $0.0.lowercased() == "host" }) { request += "Host: 127.0.0.1:\(port)\r\n" }
        for (name, value) in headers { request += "\(name): \(value)\r\n" }
        if !headers.contains(where: { $0.0.lowercased() == "connection" }) { request += "Connection: close\r\n" }
        request += "\r\n"
        return try await send(port: port, raw: Array(request.utf8), group: group, bodyless: method == "HEAD")
    }

    /// Sends `raw` bytes as they are and reads one response (without a body when `bodyless`).
    static func send(port: Int, raw: [UInt8], group: EventLoopGroup, bodyless: Bool = false) async throws -> HTTPTestResponse {
        let client = try await RawTCPClient.connect(port: port, group: group)
        do {
            try await client.send(raw)
            let response = try await client.readHTTPResponse(bodyless: bodyless)
            await client.close()
            return response
        } catch {
            await client.close()
            throw error
        }
    }

    /// The headers of a WebSocket upgrade request (a valid key, version 13).
    static func upgradeHeaders(key: String = "dGhlIHNhbXBsZSBub25jZQ==") -> [(String, String)] {
        [("Upgrade", "websocket"), ("Connection", "Upgrade"), ("Sec-WebSocket-Key", key), ("Sec-WebSocket-Version", "13")]
    }
}

/// Opening a stream by hand over a `RawTCPClient`, for subscribers whose reading the test controls.
enum RawWebSocket {
    /// Connects, sends the upgrade request for `path` and reads the `101` head; the frames that follow
    /// are read with `readFrame`.
    static func open(
        port: Int, path: String, group: EventLoopGroup, receiveBufferSize: Int? = nil, autoRead: Bool = true
    ) async throws -> RawTCPClient {
        let client = try await RawTCPClient.connect(port: port, group: group, receiveBufferSize: receiveBufferSize, autoRead: autoRead)
        var request = "GET \(path) HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\n"
        for (name, value) in HTTPTestClient.upgradeHeaders() { request += "\(name): \(value)\r\n" }
        request += "\r\n"
        try await client.send(request)
        let response = try await client.readHTTPResponse()
        guard response.status == 101 else {
            await client.close()
            throw WebSocketRefused(status: .init(statusCode: response.status), headers: .init(response.headers), body: response.text)
        }
        return client
    }
}
