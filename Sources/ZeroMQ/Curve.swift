import CZeroMQ
import Foundation

/// A CurveZMQ key pair, both keys Z85-encoded (40 characters).
public struct ZMQCurveKeyPair: Sendable, Equatable, Codable {
    public let publicKey: String
    public let secretKey: String

    public init(publicKey: String, secretKey: String) {
        self.publicKey = publicKey
        self.secretKey = secretKey
    }

    /// A fresh key pair (`zmq_curve_keypair`). Throws ENOTSUP without CURVE support.
    public static func generate() throws -> ZMQCurveKeyPair {
        var pub = [CChar](repeating: 0, count: 41)
        var sec = [CChar](repeating: 0, count: 41)
        if zmq_curve_keypair(&pub, &sec) != 0 { throw ZMQError.last("curve_keypair") }
        return ZMQCurveKeyPair(publicKey: String(nulTerminated: pub), secretKey: String(nulTerminated: sec))
    }

    /// Rebuilds the pair from a Z85 secret key (`zmq_curve_public`).
    public init(secretKey: String) throws {
        guard secretKey.utf8.count == 40 else {
            throw ZMQError(code: EINVAL, operation: "curve_public: key must be 40 Z85 characters")
        }
        var pub = [CChar](repeating: 0, count: 41)
        if zmq_curve_public(&pub, secretKey) != 0 { throw ZMQError.last("curve_public") }
        self.init(publicKey: String(nulTerminated: pub), secretKey: secretKey)
    }
}

/// Z85 encoding (ZeroMQ RFC 32) of binary keys.
public enum Z85 {
    /// RFC 32's alphabet, in digit order.
    public static let alphabet = Array(
        "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#".utf8)

    /// Why `text` is not a Z85 CURVE key (40 characters of the alphabet, each group of 5
    /// worth less than 2^32), nil if it is one. libzmq's own refusal names neither.
    public static func keyProblem(_ text: String) -> String? {
        let bytes = Array(text.utf8)
        guard bytes.count == 40 else { return "a CURVE key is 40 Z85 characters, this is \(bytes.count)" }
        var value: UInt64 = 0
        for (i, b) in bytes.enumerated() {
            guard let digit = alphabet.firstIndex(of: b) else {
                let c = b < 0x80 ? "'\(Character(Unicode.Scalar(b)))'" : String(format: "byte 0x%02x", b)
                return "character \(i + 1) (\(c)) is not in the Z85 alphabet"
            }
            value = value * 85 + UInt64(digit)
            if i % 5 == 4 {
                guard value <= UInt64(UInt32.max) else {
                    return "characters \(i - 3)...\(i + 1) are not valid Z85 (their value exceeds 32 bits)"
                }
                value = 0
            }
        }
        return nil
    }

    /// Encodes bytes (count a multiple of 4).
    public static func encode(_ data: Data) -> String? {
        guard data.count % 4 == 0 else { return nil }
        var out = [CChar](repeating: 0, count: data.count * 5 / 4 + 1)
        let ok = data.withUnsafeBytes { raw -> Bool in
            guard let p = raw.bindMemory(to: UInt8.self).baseAddress else { return true }
            return zmq_z85_encode(&out, p, raw.count) != nil
        }
        return ok ? String(nulTerminated: out) : nil
    }

    /// Decodes a Z85 string (length a multiple of 5); nil if invalid.
    public static func decode(_ text: String) -> Data? {
        let n = text.utf8.count
        guard n % 5 == 0 else { return nil }
        guard n > 0 else { return Data() }
        var out = [UInt8](repeating: 0, count: n * 4 / 5)
        guard zmq_z85_decode(&out, text) != nil else { return nil }
        return Data(out)
    }
}

extension String {
    /// The text of a NUL-terminated C buffer (libzmq's key and endpoint outputs).
    init(nulTerminated buffer: [CChar]) {
        self.init(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
