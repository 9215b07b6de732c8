import Foundation

/// Where the browser UI is found: `--public-dir` as given when it exists; for the default (`Public`)
/// missing from the working directory, the installed copy next to the binary,
/// `<binary dir>/../share/tailgate/Public` (`make install` puts it there).
enum PublicDirectory {
    static let defaultName = "Public"

    /// The folder to serve for `option` (the flag's value).
    static func resolve(_ option: String, fileManager: FileManager = .default) -> String {
        guard option == defaultName, !isDirectory(option, fileManager) else { return option }
        for candidate in installedCandidates() where isDirectory(candidate, fileManager) {
            return candidate
        }
        return option
    }

    /// `<dir>/../share/tailgate/Public` for the binary as invoked (a symlink in `bin/` counts) and for
    /// the binary itself (`/proc/self/exe`, symlinks resolved).
    static func installedCandidates() -> [String] {
        var binaries: [String] = []
        if let invoked = invokedBinary() { binaries.append(invoked) }
        if let real = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") { binaries.append(real) }
        var candidates: [String] = []
        for binary in binaries {
            let directory = (binary as NSString).deletingLastPathComponent
            let candidate = ((directory as NSString).appendingPathComponent("../share/tailgate/Public") as NSString).standardizingPath
            if !candidates.contains(candidate) { candidates.append(candidate) }
        }
        return candidates
    }

    /// The path the program was started by: `argv[0]` when it names a path, else found on `PATH`.
    static func invokedBinary() -> String? {
        guard let first = CommandLine.arguments.first, !first.isEmpty else { return nil }
        if first.contains("/") {
            return first.hasPrefix("/") ? first : FileManager.default.currentDirectoryPath + "/" + first
        }
        for directory in (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":") {
            let path = "\(directory)/\(first)"
            if FileManager.default.isExecutableFile(atPath: path) { return path }
        }
        return nil
    }

    private static func isDirectory(_ path: String, _ fileManager: FileManager) -> Bool {
        var isDirectory: ObjCBool = false
        return fileManager.fileExists(atPath: path, isDirectory: &isDirectory) && isDirectory.boolValue
    }
}
