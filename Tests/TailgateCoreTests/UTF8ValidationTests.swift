import Testing
@testable import TailgateCore

@Suite("UTF8Validation")
struct UTF8ValidationTests {
    static func valid(_ bytes: [UInt8]) -> Bool {
        bytes.withUnsafeBufferPointer { UTF8Validation.isValid($0) }
    }

    /// The standard library's strict validator, the reference.
    static func reference(_ bytes: [UInt8]) -> Bool {
        String(validating: bytes, as: UTF8.self) != nil
    }

    @Test("agrees with the standard library on the boundary cases", arguments: [
        [], [0x00], [0x7F], [0x80], [0xBF], [0xC0, 0x80], [0xC1, 0xBF], [0xC2, 0x80], [0xDF, 0xBF], [0xC2],
        [0xE0, 0x9F, 0xBF], [0xE0, 0xA0, 0x80], [0xE1, 0x80, 0x80], [0xEC, 0xBF, 0xBF], [0xED, 0x9F, 0xBF],
        [0xED, 0xA0, 0x80], [0xED, 0xBF, 0xBF], [0xEE, 0x80, 0x80], [0xEF, 0xBF, 0xBF], [0xEF, 0xBF],
        [0xF0, 0x8F, 0xBF, 0xBF], [0xF0, 0x90, 0x80, 0x80], [0xF3, 0xBF, 0xBF, 0xBF], [0xF4, 0x8F, 0xBF, 0xBF],
        [0xF4, 0x90, 0x80, 0x80], [0xF5, 0x80, 0x80, 0x80], [0xFF], [0xFE], [0xE2, 0x82, 0x41],
        Array("plain ASCII longer than one machine word".utf8), Array("ascii then é at the end".utf8),
        Array("é 世 🚀 \u{10FFFF} mixed with ASCII words".utf8), Array("12345678".utf8) + [0xC3],
    ] as [[UInt8]])
    func boundaries(_ bytes: [UInt8]) {
        #expect(Self.valid(bytes) == Self.reference(bytes), "\(bytes)")
    }

    @Test func agreesWithTheStandardLibraryOnRandomBytes() {
        // Deterministic pseudo-random sequences biased towards the interesting bytes.
        var generator = TestRandom(seed: 0x7A11_6A7E)
        let alphabet: [UInt8] = [0x41, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xC2, 0xDF, 0xE0, 0xE1, 0xED,
                                 0xEF, 0xF0, 0xF3, 0xF4, 0xF5, 0xFF]
        var disagreements = 0
        var validSeen = 0
        for _ in 0..<200_000 {
            let length = Int(generator.next() % 12)
            let bytes = (0..<length).map { _ in alphabet[Int(generator.next() % UInt64(alphabet.count))] }
            let expected = Self.reference(bytes)
            if expected { validSeen += 1 }
            if Self.valid(bytes) != expected { disagreements += 1 }
        }
        #expect(disagreements == 0)
        #expect(validSeen > 1000)  // the sample exercised both answers
    }

    @Test func stringIsNilOnlyForInvalidBytes() {
        let text = "tick 09:31 é世🚀"
        #expect(Array(text.utf8).withUnsafeBufferPointer { UTF8Validation.string($0) } == text)
        #expect([0x61, 0xFF].withUnsafeBufferPointer { UTF8Validation.string($0) } == nil)
    }
}
