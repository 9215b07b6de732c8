import NIOCore
import NIOWebSocket
import Testing
@testable import TailgateServer

@Suite("InboundMessages: reassembly and limits of what clients send")
struct InboundMessagesTests {
    private func frame(_ opcode: WebSocketOpcode, _ bytes: [UInt8], fin: Bool = true, rsv1: Bool = false) -> WebSocketFrame {
        WebSocketFrame(fin: fin, rsv1: rsv1, opcode: opcode, data: ByteBuffer(bytes: bytes))
    }

    @Test("a fragmented text message is accepted once whole; so is a binary one")
    func fragments() {
        var inbound = InboundMessages(maxBytes: 16, deflate: nil)
        #expect(inbound.receive(frame(.text, Array("hel".utf8), fin: false)) == .accepted)
        #expect(inbound.receive(frame(.continuation, Array("lo".utf8))) == .accepted)
        #expect(inbound.receive(frame(.binary, [0xFF, 0x00])) == .accepted)
    }

    @Test("the size cap counts every fragment of a message")
    func cap() {
        var inbound = InboundMessages(maxBytes: 8, deflate: nil)
        #expect(inbound.receive(frame(.text, Array("12345".utf8), fin: false)) == .accepted)
        #expect(inbound.receive(frame(.continuation, Array("6789".utf8))) == .close(.messageTooLarge, "inbound messages are limited to 8 bytes"))
    }

    @Test("invalid UTF-8 split across fragments is found when the message ends")
    func utf8AcrossFragments() {
        var inbound = InboundMessages(maxBytes: 64, deflate: nil)
        #expect(inbound.receive(frame(.text, [0xE2, 0x82], fin: false)) == .accepted)
        #expect(inbound.receive(frame(.continuation, [0xAC])) == .accepted, "€ split in two is fine")
        #expect(inbound.receive(frame(.text, [0xE2, 0x82], fin: false)) == .accepted)
        #expect(inbound.receive(frame(.continuation, [0x41])) == .close(.dataInconsistentWithMessage, "text messages must be valid UTF-8"))
    }

    @Test("a new message before the last one ended, or a continuation without one, is a protocol error")
    func ordering() {
        var inbound = InboundMessages(maxBytes: 64, deflate: nil)
        #expect(inbound.receive(frame(.continuation, [0x41])) == .close(.protocolError, "continuation frame without a message"))
        var other = InboundMessages(maxBytes: 64, deflate: nil)
        #expect(other.receive(frame(.text, [0x41], fin: false)) == .accepted)
        #expect(other.receive(frame(.text, [0x42])) == .close(.protocolError, "new message before the previous one ended"))
    }

    @Test("RSV1 is a compressed message only where permessage-deflate was agreed; there it is inflated under the cap")
    func compressed() throws {
        var plain = InboundMessages(maxBytes: 64, deflate: nil)
        #expect(plain.receive(frame(.text, [0x41], rsv1: true)) == .close(.protocolError, "reserved bits set without a negotiated extension"))
        let parameters = try #require(PerMessageDeflateNegotiation.negotiate(["permessage-deflate"]))
        var deflated = InboundMessages(maxBytes: 64, deflate: parameters)
        // "hello", raw deflate with a sync flush's tail removed (RFC 7692 §7.2.1).
        #expect(deflated.receive(frame(.text, [0xCA, 0x48, 0xCD, 0xC9, 0xC9, 0x07, 0x00], rsv1: true)) == .accepted)
        #expect(deflated.lastWasCompressed)
        #expect(deflated.receive(frame(.text, [0x00, 0x01], rsv1: true)) == .close(.dataInconsistentWithMessage, "invalid compressed data"))
    }
}
