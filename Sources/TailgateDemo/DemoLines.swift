import TailgateCore

/// Makes realistic strategy-worker log lines: bars, signals, orders, fills, risk warnings, the odd
/// error, some with ANSI colors, as a quant-trading strategy prints them.
public struct DemoLines {
    private var random: SplitMix
    private let symbol: String
    private var price: Double
    private var position = 0
    private var orderID = 0
    private var minute = 0

    static let symbols = ["002050.SZ", "600519.SH", "000001.SZ", "300750.SZ", "601318.SH", "IF2412.CFFEX", "rb2501.SHFE", "AAPL", "TSLA", "BTC-USDT"]
    static let strategies = ["DualThrust", "MACrossover", "BollingerRevert", "TurtleBreakout", "GridMaker", "VWAPExec"]

    /// Lines for the worker with index `index` (which picks its symbol and strategy).
    public init(index: Int) {
        random = SplitMix(seed: UInt64(index) &* 0x9E37_79B9_7F4A_7C15 &+ 1)
        symbol = Self.symbols[index % Self.symbols.count]
        price = 10 + Double(index % 7) * 13.7
    }

    /// The strategy's name, used as `logger_name`.
    public var strategyName: String { Self.strategies[Int(symbol.utf8.count) % Self.strategies.count] }

    /// The next line.
    public mutating func next() -> LogRecord {
        let roll = random.next() % 1000
        price = max(0.5, price * (1 + (Double(random.next() % 2001) - 1000) / 250_000))
        let p = format(price)
        switch roll {
        case 0..<420:
            minute += 1
            let open = format(price * 0.999), high = format(price * 1.002), low = format(price * 0.997)
            let volume = 100 * (1 + random.next() % 900)
            return record(.debug, "bar \(symbol) \(clock()) o=\(open) h=\(high) l=\(low) c=\(p) v=\(volume)", "on_bar", 88)
        case 420..<620:
            let fast = format(price * 1.001), slow = format(price * 0.998)
            return record(.info, "tick \(symbol) last=\(p) fast_ma=\(fast) slow_ma=\(slow)", "on_tick", 64)
        case 620..<720:
            let side = random.next() % 2 == 0 ? "LONG" : "SHORT"
            let strength = format(Double(random.next() % 1000) / 1000)
            return record(.info, "signal \(side) \(symbol) strength=\(strength) (fast MA crossed slow MA)", "generate_signal", 131)
        case 720..<820:
            orderID += 1
            let side = random.next() % 2 == 0 ? "BUY" : "SELL"
            let volume = 100 * (1 + random.next() % 50)
            return record(.info, "order submitted id=\(orderID) \(side) \(volume) \(symbol) @ \(p) LIMIT", "send_order", 204,
                          ["order_id": String(orderID)])
        case 820..<900:
            let volume = 100 * (1 + random.next() % 50)
            position += random.next() % 2 == 0 ? Int(volume) : -Int(volume)
            return record(.notice, "\u{1B}[32mFILLED\u{1B}[0m id=\(orderID) \(volume) \(symbol) @ \(p) position=\(position)", "on_trade", 231,
                          ["order_id": String(orderID)])
        case 900..<960:
            let used = 70 + random.next() % 30
            return record(.warning, "\u{1B}[33mrisk\u{1B}[0m position limit \(used)% used on \(symbol) (max 20000 shares)", "check_risk", 310)
        case 960..<985:
            return record(.warning, "market data delayed \(50 + random.next() % 900) ms for \(symbol)", "on_tick", 71)
        case 985..<998:
            return record(.error, "\u{1B}[31morder rejected\u{1B}[0m id=\(orderID) \(symbol): insufficient margin (available 12,480.00)", "on_order", 256)
        default:
            return record(.critical, "gateway disconnected: CTP front 180.168.146.187:10131 unreachable, reconnecting", "on_disconnect", 402)
        }
    }

    private func record(_ level: LogLevel, _ message: String, _ function: String, _ line: Int, _ metadata: [String: String]? = nil) -> LogRecord {
        LogRecord(level: level, message: message, loggerName: strategyName, module: "strategies.\(strategyName.lowercased())",
                  funcName: function, lineNo: line, metadata: metadata)
    }

    private func clock() -> String {
        let hour = 9 + (minute / 60) % 6, minuteOfHour = minute % 60
        return (hour < 10 ? "0" : "") + String(hour) + ":" + (minuteOfHour < 10 ? "0" : "") + String(minuteOfHour)
    }

    private func format(_ value: Double) -> String {
        let cents = Int((value * 100).rounded())
        let fraction = cents % 100
        return String(cents / 100) + "." + (fraction < 10 ? "0" : "") + String(fraction)
    }
}

/// A small, fast pseudo-random generator (SplitMix64).
struct SplitMix {
    private var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
