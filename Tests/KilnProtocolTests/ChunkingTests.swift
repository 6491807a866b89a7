import Foundation
import KilnProtocol
import XCTest
import ZeroMQ

final class ChunkingTests: XCTestCase {
    private func tensor(bytes n: Int) throws -> TensorFrame {
        try TensorFrame(
            name: "t", dtype: .u8, shape: [n],
            bytes: Data((0..<n).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ $0 >> 8) }))
    }

    /// Through encode/decode, as on a socket.
    private func wire(_ m: Message) throws -> TensorFrame {
        try Message.decode(try m.encode()).tensors[0]
    }

    func testInOrderTransferRespectsWindow() throws {
        let t = try tensor(bytes: 10_000)
        var s = try ChunkSender(transferID: 1, tensor: t, chunkSize: 1000, window: 3)
        XCTAssertEqual(s.chunkCount, 10)
        var first = try XCTUnwrap(s.nextMessage())
        var r = try ChunkReceiver(first: first.tensors[0].header, window: 3)
        var pending = [first]
        while let m = s.nextMessage() { pending.append(m) }
        XCTAssertEqual(pending.count, 3, "sent beyond the window")
        while !r.isComplete {
            first = pending.removeFirst()
            XCTAssertEqual(try r.accept(try wire(first)), .stored)
            if let c = r.takeCredit() { try s.apply(c) }
            while let m = s.nextMessage() { pending.append(m) }
            XCTAssertLessThanOrEqual(s.inFlight, 3)
        }
        XCTAssertTrue(pending.isEmpty)
        XCTAssertTrue(s.isComplete)
        XCTAssertEqual(s.maxInFlight, 3)
        let out = try r.assemble()
        XCTAssertEqual(out.bytes, t.bytes)
        XCTAssertEqual(out.header, t.header)
    }

    func testOutOfOrderAndDuplicates() throws {
        let t = try tensor(bytes: 7 * 512 + 100)
        var s = try ChunkSender(transferID: 2, tensor: t, chunkSize: 512, window: 100)
        var chunks: [TensorFrame] = []
        while let c = s.nextChunk() { chunks.append(c) }
        XCTAssertEqual(chunks.count, 8)
        XCTAssertEqual(chunks.last?.bytes.count, 100)
        var rng = SystemRandomNumberGenerator()
        let order = chunks.shuffled(using: &rng)
        var r = try ChunkReceiver(first: order[0].header, window: 100)
        for (i, c) in order.enumerated() {
            XCTAssertEqual(try r.accept(c), .stored)
            if i % 3 == 0 { XCTAssertEqual(try r.accept(c), .duplicate) }
        }
        XCTAssertEqual(try r.accept(order[5]), .duplicate)
        XCTAssertTrue(r.isComplete)
        XCTAssertEqual(try r.assemble().bytes, t.bytes)
        // Credit covers every chunk handled, duplicates included.
        let c = try XCTUnwrap(r.takeCredit())
        XCTAssertEqual(Int(c.grant), 8 + r.duplicates)
        XCTAssertTrue(c.complete)
        XCTAssertThrowsError(try s.apply(c), "a grant larger than what is in flight is a protocol violation")
    }

    func testMissingChunksAreResentAfterReset() throws {
        let t = try tensor(bytes: 6000)
        var s = try ChunkSender(transferID: 3, tensor: t, chunkSize: 1000, window: 4)
        var r: ChunkReceiver?
        var lost = 0
        // Lose chunks 1 and 2 on the way.
        while let m = s.nextMessage() {
            let c = try wire(m)
            if r == nil { r = try ChunkReceiver(first: c.header, window: 4) }
            if c.header.chunkIndex == 1 || c.header.chunkIndex == 2 {
                lost += 1
                continue
            }
            try r!.accept(c)
            if let credit = r!.takeCredit(batch: 1) { try s.apply(credit) }
        }
        XCTAssertEqual(lost, 2)
        XCTAssertFalse(r!.isComplete)
        XCTAssertEqual(r!.missing, [1, 2])
        XCTAssertThrowsError(try r!.assemble()) {
            XCTAssertEqual(($0 as? ProtocolError)?.field, "tensors[0].chunk_index")
        }
        // Sender is stuck: its credit went to the lost chunks.
        XCTAssertFalse(s.canSend)
        XCTAssertEqual(s.inFlight, 2)
        // The receiver times out and resets.
        try s.apply(r!.resetCredit())
        XCTAssertEqual(s.credit, 4)
        var resent: [UInt32] = []
        while let m = s.nextMessage() {
            let c = try wire(m)
            resent.append(c.header.chunkIndex)
            try r!.accept(c)
            if let credit = r!.takeCredit() { try s.apply(credit) }
        }
        XCTAssertEqual(resent, [1, 2])
        XCTAssertTrue(r!.isComplete)
        XCTAssertTrue(s.isComplete)
        XCTAssertEqual(try r!.assemble().bytes, t.bytes)
    }

    func testCorruptChunkIsRejectedAndResent() throws {
        let t = try tensor(bytes: 3000)
        var s = try ChunkSender(transferID: 4, tensor: t, chunkSize: 1000, window: 2)
        var c0 = try XCTUnwrap(s.nextChunk())
        var r = try ChunkReceiver(first: c0.header, window: 2)
        var bytes = [UInt8](c0.bytes)
        bytes[10] ^= 1
        c0.bytes = Data(bytes)
        XCTAssertThrowsError(try r.accept(c0)) {
            XCTAssertEqual(($0 as? ProtocolError)?.field, "tensors[0].chunk_checksum")
        }
        let credit = try XCTUnwrap(r.takeCredit())
        XCTAssertEqual(credit.resend, [0])
        XCTAssertEqual(credit.grant, 1)
        try s.apply(credit)
        try s.apply(credit)  // a duplicated credit (same sequence) is ignored
        XCTAssertEqual(s.credit, 2)
        var order: [UInt32] = []
        while !r.isComplete {
            guard let c = s.nextChunk() else { return XCTFail("sender stalled") }
            order.append(c.header.chunkIndex)
            try r.accept(c)
            if let cr = r.takeCredit() { try s.apply(cr) }
        }
        XCTAssertEqual(order, [0, 1, 2])
        XCTAssertEqual(try r.assemble().bytes, t.bytes)
    }

    func testReceiverRejectsInconsistentChunks() throws {
        let t = try tensor(bytes: 3000)
        var s = try ChunkSender(transferID: 5, tensor: t, chunkSize: 1000, window: 3)
        let c0 = try XCTUnwrap(s.nextChunk())
        var r = try ChunkReceiver(first: c0.header, window: 3)
        var other = try XCTUnwrap(s.nextChunk())
        other.header.name = "impostor"
        XCTAssertThrowsError(try r.accept(other)) { XCTAssertEqual(($0 as? ProtocolError)?.field, "tensors[0]") }
        var wrongID = other
        wrongID.header.transferID = 6
        XCTAssertThrowsError(try r.accept(wrongID)) {
            XCTAssertEqual(($0 as? ProtocolError)?.field, "tensors[0].transfer_id")
        }
        var short = try XCTUnwrap(s.nextChunk())
        short.bytes = short.bytes.dropLast()
        XCTAssertThrowsError(try r.accept(short)) { XCTAssertEqual(($0 as? ProtocolError)?.field, "frames[1]") }
        // A whole-tensor checksum that does not match the chunks is caught at assembly.
        var liar = c0.header
        liar.checksum ^= 1
        var r2 = try ChunkReceiver(first: liar, window: 3)
        var s2 = try ChunkSender(transferID: 5, tensor: t, chunkSize: 1000, window: 3)
        while var c = s2.nextChunk() {
            c.header.checksum = liar.checksum
            try r2.accept(c)
        }
        XCTAssertThrowsError(try r2.assemble()) { XCTAssertEqual(($0 as? ProtocolError)?.field, "tensors[0].checksum") }
        // A first header announcing more than the limit allocates nothing.
        var limits = FramingLimits()
        limits.maxTensorBytes = 2000
        XCTAssertThrowsError(try ChunkReceiver(first: c0.header, window: 3, limits: limits)) {
            XCTAssertEqual(($0 as? ProtocolError)?.field, "tensors[0].byte_length")
        }
    }

    func testSenderRejectsBadCredit() throws {
        var s = try ChunkSender(transferID: 7, tensor: try tensor(bytes: 100), chunkSize: 10, window: 2)
        _ = s.nextChunk()
        XCTAssertThrowsError(
            try s.apply(
                .with {
                    $0.transferID = 8
                    $0.sequence = 1
                    $0.grant = 1
                }))
        XCTAssertThrowsError(
            try s.apply(
                .with {
                    $0.transferID = 7
                    $0.sequence = 1
                    $0.resend = [10]
                }))
        XCTAssertThrowsError(
            try s.apply(
                .with {
                    $0.transferID = 7
                    $0.sequence = 2
                    $0.grant = 2
                }))
        try s.apply(
            .with {
                $0.transferID = 7
                $0.sequence = 3
                $0.abort = true
            })
        XCTAssertNotNil(s.abortError)
        XCTAssertNil(s.nextChunk())
    }

    /// 100 MB over an inproc DEALER (sender) / ROUTER (receiver) pair, never
    /// more than `window` chunks in flight.
    func testHundredMegabyteTransferOverInproc() throws {
        let size = 100_000_000
        let chunkSize = 1 << 20
        let window = 4
        var payload = Data(count: size)
        payload.withUnsafeMutableBytes { raw in
            let w = raw.bindMemory(to: UInt32.self)
            for i in 0..<w.count { w[i] = UInt32(truncatingIfNeeded: i &* 2_654_435_761) }
        }
        let tensor = try TensorFrame(name: "blk.0.hessian", dtype: .f32, shape: [size / 4], bytes: payload)
        let ctx = ZMQContext()
        let endpoint = "inproc://chunks-\(UUID())"
        let router = try ctx.socket(.router)
        try router.bind(endpoint)

        let senderDone = DispatchSemaphore(value: 0)
        let senderResult = LockedBox<(Int, Int, Error?)>((0, 0, nil))
        let dealer = try ctx.socket(.dealer)
        try dealer.set(.routingID(Data("worker-1".utf8)))
        try dealer.connect(endpoint)
        let t0 = Date()
        let thread = Thread {
            do {
                var s = try ChunkSender(transferID: 42, tensor: tensor, chunkSize: chunkSize, window: window)
                while !s.isComplete {
                    while let m = s.nextMessage(context: "task-1") {
                        try dealer.send(frames: try m.encodeForSocket(zeroCopyThreshold: Int.max))
                    }
                    guard let reply = try dealer.receiveMessage(timeout: 10_000) else {
                        throw ProtocolError.missingEnvelope
                    }
                    guard case .credit(let c)? = reply.message.body else { throw ProtocolError.missingField("credit") }
                    try s.apply(c)
                }
                senderResult.value = (s.maxInFlight, s.chunksSent, nil)
            } catch {
                senderResult.value = (0, 0, error)
            }
            senderDone.signal()
        }
        thread.start()

        var receiver: ChunkReceiver?
        var peer = Data()
        var maxOutstanding = 0
        var granted = window
        var received = 0
        while receiver?.isComplete != true {
            guard let (prefix, m) = try router.receiveMessage(prefixCount: 1, timeout: 10_000) else {
                return XCTFail("timed out; sender: \(senderResult.value)")
            }
            peer = prefix[0]
            guard case .tensorChunk? = m.body else { return XCTFail("unexpected \(String(describing: m.body))") }
            received += 1
            maxOutstanding = max(maxOutstanding, granted - (received - 1))
            if receiver == nil { receiver = try ChunkReceiver(first: m.tensors[0].header, window: window) }
            XCTAssertEqual(try receiver!.accept(m.tensors[0]), .stored)
            if let c = receiver!.takeCredit(batch: 1) {
                granted += Int(c.grant)
                try router.send(Message(.credit(c)), prefix: [peer])
            }
        }
        let assembled = try receiver!.assemble()
        let dt = Date().timeIntervalSince(t0)
        XCTAssertEqual(senderDone.wait(timeout: .now() + 10), .success)
        let (maxInFlight, sent, error) = senderResult.value
        XCTAssertNil(error)
        XCTAssertEqual(assembled.bytes.count, size)
        XCTAssertEqual(assembled.bytes, payload)
        XCTAssertEqual(assembled.header, tensor.header)
        XCTAssertEqual(sent, 96)
        XCTAssertLessThanOrEqual(maxInFlight, window)
        XCTAssertLessThanOrEqual(maxOutstanding, window)
        print(
            String(
                format:
                    "KilnProtocol 100 MB chunked transfer inproc (1 MiB chunks, window %d): %.2f s, %.0f MB/s, max in flight %d",
                window, dt, Double(size) / dt / 1e6, maxInFlight))
    }
}

final class LockedBox<T>: @unchecked Sendable {
    private let lock = NSLock()
    private var _value: T
    init(_ v: T) { _value = v }
    var value: T {
        get {
            lock.lock()
            defer { lock.unlock() }
            return _value
        }
        set {
            lock.lock()
            _value = newValue
            lock.unlock()
        }
    }
}
