import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A payload kept in a file rather than in memory: read and written by offset (pread /
/// pwrite), so a multi-gigabyte result or task input crosses a process holding one chunk
/// of it at a time. The file is this object's: it is removed when the object goes unless
/// `keep()` said otherwise (a transfer that fails or is abandoned leaves nothing behind).
public final class SpoolFile: @unchecked Sendable {
    // @unchecked: fd and path never change after init; pread/pwrite at explicit offsets are
    // safe from any thread; `kept` is only set by the owner before the object is shared.
    public let url: URL
    private let fd: Int32
    private var kept = false

    /// Creates `url` (which must not exist) for reading and writing.
    public init(creating url: URL) throws {
        let fd = open(url.path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw SpoolError("cannot create \(url.path): \(String(cString: strerror(errno)))") }
        self.url = url
        self.fd = fd
    }

    /// Opens an existing file for reading (it is kept: not this object's to remove).
    public init(reading url: URL) throws {
        let fd = open(url.path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw SpoolError("cannot open \(url.path): \(String(cString: strerror(errno)))") }
        self.url = url
        self.fd = fd
        self.kept = true
    }

    deinit {
        close(fd)
        if !kept { unlink(url.path) }
    }

    /// The file's size now.
    public func size() throws -> Int {
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            throw SpoolError("cannot stat \(url.path): \(String(cString: strerror(errno)))")
        }
        return Int(st.st_size)
    }

    /// Exactly `count` bytes from `offset`; a short file is an error naming it.
    public func read(at offset: Int, count: Int) throws -> Data {
        guard offset >= 0, count >= 0 else { throw SpoolError("\(url.path): bad range \(offset)+\(count)") }
        var out = Data(count: count)
        try out.withUnsafeMutableBytes { raw in try read(into: raw, at: offset) }
        return out
    }

    /// Fills `buffer` from `offset`.
    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: Int) throws {
        var done = 0
        while done < buffer.count {
            let n = pread(fd, buffer.baseAddress! + done, buffer.count - done, off_t(offset + done))
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else {
                throw SpoolError(
                    n == 0
                        ? "\(url.path) ends at \(offset + done) bytes; \(offset + buffer.count) were expected"
                        : "cannot read \(url.path): \(String(cString: strerror(errno)))")
            }
            done += n
        }
    }

    /// Writes `bytes` at `offset`.
    public func write(_ bytes: UnsafeRawBufferPointer, at offset: Int) throws {
        var done = 0
        while done < bytes.count {
            let n = pwrite(fd, bytes.baseAddress! + done, bytes.count - done, off_t(offset + done))
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { throw SpoolError("cannot write \(url.path): \(String(cString: strerror(errno)))") }
            done += n
        }
    }

    public func write(_ bytes: Data, at offset: Int) throws {
        try bytes.withUnsafeBytes { try write($0, at: offset) }
    }

    /// Flushes the file to stable storage.
    public func sync() throws {
        guard fsync(fd) == 0 else { throw SpoolError("fsync \(url.path): \(String(cString: strerror(errno)))") }
    }

    /// Gives the file a new name (same file system) and keeps it: the caller owns it now.
    public func keep(renamingTo dst: URL) throws {
        guard rename(url.path, dst.path) == 0 else {
            throw SpoolError("cannot rename \(url.path) to \(dst.path): \(String(cString: strerror(errno)))")
        }
        kept = true
    }

    /// CRC-32C of the whole file, read in pieces of `piece` bytes.
    public func checksum(piece: Int = 8 << 20) throws -> UInt32 {
        let size = try size()
        var whole: UInt32 = 0
        for (i, c) in try ChunkSender.checksums(of: self, chunkSize: piece).enumerated() {
            whole = i == 0 ? c : CRC32C.combine(whole, c, lengthB: min(piece, size - i * piece))
        }
        return whole
    }
}

public struct SpoolError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
