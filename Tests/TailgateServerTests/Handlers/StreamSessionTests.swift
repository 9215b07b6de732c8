import NIOCore
import NIOEmbedded
import NIOWebSocket
import Testing
import TailgateCore
@testable import TailgateServer

/// A `StreamSession` alone on an `EmbeddedChannel`, behind a frame decoder as after an upgrade.
private struct SessionHarness {
    let gateway: EmbeddedGateway
    let worker: Worker
    let channel: EmbeddedChannel

    init(ringRecords: Int = 10_000, start: ReplayStart = .tail(1000), published: Int = 0) throws {
        gateway = try EmbeddedGateway(bus: BusConfiguration(workerLimits: WorkerLimits(ringRecords: ringRecords)))
        worker = try gateway.bus.register(WorkerID("w")!)
        for index in 0..<published { worker.publish(.info, "record \(index + 1)") }
        gateway.pump()
        channel = EmbeddedChannel(loop: gateway.loop)
        try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 40_000)).wait()
        let context = gateway.context
        let session = StreamSession(
            source: .worker(worker), start: start, resumed: nil, rendering: PlainFrameRendering(), tokenExpiry: nil,
            inbound: InboundMessages(maxBytes: context.configuration.maxInboundMessageBytes, deflate: nil),
            configuration: context.configuration, registry: context.registries[0], statistics: context.statistics)
        try channel.pipeline.syncOperations.addHandlers([
            ByteToMessageHandler(WebSocketFrameDecoder(maxFrameSize: context.configuration.maxInboundMessageBytes)), session,
        ])
    }

    /// The frames written since the last call.
    func frames() throws -> [WrittenFrame] {
        var written = try channel.written()
        return WrittenFrame.readAll(from: &written)
    }

    /// The seqs of the records in `logs` frames, and the `gap`s, in order.
    func events() throws -> [String] {
        try frames().flatMap { frame -> [String] in
            let text = frame.text
            if frame.opcode == 0x8 { return ["close \(frame.closeCode ?? 0)"] }
            if text.hasPrefix("{\"type\":\"gap\"") { return ["gap"] }
            if text.hasPrefix("{\"type\":\"end\"") { return ["end"] }
            if text.hasPrefix("{\"type\":\"hello\"") { return ["hello"] }
            return text.split(separator: "\"seq\":").dropFirst().map { "seq \($0.prefix { $0.isNumber })" }
        }
    }

    func setWritable(_ writable: Bool) {
        channel.isWritable = writable
        channel.pipeline.fireChannelWritabilityChanged()
    }
}

@Suite("StreamSession phases, on EmbeddedChannel")
struct StreamSessionTests {
    @Test("starting: hello, then the replay; live: each new batch as it is drained")
    func replayThenLive() throws {
        let harness = try SessionHarness(start: .tail(2), published: 3)
        #expect(try harness.events() == ["hello", "seq 2", "seq 3"])
        harness.worker.publish(.info, "live")
        harness.gateway.pump()
        #expect(try harness.events() == ["seq 4"])
    }

    @Test("behind: not writable, nothing is written; writable again, it catches up from the ring with a gap for what was evicted")
    func behindThenCatchUp() throws {
        let harness = try SessionHarness(ringRecords: 10, start: .tail(0))
        #expect(try harness.events() == ["hello"])
        harness.setWritable(false)
        for index in 0..<25 {
            harness.worker.publish(.info, "r\(index)")
            harness.gateway.pump()
        }
        #expect(try harness.events() == [], "a connection that cannot take data is not written to")
        harness.setWritable(true)
        let events = try harness.events()
        #expect(events.first == "gap")
        #expect(Array(events.dropFirst()) == (16...25).map { "seq \($0)" })
        #expect(harness.gateway.context.statistics.gaps.load(ordering: .relaxed) == 1)
        harness.worker.publish(.info, "live again")
        harness.gateway.pump()
        #expect(try harness.events() == ["seq 26"], "caught up, it is live again")
    }

    @Test("ending: when the worker stops, end after the last record, then close 1000")
    func end() throws {
        let harness = try SessionHarness(published: 1)
        _ = try harness.frames()
        harness.worker.publish(.info, "last")
        harness.worker.stop()
        harness.gateway.pump()
        #expect(try harness.events() == ["seq 2", "end", "close 1000"])
        try harness.channel.writeInbound(clientFrame(opcode: 0x8, payload: [0x03, 0xE8]))
        #expect(!harness.channel.isActive, "the client's close answer ends the connection")
        #expect(harness.worker.fanOut.subscriberCount == 0)
    }

    @Test("inbound: a ping is answered with a pong carrying its payload")
    func ping() throws {
        let harness = try SessionHarness()
        _ = try harness.frames()
        try harness.channel.writeInbound(clientFrame(opcode: 0x9, payload: [1, 2, 3]))
        #expect(try harness.frames() == [WrittenFrame(opcode: 0xA, payload: [1, 2, 3])])
    }

    @Test("inbound: a client's close is echoed with its code and the connection closed")
    func clientClose() throws {
        let harness = try SessionHarness()
        _ = try harness.frames()
        try harness.channel.writeInbound(clientFrame(opcode: 0x8, payload: [0x0F, 0xA0]))  // 4000
        #expect(try harness.frames().map(\.closeCode) == [4000])
        #expect(!harness.channel.isActive)
    }

    @Test("inbound: rule breaks close the stream with their code", arguments: [
        (clientFrame(opcode: 0x1, payload: [0xFF, 0xFE]), UInt16(1007)),            // text that is not UTF-8
        (clientFrame(opcode: 0x1, payload: Array(repeating: 0x61, count: 5000)), 1009),  // over 4 KiB
        (clientFrame(opcode: 0x0, payload: [0x61]), 1002),                          // continuation without a message
        (clientFrame(opcode: 0x1, payload: [0x61], rsv1: true), 1002),              // RSV1 without deflate
        (clientFrame(opcode: 0x9, payload: [1], fin: false), 1002),                 // fragmented ping
        (clientFrame(opcode: 0x3, payload: []), 1002),                              // reserved opcode
    ] as [(ByteBuffer, UInt16)])
    func ruleBreaks(frame: ByteBuffer, code: UInt16) throws {
        let harness = try SessionHarness()
        _ = try harness.frames()
        _ = try? harness.channel.writeInbound(frame)
        #expect(try harness.frames().compactMap(\.closeCode) == [code])
    }

    @Test("inbound: an unmasked frame closes the stream with 1002")
    func unmasked() throws {
        let harness = try SessionHarness()
        _ = try harness.frames()
        var frame = ByteBuffer()
        frame.writeBytes([0x89, 0x01, 0x07])  // a ping without a mask
        _ = try? harness.channel.writeInbound(frame)
        #expect(try harness.frames().compactMap(\.closeCode) == [1002])
    }

    @Test("inbound: a close frame no endpoint may send is answered with 1002 (1007 for a reason that is not UTF-8)", arguments: [
        ([0x03, 0xE7], UInt16(1002)),   // 999: below the defined range
        ([0x03, 0xED], 1002),           // 1005: reserved, never on the wire
        ([0x03, 0xEE], 1002),           // 1006: reserved, never on the wire
        ([0x03, 0xF7], 1002),           // 1015: reserved, never on the wire
        ([0x07, 0xD0], 1002),           // 2000: undefined
        ([0x13, 0x88], 1002),           // 5000: beyond the application range
        ([0x03], 1002),                 // a payload of 1 byte
        ([0x03, 0xE8, 0xFF, 0xFE], 1007),  // a reason that is not UTF-8
    ] as [([UInt8], UInt16)])
    func invalidClose(payload: [UInt8], code: UInt16) throws {
        let harness = try SessionHarness()
        _ = try harness.frames()
        try harness.channel.writeInbound(clientFrame(opcode: 0x8, payload: payload))
        #expect(try harness.frames().compactMap(\.closeCode) == [code])
        #expect(!harness.channel.isActive)
    }

    @Test("inbound: a valid close code is echoed", arguments: [UInt16(1000), 1001, 1013, 3000, 4999])
    func validClose(code: UInt16) throws {
        let harness = try SessionHarness()
        _ = try harness.frames()
        try harness.channel.writeInbound(clientFrame(opcode: 0x8, payload: [UInt8(code >> 8), UInt8(code & 0xFF)] + Array("bye".utf8)))
        #expect(try harness.frames().compactMap(\.closeCode) == [code])
    }

    @Test("stalled: the 1013 close frame is queued behind what is buffered and the connection kept for the grace period, so a client that reads again gets it")
    func stalledClose() throws {
        let harness = try SessionHarness()
        _ = try harness.frames()
        harness.setWritable(false)
        let session = try harness.channel.pipeline.syncOperations.handler(type: StreamSession.self)
        session.tick(now: .now() + harness.gateway.context.configuration.stallTimeout + .seconds(1))
        #expect(harness.channel.isActive, "not dropped at once")
        #expect(try harness.frames().compactMap(\.closeCode) == [1013])
        #expect(harness.gateway.context.statistics.stalledCloses.load(ordering: .relaxed) == 1)
        harness.gateway.pump(.seconds(3))
        #expect(!harness.channel.isActive, "closed after the grace period")
    }
}
