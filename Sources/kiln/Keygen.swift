import ArgumentParser
import Foundation
import ZeroMQ

struct Keygen: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "keygen",
        abstract: "Make a CurveZMQ key pair: NAME.pub (public) and NAME.secret (private, mode 0600).",
        discussion: """
            The coordinator takes its NAME.secret as --curve-secret and lists the .pub files of
            the workers and clients it lets in with --allow-keys. Workers and clients take the
            coordinator's .pub as --curve-server-key and their own .secret as --curve-secret.
            Never overwrites a file. Example: kiln keygen coordinator
            """)

    @Argument(help: ArgumentHelp("Path prefix of the two files.", valueName: "name"))
    var name: String

    func run() throws {
        try runReportingErrors {
            let pub = name + ".pub"
            let secret = name + ".secret"
            // Both checked first: a half-written pair is worse than none.
            for path in [pub, secret] where FileManager.default.fileExists(atPath: path) {
                throw UserError(
                    "kiln keygen \(name): \(path) already exists; keygen never overwrites a key "
                        + "(pick another NAME, or remove the old pair if nothing uses it)")
            }
            let pair: ZMQCurveKeyPair
            do { pair = try ZMQCurveKeyPair.generate() } catch {
                throw UserError(
                    "kiln keygen: this libzmq cannot make CURVE keys (\(error)); install a libzmq built with CURVE")
            }
            let base = URL(fileURLWithPath: name).lastPathComponent
            try writeNewFile(
                secret, mode: 0o600,
                text: """
                    \(KeyKind.secretKey.marker) \(base) (Z85); keep it private: it is the identity of whoever holds it
                    \(pair.secretKey)

                    """)
            do {
                try writeNewFile(
                    pub, mode: 0o644,
                    text: """
                        \(KeyKind.publicKey.marker) \(base) (Z85); a line for the coordinator's --allow-keys file
                        \(pair.publicKey)

                        """)
            } catch {
                unlink(secret)
                throw error
            }
            print("wrote \(pub) and \(secret) (public key \(pair.publicKey))")
        }
    }
}

/// Creates `path` with `mode` and writes `text`; fails if the file exists (O_EXCL), so a
/// key is never replaced and never readable by others, not even for a moment.
func writeNewFile(_ path: String, mode: mode_t, text: String) throws {
    let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode)
    guard fd >= 0 else {
        let err = errno
        if err == EEXIST { throw UserError("\(path) already exists; not overwriting it") }
        throw UserError("\(path): cannot create the file: \(String(cString: strerror(err)))")
    }
    defer { close(fd) }
    // The umask may have narrowed the mode; a key file's mode is exactly what we asked.
    guard fchmod(fd, mode) == 0 else { throw UserError("\(path): chmod: \(String(cString: strerror(errno)))") }
    let bytes = Array(text.utf8)
    var done = 0
    while done < bytes.count {
        let n = bytes[done...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        if n < 0 && errno == EINTR { continue }
        guard n > 0 else { throw UserError("\(path): write failed: \(String(cString: strerror(errno)))") }
        done += n
    }
    guard fsync(fd) == 0 else { throw UserError("\(path): fsync: \(String(cString: strerror(errno)))") }
}
