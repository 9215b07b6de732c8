/// Settings that cannot be used: each problem names the setting (its property path, such as
/// `workerLimits.ringRecords`) and says what is wrong. Front ends map the names to their own (the
/// command line to its flags).
public struct ConfigurationError: Error, Equatable, CustomStringConvertible {
    /// One setting and what is wrong with it.
    public struct Problem: Sendable, Equatable, CustomStringConvertible {
        /// The setting's property path, e.g. `port` or `workerLimits.ringBytes`.
        public var setting: String
        /// What is wrong, e.g. `must be between 0 and 65535`.
        public var message: String

        public init(setting: String, message: String) {
            self.setting = setting
            self.message = message
        }

        public var description: String { "\(setting) \(message)" }
    }

    public var problems: [Problem]

    public init(problems: [Problem]) {
        self.problems = problems
    }

    public var description: String { problems.map(\.description).joined(separator: "\n") }
}

/// Collects a configuration's problems; `throwIfAny` throws them together.
public struct ConfigurationCheck {
    public private(set) var problems: [ConfigurationError.Problem] = []
    private let prefix: String

    /// Setting names are prefixed with `prefix` (`workerLimits.` for a nested struct).
    public init(prefix: String = "") {
        self.prefix = prefix
    }

    /// Records a problem with `setting` unless `condition` holds.
    public mutating func require(_ condition: Bool, _ setting: String, _ message: String) {
        if !condition { problems.append(.init(setting: prefix + setting, message: message)) }
    }

    /// Requires `value` to lie in `range`.
    public mutating func require<T: Comparable>(_ value: T, in range: ClosedRange<T>, _ setting: String) {
        require(range.contains(value), setting, "must be between \(range.lowerBound) and \(range.upperBound), not \(value)")
    }

    /// Requires `value` to be at least `minimum`.
    public mutating func require<T: Comparable>(_ value: T, atLeast minimum: T, _ setting: String) {
        require(value >= minimum, setting, "must be at least \(minimum), not \(value)")
    }

    /// Adds the problems of a nested configuration (already prefixed).
    public mutating func include(_ other: ConfigurationCheck) {
        problems += other.problems
    }

    public func throwIfAny() throws(ConfigurationError) {
        if !problems.isEmpty { throw ConfigurationError(problems: problems) }
    }
}
