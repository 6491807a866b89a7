import Foundation

/// Chunked tensor transfers with credit-based flow control, as pure state
/// machines (no sockets, no clocks): the caller moves `Message`s between them.
///
/// Protocol (see Credit in worker.proto):
/// - The sender splits a tensor into chunks of `chunkSize` bytes. Each chunk
///   travels as a `tensor_chunk` message whose single TensorHeader carries the
///   whole tensor's name/dtype/shape/byte_length/checksum plus the chunk's
///   index, count, size and own checksum.
/// - The sender starts with `window` credits; every chunk sent costs one. The
///   receiver returns one credit per chunk it has dealt with (stored,
///   duplicate or rejected), so at most `window` chunks are ever in flight.
/// - A chunk with a bad checksum is rejected and asked for again (`resend`).
///   After a silence the receiver may `reset`: the sender presumes everything
///   in flight lost, its credit returns to `window`, and it resends the listed
///   chunks. Duplicates are harmless: the receiver stores each index once.
/// - When every chunk is stored and the whole tensor's checksum (combined from
///   the chunk checksums) matches, the receiver sends `complete`.

/// Sends one tensor as chunks.
public struct ChunkSender: Sendable {
    public let transferID: UInt64
    public let chunkSize: Int
    public let chunkCount: Int
    public let window: Int
    /// Header of the whole tensor (chunk fields unset).
    public let tensorHeader: Kiln_V1_TensorHeader
    /// Where the bytes are: in memory, or in a file read one chunk at a time.
    private enum Source: Sendable {
        case memory(Data)
        case file(SpoolFile, size: Int)
    }
    private let source: Source
    private let chunkChecksums: [UInt32]

    /// Credits left: chunks that may be sent now.
    public private(set) var credit: Int
    /// Largest number of chunks ever in flight (sent, credit not yet returned).
    public private(set) var maxInFlight = 0
    /// Chunks sent, counting resends.
    public private(set) var chunksSent = 0
    public private(set) var isComplete = false
    public private(set) var abortError: Kiln_V1_Error?
    private var nextIndex = 0
    private var resendQueue: [Int] = []
    private var lastSequence: UInt64 = 0

    /// Chunks sent whose credit has not come back.
    public var inFlight: Int { window - credit }

    /// - Parameters:
    ///   - transferID: nonzero, unique among the sender's live transfers.
    ///   - tensor: the whole tensor (header from `TensorFrame.init(name:...)`).
    public init(transferID: UInt64, tensor: TensorFrame, chunkSize: Int, window: Int) throws {
        guard transferID != 0 else { throw ProtocolError.missingField("transfer_id") }
        guard chunkSize > 0 else { throw ProtocolError.invalidField(field: "chunk_size", reason: "must be positive") }
        guard window > 0 else { throw ProtocolError.invalidField(field: "window", reason: "must be positive") }
        guard tensor.bytes.count > 0 else {
            throw ProtocolError.invalidField(field: "byte_length", reason: "an empty tensor is not chunked")
        }
        guard UInt64(tensor.bytes.count) == tensor.header.byteLength else {
            throw ProtocolError.frameSizeMismatch(
                field: "\(tensor.header.name).bytes", expected: tensor.header.byteLength,
                actual: UInt64(tensor.bytes.count))
        }
        self.transferID = transferID
        self.chunkSize = chunkSize
        self.window = window
        self.credit = window
        self.source = .memory(tensor.bytes)
        self.chunkCount = (tensor.bytes.count - 1) / chunkSize + 1
        var h = tensor.header.withoutChunkFields
        // One pass over the bytes: the chunk checksums, combined into the whole.
        let count = (tensor.bytes.count - 1) / chunkSize + 1
        var sums = [UInt32]()
        sums.reserveCapacity(count)
        var whole: UInt32 = 0
        tensor.bytes.withUnsafeBytes { raw in
            for i in 0..<count {
                let lo = i * chunkSize
                let hi = min(lo + chunkSize, raw.count)
                let c = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: raw[lo..<hi]))
                sums.append(c)
                whole = i == 0 ? c : CRC32C.combine(whole, c, lengthB: hi - lo)
            }
        }
        if h.checksumKind == .crc32C && h.checksum != UInt64(whole) {
            throw ProtocolError.checksumMismatch(
                field: "\(h.name).checksum", expected: h.checksum, actual: UInt64(whole))
        }
        h.checksumKind = .crc32C
        h.checksum = UInt64(whole)
        self.tensorHeader = h
        self.chunkChecksums = sums
    }

    /// Sends the bytes of `file` as a U8 tensor named `name`, reading it one chunk at a time
    /// (once now for the checksums, then as chunks go out), so it is never whole in memory.
    /// `checksums` (from `ChunkSender.checksums(of:chunkSize:)`, e.g. computed off the caller's
    /// thread) saves that pass.
    public init(
        transferID: UInt64, file: SpoolFile, name: String, chunkSize: Int, window: Int, checksums: [UInt32]? = nil
    ) throws {
        guard transferID != 0 else { throw ProtocolError.missingField("transfer_id") }
        guard chunkSize > 0 else { throw ProtocolError.invalidField(field: "chunk_size", reason: "must be positive") }
        guard window > 0 else { throw ProtocolError.invalidField(field: "window", reason: "must be positive") }
        let size = try file.size()
        guard size > 0 else {
            throw ProtocolError.invalidField(field: "byte_length", reason: "an empty tensor is not chunked")
        }
        self.transferID = transferID
        self.chunkSize = chunkSize
        self.window = window
        self.credit = window
        self.source = .file(file, size: size)
        self.chunkCount = (size - 1) / chunkSize + 1
        let sums = try checksums ?? Self.checksums(of: file, chunkSize: chunkSize)
        guard sums.count == chunkCount else {
            throw ProtocolError.invalidField(
                field: "chunk_checksums", reason: "\(sums.count) for \(chunkCount) chunks of \(file.url.path)")
        }
        var whole: UInt32 = 0
        for (i, c) in sums.enumerated() {
            whole = i == 0 ? c : CRC32C.combine(whole, c, lengthB: min(chunkSize, size - i * chunkSize))
        }
        var h = Kiln_V1_TensorHeader()
        h.name = name
        h.dtype = .u8
        h.shape = [UInt64(size)]
        h.byteLength = UInt64(size)
        h.checksumKind = .crc32C
        h.checksum = UInt64(whole)
        self.tensorHeader = h
        self.chunkChecksums = sums
    }

    /// The CRC-32C of each `chunkSize` piece of `file`, read one piece at a time.
    public static func checksums(of file: SpoolFile, chunkSize: Int) throws -> [UInt32] {
        let size = try file.size()
        guard chunkSize > 0, size > 0 else { return [] }
        var sums: [UInt32] = []
        var buf = Data(count: min(chunkSize, size))
        var lo = 0
        while lo < size {
            let n = min(chunkSize, size - lo)
            sums.append(
                try buf.withUnsafeMutableBytes { raw -> UInt32 in
                    let part = UnsafeMutableRawBufferPointer(rebasing: raw[0..<n])
                    try file.read(into: part, at: lo)
                    return CRC32C.checksum(UnsafeRawBufferPointer(part))
                })
            lo += n
        }
        return sums
    }

    private var payloadCount: Int {
        switch source {
        case .memory(let d): return d.count
        case .file(_, let size): return size
        }
    }

    /// True when a chunk can be sent now.
    public var canSend: Bool {
        !isComplete && abortError == nil && credit > 0 && (!resendQueue.isEmpty || nextIndex < chunkCount)
    }

    /// The next chunk to send (resends first), or nil if out of credit or
    /// nothing is left to send. Costs one credit.
    public mutating func nextChunk() -> TensorFrame? {
        guard canSend else { return nil }
        let index: Int
        if !resendQueue.isEmpty {
            index = resendQueue.removeFirst()
        } else {
            index = nextIndex
            nextIndex += 1
        }
        credit -= 1
        chunksSent += 1
        maxInFlight = max(maxInFlight, inFlight)
        var h = tensorHeader
        h.transferID = transferID
        h.chunkIndex = UInt32(index)
        h.chunkCount = UInt32(chunkCount)
        h.chunkSize = UInt64(chunkSize)
        h.chunkChecksum = UInt64(chunkChecksums[index])
        let lo = index * chunkSize
        let hi = min(lo + chunkSize, payloadCount)
        switch source {
        case .memory(let payload):
            let start = payload.startIndex
            return TensorFrame(header: h, bytes: payload[(start + lo)..<(start + hi)])
        case .file(let file, _):
            do {
                return TensorFrame(header: h, bytes: try file.read(at: lo, count: hi - lo))
            } catch {
                // The file went (a full disk, a removed spool): the transfer cannot finish.
                abortError = ProtocolError.invalidField(field: "\(h.name)", reason: "\(error)").wireError
                return nil
            }
        }
    }

    /// `nextChunk()` wrapped as a tensor_chunk message.
    public mutating func nextMessage(context: String = "") -> Message? {
        guard let chunk = nextChunk() else { return nil }
        var body = Kiln_V1_TensorChunk()
        body.transferID = transferID
        body.context = context
        return Message(.tensorChunk(body), tensors: [chunk])
    }

    /// Applies a Credit from the receiver. Throws if it is not for this
    /// transfer or breaks the rules (more credit than was spent, a resend of
    /// a chunk that does not exist); stale sequences are ignored.
    public mutating func apply(_ c: Kiln_V1_Credit) throws {
        guard c.transferID == transferID else {
            throw ProtocolError.invalidField(
                field: "credit.transfer_id", reason: "\(c.transferID), expected \(transferID)")
        }
        guard c.sequence > lastSequence else { return }  // duplicate or reordered: already applied
        lastSequence = c.sequence
        if c.abort {
            abortError =
                c.hasError
                ? c.error : ProtocolError.invalidField(field: "credit.abort", reason: "receiver aborted").wireError
            return
        }
        // Each index is looked up in the resend queue below: a list longer than the
        // transfer (a receiver names each chunk once) would cost count x queue.
        guard c.resend.count <= chunkCount else {
            throw ProtocolError.invalidField(
                field: "credit.resend", reason: "\(c.resend.count) entries for \(chunkCount) chunks")
        }
        for (i, r) in c.resend.enumerated() where Int(r) >= chunkCount {
            throw ProtocolError.invalidField(field: "credit.resend[\(i)]", reason: "chunk \(r) of \(chunkCount)")
        }
        if c.reset {
            credit = window
            resendQueue = []
        } else {
            guard Int(c.grant) <= window - credit else {
                throw ProtocolError.invalidField(
                    field: "credit.grant", reason: "\(c.grant) but only \(window - credit) chunks are in flight")
            }
            credit += Int(c.grant)
        }
        for r in c.resend.map(Int.init) where r < nextIndex && !resendQueue.contains(r) {
            resendQueue.append(r)
        }
        if c.complete { isComplete = true }
    }
}

/// Reassembles one chunked tensor and decides the credit to return.
public struct ChunkReceiver: Sendable {
    public enum Outcome: Equatable, Sendable {
        case stored
        case duplicate
    }

    public let transferID: UInt64
    public let window: Int
    /// Header of the whole tensor (chunk fields unset).
    public let tensorHeader: Kiln_V1_TensorHeader
    public let chunkCount: Int
    public let chunkSize: Int
    private let limits: FramingLimits
    /// In memory, or (a payload too large to hold) written to a file as chunks arrive.
    private var buffer: Data
    public let sink: SpoolFile?
    private let byteLength: Int
    private var received: [Bool]
    private var chunkChecksums: [UInt32]
    public private(set) var receivedCount = 0
    public private(set) var duplicates = 0
    /// Credit owed to the sender, not yet granted.
    private var owed = 0
    private var resend: [UInt32] = []
    private var sequence: UInt64 = 0
    private var completeSent = false

    /// Starts a transfer from the header of its first chunk to arrive (any
    /// index). Validates the header and the whole size against `limits` before
    /// allocating anything.
    /// With a `sink`, chunks are written into it at their offsets instead of into memory.
    public init(
        first header: Kiln_V1_TensorHeader, window: Int, limits: FramingLimits = .default, sink: SpoolFile? = nil
    ) throws {
        let layout = try TensorLayout(header, field: "tensors[0]", limits: limits)
        guard layout.isChunked else {
            throw ProtocolError.invalidField(field: "tensors[0].chunk_count", reason: "0: not a chunk")
        }
        guard window > 0 else { throw ProtocolError.invalidField(field: "window", reason: "must be positive") }
        transferID = header.transferID
        self.window = window
        self.limits = limits
        chunkCount = Int(layout.chunkCount)
        chunkSize = Int(layout.chunkSize)
        tensorHeader = header.withoutChunkFields
        byteLength = Int(layout.byteLength)
        self.sink = sink
        buffer = sink == nil ? Data(count: byteLength) : Data()
        received = [Bool](repeating: false, count: chunkCount)
        chunkChecksums = [UInt32](repeating: 0, count: chunkCount)
    }

    public var isComplete: Bool { receivedCount == chunkCount }

    /// Indices not received yet, ascending.
    public var missing: [UInt32] { received.indices.filter { !received[$0] }.map(UInt32.init) }

    /// Accepts one chunk (header and bytes as decoded from a tensor_chunk
    /// message; `Message.decode` has checked the frame size and chunk checksum,
    /// this checks them again along with consistency with the first chunk).
    /// A chunk that fails its checksum is recorded for resend and the error
    /// thrown; the transfer can continue.
    @discardableResult
    public mutating func accept(_ chunk: TensorFrame) throws -> Outcome {
        let h = chunk.header
        guard h.transferID == transferID else {
            throw ProtocolError.invalidField(
                field: "tensors[0].transfer_id", reason: "\(h.transferID), expected \(transferID)")
        }
        guard h.withoutChunkFields == tensorHeader, Int(h.chunkCount) == chunkCount, Int(h.chunkSize) == chunkSize
        else {
            throw ProtocolError.invalidField(
                field: "tensors[0]", reason: "chunk \(h.chunkIndex) describes a different tensor than earlier chunks")
        }
        let index = Int(h.chunkIndex)
        guard index < chunkCount else {
            throw ProtocolError.invalidField(
                field: "tensors[0].chunk_index", reason: "\(index) is not below chunk_count \(chunkCount)")
        }
        let lo = index * chunkSize
        let hi = min(lo + chunkSize, byteLength)
        guard chunk.bytes.count == hi - lo else {
            throw ProtocolError.frameSizeMismatch(
                field: "frames[1]", expected: UInt64(hi - lo), actual: UInt64(chunk.bytes.count))
        }
        owed += 1
        if received[index] {
            duplicates += 1
            return .duplicate
        }
        let sum = CRC32C.checksum(chunk.bytes)
        guard UInt64(sum) == h.chunkChecksum else {
            if !resend.contains(UInt32(index)) { resend.append(UInt32(index)) }
            throw ProtocolError.checksumMismatch(
                field: "tensors[0].chunk_checksum", expected: h.chunkChecksum, actual: UInt64(sum))
        }
        if let sink {
            do { try sink.write(chunk.bytes, at: lo) } catch {
                throw ProtocolError.invalidField(field: "tensors[0]", reason: "cannot store chunk \(index): \(error)")
            }
        } else {
            buffer.withUnsafeMutableBytes { dst in
                chunk.bytes.withUnsafeBytes { src in
                    (dst.baseAddress! + lo).copyMemory(from: src.baseAddress!, byteCount: src.count)
                }
            }
        }
        received[index] = true
        chunkChecksums[index] = sum
        receivedCount += 1
        resend.removeAll { $0 == UInt32(index) }
        return .stored
    }

    /// The Credit to send now, if any: when at least `batch` credits are owed,
    /// a resend is wanted, or the transfer just completed.
    public mutating func takeCredit(batch: Int = 1) -> Kiln_V1_Credit? {
        let completeNow = isComplete && !completeSent
        guard owed >= max(batch, 1) || !resend.isEmpty || completeNow || (isComplete && owed > 0) else { return nil }
        var c = Kiln_V1_Credit()
        c.transferID = transferID
        c.grant = UInt32(owed)
        sequence += 1
        c.sequence = sequence
        c.resend = resend
        c.complete = isComplete
        owed = 0
        resend = []
        if isComplete { completeSent = true }
        return c
    }

    /// After a silence: ask for every missing chunk again and reset the
    /// sender's window (it presumes everything in flight lost).
    public mutating func resetCredit() -> Kiln_V1_Credit {
        var c = Kiln_V1_Credit()
        c.transferID = transferID
        sequence += 1
        c.sequence = sequence
        c.reset = true
        c.resend = missing
        owed = 0
        resend = []
        return c
    }

    /// The Credit that tells the sender to give up.
    public mutating func abortCredit(_ error: ProtocolError) -> Kiln_V1_Credit {
        var c = Kiln_V1_Credit()
        c.transferID = transferID
        sequence += 1
        c.sequence = sequence
        c.abort = true
        c.error = error.wireError
        return c
    }

    /// The reassembled tensor, once complete, after checking the whole
    /// tensor's checksum (combined from the chunk checksums: no second pass).
    public func assemble() throws -> TensorFrame {
        guard isComplete else {
            throw ProtocolError.invalidField(
                field: "tensors[0].chunk_index",
                reason: "transfer \(transferID) incomplete: \(chunkCount - receivedCount) chunks missing")
        }
        var whole: UInt32 = 0
        for i in 0..<chunkCount {
            let len = min(chunkSize, byteLength - i * chunkSize)
            whole = i == 0 ? chunkChecksums[0] : CRC32C.combine(whole, chunkChecksums[i], lengthB: len)
        }
        guard UInt64(whole) == tensorHeader.checksum else {
            throw ProtocolError.checksumMismatch(
                field: "tensors[0].checksum", expected: tensorHeader.checksum, actual: UInt64(whole))
        }
        // With a sink the bytes are in its file, not in the frame.
        return TensorFrame(header: tensorHeader, bytes: buffer)
    }
}

extension Kiln_V1_TensorHeader {
    /// The header of the whole tensor: every chunk's header is this plus the chunk fields.
    var withoutChunkFields: Kiln_V1_TensorHeader {
        var h = self
        h.transferID = 0
        h.chunkIndex = 0
        h.chunkCount = 0
        h.chunkSize = 0
        h.chunkChecksum = 0
        return h
    }
}
