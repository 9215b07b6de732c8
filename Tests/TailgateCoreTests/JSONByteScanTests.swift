import Testing
@testable import TailgateCore

@Suite("JSONByteScan")
struct JSONByteScanTests {
    static func special(_ byte: UInt8) -> Bool { byte < 0x20 || byte == 0x22 || byte == 0x5C }

    @Test func wordTestIsExactOnEveryByteInEveryPosition() {
        // Each byte value in each lane of an otherwise harmless word, with harmless and high neighbours.
        for filler: UInt8 in [0x41, 0x80, 0xFF, 0x21, 0x5D] {
            for lane in 0..<8 {
                for value in 0...255 {
                    var bytes = [UInt8](repeating: filler, count: 8)
                    bytes[lane] = UInt8(value)
                    let word = bytes.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }
                    #expect(JSONByteScan.hasSpecial(word) == bytes.contains(where: Self.special), "\(bytes)")
                }
            }
        }
    }

    @Test func firstSpecialAgreesWithAByteLoop() {
        var generator = TestRandom(seed: 42)
        let alphabet: [UInt8] = [0x00, 0x1F, 0x20, 0x21, 0x22, 0x23, 0x5B, 0x5C, 0x5D, 0x7F, 0x80, 0xC3, 0xFF, 0x61]
        for _ in 0..<20_000 {
            let length = Int(generator.next() % 40)
            // Mostly harmless bytes, so that runs longer than a word occur.
            let bytes = (0..<length).map { _ -> UInt8 in
                generator.next() % 6 == 0 ? alphabet[Int(generator.next() % UInt64(alphabet.count))] : 0x61
            }
            let start = length == 0 ? 0 : Int(generator.next() % UInt64(length))
            let expected = bytes[start...].firstIndex(where: Self.special) ?? length
            let found = bytes.withUnsafeBufferPointer { JSONByteScan.firstSpecial($0.baseAddress ?? UnsafePointer(bitPattern: 1)!, from: start, to: length) }
            #expect(found == expected, "\(bytes) from \(start)")
        }
    }
}
