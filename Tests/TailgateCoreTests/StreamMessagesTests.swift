import Foundation
import NIOCore
import Testing
@testable import TailgateCore

@Suite("StreamMessages")
struct StreamMessagesTests {
    @Test func hello() throws {
        let snapshot = WorkerSnapshot(
            id: WorkerID("002050.SZ")!, state: .running, owner: .inProcess, epoch: "e1", firstSeq: 5, lastSeq: 9,
            ringRecords: 5, ringBytes: 1000, droppedBeforeRing: 0, subscribers: 2,
            startedAt: Timestamp(microseconds: 0), stoppedAt: nil)
        let buffer = StreamMessages.hello(snapshot, replayFrom: 7, serverTime: Timestamp(microseconds: 1_709_210_096_789_012))
        let text = String(buffer: buffer)
        #expect(text.hasPrefix(#"{"type":"hello","worker":"002050.SZ","state":"running","first_seq":5,"last_seq":9,"replay_from":7,"server_time":"2024-02-29T12:34:56.789012Z""#))
        let value = try parseJSON(buffer)
        #expect(value["type"] == .string("hello"))
        #expect(value["replay_from"]?.intValue == 7)
        #expect(try foundationJSON(buffer) is [String: Any])
    }

    @Test func gap() throws {
        let buffer = StreamMessages.gap(from: 3, to: 17)
        #expect(String(buffer: buffer) == #"{"type":"gap","from":3,"to":17,"reason":"evicted"}"#)
        #expect(try foundationJSON(buffer) is [String: Any])
    }

    @Test func end() throws {
        let buffer = StreamMessages.end(worker: WorkerID("VnpyWorker-7")!, lastSeq: 42)
        #expect(String(buffer: buffer) == #"{"type":"end","worker":"VnpyWorker-7","last_seq":42,"reason":"worker stopped"}"#)
        #expect(try foundationJSON(buffer) is [String: Any])
    }
}
