import Foundation
import KilnProtocol
import TestSupport
import XCTest

/// Message sequences Fuzz/envelope.swift once crashed on, replayed the same way:
/// frames [flags u8][length u16 LE][bytes] (flags bit 0 ends a message), each message
/// through Message.decode and into the transfers. Every one must be refused with a
/// ProtocolError naming a field (or a failed-transfer event carrying one).
final class EnvelopeFuzzRegressionTests: XCTestCase {
    var limits: FramingLimits {
        var l = FramingLimits()
        l.maxEnvelopeBytes = 1 << 16
        l.maxFrameBytes = 1 << 16
        l.maxTensorBytes = 1 << 20
        l.maxChunkCount = 1 << 12
        return l
    }

    static func messages(_ bytes: [UInt8]) -> [[Data]] {
        var out: [[Data]] = []
        var frames: [Data] = []
        var i = 0
        while i + 3 <= bytes.count {
            let n = min(Int(bytes[i + 1]) | Int(bytes[i + 2]) << 8, bytes.count - i - 3)
            frames.append(Data(bytes[(i + 3)..<(i + 3 + n)]))
            if bytes[i] & 1 == 1 {
                out.append(frames)
                frames = []
            }
            i += 3 + n
        }
        if !frames.isEmpty { out.append(frames) }
        return out
    }

    /// The errors the replay produced (decode, announce, chunk and credit refusals).
    func replay(_ input: [[Data]]) throws -> [ProtocolError] {
        var errors: [ProtocolError] = []
        var incoming = IncomingTransfers(window: 4, limits: limits, maxBytes: 1 << 16, maxPending: 4)
        var outgoing = OutgoingTransfers(chunkSize: 16, window: 2)
        _ = try outgoing.start(
            TensorFrame(name: "out", dtype: .u8, shape: [100], bytes: Data((0..<100).map { UInt8($0) })),
            context: "fuzz")
        var now: Int64 = 0
        for frames in input {
            now += 1000
            let m: Message
            do {
                m = try Message.decode(frames, limits: limits)
            } catch let e as ProtocolError {
                errors.append(e)
                continue
            }
            do {
                switch m.body {
                case .taskAssignment(let a)?:
                    if m.tensors.isEmpty, let h = a.inputs.first?.tensor, h.transferID != 0 {
                        try incoming.announce(h, by: m, nowMs: now)
                    }
                case .taskResult(let r)?:
                    if m.tensors.isEmpty, let h = r.outputs.first, h.transferID != 0 {
                        try incoming.announce(h, by: m, nowMs: now)
                    }
                case .tensorChunk?:
                    if case .failed(_, let e, _) = incoming.accept(m, nowMs: now) { errors.append(e) }
                case .credit(let c)?:
                    if let e = outgoing.apply(c).aborted {
                        errors.append(.invalidField(field: e.field, reason: e.message))
                    }
                default:
                    break
                }
            } catch let e as ProtocolError {
                errors.append(e)
            }
        }
        return errors
    }

    func testRecordedInputsAreRefused() throws {
        let inputs = Paths.fuzzInputs("envelope")
        if inputs.isEmpty { throw XCTSkip("no inputs under Tests/Fixtures/fuzz/envelope") }
        for url in inputs {
            let errors = try replay(Self.messages(Array(try Data(contentsOf: url))))
            XCTAssertFalse(errors.isEmpty, "\(url.lastPathComponent): nothing refused")
            for e in errors { XCTAssertFalse(e.field.isEmpty, "\(url.lastPathComponent): \(e)") }
        }
    }

    /// A credit listing more resends than the transfer has chunks is refused before the
    /// resend queue is searched once per entry (16 MiB of entries stalled the sender).
    func testCreditWithTooManyResendsIsRefused() throws {
        let t = try TensorFrame(name: "t", dtype: .u8, shape: [40], bytes: Data(count: 40))
        var s = try ChunkSender(transferID: 7, tensor: t, chunkSize: 16, window: 3)
        while s.nextChunk() != nil {}
        var c = Kiln_V1_Credit()
        c.transferID = 7
        c.sequence = 1
        c.resend = [UInt32](repeating: 0, count: 4)
        XCTAssertThrowsError(try s.apply(c)) { error in
            XCTAssertEqual((error as? ProtocolError)?.field, "credit.resend")
        }
        c.sequence = 2
        c.resend = [0, 1, 2]
        XCTAssertNoThrow(try s.apply(c))
    }
}
