#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Loopback TCP ports for tests, found with plain sockets: these close synchronously, unlike a
/// ZeroMQ listener, whose close is carried out later on its I/O thread (the port may still
/// be held, or still accept, when the test goes on).
public enum LoopbackPorts {
    /// A port the kernel reports free (bound to port 0, then released).
    public static func free() -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        precondition(fd >= 0, "socket() failed")
        defer { close(fd) }
        var address = loopback(port: 0)
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let port: UInt16 = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { raw in
                precondition(bind(fd, raw, length) == 0, "bind() on loopback failed")
                precondition(getsockname(fd, raw, &length) == 0, "getsockname() failed")
                return UInt16(bigEndian: pointer.pointee.sin_port)
            }
        }
        return Int(port)
    }

    /// Whether `port` can be bound on loopback right now.
    public static func canBind(_ port: Int) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = loopback(port: UInt16(port))
        return withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
            }
        }
    }

    /// A port P with P + 1 also free (a coordinator publishes on P + 1).
    public static func freePair() -> Int? {
        for _ in 0..<50 {
            let p = free()
            if p < 65535, canBind(p + 1) { return p }
        }
        return nil
    }

    /// A loopback endpoint nobody listens on.
    public static func closedEndpoint() -> String { "tcp://127.0.0.1:\(free())" }

    private static func loopback(port: UInt16) -> sockaddr_in {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = port.bigEndian
        return address
    }
}
