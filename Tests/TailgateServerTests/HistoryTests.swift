import Foundation
import Logging
import NIOCore
import NIOPosix
import Testing
import TailgateCore
import TailgateStore
@testable import TailgateServer

/// A data folder of its own for one test, removed afterwards.
private func withDataDirectory<T>(_ body: (String) async throws -> T) async throws -> T {
    let path = NSTemporaryDirectory() + "tailgate-history-\(UInt64.random(in: 0...UInt64.max))"
    defer { try? FileManager.default.removeItem(atPath: path) }
    return try await body(path)
}

private func openStore(_ path: String) throws -> FileRunStore {
    try FileRunStore(configuration: StoreConfiguration(directory: path, segmentBytes: 64 << 10), logger: Logger(label: "test-store"))
}

extension GatewayIntegrationTests {
    @Suite("History: the ring as a cache of a stored run")
    struct HistoryTests {
        @Test("a subscriber from seq 1 of a run far larger than the ring gets every record, read from disk, then live ones")
        func replayBeyondTheRing() async throws {
            try await withDataDirectory { path in
                let store = try openStore(path)
                let bus = BusConfiguration(workerLimits: WorkerLimits(ringRecords: 50))
                try await withGateway(bus: bus, store: store) { gateway in
                    let worker = try gateway.register("deep")
                    for index in 1...3000 { worker.publish(.info, "record \(index)") }
                    try await worker.whenStored(through: 3000, on: gateway.group.next()).get()
                    #expect(worker.snapshot().firstSeq == 1 && worker.snapshot().ringRecords == 50)
                    let client = try await gateway.subscribe("/ws/workers/deep?since=0")
                    var transcript = StreamTranscript(hello: try await client.nextMessage())
                    try await transcript.read(client, through: 3000)
                    for index in 3001...3010 { worker.publish(.info, "record \(index)") }
                    try await transcript.read(client, through: 3010)
                    #expect(transcript.violations.isEmpty, "\(transcript.violations)")
                    #expect(transcript.gaps.isEmpty)
                    #expect(transcript.seqs == Array(1...3010))
                    #expect(gateway.statistics.storedChunks.load(ordering: .relaxed) > 0)
                }
            }
        }

        @Test("a worker published from another process is continued by a new bus on the same store: same epoch, seqs and offsets go on")
        func remoteRunContinues() async throws {
            try await withDataDirectory { path in
                let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
                let firstStore = try openStore(path)
                let first = try LogBus(configuration: BusConfiguration(), eventLoopGroup: group, store: firstStore)
                let worker = try first.remoteWorker(WorkerID("job")!)
                var records = (1...10).map { LogRecord(message: "line \($0)") }
                let enqueued = worker.enqueue(contentsOf: &records, lines: Worker.NumberedLines(publisher: "p", offsets: Array(1...10), lastOffset: 10))
                #expect(enqueued?.published == 10 && enqueued?.offset == 10)
                try await worker.whenStored(through: 10, on: group.next()).get()
                first.close()

                let secondStore = try openStore(path)
                let second = try LogBus(configuration: BusConfiguration(), eventLoopGroup: group, store: secondStore)
                #expect(secondStore.runs(of: WorkerID("job")!).first?.status == .interrupted)
                let again = try second.remoteWorker(WorkerID("job")!)
                #expect(again.epoch == worker.epoch)
                #expect(again.publisherOffset("p") == 10)
                var more = (9...12).map { LogRecord(message: "line \($0)") }
                let next = again.enqueue(contentsOf: &more, lines: Worker.NumberedLines(publisher: "p", offsets: Array(9...12), lastOffset: 12))
                #expect(next?.published == 2 && next?.duplicates == 2 && next?.firstSeq == 11)
                try await again.whenStored(through: 12, on: group.next()).get()
                #expect(again.snapshot().firstSeq == 1 && again.snapshot().lastSeq == 12)
                second.close()

                // An in-process registration always starts a new run.
                let thirdStore = try openStore(path)
                let third = try LogBus(configuration: BusConfiguration(), eventLoopGroup: group, store: thirdStore)
                let local = try third.register(WorkerID("job")!)
                #expect(local.epoch != worker.epoch && local.snapshot().lastSeq == 0)
                #expect(thirdStore.runs(of: WorkerID("job")!).count == 2)
                third.close()
                try await group.shutdownGracefully()
            }
        }

        @Test("resumeRemoteRuns brings back the open runs of remote workers (same epoch, seqs go on), not in-process or finished ones")
        func remoteRunsResumeAtStart() async throws {
            try await withDataDirectory { path in
                let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
                let firstStore = try openStore(path)
                let first = try LogBus(configuration: BusConfiguration(), eventLoopGroup: group, store: firstStore)
                let open = try first.remoteWorker(WorkerID("open")!)
                let finished = try first.remoteWorker(WorkerID("finished")!)
                let local = try first.register(WorkerID("local")!)
                for worker in [open, finished, local] {
                    var records = (1...5).map { LogRecord(message: "line \($0)") }
                    _ = worker.enqueue(contentsOf: &records)
                    try await worker.whenStored(through: 5, on: group.next()).get()
                }
                finished.stop(reason: "done", status: .succeeded)
                first.close()

                let secondStore = try openStore(path)
                let second = try LogBus(configuration: BusConfiguration(), eventLoopGroup: group, store: secondStore)
                #expect(second.resumeRemoteRuns() == 1)
                let resumed = try #require(second.worker(WorkerID("open")!))
                #expect(resumed.epoch == open.epoch && !resumed.isStopping)
                #expect(resumed.snapshot().lastSeq == 5 && resumed.snapshot().status == .running)
                #expect(second.worker(WorkerID("finished")!) == nil)
                #expect(second.worker(WorkerID("local")!) == nil)
                #expect(second.resumeRemoteRuns() == 1, "the same run again, not a new one")
                #expect(secondStore.runs(of: WorkerID("open")!).count == 1)
                second.close()
                try await group.shutdownGracefully()
            }
        }

        @Test("a stopped worker's run is stored with its ending; its stream replays it from disk and ends")
        func finishedRunStream() async throws {
            try await withDataDirectory { path in
                let store = try openStore(path)
                let bus = BusConfiguration(workerLimits: WorkerLimits(ringRecords: 10), retention: .zero)
                try await withGateway(bus: bus, store: store) { gateway in
                    let worker = try gateway.bus.remoteWorker(WorkerID("build")!)
                    for index in 1...100 { worker.publish(.info, "step \(index)") }
                    worker.stop(reason: "exited with status 2", status: .failed, exitCode: 2)
                    try await worker.whenStopped().get()
                    // Retention zero: the worker leaves memory; the run stays on disk.
                    for _ in 0..<200 where gateway.bus.worker(WorkerID("build")!) != nil { try await Task.sleep(for: .milliseconds(10)) }
                    #expect(gateway.bus.worker(WorkerID("build")!) == nil)
                    let run = try #require(store.runs(of: WorkerID("build")!).first)
                    #expect(run.status == .failed && run.exitCode == 2 && run.lastSeq == 100)

                    let client = try await gateway.subscribe("/ws/workers/build?since=0")
                    let hello = try await client.nextMessage()
                    #expect(hello["status"]?.stringValue == "failed" && hello["epoch"]?.stringValue == worker.epoch)
                    var transcript = StreamTranscript(hello: hello)
                    try await transcript.readToEnd(client)
                    #expect(transcript.violations.isEmpty, "\(transcript.violations)")
                    #expect(transcript.seqs == Array(1...100))
                    #expect(transcript.end?["exit_code"]?.intValue == 2 && transcript.end?["status"]?.stringValue == "failed")
                    #expect(transcript.closeCode == 1000)

                    let list = try await gateway.get("/api/workers")
                    #expect(list.text.contains("\"id\":\"build\"") && list.text.contains("\"status\":\"failed\""))
                    let runs = try await gateway.get("/api/workers/build/runs")
                    #expect(runs.status == 200 && runs.text.contains("\"records\":100"))
                    let export = try await gateway.get("/api/workers/build/runs/\(worker.epoch)/logs?since=95&format=text")
                    #expect(export.status == 200)
                    #expect(export.text.split(separator: "\n").count == 5 && export.text.hasSuffix("INFO    step 100\n"))
                    #expect(try await gateway.get("/api/workers/build/runs/zz99").status == 404)
                }
            }
        }
    }
}
