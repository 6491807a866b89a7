import Foundation
import KilnProtocol
import TestSupport
import XCTest

/// OutgoingTransfers / IncomingTransfers: announced chunked payloads between two peers.
final class TransferTests: XCTestCase {
    var limits: FramingLimits {
        var l = FramingLimits()
        l.maxFrameBytes = 64 << 10
        return l
    }

    func payload(_ n: Int) throws -> TensorFrame {
        try TensorFrame(
            name: "input", dtype: .u8, shape: [n],
            bytes: Data((0..<n).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ $0 >> 9) }))
    }

    func announcement(_ h: Kiln_V1_TensorHeader) -> Message {
        var r = Kiln_V1_TaskResult()
        r.taskID = "collect/0/0"
        r.outputs = [h]
        return Message(.taskResult(r))
    }

    /// Through encode/decode with the small frame limit, as on a socket.
    func wire(_ m: Message) throws -> Message { try Message.decode(try m.encode(limits: limits), limits: limits) }

    func testPayloadLargerThanTheFrameLimitCrossesIntactUnderCredit() throws {
        let t = try payload(1_000_003)  // ~15x the 64 KiB frame limit
        XCTAssertThrowsError(
            try Message(.heartbeat(.init()), tensors: [t]).encode(limits: limits), "one frame is over the limit")
        var out = OutgoingTransfers(chunkSize: limits.maxFrameBytes, window: 3)
        var inc = IncomingTransfers(window: 3, limits: limits, maxBytes: 16 << 20)
        XCTAssertTrue(out.needsChunking(t.bytes.count))
        let (h, first) = try out.start(t, context: "collect/0/0")
        XCTAssertEqual(first.count, 3, "one window")
        try inc.announce(h, by: try wire(announcement(h)), nowMs: 0)
        var queue = first
        var result: Message?
        var maxQueued = 0
        while !queue.isEmpty {
            maxQueued = max(maxQueued, queue.count)
            let m = try wire(queue.removeFirst())
            XCTAssertLessThanOrEqual(m.tensors[0].bytes.count, limits.maxFrameBytes)
            switch inc.accept(m, nowMs: 1) {
            case .progress(let c):
                if let c {
                    let (more, aborted, ctx) = out.apply(c)
                    XCTAssertNil(aborted)
                    XCTAssertEqual(ctx, "collect/0/0")
                    queue += more
                }
            case let .complete(done, c):
                XCTAssertTrue(c.complete)
                _ = out.apply(c)
                result = done
            case .spooled:
                XCTFail("announced without a sink")
            case let .failed(_, e, _):
                XCTFail("\(e)")
            }
        }
        XCTAssertLessThanOrEqual(maxQueued, 3, "more than the window in flight")
        let done = try XCTUnwrap(result)
        XCTAssertEqual(done.tensors.first?.bytes, t.bytes)
        XCTAssertEqual(out.active, 0)
        XCTAssertEqual(inc.active, 0)
        XCTAssertEqual(out.chunksSent, 16)
        guard case .taskResult(let r)? = done.body else { return XCTFail("announcement lost") }
        XCTAssertEqual(r.taskID, "collect/0/0")
    }

    /// A payload too large to hold goes from a file to a file: read one chunk at a time by
    /// the sender, written at its offset by the receiver; the bytes arrive intact, and a
    /// transfer that fails leaves no file behind.
    func testAFileCrossesIntoAFileChunkByChunk() throws {
        let dir = Paths.tempDir("kiln-spool")
        let t = try payload(1_000_003)
        let source = dir.appendingPathComponent("source.bin")
        try t.bytes.write(to: source)
        var out = OutgoingTransfers(chunkSize: limits.maxFrameBytes, window: 3)
        var inc = IncomingTransfers(window: 3, limits: limits, maxBytes: 16 << 20)
        let sent = try SpoolFile(reading: source)
        let (h, first) = try out.start(file: sent, name: "result", context: "collect/0/0")
        XCTAssertEqual(h.checksum, t.header.checksum, "the whole file's CRC-32C")
        let sinkURL = dir.appendingPathComponent("sink.bin")
        try inc.announce(h, by: try wire(announcement(h)), nowMs: 0, sink: try SpoolFile(creating: sinkURL))
        var queue = first
        var spooled: SpoolFile?
        while !queue.isEmpty {
            switch inc.accept(try wire(queue.removeFirst()), nowMs: 1) {
            case .progress(let c):
                if let c { queue += out.apply(c).chunks }
            case let .spooled(done, file, c):
                XCTAssertTrue(done.tensors.isEmpty)
                _ = out.apply(c)
                spooled = file
            case .complete:
                XCTFail("announced with a sink")
            case let .failed(_, e, _):
                XCTFail("\(e)")
            }
        }
        let file = try XCTUnwrap(spooled)
        XCTAssertEqual(try file.read(at: 0, count: t.bytes.count), t.bytes)
        XCTAssertEqual(try file.checksum(), UInt32(t.header.checksum))
        XCTAssertEqual(out.active, 0)
        // Kept under a new name, it stays; a failed transfer's sink goes with it.
        try file.keep(renamingTo: dir.appendingPathComponent("kept.bin"))
        let failedURL = dir.appendingPathComponent("failed.bin")
        let (h2, chunks) = try out.start(t, context: "x")
        try inc.announce(h2, by: announcement(h2), nowMs: 0, sink: try SpoolFile(creating: failedURL))
        _ = inc.accept(try wire(chunks[0]), nowMs: 1)
        XCTAssertTrue(FileManager.default.fileExists(atPath: failedURL.path))
        XCTAssertEqual(inc.expire(nowMs: 10_000, silenceMs: 100).count, 1)
        XCTAssertFalse(FileManager.default.fileExists(atPath: failedURL.path), "the failed transfer's file went")
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir.appendingPathComponent("kept.bin").path))
    }

    /// Runs a transfer where `damage` may change the n-th chunk message's frames;
    /// returns the failure the receiver reported.
    func failure(_ damage: (Int, inout [Data]) -> Void) throws -> (ProtocolError, Kiln_V1_Credit?) {
        let t = try payload(300_000)
        var out = OutgoingTransfers(chunkSize: 64 << 10, window: 8)
        var inc = IncomingTransfers(window: 8, limits: limits, maxBytes: 16 << 20)
        let (h, chunks) = try out.start(t, context: "x")
        try inc.announce(h, by: announcement(h), nowMs: 0)
        for (i, c) in chunks.enumerated() {
            var frames = try c.encode(limits: limits)
            damage(i, &frames)
            let event: IncomingTransfers.Event
            do {
                event = inc.accept(try Message.decode(frames, limits: limits), nowMs: 0)
            } catch let e as ProtocolError {
                // What the coordinator and the worker do when a chunk does not even decode.
                let id = try XCTUnwrap(Message.chunkTransferID(frames, limits: limits))
                event = inc.fail(id, e)
            }
            if case let .failed(a, e, credit) = event {
                XCTAssertNotNil(a, "the announcement comes back, so its task can be retried")
                XCTAssertEqual(inc.active, 0, "a failed transfer is forgotten")
                if let credit {
                    let (more, aborted, _) = out.apply(credit)
                    XCTAssertTrue(more.isEmpty)
                    XCTAssertNotNil(aborted)
                }
                XCTAssertEqual(out.active, 0, "the sender stops")
                return (e, credit)
            }
        }
        XCTFail("no failure")
        return (.missingEnvelope, nil)
    }

    func testCorruptedChunkFailsTheTransferWithAChecksumError() throws {
        let (e, credit) = try failure { i, f in
            if i == 2 {
                var d = Data(f[1])
                d[100] ^= 0x40
                f[1] = d
            }
        }
        guard case .checksumMismatch(let field, _, _) = e else { return XCTFail("\(e)") }
        XCTAssertEqual(field, "tensors[0].chunk_checksum")
        XCTAssertEqual(credit?.abort, true)
    }

    func testTruncatedChunkFailsTheTransfer() throws {
        let (e, _) = try failure { i, f in if i == 1 { f[1] = f[1].prefix(1000) } }
        guard case .frameSizeMismatch = e else { return XCTFail("\(e)") }
    }

    func testChunkOfAnotherTensorFailsTheTransfer() throws {
        // A chunk whose header claims another geometry than the announced one (index past
        // the end of the announced transfer, a different length): rejected.
        let (e, _) = try failure { i, f in
            guard i == 3 else { return }
            var env = try! Kiln_V1_Envelope(serializedBytes: f[0])
            env.tensors[0].chunkIndex = 9
            env.tensors[0].chunkCount = 10
            env.tensors[0].byteLength = 10 * (64 << 10)
            env.tensors[0].shape = [UInt64(10 * (64 << 10))]
            f[0] = try! env.serializedData()
        }
        XCTAssertTrue(e.description.contains("announced") || e.field.contains("chunk"), "\(e)")
    }

    func testUnannouncedChunksAndOversizedAnnouncementsAreRefused() throws {
        let t = try payload(200_000)
        var out = OutgoingTransfers(chunkSize: 64 << 10, window: 2)
        var inc = IncomingTransfers(window: 2, limits: limits, maxBytes: 100_000)
        let (h, chunks) = try out.start(t, context: "x")
        guard case .failed(nil, let e, nil) = inc.accept(try wire(chunks[0]), nowMs: 0) else {
            return XCTFail("accepted an unannounced chunk")
        }
        XCTAssertEqual(e.field, "tensor_chunk.transfer_id")
        XCTAssertThrowsError(try inc.announce(h, by: announcement(h), nowMs: 0)) { e in
            XCTAssertEqual((e as? ProtocolError)?.field, "tensor.byte_length", "\(e)")
        }
        // A lying geometry (chunk count that does not match the length) is refused before any allocation.
        var big = IncomingTransfers(window: 2, limits: limits, maxBytes: 1 << 30)
        var lie = h
        lie.chunkCount = 2
        XCTAssertThrowsError(try big.announce(lie, by: announcement(lie), nowMs: 0))
        XCTAssertEqual(big.active, 0)
    }

    func testSilentTransfersExpire() throws {
        let t = try payload(200_000)
        var out = OutgoingTransfers(chunkSize: 64 << 10, window: 2)
        var inc = IncomingTransfers(window: 2, limits: limits, maxBytes: 1 << 20)
        let (h, _) = try out.start(t, context: "x")
        try inc.announce(h, by: announcement(h), nowMs: 0)
        XCTAssertTrue(inc.expire(nowMs: 500, silenceMs: 1000).isEmpty)
        let expired = inc.expire(nowMs: 5000, silenceMs: 1000)
        XCTAssertEqual(expired.count, 1)
        XCTAssertEqual(inc.active, 0)
    }
}
