import Testing
@testable import TailgateCore

@Suite("WorkerID")
struct WorkerIDTests {
    static let valid: [String] = [
        "002050.SZ", "VnpyWorker-7", "a", "Z", "0", "a_b", "a:b", "a-b", "a.b", "9-", "x:::", "1..",
        "worker_01.part:2-B", "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:-",
        "A" + String(repeating: "x", count: 127),  // 128 characters: the longest allowed
        String(repeating: "9", count: 128),
    ]

    static let invalid: [String] = [
        "", ".a", "-a", "_a", ":a", ".", "..", "a b", " a", "a ", "a\tb", "a/b", "/", "../etc", "a\\b",
        "é", "aé", "ａ", "a\u{0}", "a\n", "a?b", "a#b", "a%20b", "a+b", "a@b", "a,b", "a;b", "a*b", "a~b",
        "Ωmega", "id\u{1B}[31m", "🚀",
        "A" + String(repeating: "x", count: 128),  // 129 characters
        String(repeating: "9", count: 200),
    ]

    @Test("accepts ids matching [A-Za-z0-9][A-Za-z0-9._:-]{0,127}", arguments: valid)
    func acceptsValid(_ text: String) throws {
        let id = try #require(WorkerID(text))
        #expect(id.rawValue == text)
        #expect(id.description == text)
        #expect(WorkerID.isValid(Array(text.utf8)))
    }

    @Test("refuses anything else", arguments: invalid)
    func refusesInvalid(_ text: String) {
        #expect(WorkerID(text) == nil)
        #expect(!WorkerID.isValid(Array(text.utf8)))
    }

    @Test func lengthBoundary() {
        #expect(WorkerID.maxLength == 128)
        for length in 1...130 {
            let text = String(repeating: "a", count: length)
            #expect((WorkerID(text) != nil) == (length <= 128), "length \(length)")
        }
    }

    @Test func acceptsSubstrings() throws {
        let path = "/ws/workers/002050.SZ"
        let id = try #require(WorkerID(path.split(separator: "/").last!))
        #expect(id.rawValue == "002050.SZ")
        #expect(WorkerID(path) == nil)
    }

    @Test func equalityHashingAndOrder() throws {
        let a = try #require(WorkerID("demo-1"))
        let b = try #require(WorkerID("demo-2"))
        let c = try #require(WorkerID("002050.SZ"))
        #expect(a == WorkerID("demo-1"))
        #expect(a != b)
        #expect(Set([a, b, c, WorkerID("demo-1")!]).count == 3)
        #expect([b, a, c].sorted() == [c, a, b])
    }
}
