import NIOCore

/// One Redis command: its name and arguments, sent as a RESP array of bulk strings.
///
/// Arguments are kept as they were given (text, integer, bytes) and written straight into the outbound
/// buffer by `RESPEncoder`: no per-argument buffer is made.
public struct RedisCommand: Sendable, CustomStringConvertible {
    /// One argument of a command.
    public enum Argument: Sendable {
        case string(String)
        case integer(Int64)
        case unsigned(UInt64)
        case bytes(ByteBuffer)
    }

    /// The name and the arguments, in order.
    public private(set) var arguments: [Argument]
    /// How long the reply may take; `nil` uses the connection's command timeout. Blocking commands
    /// (`XREAD BLOCK ms`) give their blocking time plus a margin.
    public var timeout: TimeAmount?

    /// A command `name` with `arguments` (each a `String`, an integer, or a `ByteBuffer`).
    public init(_ name: String, _ arguments: [Argument] = [], timeout: TimeAmount? = nil) {
        var all: [Argument] = []
        all.reserveCapacity(arguments.count + 1)
        all.append(.string(name))
        all.append(contentsOf: arguments)
        self.arguments = all
        self.timeout = timeout
    }

    /// A command from text words: `RedisCommand("SET", "k", "v")`.
    public init(_ name: String, _ word: String, _ words: String...) {
        self.init(name, ([word] + words).map { .string($0) })
    }

    /// Appends an argument.
    public mutating func append(_ argument: Argument) { arguments.append(argument) }
    public mutating func append(_ text: String) { arguments.append(.string(text)) }
    public mutating func append(_ bytes: ByteBuffer) { arguments.append(.bytes(bytes)) }
    public mutating func append(_ value: Int64) { arguments.append(.integer(value)) }
    public mutating func append(_ value: UInt64) { arguments.append(.unsigned(value)) }
    public mutating func append(_ value: Int) { arguments.append(.integer(Int64(value))) }

    /// The command's name in capitals (for errors and logs; arguments may be secrets and are left out).
    public var name: String { rawName.uppercased() }

    /// The name as given (no copy).
    var rawName: String {
        if case .string(let name) = arguments[0] { return name }
        return "?"
    }

    public var description: String { name }
}

extension RedisCommand.Argument: ExpressibleByStringLiteral {
    public init(stringLiteral value: String) { self = .string(value) }
}

extension RedisCommand.Argument: ExpressibleByIntegerLiteral {
    public init(integerLiteral value: Int64) { self = .integer(value) }
}
