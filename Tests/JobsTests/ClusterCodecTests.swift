import Calibration
import Foundation
import Jobs
import Tensor
import TestSupport
import XCTest

/// ClusterCodec decodes bytes from peers and from result files: every malformed
/// payload must give a ClusterCodecError (or the payload type's own error) that
/// says which field is wrong, never a trap or an allocation the bytes do not back.
final class ClusterCodecTests: XCTestCase {
    static let magic: [UInt8] = Array("KLNB".utf8) + [1]

    func statistics() throws -> LinearStatistics {
        var s = LinearStatistics(name: "blk.0.attn_qkv.input", columns: 4)
        try s.add(Matrix(rows: 3, cols: 4, data: (0..<12).map { Float($0) / 3 - 1 }))
        return s
    }

    /// Magic, then the raw value bytes as given.
    func payload(_ bytes: [UInt8]) -> Data { Data(Self.magic + bytes) }

    static func u64(_ v: UInt64) -> [UInt8] { withUnsafeBytes(of: v.littleEndian) { Array($0) } }

    /// Decoding `data` as `T` throws an error whose text contains every fragment.
    func assertDecodeError<T: Decodable>(
        _ type: T.Type, _ data: Data, _ fragments: [String],
        file: StaticString = #filePath, line: UInt = #line
    ) {
        XCTAssertThrowsError(try ClusterCodec.decode(type, from: data), file: file, line: line) { error in
            let text = "\(error)"
            for f in fragments {
                XCTAssertTrue(text.contains(f), "'\(text)' does not mention '\(f)'", file: file, line: line)
            }
        }
    }

    /// Payloads Fuzz/codec.swift once crashed on (Tests/Fixtures/fuzz/codec/), decoded as
    /// both payload types the target tries: each must now throw.
    func testRecordedFuzzInputsAreRefused() throws {
        let inputs = Paths.fuzzInputs("codec")
        XCTAssertFalse(inputs.isEmpty, "no inputs under Tests/Fixtures/fuzz/codec")
        for url in inputs {
            let data = try Data(contentsOf: url)
            XCTAssertThrowsError(try ClusterCodec.decode(ClusterTaskInput.self, from: data), url.lastPathComponent)
            XCTAssertThrowsError(try ClusterCodec.decode(ClusterTaskOutput.self, from: data), url.lastPathComponent)
        }
    }

    func testRoundTrip() throws {
        let input = ClusterTaskInput(statistics: try statistics(), replayAllowed: true)
        XCTAssertEqual(try ClusterCodec.decode(ClusterTaskInput.self, from: try ClusterCodec.encode(input)), input)
        let output = ClusterTaskOutput.collect(
            CollectResult(block: 2, shard: 1, statistics: [try statistics()], tokens: 3))
        XCTAssertEqual(try ClusterCodec.decode(ClusterTaskOutput.self, from: try ClusterCodec.encode(output)), output)
    }

    func testMagic() {
        assertDecodeError(ClusterTaskInput.self, Data(), ["KLNB v1 magic"])
        assertDecodeError(ClusterTaskInput.self, Data("KLNB".utf8 + [2, 0]), ["KLNB v1 magic"])
    }

    func testEveryTruncationThrows() throws {
        let full = try ClusterCodec.encode(
            ClusterTaskOutput.collect(
                CollectResult(
                    block: 0, shard: 1, statistics: [try statistics()],
                    tokens: 3)))
        for n in 0..<full.count {
            XCTAssertThrowsError(try ClusterCodec.decode(ClusterTaskOutput.self, from: full.prefix(n)), "prefix \(n)") {
                error in
                XCTAssertTrue(error is ClusterCodecError, "prefix \(n): \(error)")
            }
        }
    }

    func testTruncatedFieldsAreNamed() {
        assertDecodeError(ClusterTaskInput.self, payload([]), ["tag", "1 bytes announced at offset 5, 0 remain"])
        assertDecodeError(ClusterTaskInput.self, payload([3, 1, 2]), ["int: 8 bytes announced", "2 remain"])
        assertDecodeError(ClusterTaskInput.self, payload([7, 5, 0]), ["string length"])
        assertDecodeError(
            ClusterTaskInput.self, payload([8, 9] + Self.u64(4) + [1, 2]),
            ["number array: 4 bytes announced", "2 remain"])
    }

    func testHugeCounts() {
        let huge = Self.u64(.max)
        assertDecodeError(
            ClusterTaskInput.self, payload([9] + huge), ["array count 18446744073709551615 exceeds the remaining bytes"]
        )
        assertDecodeError(
            ClusterTaskInput.self, payload([10] + huge),
            ["object count 18446744073709551615 exceeds the remaining bytes"])
        assertDecodeError(ClusterTaskInput.self, payload([7] + huge), ["string: 18446744073709551615 bytes announced"])
        assertDecodeError(
            ClusterTaskInput.self, payload([8, 1] + huge), ["number array: 18446744073709551615 bytes announced"])
        // An object key whose length is a lie.
        assertDecodeError(
            ClusterTaskInput.self, payload([10] + Self.u64(1) + Self.u64(1 << 40)),
            ["key: 1099511627776 bytes announced"])
    }

    func testWrongTags() {
        assertDecodeError(ClusterTaskInput.self, payload([11]), ["unknown tag 11 at offset 5"])
        assertDecodeError(ClusterTaskInput.self, payload([8, 0] + Self.u64(0)), ["unknown number array kind"])
        assertDecodeError(
            ClusterTaskInput.self, payload([5] + Self.u64(1 << 32)), ["float bit pattern 4294967296 over 32 bits"])
        assertDecodeError(ClusterTaskInput.self, payload([0, 0]), ["1 trailing bytes after the payload"])
        assertDecodeError(ClusterTaskInput.self, payload([7] + Self.u64(2) + [0xFF, 0xFE]), ["string is not UTF-8"])
    }

    func testDeepNestingIsRefused() {
        // 100 arrays of one element each, around a null.
        let bytes: [UInt8] = (0..<100).flatMap { _ -> [UInt8] in [9] + Self.u64(1) } + [0]
        assertDecodeError(ClusterTaskInput.self, payload(bytes), ["nesting deeper than 64"])
    }

    struct WrongTypes: Encodable {
        var replayAllowed = "yes"
    }

    struct NegativeShard: Encodable {
        struct Body: Encodable { var block = 0, shard: UInt64 = .max, tokens = 1 }
        var propagate = ["_0": Body()]
    }

    struct WrongBlob: Encodable {
        struct Hessian: Encodable { var columns = 1, samples = 1, tokens = 1, high: [Float] = [1], low: [UInt64] = [1] }
        struct Stats: Encodable { var name = "x", hessian = Hessian() }
        var statistics = Stats()
        var replayAllowed = false
    }

    struct HugeColumns: Encodable {
        struct Hessian: Encodable {
            var columns = Int.max, samples = 1, tokens = 1, high: [Int64] = [], low: [UInt64] = []
        }
        struct Channels: Encodable {
            var columns = Int.max, tokens = 1, absMax: [Float] = [], min: [Float] = [], max: [Float] = []
        }
        struct Stats: Encodable { var name = "x", hessian = Hessian(), channels = Channels() }
        var statistics = Stats()
        var replayAllowed = false
    }

    func testTypeErrorsNameThePath() throws {
        assertDecodeError(
            ClusterTaskInput.self, try ClusterCodec.encode(WrongTypes()),
            ["replayAllowed: expected a bool, found string"])
        assertDecodeError(ClusterTaskInput.self, try ClusterCodec.encode([String: Int]()), ["replayAllowed: missing"])
        assertDecodeError(
            ClusterTaskOutput.self, try ClusterCodec.encode(NegativeShard()),
            ["propagate._0.shard: integer does not fit Int"])
        assertDecodeError(
            ClusterTaskInput.self, try ClusterCodec.encode(WrongBlob()), ["number array of kind f32, expected i64"])
    }

    /// Found by Fuzz/codec.swift: a Hessian's column count overflowed its packed size (a trap).
    func testHugeHessianColumnsAreRefused() throws {
        assertDecodeError(
            ClusterTaskInput.self, try ClusterCodec.encode(HugeColumns()),
            ["Hessian of 9223372036854775807 columns is out of range"])
    }
}
