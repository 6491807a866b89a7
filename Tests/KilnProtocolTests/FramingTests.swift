import Foundation
import KilnProtocol
import SwiftProtobuf
import XCTest

final class FramingTests: XCTestCase {
    func testCRC32CInstructionAgreesWithTheTables() {
        var g = SystemRandomNumberGenerator()
        let bytes = (0..<4099).map { _ in UInt8.random(in: 0...255, using: &g) }
        bytes.withUnsafeBytes { raw in
            // Every alignment and tail length, and a running value carried across calls.
            for start in 0..<9 {
                for end in [start, start + 1, start + 7, start + 8, start + 63, raw.count] {
                    let slice = UnsafeRawBufferPointer(rebasing: raw[start..<end])
                    var c = CRC32C()
                    c.update(UnsafeRawBufferPointer(rebasing: slice.prefix(slice.count / 2)))
                    c.update(UnsafeRawBufferPointer(rebasing: slice.dropFirst(slice.count / 2)))
                    XCTAssertEqual(c.value, CRC32C.tableUpdate(0, slice), "bytes \(start)..<\(end)")
                }
            }
        }
    }

    func testCRC32CKnownValuesAndCombine() {
        XCTAssertEqual(CRC32C.checksum(Data("123456789".utf8)), 0xE306_9283)
        XCTAssertEqual(CRC32C.checksum(Data()), 0)
        XCTAssertEqual(CRC32C.checksum(Data(repeating: 0, count: 32)), 0x8A91_36AA)  // RFC 3720 B.4
        XCTAssertEqual(CRC32C.checksum(Data(repeating: 0xFF, count: 32)), 0x62A8_AB43)
        let bytes = Data((0..<10_007).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) })
        for split in [0, 1, 7, 8, 9, 4096, 10_006, 10_007] {
            let a = bytes.prefix(split)
            let b = bytes.dropFirst(split)
            XCTAssertEqual(
                CRC32C.combine(CRC32C.checksum(a), CRC32C.checksum(b), lengthB: b.count), CRC32C.checksum(bytes),
                "split \(split)")
        }
        var running = CRC32C()
        running.update(bytes.prefix(333))
        running.update(bytes.dropFirst(333))  // unaligned slice
        XCTAssertEqual(running.value, CRC32C.checksum(bytes))
    }

    func testDTypeSizes() {
        XCTAssertEqual(Kiln_V1_DType.f32.byteCount(shape: [3, 4]), 48)
        XCTAssertEqual(Kiln_V1_DType.bf16.byteCount(shape: [5]), 10)
        XCTAssertEqual(Kiln_V1_DType.f64.byteCount(shape: []), 8)
        XCTAssertEqual(Kiln_V1_DType.q40.byteCount(shape: [2, 64]), 2 * 2 * 18)
        XCTAssertEqual(Kiln_V1_DType.q80.byteCount(shape: [32]), 34)
        XCTAssertNil(Kiln_V1_DType.q41.byteCount(shape: [2, 33]))
        XCTAssertNil(Kiln_V1_DType.f32.byteCount(shape: [UInt64.max, 2]))
        XCTAssertNil(Kiln_V1_DType.unspecified.byteCount(shape: [1]))
    }

    private func tensor(_ name: String = "w", rows: Int = 3, cols: Int = 5) throws -> TensorFrame {
        try TensorFrame(name: name, shape: [rows, cols], floats: (0..<(rows * cols)).map { Float($0) * 0.5 - 1 })
    }

    private func good() throws -> [Data] {
        var r = Kiln_V1_TaskResult()
        r.taskID = "t1"
        r.status = .ok
        return try Message(.taskResult(r), tensors: [try tensor("a"), try tensor("b", rows: 2, cols: 2)]).encode()
    }

    private func envelope(_ frames: [Data]) throws -> Kiln_V1_Envelope {
        try Kiln_V1_Envelope(serializedBytes: frames[0])
    }

    private func reencode(_ frames: [Data], _ edit: (inout Kiln_V1_Envelope) -> Void) throws -> [Data] {
        var e = try envelope(frames)
        edit(&e)
        return [try e.serializedData()] + frames.dropFirst()
    }

    private func assertRejected(
        _ frames: [Data], limits: FramingLimits = .default, _ expected: ProtocolError,
        file: StaticString = #filePath, line: UInt = #line
    ) {
        XCTAssertThrowsError(try Message.decode(frames, limits: limits), file: file, line: line) { error in
            XCTAssertEqual(error as? ProtocolError, expected, file: file, line: line)
        }
    }

    func testTensorRoundTrip() throws {
        let frames = try good()
        XCTAssertEqual(frames.count, 3)
        let m = try Message.decode(frames)
        XCTAssertEqual(m.tensors.count, 2)
        XCTAssertEqual(try m.tensors[0].floats(), try tensor("a").floats())
        XCTAssertEqual(m.tensors[1].header.shape, [2, 2])
        XCTAssertEqual(m.envelope.tensors, m.tensors.map(\.header))
        guard case .taskResult(let r)? = m.body else { return XCTFail("body") }
        XCTAssertEqual(r.taskID, "t1")
    }

    func testRejectsEmptyAndMalformed() throws {
        assertRejected([], .missingEnvelope)
        XCTAssertThrowsError(try Message.decode([Data([0xFF, 0xFF, 0xFF])])) { error in
            guard case .malformedEnvelope? = error as? ProtocolError else { return XCTFail("\(error)") }
            XCTAssertEqual((error as? ProtocolError)?.code, .malformedMessage)
        }
        // A truncated envelope.
        let frames = try good()
        XCTAssertThrowsError(try Message.decode([frames[0].prefix(frames[0].count - 3)] + frames.dropFirst())) {
            error in
            XCTAssertEqual((error as? ProtocolError)?.field, "frames[0]")
        }
    }

    func testRejectsWrongVersion() throws {
        let frames = try reencode(try good()) { $0.protocolVersion = .init(rawValue: 2)! }
        assertRejected(frames, .versionMismatch(expected: 1, got: 2))
        assertRejected(
            try reencode(try good()) { $0.protocolVersion = .unspecified }, .versionMismatch(expected: 1, got: 0))
    }

    func testRejectsMissingBody() throws {
        assertRejected(try reencode(try good()) { $0.body = nil }, .missingField("body"))
    }

    func testRejectsFrameCountMismatch() throws {
        let frames = try good()
        assertRejected(Array(frames.dropLast()), .frameCountMismatch(headers: 2, frames: 1))
        assertRejected(frames + [Data([1])], .frameCountMismatch(headers: 2, frames: 3))
    }

    func testRejectsByteLengthInconsistentWithShape() throws {
        let frames = try reencode(try good()) { $0.tensors[1].byteLength = 15 }
        assertRejected(frames, .byteLengthMismatch(field: "tensors[1].byte_length", expected: 16, actual: 15))
        let shaped = try reencode(try good()) { $0.tensors[0].shape = [3, 6] }
        assertRejected(shaped, .byteLengthMismatch(field: "tensors[0].byte_length", expected: 72, actual: 60))
        // A huge shape cannot make us allocate or overflow.
        let huge = try reencode(try good()) { $0.tensors[0].shape = [1 << 40, 1 << 40] }
        XCTAssertThrowsError(try Message.decode(huge)) {
            XCTAssertEqual(($0 as? ProtocolError)?.field, "tensors[0].shape")
        }
        let big = try reencode(try good()) {
            $0.tensors[0].shape = [1 << 40]
            $0.tensors[0].byteLength = 4 << 40
        }
        XCTAssertThrowsError(try Message.decode(big)) {
            XCTAssertEqual(($0 as? ProtocolError)?.field, "tensors[0].byte_length")
        }
    }

    func testRejectsFrameSizeMismatch() throws {
        var frames = try good()
        frames[2] = frames[2].dropLast(4)
        assertRejected(frames, .frameSizeMismatch(field: "frames[2]", expected: 16, actual: 12))
    }

    func testRejectsChecksumMismatch() throws {
        var frames = try good()
        var bytes = [UInt8](frames[1])
        bytes[7] ^= 0x10
        frames[1] = Data(bytes)
        XCTAssertThrowsError(try Message.decode(frames)) { error in
            guard case .checksumMismatch(let field, _, _)? = error as? ProtocolError else { return XCTFail("\(error)") }
            XCTAssertEqual(field, "tensors[0].checksum")
            XCTAssertEqual((error as? ProtocolError)?.wireError.code, .checksumMismatch)
        }
    }

    func testRejectsBadEnumsAndChecksumKind() throws {
        XCTAssertThrowsError(try Message.decode(try reencode(try good()) { $0.tensors[0].dtype = .unspecified })) {
            XCTAssertEqual(($0 as? ProtocolError)?.field, "tensors[0].dtype")
        }
        XCTAssertThrowsError(
            try Message.decode(try reencode(try good()) { $0.tensors[0].dtype = .init(rawValue: 99)! })
        ) {
            XCTAssertEqual(($0 as? ProtocolError)?.field, "tensors[0].dtype")
        }
        XCTAssertThrowsError(try Message.decode(try reencode(try good()) { $0.tensors[1].checksumKind = .unspecified }))
        {
            XCTAssertEqual(($0 as? ProtocolError)?.field, "tensors[1].checksum_kind")
        }
        XCTAssertThrowsError(try Message.decode(try reencode(try good()) { $0.tensors[1].chunkIndex = 3 })) {
            XCTAssertEqual(($0 as? ProtocolError)?.field, "tensors[1].chunk_count")
        }
    }

    func testRejectsOversize() throws {
        var limits = FramingLimits()
        limits.maxFrameBytes = 32
        assertRejected(try good(), limits: limits, .tooLarge(field: "frames[1]", limit: 32, actual: 60))
        limits = FramingLimits()
        limits.maxEnvelopeBytes = 10
        assertRejected(
            try good(), limits: limits, .tooLarge(field: "frames[0]", limit: 10, actual: UInt64(try good()[0].count)))
        limits = FramingLimits()
        limits.maxTensorFrames = 1
        assertRejected(try good(), limits: limits, .tooLarge(field: "tensors", limit: 1, actual: 2))
        limits = FramingLimits()
        limits.maxRank = 1
        assertRejected(try good(), limits: limits, .tooLarge(field: "tensors[0].shape", limit: 1, actual: 2))
        // A header announcing a big tensor over a small frame is caught by size, not trusted.
        limits = FramingLimits()
        limits.maxTensorBytes = 40
        assertRejected(try good(), limits: limits, .tooLarge(field: "tensors[0].byte_length", limit: 40, actual: 60))
    }

    func testEncodeRefusesInconsistentTensor() throws {
        XCTAssertThrowsError(try TensorFrame(name: "x", dtype: .f32, shape: [2, 2], bytes: Data(count: 15))) {
            XCTAssertEqual(($0 as? ProtocolError)?.field, "x.byte_length")
        }
        var t = try tensor()
        t.bytes = t.bytes.dropLast(4)
        XCTAssertThrowsError(try Message(.heartbeat(.init()), tensors: [t]).encode())
    }

    func testTensorChunkMessageRules() throws {
        let t = try TensorFrame(name: "big", dtype: .u8, shape: [10], bytes: Data(0..<10))
        var s = try ChunkSender(transferID: 9, tensor: t, chunkSize: 4, window: 2)
        var m = try XCTUnwrap(s.nextMessage())
        let frames = try m.encode()
        XCTAssertNoThrow(try Message.decode(frames))
        m.envelope.body = .tensorChunk(.with { $0.transferID = 8 })
        XCTAssertThrowsError(try Message.decode(try m.encode())) {
            XCTAssertEqual(($0 as? ProtocolError)?.field, "tensor_chunk.transfer_id")
        }
        // Wrong chunk_count for the sizes.
        XCTAssertThrowsError(try Message.decode(try reencode(frames) { $0.tensors[0].chunkCount = 4 })) {
            XCTAssertEqual(($0 as? ProtocolError)?.field, "tensors[0].chunk_count")
        }
        XCTAssertThrowsError(try Message.decode(try reencode(frames) { $0.tensors[0].chunkIndex = 3 })) {
            XCTAssertEqual(($0 as? ProtocolError)?.field, "tensors[0].chunk_index")
        }
        // Corrupt chunk bytes.
        var bad = frames
        bad[1] = Data([9, 9, 9, 9])
        XCTAssertThrowsError(try Message.decode(bad)) {
            XCTAssertEqual(($0 as? ProtocolError)?.field, "tensors[0].chunk_checksum")
        }
    }
}
