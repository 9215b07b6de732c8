// Times TailgateRedis against a running redis-server: N commands sent in pipelines of P, one
// connection, and the client process's CPU per command (docs/REDIS.md has the figures and commands).
//
//   swift build -c release --product TailgateRedisBench
//   .build/release/TailgateRedisBench --port 6390 --count 200000 --pipeline 100 --op set
#if canImport(Glibc)
import Glibc
#endif
import NIOCore
import NIOPosix
import TailgateRedis

struct Options {
    var port = 6379
    var count = 200_000
    var pipeline = 100
    var op = "set"
}

func parseOptions() -> Options {
var options = Options()
var arguments = CommandLine.arguments.dropFirst()
while let flag = arguments.popFirst() {
    guard let value = arguments.popFirst() else { fatalError("\(flag) needs a value") }
    switch flag {
    case "--port": options.port = Int(value)!
    case "--count": options.count = Int(value)!
    case "--pipeline": options.pipeline = Int(value)!
    case "--op": options.op = value
    default: fatalError("unknown flag \(flag)")
    }
}
return options
}
let options = parseOptions()

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

let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
let client = RedisClient(configuration: RedisConfiguration(host: "127.0.0.1", port: options.port), eventLoop: group.next())
try client.waitUntilConnected(within: .seconds(5)).wait()
_ = try client.send(RedisCommand("DEL", "bench:stream")).wait()

// A 3-byte value, as redis-benchmark's default SET; XADD carries a 200-byte record batch.
let value = ByteBuffer(string: "xxx")
let record = ByteBuffer(string: String(repeating: "r", count: 200))
func command(_ index: Int, op: String) -> RedisCommand {
    switch op {
    case "get": return RedisCommand("GET", [.string("key:__rand_int__")])
    case "xadd": return RedisCommand("XADD", ["bench:stream", .unsigned(UInt64(index + 1)), "f", .unsigned(UInt64(index + 1)), "b", .bytes(record)])
    default: return RedisCommand("SET", ["key:__rand_int__", .bytes(value)])
    }
}

let cpuBefore = cpuSeconds()
let started = monotonicSeconds()
var sent = 0
while sent < options.count {
    let size = min(options.pipeline, options.count - sent)
    let commands = (sent..<(sent + size)).map { command($0, op: options.op) }
    let replies = client.send(commands)
    _ = try replies.last!.wait()
    sent += size
}
let elapsed = monotonicSeconds() - started
let cpu = cpuSeconds() - cpuBefore
/// `value` with three decimals.
func fixed(_ value: Double) -> String {
    let thousandths = Int((value * 1000).rounded())
    let fraction = String(thousandths % 1000)
    return "\(thousandths / 1000)." + String(repeating: "0", count: 3 - fraction.count) + fraction
}
let opsPerSecond = Int(Double(options.count) / elapsed)
let microsecondsPerOp = cpu * 1e6 / Double(options.count)
print("op=\(options.op) count=\(options.count) pipeline=\(options.pipeline) seconds=\(fixed(elapsed)) ops_per_s=\(opsPerSecond)", terminator: " ")
print("client_cpu_s=\(fixed(cpu)) client_cpu_us_per_op=\(fixed(microsecondsPerOp))")
try client.close().wait()
try group.syncShutdownGracefully()
