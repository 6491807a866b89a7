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

    /// A copy of bytes [offset, offset+count); callers have validated the range.
    func data(_ range: Range<Int>) -> Data {
        guard let base, !range.isEmpty else { return Data() }
        return Data(bytes: base + range.lowerBound, count: range.count)
    }
}
