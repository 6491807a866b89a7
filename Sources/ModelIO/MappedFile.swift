import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A read-only memory map of a whole file. Opening a model touches only the
/// header pages; tensor bytes are paged in when a tensor is read, so a 70B
/// checkpoint can be inspected without reading its weights.
///
/// Unchecked Sendable, no lock: the raw pointer is read-only (PROT_READ) and never changes while the object lives.
final class MappedFile: @unchecked Sendable {
    let url: URL
    /// File name used in error messages.
    let name: String
    let size: Int
    private let base: UnsafeRawPointer?
    /// True for an in-memory copy (freed, not unmapped).
    private let owned: Bool

    init(_ url: URL) throws {
        self.url = url
        name = url.lastPathComponent
        let fd = open(url.path, O_RDONLY)
        guard fd >= 0 else {
            throw ModelIOError(file: url.lastPathComponent, "cannot open: \(String(cString: strerror(errno)))")
        }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            throw ModelIOError(file: name, "cannot stat: \(String(cString: strerror(errno)))")
        }
        guard (st.st_mode & S_IFMT) == S_IFREG else { throw ModelIOError(file: name, "not a regular file") }
        size = Int(st.st_size)
        owned = false
        if size == 0 {
            base = nil
            return
        }
        let p = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0)
        guard let p, p != UnsafeMutableRawPointer(bitPattern: -1) else {
            throw ModelIOError(file: name, "cannot map \(size) bytes: \(String(cString: strerror(errno)))")
        }
        base = UnsafeRawPointer(p)
    }

    /// A private copy of `data` read like a mapped file named `name`: lets bytes
    /// that never touched the disk (fuzz inputs, tests) go through the same reader.
    init(copying data: Data, name: String) {
        url = URL(fileURLWithPath: name)
        self.name = name
        size = data.count
        owned = true
        if size == 0 {
            base = nil
            return
        }
        let p = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 16)
        data.copyBytes(to: p.assumingMemoryBound(to: UInt8.self), count: size)
        base = UnsafeRawPointer(p)
    }

    deinit {
        guard let base else { return }
        if owned {
            UnsafeMutableRawPointer(mutating: base).deallocate()
        } else {
            munmap(UnsafeMutableRawPointer(mutating: base), size)
        }
    }

    var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: base, count: size) }

    /// Lets go of the resident pages of bytes `range` (madvise MADV_DONTNEED) once they are
    /// read: a tensor dequantized to Float32 would otherwise stay resident twice, its stored
    /// bytes counted in the process's RSS until the map goes. The map is private and
    /// read-only, so a later read pages the same bytes in again from the file.
    func dropPages(_ range: Range<Int>) {
        guard let base, !owned, !range.isEmpty else { return }
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let lo = range.lowerBound / page * page
        let hi = min(size, (range.upperBound + page - 1) / page * page)
        guard hi > lo else { return }
        _ = madvise(UnsafeMutableRawPointer(mutating: base + lo), hi - lo, MADV_DONTNEED)
    }

    /// A copy of bytes [offset, offset+count); callers have validated the range.
    func data(_ range: Range<Int>) -> Data {
        guard let base, !range.isEmpty else { return Data() }
        return Data(bytes: base + range.lowerBound, count: range.count)
    }
}

/// Bytes `range` of a file read with pread a piece at a time, never mapped: copying a
/// large tensor this way keeps the copier's resident memory at one piece (the page cache
/// holds the file, not the process).
public struct FileRange: Sendable {
    public let url: URL
    public let range: Range<Int>

    public init(url: URL, range: Range<Int>) {
        self.url = url
        self.range = range
    }

    /// Calls `body` with consecutive pieces of at most `piece` bytes covering the range; a
    /// file shorter than the range is an error naming it.
    public func forEachPiece(piece: Int = 4 << 20, _ body: (UnsafeRawBufferPointer) throws -> Void) throws {
        guard !range.isEmpty else { return }
        let name = url.lastPathComponent
        guard range.lowerBound >= 0 else { throw ModelIOError(file: name, "bad byte range \(range)") }
        let fd = open(url.path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw ModelIOError(file: name, "cannot open: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: min(max(1, piece), range.count), alignment: 64)
        defer { buffer.deallocate() }
        var at = range.lowerBound
        while at < range.upperBound {
            let want = min(buffer.count, range.upperBound - at)
            var got = 0
            while got < want {
                let n = pread(fd, buffer.baseAddress! + got, want - got, off_t(at + got))
                if n < 0 && errno == EINTR { continue }
                guard n > 0 else {
                    throw ModelIOError(
                        file: name,
                        n == 0
                            ? "ends at \(at + got) bytes, inside bytes \(range) being copied"
                            : "cannot read: \(String(cString: strerror(errno)))")
                }
                got += n
            }
            try body(UnsafeRawBufferPointer(rebasing: buffer[0..<want]))
            at += want
        }
    }
}
