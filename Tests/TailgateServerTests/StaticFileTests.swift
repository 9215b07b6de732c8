import Foundation
import NIOCore
import Testing
import TailgateServer

/// A temporary folder laid out as `root/public/…` with a secret beside `public/` and symlinks that
/// point out of it.
final class TemporaryPublicDirectory {
    let root: URL
    var publicPath: String { root.appendingPathComponent("public").path }
    static let secret = "TOP-SECRET-\(UInt64.random(in: 0...UInt64.max))"

    init() throws {
        root = FileManager.default.temporaryDirectory.appendingPathComponent("tailgate-static-\(UUID().uuidString)")
        let manager = FileManager.default
        let publicURL = root.appendingPathComponent("public")
        try manager.createDirectory(at: publicURL.appendingPathComponent("sub"), withIntermediateDirectories: true)
        let files: [(String, String)] = [
            ("index.html", "<!doctype html><title>dashboard</title>"),
            ("console.html", "<!doctype html><title>console</title>"),
            ("app.js", "export const answer = 42;\n"),
            ("style.css", "body { color: black; }\n"),
            ("data.json", "{\"ok\":true}\n"),
            ("icon.svg", "<svg xmlns=\"http://www.w3.org/2000/svg\"/>"),
            ("image.png", "\u{89}PNG fake"),
            ("blob.unknownext", "raw"),
            ("sub/nested.txt", "nested file\n"),
        ]
        for (name, content) in files {
            try content.write(to: publicURL.appendingPathComponent(name), atomically: true, encoding: .utf8)
        }
        try Self.secret.write(to: root.appendingPathComponent("secret.txt"), atomically: true, encoding: .utf8)
        try manager.createSymbolicLink(atPath: publicURL.appendingPathComponent("link.txt").path,
                                       withDestinationPath: root.appendingPathComponent("secret.txt").path)
        try manager.createSymbolicLink(atPath: publicURL.appendingPathComponent("relative-link.txt").path,
                                       withDestinationPath: "../secret.txt")
        try manager.createSymbolicLink(atPath: publicURL.appendingPathComponent("outside").path, withDestinationPath: root.path)
    }

    deinit {
        try? FileManager.default.removeItem(at: root)
    }
}

extension GatewayIntegrationTests {
    @Suite("Static files")
    struct StaticFilesTests {
        @Test("files are served with their content types; / is index.html")
        func contentTypes() async throws {
            let directory = try TemporaryPublicDirectory()
            try await withGateway(configure: { $0.publicDirectory = directory.publicPath }) { gateway in
                let expected: [(String, String, String)] = [
                    ("/", "text/html", "<title>dashboard</title>"),
                    ("/index.html", "text/html", "<title>dashboard</title>"),
                    ("/console.html?worker=w1", "text/html", "<title>console</title>"),
                    ("/app.js", "text/javascript", "answer = 42"),
                    ("/style.css", "text/css", "color: black"),
                    ("/data.json", "application/json", "\"ok\""),
                    ("/icon.svg", "image/svg+xml", "<svg"),
                    ("/image.png", "image/png", "PNG"),
                    ("/blob.unknownext", "application/octet-stream", "raw"),
                    ("/sub/nested.txt", "text/plain", "nested file"),
                    ("/sub//nested.txt", "text/plain", "nested file"),
                ]
                for (path, type, content) in expected {
                    let response = try await gateway.get(path)
                    #expect(response.status == 200, "\(path)")
                    #expect(response.header("content-type")?.hasPrefix(type) == true, "\(path): \(response.header("content-type") ?? "none")")
                    #expect(response.text.contains(content), "\(path)")
                    #expect(response.header("etag") != nil, "\(path)")
                }
                let html = try await gateway.get("/")
                #expect(html.header("content-security-policy") != nil)
                #expect(html.header("x-content-type-options") == "nosniff")
                let missing = try await gateway.get("/nope.html")
                #expect(missing.status == 404)
                #expect(missing.errorCode != nil)
                let directoryItself = try await gateway.get("/sub")
                #expect(directoryItself.status == 404)
            }
        }

        @Test("ETag revalidation answers 304 without a body")
        func etag() async throws {
            let directory = try TemporaryPublicDirectory()
            try await withGateway(configure: { $0.publicDirectory = directory.publicPath }) { gateway in
                let first = try await gateway.get("/app.js")
                let etag = try #require(first.header("etag"))
                let again = try await gateway.get("/app.js", headers: [("If-None-Match", etag)])
                #expect(again.status == 304)
                #expect(again.body.readableBytes == 0)
                #expect(again.header("etag") == etag)
                let stale = try await gateway.get("/app.js", headers: [("If-None-Match", "\"0-0-0\"")])
                #expect(stale.status == 200)
                #expect(stale.text == first.text)

                // A changed file gets a new ETag and its new content.
                try "export const answer = 43;\n".write(toFile: directory.publicPath + "/app.js", atomically: true, encoding: .utf8)
                let changed = try await gateway.get("/app.js", headers: [("If-None-Match", etag)])
                #expect(changed.status == 200)
                #expect(changed.text.contains("43"))
                #expect(changed.header("etag") != etag)
            }
        }

        static let escapes: [String] = [
            "/../secret.txt",
            "/sub/../../secret.txt",
            "/%2e%2e/secret.txt",
            "/%2E%2E/secret.txt",
            "/.%2e/secret.txt",
            "/%2e%2e%2fsecret.txt",
            "/sub%2f..%2f..%2fsecret.txt",
            "/sub/..%2f..%2fsecret.txt",
            "/..%5csecret.txt",
            "/%2e%2e%5csecret.txt",
            "/./../secret.txt",
            "/link.txt",
            "/relative-link.txt",
            "/outside/secret.txt",
            "/%00/../secret.txt",
            "/secret.txt%00.html",
            "/%2fetc%2fpasswd",
            "//etc/passwd",
            "/../../../../../../etc/passwd",
            "/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        ]

        @Test("nothing outside the public folder is ever served", arguments: escapes)
        func refusesEscapes(_ path: String) async throws {
            let directory = try TemporaryPublicDirectory()
            try await withGateway(configure: { $0.publicDirectory = directory.publicPath }) { gateway in
                let response = try await gateway.get(path)
                #expect(response.status == 400 || response.status == 404, "\(path) → \(response.status)")
                #expect(!response.text.contains(TemporaryPublicDirectory.secret))
                #expect(!response.text.contains("root:"))
                #expect(response.errorCode != nil, "\(response.text)")
            }
        }

        @Test("without a public folder, pages are 404 with a JSON reason and the API still works")
        func noPublicDirectory() async throws {
            try await withGateway { gateway in
                let page = try await gateway.get("/")
                #expect(page.status == 404)
                #expect(page.errorCode != nil)
                #expect(try await gateway.get("/healthz").status == 200)
            }
        }
    }
}
