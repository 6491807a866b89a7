import Foundation
import Synchronization

/// An exclusive flock on DATA_DIR/coordinator.lock, held for a coordinator's life, so a
/// second coordinator or `kiln gc` on the same data directory is refused rather than
/// racing it. The kernel drops the lock when the process dies: a crash leaves nothing
/// to clean up before a restart.
public final class DataDirLock: Sendable {
    public static let fileName = "coordinator.lock"
    /// The lock file's descriptor (-1 once released).
    private let fd: Mutex<Int32>

    public init(dataDir: URL) throws {
        let path = dataDir.appendingPathComponent(Self.fileName).path
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw CoordinatorError("cannot open \(path): \(String(cString: strerror(errno)))") }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            let err = errno
            close(fd)
            guard err == EWOULDBLOCK else {
                throw CoordinatorError("cannot lock \(path): \(String(cString: strerror(err)))")
            }
            let holder =
                (try? String(contentsOfFile: path, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines)
                ?? ""
            throw CoordinatorError(
                "\(dataDir.path) is in use by a running coordinator\(holder.isEmpty ? "" : " (pid \(holder))")"
                    + " holding \(path); stop it first")
        }
        // The holder's pid, only for the message above.
        let pid = Data("\(getpid())\n".utf8)
        _ = ftruncate(fd, 0)
        _ = pid.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) }
        self.fd = Mutex(fd)
    }

    public func release() {
        fd.withLock { fd in
            if fd >= 0 { close(fd) }
            fd = -1
        }
    }

    deinit { release() }
}
