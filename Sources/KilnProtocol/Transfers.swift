import Foundation

// Chunked payloads between two peers (the coordinator and one worker), over
// ChunkSender / ChunkReceiver. A payload too large for one frame is announced by the
// message it belongs to (a task assignment's input or a task result's output header
// with transfer_id set, and no frame attached); its bytes follow as tensor_chunk
// messages, at most `window` in flight, each CRC-checked; the receiver grants credit
// back as it stores them. The receiver allocates only for announced transfers, only
// up to its own cap, and checks every chunk against the announced header. When the
// last chunk is stored and the whole checksum matches, the announcing message is
// handed over with its payload attached, as if it had come in one piece.

/// Outgoing transfers to one peer.
public struct OutgoingTransfers: Sendable {
    public let chunkSize: Int
    public let window: Int
    private var senders: [UInt64: ChunkSender] = [:]
    private var contexts: [UInt64: String] = [:]
    private var lastID: UInt64 = 0
    /// Chunk frames sent (resends included) and their bytes.
    public private(set) var chunksSent = 0
    public private(set) var bytesSent = 0

    public init(chunkSize: Int, window: Int) {
        self.chunkSize = max(1, chunkSize)
        self.window = max(1, window)
    }

    public var active: Int { senders.count }

    /// True when `bytes` does not fit one chunk and must be sent in pieces.
    public func needsChunking(_ bytes: Int) -> Bool { bytes > chunkSize }

    /// Starts sending `tensor`: returns its header with transfer_id and chunk
    /// geometry set (for the announcing message) and the first chunk messages (one
    /// window). Send the announcement first, then the chunks.
    public mutating func start(
        _ tensor: TensorFrame, context: String
    ) throws -> (header: Kiln_V1_TensorHeader, chunks: [Message]) {
        lastID += 1
        return try begin(
            ChunkSender(transferID: lastID, tensor: tensor, chunkSize: chunkSize, window: window), context: context)
    }

    /// As `start`, for the bytes of `file` as a U8 tensor named `name`, read one chunk at a
    /// time (the file stays this transfer's until it completes or fails).
    public mutating func start(
        file: SpoolFile, name: String, checksums: [UInt32]? = nil, context: String
    ) throws -> (header: Kiln_V1_TensorHeader, chunks: [Message]) {
        lastID += 1
        return try begin(
            ChunkSender(
                transferID: lastID, file: file, name: name, chunkSize: chunkSize, window: window, checksums: checksums),
            context: context)
    }

    private mutating func begin(
        _ sender: ChunkSender, context: String
    ) throws -> (header: Kiln_V1_TensorHeader, chunks: [Message]) {
        var s = sender
        var h = s.tensorHeader
        h.transferID = s.transferID
        h.chunkCount = UInt32(s.chunkCount)
        h.chunkSize = UInt64(s.chunkSize)
        var out: [Message] = []
        while let m = s.nextMessage(context: context) { out.append(m) }
        senders[s.transferID] = s
        contexts[s.transferID] = context
        count(out)
        return (h, out)
    }

    /// Applies a Credit: more chunks to send. A completed or aborted transfer is
    /// forgotten; an abort (or a credit that breaks the rules) is returned as the error.
    /// `context` is the one the transfer was started with.
    public mutating func apply(_ c: Kiln_V1_Credit) -> (chunks: [Message], aborted: Kiln_V1_Error?, context: String) {
        guard var s = senders[c.transferID] else { return ([], nil, "") }  // finished or unknown: stale credit
        let context = contexts[c.transferID] ?? ""
        func forget() {
            senders[c.transferID] = nil
            contexts[c.transferID] = nil
        }
        do {
            try s.apply(c)
        } catch let e as ProtocolError {
            forget()
            return ([], e.wireError, context)
        } catch {
            forget()
            return ([], ProtocolError.invalidField(field: "credit", reason: "\(error)").wireError, context)
        }
        if let e = s.abortError {
            forget()
            return ([], e, context)
        }
        if s.isComplete {
            forget()
            return ([], nil, context)
        }
        var out: [Message] = []
        while let m = s.nextMessage(context: context) { out.append(m) }
        senders[c.transferID] = s
        count(out)
        return (out, nil, context)
    }

    public mutating func cancelAll() {
        senders = [:]
        contexts = [:]
    }

    private mutating func count(_ ms: [Message]) {
        chunksSent += ms.count
        bytesSent += ms.reduce(0) { $0 + ($1.tensors.first?.bytes.count ?? 0) }
    }
}

/// Incoming transfers from one peer, each waiting for its chunks with the message
/// that announced it.
public struct IncomingTransfers: Sendable {
    public enum Event: Sendable {
        /// Chunk stored; send this credit back (if any).
        case progress(credit: Kiln_V1_Credit?)
        /// Every chunk stored and verified: the announcing message with its payload
        /// attached as tensors[0], and the final credit (complete) to send back.
        case complete(message: Message, credit: Kiln_V1_Credit)
        /// As `complete`, for a transfer announced with a sink: the payload is in `file`
        /// (checked against the announced checksum), the message has no tensors.
        case spooled(message: Message, file: SpoolFile, credit: Kiln_V1_Credit)
        /// The transfer failed and is forgotten: the announcing message (nil if the
        /// chunk belonged to no announced transfer), the error, and an abort credit.
        case failed(announcement: Message?, error: ProtocolError, credit: Kiln_V1_Credit?)
    }

    struct Pending: Sendable {
        var receiver: ChunkReceiver?
        let header: Kiln_V1_TensorHeader
        let announcement: Message
        var lastMs: Int64
        let sink: SpoolFile?
    }

    public let window: Int
    public let limits: FramingLimits
    /// Largest payload accepted in chunks (the announced byte_length is checked
    /// against it before anything is allocated).
    public let maxBytes: UInt64
    /// Most transfers pending at once.
    public let maxPending: Int
    private var pending: [UInt64: Pending] = [:]
    public private(set) var chunksReceived = 0

    public init(window: Int, limits: FramingLimits, maxBytes: UInt64, maxPending: Int = 8) {
        self.window = max(1, window)
        self.limits = limits
        self.maxBytes = maxBytes
        self.maxPending = maxPending
    }

    public var active: Int { pending.count }

    /// Registers a transfer announced by `message` with `header` (transfer_id and
    /// chunk geometry set). Checks the geometry and caps the size; nothing is
    /// allocated until the first chunk arrives. With a `sink`, the chunks are written into
    /// that file as they arrive (the transfer completes as `.spooled`); the file goes with
    /// the transfer if it fails.
    public mutating func announce(
        _ header: Kiln_V1_TensorHeader, by message: Message, nowMs: Int64, sink: SpoolFile? = nil
    ) throws {
        guard header.transferID != 0 else { throw ProtocolError.missingField("tensor.transfer_id") }
        guard header.byteLength <= maxBytes else {
            throw ProtocolError.tooLarge(field: "tensor.byte_length", limit: maxBytes, actual: header.byteLength)
        }
        guard pending[header.transferID] == nil else {
            throw ProtocolError.invalidField(
                field: "tensor.transfer_id", reason: "\(header.transferID) is already in progress")
        }
        guard pending.count < maxPending else {
            throw ProtocolError.tooLarge(
                field: "tensor.transfer_id", limit: UInt64(maxPending), actual: UInt64(pending.count + 1))
        }
        _ = try TensorLayout(header, field: "tensor", limits: limits)  // geometry (chunk count, size, checksum kind)
        var base = header
        base.chunkIndex = 0
        base.chunkChecksum = 0
        pending[header.transferID] = Pending(
            receiver: nil, header: base, announcement: message, lastMs: nowMs, sink: sink)
    }

    /// One tensor_chunk message (already through `Message.decode`).
    public mutating func accept(_ m: Message, nowMs: Int64) -> Event {
        guard case .tensorChunk(let body)? = m.body, m.tensors.count == 1 else {
            return .failed(
                announcement: nil, error: .invalidField(field: "tensor_chunk", reason: "not a chunk message"),
                credit: nil)
        }
        let chunk = m.tensors[0]
        // Taken out of the table while it is written to: a copy left in the table would make
        // every chunk copy the whole reassembly buffer (copy on write), quadratic in the size.
        guard var p = pending.removeValue(forKey: body.transferID) else {
            return .failed(
                announcement: nil,
                error: .invalidField(
                    field: "tensor_chunk.transfer_id",
                    reason: "\(body.transferID) was not announced (or is over)"), credit: nil)
        }
        chunksReceived += 1
        do {
            var h = chunk.header
            h.chunkIndex = 0
            h.chunkChecksum = 0
            guard h == p.header else {
                throw ProtocolError.invalidField(
                    field: "tensors[0]",
                    reason:
                        "chunk \(chunk.header.chunkIndex) does not match the announced tensor \(p.header.name) (\(p.header.byteLength) bytes in \(p.header.chunkCount) chunks)"
                )
            }
            if p.receiver == nil {
                p.receiver = try ChunkReceiver(first: chunk.header, window: window, limits: limits, sink: p.sink)
            }
            try p.receiver!.accept(chunk)
            p.lastMs = nowMs
            if p.receiver!.isComplete {
                let whole = try p.receiver!.assemble()
                let credit = p.receiver!.takeCredit() ?? Kiln_V1_Credit()
                var done = p.announcement
                if let file = p.sink { return .spooled(message: done, file: file, credit: credit) }
                done.tensors = [whole]
                return .complete(message: done, credit: credit)
            }
            let credit = p.receiver!.takeCredit(batch: max(1, window / 2))
            pending[body.transferID] = p
            return .progress(credit: credit)
        } catch {
            let e = error as? ProtocolError ?? .invalidField(field: "tensor_chunk", reason: "\(error)")
            pending[body.transferID] = p  // so that fail() finds its announcement
            return fail(body.transferID, e)
        }
    }

    /// Fails a transfer (a chunk that did not even decode, a timeout): forgets it and
    /// returns the announcement and the abort credit for the sender.
    public mutating func fail(_ transferID: UInt64, _ e: ProtocolError) -> Event {
        guard let p = pending.removeValue(forKey: transferID) else {
            return .failed(announcement: nil, error: e, credit: nil)
        }
        var c = Kiln_V1_Credit()
        c.transferID = transferID
        c.sequence = UInt64.max  // past any sequence the receiver used
        c.abort = true
        c.error = e.wireError
        return .failed(announcement: p.announcement, error: e, credit: c)
    }

    /// Transfers with no chunk for `silenceMs`: failed.
    public mutating func expire(nowMs: Int64, silenceMs: Int64) -> [Event] {
        pending.filter { nowMs - $0.value.lastMs > silenceMs }.keys.sorted().map {
            fail(
                $0, .invalidField(field: "tensor_chunk", reason: "transfer \($0) silent for more than \(silenceMs) ms"))
        }
    }

    public mutating func cancelAll() { pending = [:] }
}

extension Message {
    /// The bytes a tensor_chunk message carries in frame 1, when frame 0 parses as one
    /// but the message as a whole does not (a corrupted or truncated chunk): its
    /// transfer id, so the transfer can be failed at once.
    public static func chunkTransferID(_ frames: [Data], limits: FramingLimits = .default) -> UInt64? {
        guard let first = frames.first, first.count <= limits.maxEnvelopeBytes,
            let env = try? Kiln_V1_Envelope(serializedBytes: first),
            case .tensorChunk(let c)? = env.body, c.transferID != 0
        else { return nil }
        return c.transferID
    }
}
