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
            startedAt: Timestamp(microseconds: 0), stoppedAt: nil, status: .running, exitCode: nil, reason: nil)
        let buffer = StreamMessages.hello(snapshot, replayFrom: 7, serverTime: Timestamp(microseconds: 1_709_210_096_789_012))
        let text = String(buffer: buffer)
        #expect(text.hasPrefix(#"{"type":"hello","worker":"002050.SZ","state":"running","first_seq":5,"last_seq":9,"replay_from":7,"server_time":"2024-02-29T12:34:56.789012Z""#))
        let value = try parseJSON(buffer)
        #expect(value["type"] == JSONValue.string("hello"))
        #expect(value["replay_from"]?.intValue == 7)
        #expect(value["status"]?.stringValue == "running")
        #expect(value["resumed"] == nil)
        #expect(try foundationJSON(buffer) is [String: Any])
    }

    @Test func helloOfAResumeThatFailed() throws {
        let run = RunInfo(id: RunID(worker: WorkerID("job")!, epoch: "new1"), owner: .remote, startedAt: Timestamp(microseconds: 0),
                          lastSeq: 3)
        let buffer = StreamMessages.hello(WorkerSnapshot(run: run), replayFrom: 1, resumed: (false, "run old1 is not the current run"))
        let value = try parseJSON(buffer)
        #expect(value["resumed"] == JSONValue.bool(false))
        #expect(value["reason"]?.stringValue == "run old1 is not the current run")
        #expect(value["epoch"]?.stringValue == "new1")
        let resumed = try parseJSON(StreamMessages.hello(WorkerSnapshot(run: run), replayFrom: 1, resumed: (true, nil)))
        #expect(resumed["resumed"] == JSONValue.bool(true))
        #expect(resumed["reason"] == nil)
    }

    @Test func gap() throws {
        let buffer = StreamMessages.gap(from: 3, to: 17)
        #expect(String(buffer: buffer) == #"{"type":"gap","from":3,"to":17,"reason":"evicted"}"#)
        #expect(try foundationJSON(buffer) is [String: Any])
    }

    @Test func end() throws {
        let buffer = StreamMessages.end(worker: WorkerID("VnpyWorker-7")!, lastSeq: 42, epoch: "e1",
                                        ending: RunEnding(status: .failed, exitCode: 3, reason: "exited with status 3"))
        #expect(String(buffer: buffer) == #"{"type":"end","worker":"VnpyWorker-7","last_seq":42,"reason":"exited with status 3","epoch":"e1","status":"failed","exit_code":3}"#)
        #expect(try foundationJSON(buffer) is [String: Any])
    }
}
