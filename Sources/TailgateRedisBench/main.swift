// Times TailgateRedis against a running redis-server (docs/REDIS.md has the figures and commands):
//
//   swift build -c release --product TailgateRedisBench
//   .build/release/TailgateRedisBench --port 6390 --count 200000 --pipeline 100 --op set   # set, get, xadd
//   .build/release/TailgateRedisBench --port 6390 --count 1000000 --batch 64 --op store     # RedisRunStore
//
// Commands: N commands in pipelines of P on one connection. Store: N records of about 200 bytes in
// batches, appended to a RedisRunStore 256 batches at a time, each window waited for with whenWritten
// (as publishers wait for their answers). Prints the client process's CPU and, for the store, Redis's.
#if canImport(Glibc)
import Glibc
#endif
import Logging
import NIOCore
import NIOPosix
import TailgateCore
import TailgateRedis
import TailgateRedisStore

struct Options {
    var port = 6379
    var count = 200_000
    var pipeline = 100
    var batch = 64
    var op = "set"

    static func parse() -> Options {
        var options = Options()
        var arguments = CommandLine.arguments.dropFirst()
        while let flag = arguments.popFirst() {
            guard let value = arguments.popFirst(), let number = Int(value) ?? (flag == "--op" ? 0 : nil) else {
                fatalError("\(flag) needs a value")
            }
            switch flag {
            case "--port": options.port = number
            case "--count": options.count = number
            case "--pipeline": options.pipeline = number
            case "--batch": options.batch = number
            case "--op": options.op = value
            default: fatalError("unknown flag \(flag)")
            }
        }
        return options
    }
}

func cpuSeconds() -> Double {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    return Double(usage.ru_utime.tv_sec) + Double(usage.ru_utime.tv_usec) / 1e6 + Double(usage.ru_stime.tv_sec) + Double(usage.ru_stime.tv_usec) / 1e6
}

func monotonicSeconds() -> Double {
    var time = timespec()
    clock_gettime(CLOCK_MONOTONIC, &time)
    return Double(time.tv_sec) + Double(time.tv_nsec) / 1e9
}

/// `value` with three decimals.
func fixed(_ value: Double) -> String {
    let thousandths = Int((value * 1000).rounded())
    let fraction = String(thousandths % 1000)
    return "\(thousandths / 1000)." + String(repeating: "0", count: 3 - fraction.count) + fraction
}

/// Redis's own CPU seconds so far (`INFO cpu`).
func redisCPU(_ client: RedisClient) throws -> Double {
    let text = try client.send(RedisCommand("INFO", "cpu")).wait().string ?? ""
    var total = 0.0
    for line in text.split(whereSeparator: \.isNewline) where line.hasPrefix("used_cpu_user:") || line.hasPrefix("used_cpu_sys:") {
        total += Double(line.split(separator: ":")[1]) ?? 0
    }
    return total
}

func command(_ index: Int, op: String, record: ByteBuffer, value: ByteBuffer) -> RedisCommand {
    switch op {
    case "get": return RedisCommand("GET", [.string("key:__rand_int__")])
    case "xadd": return RedisCommand("XADD", ["bench:stream", .unsigned(UInt64(index + 1)), "f", .unsigned(UInt64(index + 1)), "b", .bytes(record)])
    default: return RedisCommand("SET", ["key:__rand_int__", .bytes(value)])
    }
}

func benchCommands(_ options: Options, group: EventLoopGroup) throws {
    let client = RedisClient(configuration: RedisConfiguration(host: "127.0.0.1", port: options.port), eventLoop: group.next())
    try client.waitUntilConnected(within: .seconds(5)).wait()
    _ = try client.send(RedisCommand("DEL", "bench:stream")).wait()
    // A 3-byte value, as redis-benchmark's default SET; XADD carries a 200-byte field.
    let value = ByteBuffer(string: "xxx")
    let record = ByteBuffer(string: String(repeating: "r", count: 200))
    let cpuBefore = cpuSeconds()
    let started = monotonicSeconds()
    var sent = 0
    while sent < options.count {
        let size = min(options.pipeline, options.count - sent)
        let commands = (sent..<(sent + size)).map { command($0, op: options.op, record: record, value: value) }
        _ = try client.send(commands).last!.wait()
        sent += size
    }
    let elapsed = monotonicSeconds() - started
    let cpu = cpuSeconds() - cpuBefore
    print("op=\(options.op) count=\(options.count) pipeline=\(options.pipeline) seconds=\(fixed(elapsed)) ops_per_s=\(Int(Double(options.count) / elapsed))", terminator: " ")
    print("client_cpu_s=\(fixed(cpu)) client_cpu_us_per_op=\(fixed(cpu * 1e6 / Double(options.count)))")
    try client.close().wait()
}

func benchStore(_ options: Options, group: EventLoopGroup) throws {
    let configuration = RedisStoreConfiguration(redis: RedisConfiguration(host: "127.0.0.1", port: options.port), keyPrefix: "bench",
                                                retainAge: nil, retainBytes: nil, maintenanceInterval: .seconds(3600))
    let store = try RedisRunStore(configuration: configuration, logger: Logger(label: "bench"))
    let run = RunID(worker: WorkerID("bench-1")!, epoch: "e\(Int(monotonicSeconds() * 1000))")
    // The batches are made before the clock starts: only the store's work is timed.
    var batches: [Batch] = []
    var seq: UInt64 = 1
    while seq <= UInt64(options.count) {
        var builder = BatchBuilder(firstSeq: seq)
        for _ in 0..<min(options.batch, options.count - Int(seq) + 1) {
            builder.append(LogRecord(message: "order 002050.SZ filled 100 @ 12.34, position 1200, pnl +56.78 " + String(repeating: "x", count: 60)),
                           timestamp: .now())
            seq += 1
        }
        batches.append(builder.finish()!)
    }
    let recordBytes = batches.reduce(0) { $0 + $1.recordBytes }
    let loop = group.next()
    store.begin(RunInfo(id: run, owner: .inProcess, startedAt: .now()))
    let redisBefore = try redisCPU(store.client)
    let cpuBefore = cpuSeconds()
    let started = monotonicSeconds()
    var next = 0
    while next < batches.count {
        let window = batches[next..<min(batches.count, next + 256)]
        for batch in window { store.append(batch, to: run, publisherOffsets: ["publisher": batch.lastSeq]) }
        try store.whenWritten(run, through: window.last!.lastSeq, on: loop).wait()
        next += window.count
    }
    let elapsed = monotonicSeconds() - started
    let cpu = cpuSeconds() - cpuBefore
    let redis = try redisCPU(store.client) - redisBefore
    let health = store.health()
    print("op=store records=\(options.count) batch=\(options.batch) record_bytes=\(recordBytes / options.count) seconds=\(fixed(elapsed))", terminator: " ")
    print("records_per_s=\(Int(Double(options.count) / elapsed)) gateway_cpu_us_per_record=\(fixed(cpu * 1e6 / Double(options.count)))", terminator: " ")
    print("redis_cpu_us_per_record=\(fixed(redis * 1e6 / Double(options.count))) state=\(health.state) failed_writes=\(health.failedWrites)")
    store.close()
}

let options = Options.parse()
let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
if options.op == "store" {
    try benchStore(options, group: group)
} else {
    try benchCommands(options, group: group)
}
try group.syncShutdownGracefully()
