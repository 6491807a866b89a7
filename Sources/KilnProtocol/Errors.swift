import Foundation

/// Why a message from a peer was rejected. Every case names the offending
/// field (a dotted path into the envelope, or "frames[i]"), so the error can
/// be logged and sent back as a `Kiln_V1_Error` without further context.
public enum ProtocolError: Error, Equatable, Sendable, CustomStringConvertible {
    /// No frames at all.
    case missingEnvelope
    /// Frame 0 is not a valid Envelope (the decoder's explanation).
    case malformedEnvelope(String)
    /// Envelope.protocol_version is not ours.
    case versionMismatch(expected: Int, got: Int)
    /// A required field (or the oneof body) is not set, or is of an unknown kind.
    case missingField(String)
    /// A field has a value outside its allowed range or inconsistent with others.
    case invalidField(field: String, reason: String)
    /// The number of raw frames differs from the number of tensor headers.
    case frameCountMismatch(headers: Int, frames: Int)
    /// A header's byte_length differs from what shape and dtype imply.
    case byteLengthMismatch(field: String, expected: UInt64, actual: UInt64)
    /// A raw frame's size differs from what its header announces.
    case frameSizeMismatch(field: String, expected: UInt64, actual: UInt64)
    case checksumMismatch(field: String, expected: UInt64, actual: UInt64)
    /// Over a configured limit (bytes, frames, chunks, rank).
    case tooLarge(field: String, limit: UInt64, actual: UInt64)

    /// The field the error is about.
    public var field: String {
        switch self {
        case .missingEnvelope: return "frames[0]"
        case .malformedEnvelope: return "frames[0]"
        case .versionMismatch: return "protocol_version"
        case .missingField(let f): return f
        case .invalidField(let f, _): return f
        case .frameCountMismatch: return "tensors"
        case .byteLengthMismatch(let f, _, _), .frameSizeMismatch(let f, _, _),
            .checksumMismatch(let f, _, _), .tooLarge(let f, _, _):
            return f
        }
    }

    public var code: Kiln_V1_ErrorCode {
        switch self {
        case .missingEnvelope, .malformedEnvelope: return .malformedMessage
        case .versionMismatch: return .versionMismatch
        case .missingField, .invalidField, .byteLengthMismatch: return .invalidField
        case .frameCountMismatch, .frameSizeMismatch: return .frameMismatch
        case .checksumMismatch: return .checksumMismatch
        case .tooLarge: return .tooLarge
        }
    }

    public var description: String {
        switch self {
        case .missingEnvelope: return "empty message: no envelope frame"
        case .malformedEnvelope(let why): return "frame 0 is not a kiln.v1.Envelope: \(why)"
        case .versionMismatch(let e, let g): return "protocol_version \(g), expected \(e)"
        case .missingField(let f): return "\(f): missing"
        case .invalidField(let f, let why): return "\(f): \(why)"
        case .frameCountMismatch(let h, let f): return "tensors: \(h) headers but \(f) raw frames"
        case .byteLengthMismatch(let f, let e, let a): return "\(f): \(a) bytes, but shape and dtype give \(e)"
        case .frameSizeMismatch(let f, let e, let a): return "\(f): \(a) bytes, header says \(e)"
        case .checksumMismatch(let f, let e, let a):
            return "\(f): checksum \(String(a, radix: 16)), header says \(String(e, radix: 16))"
        case .tooLarge(let f, let l, let a): return "\(f): \(a) over the limit \(l)"
        }
    }

    /// The error as sent back to a peer.
    public var wireError: Kiln_V1_Error { Kiln_V1_Error(code, field: field, description) }
}

extension Kiln_V1_Error {
    /// An error to send: its code, the field it concerns ("" for none) and what went wrong.
    public init(_ code: Kiln_V1_ErrorCode, field: String = "", _ message: String) {
        self.init()
        self.code = code
        self.field = field
        self.message = message
    }
}
