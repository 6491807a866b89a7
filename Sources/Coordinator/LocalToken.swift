import Foundation

/// The per-instance token of a coordinator without CURVE keys. Loopback is not a trust
/// boundary: any local user could otherwise submit jobs (which read and write files as
/// the coordinator's user) or fetch model bytes. The token lives in DATA_DIR/token, mode
/// 0600, so only users who can read the coordinator's data directory get in.
public enum LocalToken {
    public static let fileName = "token"

    /// The token in `dataDir`: created (32 random bytes as hex, O_EXCL, mode 0600) if
    /// absent; reused if it is a regular file owned by this user with no group or other
    /// permissions; refused otherwise.
    public static func loadOrCreate(dataDir: URL) throws -> String {
        let path = dataDir.appendingPathComponent(fileName).path
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0o600)
        if fd >= 0 {
            defer { close(fd) }
            var rng = SystemRandomNumberGenerator()
            let token = (0..<32).map { _ in String(format: "%02x", UInt8.random(in: 0...255, using: &rng)) }.joined()
            let bytes = Array((token + "\n").utf8)
            let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            guard fchmod(fd, 0o600) == 0, n == bytes.count, fsync(fd) == 0 else {
                let why = String(cString: strerror(errno))
                unlink(path)
                throw CoordinatorError("\(path): cannot write the coordinator's token (\(why)); check --data-dir")
            }
            return token
        }
        guard errno == EEXIST else {
            throw CoordinatorError(
                "\(path): cannot create the coordinator's token (\(String(cString: strerror(errno)))); "
                    + "check that --data-dir is writable")
        }
        let rfd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
        guard rfd >= 0 else {
            throw CoordinatorError(
                "\(path): cannot open the coordinator's token (\(String(cString: strerror(errno)))); "
                    + "remove it if it is not a regular file")
        }
        defer { close(rfd) }
        var st = stat()
        guard fstat(rfd, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else {
            throw CoordinatorError("\(path): not a regular file; remove it (the coordinator makes a new token)")
        }
        guard st.st_uid == geteuid() else {
            throw CoordinatorError(
                "\(path): owned by uid \(st.st_uid), not by this user (\(geteuid())); remove it or "
                    + "run the coordinator as its owner")
        }
        guard st.st_mode & 0o077 == 0 else {
            throw CoordinatorError(
                "\(path): mode \(String(st.st_mode & 0o777, radix: 8)) lets other users read the token; "
                    + "run `chmod 600 \(path)` (or remove it for a new token)")
        }
        var buffer = [UInt8](repeating: 0, count: 256)
        let n = read(rfd, &buffer, buffer.count)
        guard n > 0, let token = parse(String(decoding: buffer[..<n], as: UTF8.self)) else {
            throw CoordinatorError(
                "\(path): not a token (64 hex digits); remove it and the coordinator makes a new one")
        }
        return token
    }

    /// The token in a token file's text: 64 lowercase hex digits, surrounding space ignored.
    public static func parse(_ text: String) -> String? {
        let t = text.trimmingCharacters(in: .whitespacesAndNewlines)
        guard t.utf8.count == 64, t.utf8.allSatisfy({ (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }) else {
            return nil
        }
        return t
    }

    /// Compares without stopping at the first difference (no timing hint of how much matched).
    static func matches(_ given: String, _ token: String) -> Bool {
        let a = Array(given.utf8)
        let b = Array(token.utf8)
        guard a.count == b.count else { return false }
        return zip(a, b).reduce(0) { $0 | ($1.0 ^ $1.1) } == 0
    }
}
