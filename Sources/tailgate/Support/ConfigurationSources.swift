import ArgumentParser
import Foundation
import TailgateRedisStore
#if canImport(Glibc)
import Glibc
#endif

/// `tailgate serve`'s settings from the environment and a file, merged into the command line
/// before ArgumentParser parses it.
///
/// Every long option and flag of `serve` is also `TAILGATE_<FLAG>` (upper case, `-` as `_`:
/// `--data-dir` is `TAILGATE_DATA_DIR`) and a `flag = value` line of the file named by `--config`
/// (or `TAILGATE_CONFIG`). Precedence: command line > environment > file > the flag's default. A
/// setting missing from the command line is appended to it (`--port=9000`) from the highest source
/// that has it, so ArgumentParser parses and validates every value the same way whatever its source,
/// and a flag added to `ServeCommand` later is covered by its name with no change here. The flags are
/// read from ArgumentParser's own description of the command (`_dumpHelp`).
///
/// - Repeatable flags (`--allowed-origin`): a comma-separated list (`a, b`), in the file also one
///   line per value. Flags without a value (`--memory-only`, `--deflate`/`--no-deflate`):
///   `true`/`false` (also `1`/`0`, `yes`/`no`, `on`/`off`).
/// - The file: one `flag = value` a line, `#` starts a comment (a whole line, or after a blank),
///   `"…"` keeps a value exactly. An unknown flag, a line without `=`, a flag given twice or a bad
///   `true`/`false` is an error naming the file and line; a bad value (`port = x`) is refused by the
///   flag's own check, with a note naming where it came from.
/// - `TAILGATE_*` variables that name no `serve` flag are ignored (the prefix is shared with
///   `tailgate run`/`pipe`'s `TAILGATE_URL`/`TAILGATE_WORKER`/`TAILGATE_TOKEN` and other tools); `--print-config`
///   lists them.
/// - `--config`, `--print-config` and `--help` come from the command line only.
enum ConfigurationSources {
    /// A long option or flag of `tailgate serve`.
    struct Setting {
        enum Kind { case option, flag }
        var name: String
        var kind: Kind
        var isRepeating: Bool
        /// The default as ArgumentParser describes it (nil for transformed and optional values).
        var defaultValue: String?
        /// `no-deflate` for `deflate`: the flag's inversion, given for `false`.
        var inversion: String?

        var environmentName: String { ConfigurationSources.environmentName(of: name) }
        var commandLineOnly: Bool { ConfigurationSources.commandLineOnly.contains(name) }
    }

    /// Where a setting's value came from.
    enum Source: CustomStringConvertible {
        case commandLine
        case environment(String)
        case file(path: String, line: Int)
        case defaultValue

        var description: String {
            switch self {
            case .commandLine: return "command line"
            case .environment(let name): return "environment \(name)"
            case .file(let path, let line): return "\(path) line \(line)"
            case .defaultValue: return "default"
            }
        }
    }

    /// A setting taken from the environment or the file.
    struct Chosen {
        var setting: Setting
        /// The values as written: one for an option, any number for a repeatable one, for a flag `true`/`false`.
        var values: [String]
        var source: Source
    }

    /// The command line after merging, and what was merged, for `--print-config` and error notes.
    struct Resolution {
        var arguments: [String]
        var settings: [Setting] = []
        var commandLineNames: Set<String> = []
        var chosen: [String: Chosen] = [:]
        var configFile: String?
        var ignoredEnvironment: [String] = []
    }

    /// A problem in the environment or the file.
    struct SourceError: Error, CustomStringConvertible {
        var description: String
    }

    static let prefix = "TAILGATE_"
    static let commandLineOnly: Set<String> = ["config", "print-config"]
    /// ArgumentParser's own flags, not properties of the command.
    static let builtIn: Set<String> = ["help", "help-hidden", "version", "experimental-dump-help"]

    /// What this process merged (set once in `main`, before any command runs).
    nonisolated(unsafe) static var current: Resolution?

    static func environmentName(of name: String) -> String {
        prefix + name.uppercased().replacingOccurrences(of: "-", with: "_")
    }

    // MARK: Entry point

    /// `Tailgate.main()`: merges `serve`'s settings, then parses and runs as ArgumentParser would.
    static func main() async {
        let resolution: Resolution
        do {
            resolution = try resolve(arguments: Array(CommandLine.arguments.dropFirst()),
                                     environment: ProcessInfo.processInfo.environment)
        } catch {
            printError("Error: \(error)")
            printError("See 'tailgate serve --help' (Configuration: TAILGATE_<FLAG> and --config FILE).")
            exit(ExitCode.validationFailure.rawValue)
        }
        current = resolution
        do {
            var command = try await Tailgate.asyncParseAsRoot(resolution.arguments)
            if var asyncCommand = command as? AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch {
            let code = Tailgate.exitCode(for: error)
            let notes = self.notes(for: Tailgate.message(for: error), resolution: resolution)
            guard code != .success, !notes.isEmpty else { Tailgate.exit(withError: error) }
            var lines = Tailgate.fullMessage(for: error).split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
            lines.insert(contentsOf: notes, at: min(1, lines.count))
            printError(lines.joined(separator: "\n"))
            exit(code.rawValue)
        }
    }

    /// For an error that names flags set by the environment or the file: where each came from.
    static func notes(for message: String, resolution: Resolution) -> [String] {
        resolution.settings.compactMap { (setting: Setting) -> String? in
            guard let chosen = resolution.chosen[setting.name] else { return nil }
            let names = [setting.name] + (setting.inversion.map { [$0] } ?? [])
            guard names.contains(where: { mentions(message, "--" + $0) }) else { return nil }
            return "Note: --\(setting.name) was set by \(chosen.source) (\(display(chosen)))."
        }
    }

    static func mentions(_ message: String, _ flag: String) -> Bool {
        var rest = message[...]
        while let range = rest.range(of: flag) {
            let next = rest[range.upperBound...].first
            if next == nil || !(next!.isLetter || next!.isNumber || next! == "-") { return true }
            rest = rest[range.upperBound...]
        }
        return false
    }

    // MARK: Merging

    /// `arguments` (without the program name) with `serve`'s settings from `environment` and the
    /// config file appended; unchanged for other commands and for help.
    static func resolve(arguments: [String], environment: [String: String]) throws -> Resolution {
        var resolution = Resolution(arguments: arguments)
        // `serve` named, or the default subcommand (no arguments, or options first).
        let rest: [String]
        if arguments.first == "serve" {
            rest = Array(arguments.dropFirst())
        } else if arguments.first == nil || arguments.first!.hasPrefix("-") {
            rest = arguments
        } else {
            return resolution
        }
        let helpLike: Set<String> = ["-h", "--help", "--help-hidden", "--version", "--experimental-dump-help"]
        if rest.contains(where: { helpLike.contains($0) || $0.hasPrefix("--generate-completion-script") }) {
            return resolution
        }
        let settings = serveSettings()
        resolution.settings = settings
        var byName: [String: Setting] = [:]
        var byInversion: [String: Setting] = [:]
        for setting in settings {
            byName[setting.name] = setting
            if let inversion = setting.inversion { byInversion[inversion] = setting }
        }

        // What the command line gives, and the config file it names.
        var configFile: String?
        var index = 0
        while index < rest.count {
            let argument = rest[index]
            if argument == "--" { break }
            if argument.hasPrefix("--") {
                var name = String(argument.dropFirst(2))
                var inlineValue: String?
                if let equals = name.firstIndex(of: "=") {
                    inlineValue = String(name[name.index(after: equals)...])
                    name = String(name[..<equals])
                }
                let setting = byName[name] ?? byInversion[name]
                resolution.commandLineNames.insert(setting?.name ?? name)
                if name == "config" {
                    configFile = inlineValue ?? (index + 1 < rest.count ? rest[index + 1] : nil)
                }
            }
            index += 1
        }
        var extra: [String] = []
        if configFile == nil, let path = environment[prefix + "CONFIG"] {
            configFile = path
            extra.append("--config=\(path)")
        }
        resolution.configFile = configFile

        let fileValues = try configFile.map { try readFile($0, settings: byName, inversions: byInversion) } ?? [:]
        for name in environment.keys.sorted() where name.hasPrefix(prefix) {
            if name == prefix + "CONFIG" { continue }
            if !settings.contains(where: { !$0.commandLineOnly && $0.environmentName == name }) {
                resolution.ignoredEnvironment.append(name)
            }
        }

        for setting in settings where !setting.commandLineOnly && !resolution.commandLineNames.contains(setting.name) {
            let chosen: Chosen
            if let text = environment[setting.environmentName] {
                let source = Source.environment(setting.environmentName)
                switch (setting.kind, setting.isRepeating) {
                case (.flag, _):
                    chosen = Chosen(setting: setting, values: [try boolean(text, setting: setting, source: source) ? "true" : "false"], source: source)
                case (.option, true):
                    chosen = Chosen(setting: setting, values: list(text), source: source)
                case (.option, false):
                    chosen = Chosen(setting: setting, values: [text], source: source)
                }
            } else if let fromFile = fileValues[setting.name] {
                chosen = fromFile
            } else {
                continue
            }
            resolution.chosen[setting.name] = chosen
            switch setting.kind {
            case .flag:
                if chosen.values.first == "true" {
                    extra.append("--" + setting.name)
                } else if let inversion = setting.inversion {
                    extra.append("--" + inversion)
                }
            case .option:
                extra += chosen.values.map { "--\(setting.name)=\($0)" }
            }
        }
        resolution.arguments = arguments + extra
        return resolution
    }

    /// `serve`'s long options and flags, in declaration order, from ArgumentParser's description.
    static func serveSettings() -> [Setting] {
        guard let data = ServeCommand._dumpHelp().data(using: .utf8),
              let root = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
              let command = root["command"] as? [String: Any],
              let arguments = command["arguments"] as? [[String: Any]] else { return [] }
        var settings: [Setting] = []
        for argument in arguments {
            let kind: Setting.Kind
            switch argument["kind"] as? String {
            case "option": kind = .option
            case "flag": kind = .flag
            default: continue
            }
            let names = (argument["names"] as? [[String: Any]] ?? [])
                .filter { ($0["kind"] as? String) == "long" }
                .compactMap { $0["name"] as? String }
            guard let name = names.first, !builtIn.contains(name) else { continue }
            // An inversion (`--no-deflate`, `--disable-x`) follows its flag; it sets the same property.
            if kind == .flag, let previous = settings.last, previous.kind == .flag, previous.inversion == nil,
               name == "no-" + previous.name
                || (previous.name.hasPrefix("enable-") && name == "disable-" + String(previous.name.dropFirst(7))) {
                settings[settings.count - 1].inversion = name
                continue
            }
            settings.append(Setting(name: name, kind: kind, isRepeating: argument["isRepeating"] as? Bool ?? false,
                                    defaultValue: argument["defaultValue"] as? String))
        }
        return settings
    }

    /// The settings in the file at `path`, by flag name.
    static func readFile(_ path: String, settings: [String: Setting], inversions: [String: Setting]) throws -> [String: Chosen] {
        guard FileManager.default.isReadableFile(atPath: path) else {
            throw SourceError(description: "--config \(path): no such file, or not readable")
        }
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw SourceError(description: "--config \(path): cannot be read as UTF-8 text")
        }
        var result: [String: Chosen] = [:]
        for (offset, rawLine) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let lineNumber = offset + 1
            let line = rawLine.trimmingCharacters(in: .whitespacesAndNewlines)
            if line.isEmpty || line.hasPrefix("#") { continue }
            let source = Source.file(path: path, line: lineNumber)
            guard let equals = line.firstIndex(of: "=") else {
                throw SourceError(description: "\(source): expected 'flag = value' (e.g. port = 8080), found '\(line)'")
            }
            var key = line[..<equals].trimmingCharacters(in: .whitespaces)
            if key.hasPrefix("--") { key = String(key.dropFirst(2)) }
            let value = try unquote(line[line.index(after: equals)...].trimmingCharacters(in: .whitespaces), source: source)
            guard let setting = settings[key], !setting.commandLineOnly else {
                if let setting = inversions[key] {
                    throw SourceError(description: "\(source): unknown key '\(key)'; write '\(setting.name) = false'")
                }
                if settings[key] != nil {
                    throw SourceError(description: "\(source): '\(key)' can only be given on the command line")
                }
                throw SourceError(description: "\(source): unknown key '\(key)': not a flag of tailgate serve (see tailgate serve --help)")
            }
            if let earlier = result[key] {
                guard setting.isRepeating else {
                    throw SourceError(description: "\(source): '\(key)' is already set by \(earlier.source) (only repeatable flags may be given more than once)")
                }
                result[key]!.values += list(value)
                continue
            }
            switch (setting.kind, setting.isRepeating) {
            case (.flag, _):
                result[key] = Chosen(setting: setting, values: [try boolean(value, setting: setting, source: source) ? "true" : "false"], source: source)
            case (.option, true):
                result[key] = Chosen(setting: setting, values: list(value), source: source)
            case (.option, false):
                result[key] = Chosen(setting: setting, values: [value], source: source)
            }
        }
        return result
    }

    /// A value without its trailing comment; `"…"` kept exactly.
    static func unquote(_ text: String, source: Source) throws -> String {
        if text.hasPrefix("\"") {
            let body = text.dropFirst()
            guard let close = body.firstIndex(of: "\"") else {
                throw SourceError(description: "\(source): the value has no closing quote")
            }
            let after = body[body.index(after: close)...].trimmingCharacters(in: .whitespaces)
            guard after.isEmpty || after.hasPrefix("#") else {
                throw SourceError(description: "\(source): unexpected '\(after)' after the quoted value")
            }
            return String(body[..<close])
        }
        var value = text
        if let comment = value.range(of: " #") ?? value.range(of: "\t#") {
            value = String(value[..<comment.lowerBound])
        }
        return value.trimmingCharacters(in: .whitespaces)
    }

    static func list(_ text: String) -> [String] {
        text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
    }

    static func boolean(_ text: String, setting: Setting, source: Source) throws -> Bool {
        switch text.trimmingCharacters(in: .whitespaces).lowercased() {
        case "true", "1", "yes", "on": return true
        case "false", "0", "no", "off": return false
        default:
            throw SourceError(description: "\(source): --\(setting.name) takes true or false, not '\(text)'")
        }
    }

    // MARK: --print-config

    /// A setting shown redacted: its name says it holds a secret (a path to one is shown).
    static func isSecret(_ name: String) -> Bool {
        let words = name.split(separator: "-")
        let secretWords: Set<Substring> = ["secret", "token", "password", "passphrase", "key", "credential", "credentials"]
        let pathWords: Set<Substring> = ["file", "dir", "path"]
        return words.contains(where: { secretWords.contains($0) }) && !pathWords.contains(words.last ?? "")
    }

    static func display(_ chosen: Chosen) -> String {
        if isSecret(chosen.setting.name) { return "<redacted>" }
        return chosen.values.joined(separator: ", ")
    }

    /// The effective configuration of the parsed `command`, as a config file with each value's source.
    static func render(_ command: ServeCommand) -> String {
        let resolution = current ?? (try? resolve(arguments: ["serve"], environment: [:])) ?? Resolution(arguments: [])
        let settings = resolution.settings.isEmpty ? serveSettings() : resolution.settings
        let parsed = parsedValues(of: command, settings: settings)
        var lines = [
            "# tailgate serve: effective configuration",
            "# precedence: command line > environment (TAILGATE_<FLAG>) > config file > default",
            "# config file: \(resolution.configFile ?? "(none)")",
        ]
        for setting in settings where !setting.commandLineOnly {
            let source: Source
            if resolution.commandLineNames.contains(setting.name) {
                source = .commandLine
            } else if let chosen = resolution.chosen[setting.name] {
                source = chosen.source
            } else {
                source = .defaultValue
            }
            let effective: String?
            if let known = parsed[setting.name] {
                effective = known
            } else if let chosen = resolution.chosen[setting.name] {
                effective = chosen.values.joined(separator: ", ")
            } else {
                effective = setting.defaultValue
            }
            guard let value = effective else {
                // Not set, or (when the properties could not be read) a default ArgumentParser does not describe.
                let what = parsed.isEmpty && resolution.chosen[setting.name] == nil ? "(built-in default, see --help)" : "(not set)"
                lines.append("# \(setting.name) = \(what)".padding(toLength: 48, withPad: " ", startingAt: 0) + "# \(source)")
                continue
            }
            let shown = isSecret(setting.name) ? "<redacted>" : quoted(shownValue(setting.name, value))
            let line = "\(setting.name) = \(shown)"
            lines.append(line.count < 47 ? line.padding(toLength: 48, withPad: " ", startingAt: 0) + "# \(source)" : line + "  # \(source)")
        }
        for name in resolution.ignoredEnvironment {
            lines.append("# ignored: \(name) (names no flag of tailgate serve)")
        }
        return lines.joined(separator: "\n")
    }

    /// A value as `--print-config` shows it: a `--store` URL without its password.
    static func shownValue(_ name: String, _ value: String) -> String {
        name == "store" ? RedisStoreConfiguration.redactedURL(value) : value
    }

    static func quoted(_ value: String) -> String {
        let needsQuotes = value.isEmpty || value.contains(" #") || value.contains("\t#") || value.hasPrefix("\"")
            || value.first?.isWhitespace == true || value.last?.isWhitespace == true
        return needsQuotes ? "\"\(value)\"" : value
    }

    /// The parsed value of each setting, read from the command's properties: ArgumentParser declares
    /// the command's options and flags in property order, so the n-th `@Option`/`@Flag` is the n-th
    /// setting. Empty when that does not line up (then sources and defaults are shown instead).
    static func parsedValues(of command: ServeCommand, settings: [Setting]) -> [String: String?] {
        let wrappers = Mirror(reflecting: command).children.filter { child in
            let type = String(describing: Swift.type(of: child.value))
            return type.hasPrefix("Option<") || type.hasPrefix("Flag<")
        }
        guard wrappers.count == settings.count else { return [:] }
        var values: [String: String?] = [:]
        for (setting, wrapper) in zip(settings, wrappers) {
            // Option/Flag keep `_parsedValue`, an enum whose `.value(x)` holds the parsed value.
            guard let parsed = Mirror(reflecting: wrapper.value).children.first,
                  let payload = Mirror(reflecting: parsed.value).children.first,
                  payload.label == "value" else { return [:] }
            values[setting.name] = format(payload.value)
        }
        return values
    }

    /// `value` as a config file writes it; nil for an optional not set.
    static func format(_ value: Any) -> String? {
        let mirror = Mirror(reflecting: value)
        switch mirror.displayStyle {
        case .optional:
            guard let some = mirror.children.first else { return nil }
            return format(some.value)
        case .collection, .set:
            return mirror.children.compactMap { format($0.value) }.joined(separator: ", ")
        default:
            return String(describing: value)
        }
    }
}
