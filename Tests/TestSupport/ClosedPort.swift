#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A loopback TCP endpoint that nobody listens on. The kernel picks a free port for a plain
/// socket, which is then closed synchronously: unlike a ZeroMQ listener, whose close is
/// carried out later on its I/O thread, the port is refused by the time this returns.
public func closedLoopbackEndpoint() -> String {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    precondition(fd >= 0, "socket() failed")
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = 0
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let port: UInt16 = withUnsafeMutablePointer(to: &address) { pointer in
        pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { raw in
            precondition(bind(fd, raw, length) == 0, "bind() failed")
            precondition(getsockname(fd, raw, &length) == 0, "getsockname() failed")
            return UInt16(bigEndian: pointer.pointee.sin_port)
        }
    }
    return "tcp://127.0.0.1:\(port)"
}
