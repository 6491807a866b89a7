import Foundation
import SwiftProtobuf
import ZeroMQ

/// Protocol constants.
public enum KilnWire {
    /// The protocol version this build speaks (Envelope.protocol_version).
    public static let version: Kiln_V1_ProtocolVersion = .protocolVersion1
}

/// Limits a receiver enforces before trusting anything a peer says.
public struct FramingLimits: Sendable, Equatable {
    /// Largest envelope (frame 0).
    public var maxEnvelopeBytes: Int = 16 << 20
    /// Largest raw frame (whole tensor or chunk).
    public var maxFrameBytes: Int = 256 << 20
    /// Most raw frames in one message.
    public var maxTensorFrames: Int = 1024
    /// Largest whole tensor (chunked transfers are assembled up to this size).
    public var maxTensorBytes: UInt64 = 64 << 30
    /// Most chunks in one transfer.
    public var maxChunkCount: UInt32 = 1 << 20
    /// Most dimensions in a shape.
    public var maxRank: Int = 8

    public init() {}
    public static let `default` = FramingLimits()
}

extension Kiln_V1_DType {
    /// Bytes of a tensor of this type and shape; nil if the shape does not fit
    /// the type (block types need a last dimension that is a multiple of 32) or
    /// the size overflows.
    public func byteCount(shape: [UInt64]) -> UInt64? {
        var elements: UInt64 = 1
        for d in shape {
            let (r, o) = elements.multipliedReportingOverflow(by: d)
            if o { return nil }
            elements = r
        }
        let perElement: UInt64
        switch self {
        case .f64, .i64: perElement = 8
        case .f32, .i32, .u32: perElement = 4
        case .f16, .bf16, .i16: perElement = 2
        case .i8, .u8: perElement = 1
        case .q40, .q41, .q80:
            guard let last = shape.last, last % 32 == 0 else { return nil }
            let blockBytes: UInt64 = self == .q40 ? 18 : self == .q41 ? 20 : 34
            let (r, o) = (elements / 32).multipliedReportingOverflow(by: blockBytes)
            return o ? nil : r
        case .unspecified, .UNRECOGNIZED: return nil
        }
        let (r, o) = elements.multipliedReportingOverflow(by: perElement)
        return o ? nil : r
    }
}

/// One raw tensor frame with its header.
public struct TensorFrame: Sendable, Equatable {
    public var header: Kiln_V1_TensorHeader
    /// Little-endian element bytes (the whole tensor, or one chunk).
    public var bytes: Data

    /// Wraps bytes as a whole (unchunked) tensor, filling in byte_length and
    /// the CRC-32C checksum. Throws if the byte count does not match shape and dtype.
    public init(name: String, dtype: Kiln_V1_DType, shape: [Int], bytes: Data) throws {
        var h = Kiln_V1_TensorHeader()
        h.name = name
        h.dtype = dtype
        h.shape = shape.map { UInt64(max($0, 0)) }
        guard shape.allSatisfy({ $0 >= 0 }), let expected = dtype.byteCount(shape: h.shape) else {
            throw ProtocolError.invalidField(
                field: "\(name).shape", reason: "shape \(shape) does not fit dtype \(dtype)")
        }
        guard expected == UInt64(bytes.count) else {
            throw ProtocolError.byteLengthMismatch(
                field: "\(name).byte_length", expected: expected, actual: UInt64(bytes.count))
        }
        h.byteLength = expected
        h.checksumKind = .crc32C
        h.checksum = UInt64(CRC32C.checksum(bytes))
        self.header = h
        self.bytes = bytes
    }

    /// Float32 values as an F32 tensor.
    public init(name: String, shape: [Int], floats: [Float]) throws {
        let data = floats.withUnsafeBytes { Data($0) }
        try self.init(name: name, dtype: .f32, shape: shape, bytes: data)
    }

    /// Pairs a header and bytes as given (no checks; `Message.decode` checks).
    public init(header: Kiln_V1_TensorHeader, bytes: Data) {
        self.header = header
        self.bytes = bytes
    }

    /// The bytes as Float32 values (F32 only).
    public func floats() throws -> [Float] {
        guard header.dtype == .f32 else {
            throw ProtocolError.invalidField(field: "\(header.name).dtype", reason: "is \(header.dtype), not f32")
        }
        var out = [Float](repeating: 0, count: bytes.count / 4)
        out.withUnsafeMutableBytes { dst in _ = bytes.copyBytes(to: dst) }
        return out
    }
}

/// A Kiln message: an Envelope plus the raw tensor frames its `tensors`
/// headers describe.
public struct Message: Sendable, Equatable {
    public var envelope: Kiln_V1_Envelope
    /// Frames 1...n. `envelope.tensors[i]` is `tensors[i].header` (encode
    /// writes the headers from here).
    public var tensors: [TensorFrame]

    public init(_ body: Kiln_V1_Envelope.OneOf_Body, correlationID: String = "", tensors: [TensorFrame] = []) {
        var e = Kiln_V1_Envelope()
        e.protocolVersion = KilnWire.version
        e.correlationID = correlationID
        e.body = body
        self.envelope = e
        self.tensors = tensors
    }

    public init(envelope: Kiln_V1_Envelope, tensors: [TensorFrame]) {
        self.envelope = envelope
        self.tensors = tensors
    }

    public var body: Kiln_V1_Envelope.OneOf_Body? { envelope.body }
    public var correlationID: String { envelope.correlationID }

    /// The frames to send: the envelope, then each tensor's bytes. Checks each
    /// tensor's bytes against its header first (a bug here is ours, not the peer's).
    public func encode(limits: FramingLimits = .default) throws -> [Data] {
        var env = envelope
        env.tensors = tensors.map(\.header)
        let frames = [try env.serializedData()] + tensors.map(\.bytes)
        // What we send must pass our own decoder (checksums were computed by
        // whoever built the headers; not recomputed here).
        try Message.validate(envelope: env, frames: frames, limits: limits, verifyChecksums: false)
        return frames
    }

    /// Like `encode`, but tensor frames of at least `zeroCopyThreshold` bytes
    /// are handed to libzmq without a copy.
    public func encodeForSocket(limits: FramingLimits = .default, zeroCopyThreshold: Int = 1 << 20) throws -> [ZMQFrame]
    {
        try encode(limits: limits).enumerated().map { i, d in
            i > 0 && d.count >= zeroCopyThreshold ? .zeroCopy(ZMQBuffer(copying: d)) : .copy(d)
        }
    }

    /// Parses and validates a message received from a peer. Nothing the peer
    /// says is trusted: sizes are checked against `limits` before use, every
    /// header against its frame, every checksum recomputed.
    public static func decode(_ frames: [Data], limits: FramingLimits = .default) throws -> Message {
        guard let first = frames.first else { throw ProtocolError.missingEnvelope }
        guard first.count <= limits.maxEnvelopeBytes else {
            throw ProtocolError.tooLarge(
                field: "frames[0]", limit: UInt64(limits.maxEnvelopeBytes), actual: UInt64(first.count))
        }
        guard frames.count - 1 <= limits.maxTensorFrames else {
            throw ProtocolError.tooLarge(
                field: "tensors", limit: UInt64(limits.maxTensorFrames), actual: UInt64(frames.count - 1))
        }
        for (i, f) in frames.enumerated().dropFirst() where f.count > limits.maxFrameBytes {
            throw ProtocolError.tooLarge(
                field: "frames[\(i)]", limit: UInt64(limits.maxFrameBytes), actual: UInt64(f.count))
        }
        let envelope: Kiln_V1_Envelope
        do {
            envelope = try Kiln_V1_Envelope(serializedBytes: first)
        } catch {
            throw ProtocolError.malformedEnvelope(String(describing: error))
        }
        try validate(envelope: envelope, frames: frames, limits: limits)
        let tensors = zip(envelope.tensors, frames.dropFirst()).map { TensorFrame(header: $0, bytes: $1) }
        return Message(envelope: envelope, tensors: tensors)
    }

    static func validate(
        envelope: Kiln_V1_Envelope, frames: [Data], limits: FramingLimits,
        verifyChecksums: Bool = true
    ) throws {
        guard envelope.protocolVersion == KilnWire.version else {
            throw ProtocolError.versionMismatch(
                expected: KilnWire.version.rawValue, got: envelope.protocolVersion.rawValue)
        }
        guard envelope.body != nil else { throw ProtocolError.missingField("body") }
        guard envelope.tensors.count == frames.count - 1 else {
            throw ProtocolError.frameCountMismatch(headers: envelope.tensors.count, frames: frames.count - 1)
        }
        for (i, header) in envelope.tensors.enumerated() {
            let field = "tensors[\(i)]"
            let frame = frames[i + 1]
            let layout = try TensorLayout(header, field: field, limits: limits)
            let expected = layout.frameLength(chunk: header.chunkIndex)
            guard UInt64(frame.count) == expected else {
                throw ProtocolError.frameSizeMismatch(
                    field: "frames[\(i + 1)]", expected: expected, actual: UInt64(frame.count))
            }
            guard verifyChecksums else { continue }
            let actual = UInt64(CRC32C.checksum(frame))
            if layout.isChunked {
                guard actual == header.chunkChecksum else {
                    throw ProtocolError.checksumMismatch(
                        field: "\(field).chunk_checksum", expected: header.chunkChecksum, actual: actual)
                }
            } else {
                guard actual == header.checksum else {
                    throw ProtocolError.checksumMismatch(
                        field: "\(field).checksum", expected: header.checksum, actual: actual)
                }
            }
        }
        if case .tensorChunk(let chunk)? = envelope.body {
            guard envelope.tensors.count == 1 else {
                throw ProtocolError.invalidField(
                    field: "tensors", reason: "a tensor_chunk message carries exactly one frame")
            }
            let h = envelope.tensors[0]
            guard h.chunkCount > 0 else {
                throw ProtocolError.invalidField(field: "tensors[0].chunk_count", reason: "0 in a tensor_chunk message")
            }
            guard h.transferID == chunk.transferID else {
                throw ProtocolError.invalidField(
                    field: "tensor_chunk.transfer_id",
                    reason: "\(chunk.transferID) but the header says \(h.transferID)")
            }
        }
    }
}

/// The checked geometry of a TensorHeader: whole size, and chunk layout.
struct TensorLayout {
    let byteLength: UInt64
    let isChunked: Bool
    let chunkSize: UInt64
    let chunkCount: UInt32

    init(_ h: Kiln_V1_TensorHeader, field: String, limits: FramingLimits) throws {
        switch h.dtype {
        case .unspecified, .UNRECOGNIZED:
            throw ProtocolError.invalidField(field: "\(field).dtype", reason: "unknown dtype \(h.dtype.rawValue)")
        default: break
        }
        guard h.shape.count <= limits.maxRank else {
            throw ProtocolError.tooLarge(
                field: "\(field).shape", limit: UInt64(limits.maxRank), actual: UInt64(h.shape.count))
        }
        guard let implied = h.dtype.byteCount(shape: h.shape) else {
            throw ProtocolError.invalidField(
                field: "\(field).shape", reason: "shape \(h.shape) does not fit dtype \(h.dtype) or overflows")
        }
        guard h.byteLength == implied else {
            throw ProtocolError.byteLengthMismatch(
                field: "\(field).byte_length", expected: implied, actual: h.byteLength)
        }
        guard h.byteLength <= limits.maxTensorBytes else {
            throw ProtocolError.tooLarge(
                field: "\(field).byte_length", limit: limits.maxTensorBytes, actual: h.byteLength)
        }
        guard h.checksumKind == .crc32C else {
            throw ProtocolError.invalidField(
                field: "\(field).checksum_kind", reason: "unsupported checksum kind \(h.checksumKind.rawValue)")
        }
        guard h.checksum <= UInt64(UInt32.max) else {
            throw ProtocolError.invalidField(field: "\(field).checksum", reason: "a CRC-32C fits in 32 bits")
        }
        byteLength = h.byteLength
        if h.chunkCount == 0 {
            guard h.chunkIndex == 0, h.chunkSize == 0, h.chunkChecksum == 0 else {
                throw ProtocolError.invalidField(
                    field: "\(field).chunk_count", reason: "0 (unchunked) but other chunk fields are set")
            }
            guard h.byteLength <= UInt64(limits.maxFrameBytes) else {
                throw ProtocolError.tooLarge(
                    field: "\(field).byte_length", limit: UInt64(limits.maxFrameBytes), actual: h.byteLength)
            }
            isChunked = false
            chunkSize = 0
            chunkCount = 0
            return
        }
        guard h.transferID != 0 else { throw ProtocolError.missingField("\(field).transfer_id") }
        guard h.chunkCount <= limits.maxChunkCount else {
            throw ProtocolError.tooLarge(
                field: "\(field).chunk_count", limit: UInt64(limits.maxChunkCount), actual: UInt64(h.chunkCount))
        }
        guard h.chunkSize > 0, h.chunkSize <= UInt64(limits.maxFrameBytes) else {
            throw ProtocolError.invalidField(
                field: "\(field).chunk_size", reason: "\(h.chunkSize) is not in 1...\(limits.maxFrameBytes)")
        }
        guard h.byteLength > 0 else {
            throw ProtocolError.invalidField(field: "\(field).chunk_count", reason: "an empty tensor is not chunked")
        }
        let needed = (h.byteLength - 1) / h.chunkSize + 1
        guard UInt64(h.chunkCount) == needed else {
            throw ProtocolError.invalidField(
                field: "\(field).chunk_count",
                reason: "\(h.chunkCount), but \(h.byteLength) bytes in chunks of \(h.chunkSize) make \(needed)")
        }
        guard h.chunkIndex < h.chunkCount else {
            throw ProtocolError.invalidField(
                field: "\(field).chunk_index", reason: "\(h.chunkIndex) is not below chunk_count \(h.chunkCount)")
        }
        guard h.chunkChecksum <= UInt64(UInt32.max) else {
            throw ProtocolError.invalidField(field: "\(field).chunk_checksum", reason: "a CRC-32C fits in 32 bits")
        }
        isChunked = true
        chunkSize = h.chunkSize
        chunkCount = h.chunkCount
    }

    /// Bytes of the frame carrying chunk `index` (the whole tensor if unchunked).
    func frameLength(chunk index: UInt32) -> UInt64 {
        guard isChunked else { return byteLength }
        let start = UInt64(index) * chunkSize
        return min(chunkSize, byteLength - start)
    }
}

extension ZMQSocket {
    /// Sends a Kiln message, after `prefix` frames (ROUTER routing ids, PUB topics).
    @discardableResult
    public func send(
        _ message: Message, prefix: [Data] = [], dontWait: Bool = false,
        limits: FramingLimits = .default
    ) throws -> Bool {
        let frames = try message.encode(limits: limits)
        return try send(prefix + frames, dontWait: dontWait)
    }

    /// Receives one message, splits off `prefixCount` frames (1 for a ROUTER's
    /// routing id) and decodes the rest. nil on timeout.
    public func receiveMessage(
        prefixCount: Int = 0, timeout: Int32? = nil,
        limits: FramingLimits = .default
    ) throws -> (prefix: [Data], message: Message)? {
        guard let frames = try receiveMultipart(timeout: timeout) else { return nil }
        guard frames.count > prefixCount else { throw ProtocolError.missingEnvelope }
        return (
            Array(frames.prefix(prefixCount)), try Message.decode(Array(frames.dropFirst(prefixCount)), limits: limits)
        )
    }
}
