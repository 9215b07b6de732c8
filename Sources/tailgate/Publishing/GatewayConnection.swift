#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Why talking to the gateway failed: it could not be reached, or the connection broke.
struct ConnectionFailure: Error, CustomStringConvertible {
    var description: String
}

/// An HTTP answer.
struct HTTPAnswer {
    var status: Int
    var headers: [(name: String, value: String)]
    var body: [UInt8]

    var text: String { String(decoding: body, as: UTF8.self) }

    func header(_ name: String) -> String? {
        headers.first { $0.name.lowercased() == name.lowercased() }?.value
    }
}

/// One HTTP/1.1 connection to the gateway over a blocking socket: requests with a fixed body, and
/// requests whose body is streamed in chunks. Every wait is bounded by a time-out.
final class GatewayConnection {
    let address: GatewayAddress
    private var socket: Int32
    private var input: [UInt8] = []
    private var inputStart = 0
    /// Whether the gateway asked to close the connection after its last answer.
    private(set) var isClosing = false
    /// When the last answer was read (for reuse of idle connections).
    private(set) var idleSince = MonotonicClock.now

    /// Connects within `timeout` seconds; answers must come within `ioTimeout` seconds.
    init(to address: GatewayAddress, timeout: Double = 5, ioTimeout: Double = 60) throws(ConnectionFailure) {
        self.address = address
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        #if canImport(Glibc)
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        #else
        hints.ai_socktype = SOCK_STREAM
        #endif
        var list: UnsafeMutablePointer<addrinfo>?
        let status = getaddrinfo(address.host, String(address.port), &hints, &list)
        guard status == 0, let first = list else {
            throw ConnectionFailure(description: "cannot resolve \(address.host): \(String(cString: gai_strerror(status)))")
        }
        defer { freeaddrinfo(list) }
        var lastError = "no address"
        var candidate: UnsafeMutablePointer<addrinfo>? = first
        while let info = candidate {
            candidate = info.pointee.ai_next
            let fd = Glibc.socket(info.pointee.ai_family, info.pointee.ai_socktype, info.pointee.ai_protocol)
            guard fd >= 0 else { lastError = String(cString: strerror(errno)); continue }
            if let problem = Self.connect(fd, info.pointee.ai_addr, info.pointee.ai_addrlen, timeout: timeout) {
                lastError = problem
                close(fd)
                continue
            }
            var one: Int32 = 1
            setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
            var limit = timeval(tv_sec: Int(ioTimeout), tv_usec: 0)
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
            setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
            socket = fd
            return
        }
        throw ConnectionFailure(description: "cannot connect to \(address): \(lastError)")
    }

    private static func connect(_ fd: Int32, _ addr: UnsafeMutablePointer<sockaddr>?, _ length: socklen_t, timeout: Double) -> String? {
        let flags = fcntl(fd, F_GETFL)
        _ = fcntl(fd, F_SETFL, flags | O_NONBLOCK)
        defer { _ = fcntl(fd, F_SETFL, flags) }
        if Glibc.connect(fd, addr, length) == 0 { return nil }
        guard errno == EINPROGRESS else { return String(cString: strerror(errno)) }
        var poller = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
        let ready = poll(&poller, 1, Int32(timeout * 1000))
        guard ready > 0 else { return ready == 0 ? "timed out" : String(cString: strerror(errno)) }
        var error: Int32 = 0
        var size = socklen_t(MemoryLayout<Int32>.size)
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &size)
        return error == 0 ? nil : String(cString: strerror(error))
    }

    deinit { close(socket) }

    /// Whether the gateway has closed the connection or sent something unasked (checked without waiting).
    var isStale: Bool {
        if isClosing { return true }
        var poller = pollfd(fd: socket, events: Int16(POLLIN), revents: 0)
        return poll(&poller, 1, 0) != 0
    }

    /// Whether the gateway has sent something (an early answer) while a body is being streamed.
    var hasAnswerWaiting: Bool {
        var poller = pollfd(fd: socket, events: Int16(POLLIN), revents: 0)
        return poll(&poller, 1, 0) != 0
    }

    // MARK: Requests

    /// Sends a request with a complete body and reads the answer; `headers` are added to the head.
    func request(_ method: String, _ path: String, body: [UInt8] = [], contentType: String? = nil,
                 headers: [(name: String, value: String)] = []) throws(ConnectionFailure) -> HTTPAnswer {
        var head = requestHead(method, path, headers: headers)
        if let contentType { head += "Content-Type: \(contentType)\r\n" }
        if method != "GET" || !body.isEmpty { head += "Content-Length: \(body.count)\r\n" }
        head += "\r\n"
        try send(Array(head.utf8) + body)
        return try readAnswer()
    }

    /// Starts a request whose body follows in chunks (`sendChunk`, then `finishBody`).
    func startStreamingRequest(_ method: String, _ path: String, contentType: String,
                               headers: [(name: String, value: String)] = []) throws(ConnectionFailure) {
        let head = requestHead(method, path, headers: headers)
            + "Content-Type: \(contentType)\r\nTransfer-Encoding: chunked\r\n\r\n"
        try send(Array(head.utf8))
    }

    private func requestHead(_ method: String, _ path: String, headers: [(name: String, value: String)]) -> String {
        var head = "\(method) \(address.pathPrefix)\(path) HTTP/1.1\r\nHost: \(address.hostHeader)\r\nUser-Agent: tailgate\r\n"
        for header in headers { head += "\(header.name): \(header.value)\r\n" }
        return head
    }

    /// Sends one chunk of the body (not empty).
    func sendChunk(_ bytes: [UInt8]) throws(ConnectionFailure) {
        guard !bytes.isEmpty else { return }
        try send(Array((String(bytes.count, radix: 16) + "\r\n").utf8) + bytes + [0x0D, 0x0A])
    }

    /// Ends the body and reads the answer.
    func finishBody() throws(ConnectionFailure) -> HTTPAnswer {
        try send(Array("0\r\n\r\n".utf8))
        return try readAnswer()
    }

    private func send(_ bytes: [UInt8]) throws(ConnectionFailure) {
        var offset = 0
        while offset < bytes.count {
            let sent = bytes.withUnsafeBytes { raw in
                Glibc.send(socket, raw.baseAddress! + offset, raw.count - offset, Int32(MSG_NOSIGNAL))
            }
            if sent < 0 {
                if errno == EINTR { continue }
                throw ConnectionFailure(description: errno == EAGAIN ? "the gateway took no data for a minute" : "connection to \(address) broke: \(String(cString: strerror(errno)))")
            }
            offset += sent
        }
    }

    // MARK: Answers

    /// Reads one answer (skipping `100 Continue`), with a `Content-Length` or chunked body.
    func readAnswer() throws(ConnectionFailure) -> HTTPAnswer {
        while true {
            let headText = try readUntilBlankLine()
            let lines = headText.split(separator: "\r\n", omittingEmptySubsequences: false)
            let statusParts = lines[0].split(separator: " ", maxSplits: 2)
            guard statusParts.count >= 2, statusParts[0].hasPrefix("HTTP/1."), let status = Int(statusParts[1]) else {
                throw ConnectionFailure(description: "the gateway sent a malformed answer: \(lines[0].prefix(80))")
            }
            var headers: [(name: String, value: String)] = []
            for line in lines.dropFirst() where !line.isEmpty {
                guard let colon = line.firstIndex(of: ":") else { continue }
                headers.append((String(line[..<colon]), line[line.index(after: colon)...].trimmingSpaces))
            }
            if (100...199).contains(status) { continue }
            var answer = HTTPAnswer(status: status, headers: headers, body: [])
            if answer.header("transfer-encoding")?.lowercased().contains("chunked") == true {
                while true {
                    let sizeLine = try readLine()
                    guard let size = Int(sizeLine.split(separator: ";")[0].trimmingSpaces, radix: 16) else {
                        throw ConnectionFailure(description: "the gateway sent a malformed chunk")
                    }
                    if size == 0 {
                        while try !readLine().isEmpty {}
                        break
                    }
                    answer.body += try readBytes(size)
                    _ = try readLine()
                }
            } else if let length = answer.header("content-length").flatMap({ Int($0) }) {
                answer.body = try readBytes(length)
            }
            isClosing = answer.header("connection")?.lowercased() == "close"
            idleSince = MonotonicClock.now
            return answer
        }
    }

    private func fill() throws(ConnectionFailure) {
        if inputStart > 0 && inputStart == input.count {
            input.removeAll(keepingCapacity: true)
            inputStart = 0
        }
        var chunk = [UInt8](repeating: 0, count: 16 << 10)
        while true {
            let count = chunk.withUnsafeMutableBytes { recv(socket, $0.baseAddress, $0.count, 0) }
            if count > 0 {
                input += chunk[0..<count]
                return
            }
            if count < 0 && errno == EINTR { continue }
            if count == 0 { throw ConnectionFailure(description: "the gateway closed the connection") }
            throw ConnectionFailure(description: errno == EAGAIN ? "no answer from the gateway within a minute" : "connection to \(address) broke: \(String(cString: strerror(errno)))")
        }
    }

    private func readUntilBlankLine() throws(ConnectionFailure) -> String {
        let marker: [UInt8] = [0x0D, 0x0A, 0x0D, 0x0A]
        while true {
            if input.count - inputStart >= 4 {
                for index in inputStart...(input.count - 4) where input[index..<index + 4].elementsEqual(marker) {
                    let text = String(decoding: input[inputStart..<index], as: UTF8.self)
                    inputStart = index + 4
                    return text
                }
            }
            guard input.count - inputStart < 64 << 10 else { throw ConnectionFailure(description: "the gateway's answer head is too long") }
            try fill()
        }
    }

    private func readLine() throws(ConnectionFailure) -> String {
        while true {
            if let newline = input[inputStart...].firstIndex(of: 0x0A) {
                var end = newline
                if end > inputStart && input[end - 1] == 0x0D { end -= 1 }
                let text = String(decoding: input[inputStart..<end], as: UTF8.self)
                inputStart = newline + 1
                return text
            }
            try fill()
        }
    }

    private func readBytes(_ count: Int) throws(ConnectionFailure) -> [UInt8] {
        while input.count - inputStart < count { try fill() }
        let bytes = Array(input[inputStart..<inputStart + count])
        inputStart += count
        return bytes
    }
}

/// Seconds on a clock that never jumps.
enum MonotonicClock {
    static var now: Double {
        var spec = timespec()
        clock_gettime(CLOCK_MONOTONIC, &spec)
        return Double(spec.tv_sec) + Double(spec.tv_nsec) / 1e9
    }
}

private extension Substring {
    var trimmingSpaces: String {
        var text = self
        while text.first == " " || text.first == "\t" { text.removeFirst() }
        while text.last == " " || text.last == "\t" { text.removeLast() }
        return String(text)
    }
}
