#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import TailgateCore

/// The folder and whole-file operations of the store (`mkdir -p`, listings, atomic replacement), as
/// thin wrappers over the system calls whose errors name the path.
enum FileSystem {
    /// What `stat` says about a path.
    struct Status {
        var size: Int
        var isDirectory: Bool
        var isRegularFile: Bool
        /// The last modification, as a timestamp.
        var modified: Timestamp
    }

    /// The status of `path`, or `nil` when it does not exist.
    static func status(of path: String) throws(StoreError) -> Status? {
        var info = stat()
        guard stat(path, &info) == 0 else {
            if errno == ENOENT || errno == ENOTDIR { return nil }
            throw .io(operation: "stat", path: path, errno: errno)
        }
        let format = info.st_mode & S_IFMT
        #if canImport(Darwin)
        let modified = info.st_mtimespec
        #else
        let modified = info.st_mtim
        #endif
        return Status(size: Int(info.st_size), isDirectory: format == S_IFDIR, isRegularFile: format == S_IFREG,
                      modified: Timestamp(microseconds: Int64(modified.tv_sec) * 1_000_000 + Int64(modified.tv_nsec) / 1000))
    }

    /// Creates `path` and every missing parent folder.
    static func makeDirectories(_ path: String) throws(StoreError) {
        if mkdir(path, 0o755) == 0 { return }
        let code = errno
        if code == EEXIST {
            guard try status(of: path)?.isDirectory == true else { throw .io(operation: "mkdir", path: path, errno: ENOTDIR) }
            return
        }
        guard code == ENOENT, let slash = path.lastIndex(of: "/"), slash != path.startIndex else {
            throw .io(operation: "mkdir", path: path, errno: code)
        }
        try makeDirectories(String(path[..<slash]))
        guard mkdir(path, 0o755) == 0 || errno == EEXIST else { throw .io(operation: "mkdir", path: path, errno: errno) }
    }

    /// The names in folder `path` (without `.` and `..`); empty when the folder does not exist.
    static func list(_ path: String) throws(StoreError) -> [String] {
        guard let folder = opendir(path) else {
            if errno == ENOENT { return [] }
            throw .io(operation: "list", path: path, errno: errno)
        }
        defer { closedir(folder) }
        var names: [String] = []
        while let entry = readdir(folder) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    /// Deletes a file; a missing file is not an error.
    static func removeFile(_ path: String) throws(StoreError) {
        guard unlink(path) == 0 || errno == ENOENT else { throw .io(operation: "delete", path: path, errno: errno) }
    }

    /// Deletes a folder and everything in it; a missing folder is not an error.
    static func removeTree(_ path: String) throws(StoreError) {
        for name in try list(path) {
            let child = path + "/" + name
            if try status(of: child)?.isDirectory == true {
                try removeTree(child)
            } else {
                try removeFile(child)
            }
        }
        guard rmdir(path) == 0 || errno == ENOENT else { throw .io(operation: "delete", path: path, errno: errno) }
    }

    /// Deletes folder `path` if it is empty; says whether it is gone.
    @discardableResult
    static func removeIfEmpty(_ path: String) -> Bool {
        rmdir(path) == 0 || errno == ENOENT
    }

    /// Forces a folder's entries (files created, renamed, deleted) to disk.
    static func syncDirectory(_ path: String) throws(StoreError) {
        let descriptor = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard descriptor >= 0 else { throw .io(operation: "open", path: path, errno: errno) }
        defer { close(descriptor) }
        guard fsync(descriptor) == 0 else { throw .io(operation: "fsync", path: path, errno: errno) }
    }

    /// The whole content of a file.
    static func readAll(_ path: String) throws(StoreError) -> [UInt8] {
        let file = try DiskFile.openForReading(path)
        let size = try file.size()
        var bytes = [UInt8](repeating: 0, count: size)
        let count = try file.read(into: &bytes, at: 0)
        bytes.removeLast(size - count)
        return bytes
    }

    /// Replaces `path` with `bytes` atomically: a reader sees the old content or the new one, never a
    /// mix, even after a crash (temporary file, optional fsync, rename).
    static func replace(_ path: String, with bytes: some Collection<UInt8>, sync: Bool) throws(StoreError) {
        let temporary = path + ".tmp"
        do throws(StoreError) {
            let file = try DiskFile.create(temporary)
            try file.write(Array(bytes), at: 0)
            if sync { try file.sync() }
            file.close()
            guard rename(temporary, path) == 0 else { throw StoreError.io(operation: "rename", path: path, errno: errno) }
            if sync, let slash = path.lastIndex(of: "/") { try syncDirectory(String(path[..<slash])) }
        } catch {
            try? removeFile(temporary)
            throw error
        }
    }
}
