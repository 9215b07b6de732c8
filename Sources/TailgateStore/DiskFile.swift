#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// An open file with the positioned reads and writes the store uses. Every error names the file.
///
/// Not shared between threads: the writer owns the files it appends to, and each read opens its own.
final class DiskFile {
    /// The file's path, for errors and logs.
    let path: String
    private var descriptor: Int32

    private init(path: String, descriptor: Int32) {
        self.path = path
        self.descriptor = descriptor
    }

    deinit {
        if descriptor >= 0 { _ = closeDescriptor(descriptor) }
    }

    /// Opens an existing file for reading.
    static func openForReading(_ path: String) throws(StoreError) -> DiskFile {
        try open(path, flags: O_RDONLY)
    }

    /// Opens an existing file for reading and writing.
    static func openForUpdate(_ path: String) throws(StoreError) -> DiskFile {
        try open(path, flags: O_RDWR)
    }

    /// Creates a file, or empties an existing one, for reading and writing.
    static func create(_ path: String) throws(StoreError) -> DiskFile {
        try open(path, flags: O_RDWR | O_CREAT | O_TRUNC)
    }

    private static func open(_ path: String, flags: Int32) throws(StoreError) -> DiskFile {
        var descriptor: Int32
        repeat {
            descriptor = openDescriptor(path, flags | O_CLOEXEC)
        } while descriptor < 0 && errno == EINTR
        guard descriptor >= 0 else { throw .io(operation: "open", path: path, errno: errno) }
        return DiskFile(path: path, descriptor: descriptor)
    }

    /// The file's size in bytes.
    func size() throws(StoreError) -> Int {
        var info = stat()
        guard fstat(descriptor, &info) == 0 else { throw .io(operation: "stat", path: path, errno: errno) }
        guard (info.st_mode & S_IFMT) == S_IFREG else { throw .io(operation: "open", path: path, errno: EISDIR) }
        return Int(info.st_size)
    }

    /// Reads up to `buffer.count` bytes at `offset`; fewer only at the end of the file.
    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: Int) throws(StoreError) -> Int {
        var done = 0
        while done < buffer.count {
            let result = pread(descriptor, buffer.baseAddress! + done, buffer.count - done, off_t(offset + done))
            if result < 0 {
                if errno == EINTR { continue }
                throw .io(operation: "read", path: path, errno: errno)
            }
            if result == 0 { break }
            done += result
        }
        return done
    }

    /// Writes all of `bytes` at `offset`. On an error some of them may have been written.
    func write(_ bytes: UnsafeRawBufferPointer, at offset: Int) throws(StoreError) {
        var done = 0
        while done < bytes.count {
            let result = pwrite(descriptor, bytes.baseAddress! + done, bytes.count - done, off_t(offset + done))
            if result < 0 {
                if errno == EINTR { continue }
                throw .io(operation: "write", path: path, errno: errno)
            }
            if result == 0 { throw .io(operation: "write", path: path, errno: EIO) }
            done += result
        }
    }

    /// Writes all of `bytes` at `offset`.
    func write(_ bytes: [UInt8], at offset: Int) throws(StoreError) {
        try bytes.withUnsafeBytes { raw in Result { () throws(StoreError) in try write(raw, at: offset) } }.get()
    }

    /// Reads up to `bytes.count` bytes at `offset` into `bytes`; returns how many were read.
    func read(into bytes: inout [UInt8], at offset: Int) throws(StoreError) -> Int {
        try bytes.withUnsafeMutableBytes { raw in Result { () throws(StoreError) in try read(into: raw, at: offset) } }.get()
    }

    /// Cuts the file to `size` bytes.
    func truncate(to size: Int) throws(StoreError) {
        guard ftruncate(descriptor, off_t(size)) == 0 else { throw .io(operation: "truncate", path: path, errno: errno) }
    }

    /// Forces the file's data to disk.
    func sync() throws(StoreError) {
        guard fsync(descriptor) == 0 else { throw .io(operation: "fsync", path: path, errno: errno) }
    }

    /// Closes the file now rather than when it is released.
    func close() {
        if descriptor >= 0 { _ = closeDescriptor(descriptor) }
        descriptor = -1
    }
}

/// `open(2)` with the store's file mode (the method names of `DiskFile` hide the C functions).
private func openDescriptor(_ path: String, _ flags: Int32) -> Int32 {
    open(path, flags, 0o644)
}

/// `close(2)`.
private func closeDescriptor(_ descriptor: Int32) -> Int32 {
    close(descriptor)
}
