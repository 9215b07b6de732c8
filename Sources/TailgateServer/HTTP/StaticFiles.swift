#if canImport(Glibc)
import TailgateCore
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import NIOCore
import NIOHTTP1
import Synchronization

/// Serves the files of one folder (the browser UI), and nothing outside it.
///
/// Paths are percent-decoded and then refused if any segment is `.` or `..`, if they hold a NUL or a
/// backslash, or if the real path (symlinks resolved) leaves the folder. Responses carry an `ETag`
/// (size and modification time) and `Cache-Control: no-cache`, so browsers revalidate and get 304s.
/// Small files are kept in memory until they change on disk.
final class StaticFiles: Sendable {
    /// The folder's real path.
    let root: String
    private let cache = Lock<[String: CachedFile]>([:])

    private struct CachedFile: Sendable {
        var etag: String
        var body: ByteBuffer
    }

    /// Headers added to HTML pages (the UI works under this policy).
    static let contentSecurityPolicy =
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        + "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"

    /// Opens `directory`; `nil` when it does not exist.
    init?(directory: String) {
        guard let resolved = realpath(directory, nil) else { return nil }
        root = String(cString: resolved)
        free(resolved)
    }

    static let contentTypes: [String: String] = [
        "html": "text/html; charset=utf-8", "js": "text/javascript; charset=utf-8", "mjs": "text/javascript; charset=utf-8",
        "css": "text/css; charset=utf-8", "json": "application/json; charset=utf-8", "svg": "image/svg+xml",
        "png": "image/png", "ico": "image/x-icon", "txt": "text/plain; charset=utf-8", "woff2": "font/woff2",
        "map": "application/json; charset=utf-8", "webmanifest": "application/manifest+json",
    ]

    /// The response for a GET or HEAD of `path` (the raw request path).
    func response(path rawPath: Substring, requestHeaders: HTTPHeaders) throws(GatewayError) -> HTTPResponse {
        guard let decoded = RequestTarget.percentDecode(rawPath) else {
            throw GatewayError(.badRequest, "bad_path", "malformed percent-encoding in the path")
        }
        var segments: [Substring] = []
        for segment in decoded.split(separator: "/", omittingEmptySubsequences: true) {
            if segment == "." || segment == ".." || segment.contains("\0") || segment.contains("\\") {
                throw GatewayError(.badRequest, "bad_path", "the path may not contain '.' or '..' segments, NUL or backslashes")
            }
            segments.append(segment)
        }
        if segments.isEmpty { segments = ["index.html"] }
        let candidate = root + "/" + segments.joined(separator: "/")
        guard let resolvedPointer = realpath(candidate, nil) else { throw GatewayError.notFound }
        let resolved = String(cString: resolvedPointer)
        free(resolvedPointer)
        guard resolved.hasPrefix(root + "/") else { throw GatewayError.notFound }
        var info = stat()
        guard stat(resolved, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG else { throw GatewayError.notFound }
        let etag = "\"\(info.st_size)-\(info.st_mtim.tv_sec)-\(info.st_mtim.tv_nsec)\""

        var headers = HTTPHeaders()
        let fileExtension = resolved.split(separator: ".").last.map { String($0).lowercased() } ?? ""
        headers.add(name: "Content-Type", value: Self.contentTypes[fileExtension] ?? "application/octet-stream")
        headers.add(name: "Cache-Control", value: "no-cache")
        headers.add(name: "ETag", value: etag)
        headers.add(name: "X-Content-Type-Options", value: "nosniff")
        if fileExtension == "html" {
            headers.add(name: "Content-Security-Policy", value: Self.contentSecurityPolicy)
            headers.add(name: "Referrer-Policy", value: "no-referrer")
        }
        if let match = requestHeaders.first(name: "if-none-match"), match == etag || match == "*" {
            return HTTPResponse(status: .notModified, headers: headers)
        }
        if let cached = cache.withLock({ $0[resolved] }), cached.etag == etag {
            return HTTPResponse(headers: headers, body: cached.body)
        }
        guard let body = Self.read(resolved, size: Int(info.st_size)) else { throw GatewayError.notFound }
        if body.readableBytes <= 1 << 20 {
            cache.withLock { $0[resolved] = CachedFile(etag: etag, body: body) }
        }
        return HTTPResponse(headers: headers, body: body)
    }

    private static func read(_ path: String, size: Int) -> ByteBuffer? {
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { return nil }
        defer { close(descriptor) }
        var buffer = ByteBufferAllocator().buffer(capacity: size)
        while true {
            var failed = false
            let count = buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: 64 * 1024) { pointer in
                let count = Glibc.read(descriptor, pointer.baseAddress, pointer.count)
                failed = count < 0
                return max(count, 0)
            }
            if failed { return nil }
            if count == 0 { return buffer }
        }
    }
}
