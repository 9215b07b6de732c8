import NIOCore
import NIOHTTP1
import TailgateCore

/// A complete HTTP response: status, headers and body.
struct HTTPResponse {
    var status: HTTPResponseStatus
    var headers: HTTPHeaders
    var body: ByteBuffer
    /// The stable code of a refusal (`GatewayError.code`), for the refusal counters.
    var refusalCode: String?

    init(status: HTTPResponseStatus = .ok, headers: HTTPHeaders = HTTPHeaders(), body: ByteBuffer = ByteBuffer()) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    /// A JSON body with `Content-Type: application/json`.
    static func json(_ body: ByteBuffer, status: HTTPResponseStatus = .ok) -> HTTPResponse {
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: "application/json; charset=utf-8")
        headers.add(name: "Cache-Control", value: "no-store")
        return HTTPResponse(status: status, headers: headers, body: body)
    }

    /// The JSON error answer for `error`.
    static func error(_ error: GatewayError) -> HTTPResponse {
        var body = ByteBufferAllocator().buffer(capacity: 128 + error.message.utf8.count)
        body.writeStaticString("{\"error\":{\"code\":")
        body.writeJSONString(error.code)
        body.writeStaticString(",\"message\":")
        body.writeJSONString(error.message)
        body.writeStaticString("}}\n")
        var response = json(body, status: error.status)
        for (name, value) in error.headers { response.headers.add(name: name, value: value) }
        response.refusalCode = error.code
        return response
    }
}
