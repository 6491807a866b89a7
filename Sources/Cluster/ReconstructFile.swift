import Foundation
import Jobs
import KilnProtocol
import Quantization
import SwiftProtobuf

/// A reconstruct result (a kiln.v1.TaskOutput) read in place from its file: its block,
/// group and each linear's tensor name and byte range, a linear decoded (and checked as
/// `TaskPayload.decodeOutput` checks it) only when asked. The output writer then holds one
/// linear's codes at a time, not a whole group's (a 7B gate+up result is ~180 MB).
public struct ReconstructFile: Sendable {
    public let file: SpoolFile
    public let block: Int
    public let group: Int
    /// Each linear's tensor name, in file order.
    public let tensors: [String]
    private let ranges: [Range<Int>]

    public var taskID: TaskID { .reconstruct(block: block, group: group) }

    /// Largest tensor name read (GGUF allows 63 bytes; safetensors names are short too).
    static let maxName = 4096

    public init(_ file: SpoolFile) throws {
        self.file = file
        let r = try ProtoFileReader(file)
        // A message field that occurs more than once is the merge of its occurrences.
        var parts: [Range<Int>] = []
        try r.fields(0..<r.size, "task_output") { number, value in
            switch (number, value) {
            case (3, .bytes(let range)):
                guard parts.count < 16 else { throw PayloadError("task_output.reconstruct: repeated too often") }
                parts.append(range)
            case (1...4, _): throw PayloadError("task_output: not a reconstruct result (field \(number))")
            default: break
            }
        }
        guard !parts.isEmpty else { throw PayloadError("task_output.result: missing") }
        var block: UInt64 = 0
        var group: UInt64 = 0
        var ranges: [Range<Int>] = []
        for part in parts {
            try r.fields(part, "task_output.reconstruct") { number, value in
                switch (number, value) {
                case (1, .varint(let v)): block = v
                case (2, .varint(let v)): group = v
                case (3, .bytes(let range)):
                    guard ranges.count < TaskPayload.maxIndex else {
                        throw PayloadError("task_output.reconstruct.linears: too many")
                    }
                    ranges.append(range)
                case (1...3, _): throw PayloadError("task_output.reconstruct: field \(number) has the wrong wire type")
                default: break
                }
            }
        }
        var tensors: [String] = []
        for (i, range) in ranges.enumerated() {
            let field = "task_output.reconstruct.linears[\(i)].tensor"
            var name: Range<Int>?
            try r.fields(range, "task_output.reconstruct.linears[\(i)]") { number, value in
                guard number == 3 else { return }
                guard case .bytes(let n) = value else { throw PayloadError("\(field): not a string") }
                name = n  // the last occurrence wins, as in the protobuf decoders
            }
            let bytes = try name.map { n -> Data in
                guard n.count <= Self.maxName else { throw PayloadError("\(field): \(n.count) bytes is too long") }
                return try r.read(n)
            }
            guard let t = String(data: bytes ?? Data(), encoding: .utf8) else {
                throw PayloadError("\(field): not UTF-8")
            }
            tensors.append(t)
        }
        self.block = try checkedInt(block, "task_output.reconstruct.block", max: TaskPayload.maxIndex)
        self.group = try checkedInt(group, "task_output.reconstruct.group", max: TaskPayload.maxIndex)
        self.tensors = tensors
        self.ranges = ranges
    }

    /// Bytes of the `i`th linear's message in the file (its encoding, as `TaskPayload` makes it).
    public func range(_ i: Int) -> Range<Int> { ranges[i] }

    /// The `i`th linear, decoded and checked.
    public func linear(_ i: Int) throws -> QuantizedLinear {
        let field = "task_output.reconstruct.linears[\(i)]"
        let p: Kiln_V1_QuantizedLinear
        do {
            p = try Kiln_V1_QuantizedLinear(
                serializedBytes: try file.read(at: ranges[i].lowerBound, count: ranges[i].count))
        } catch let e as SpoolError {
            throw e
        } catch {
            throw PayloadError("\(field): not a kiln.v1.QuantizedLinear (\(error))")
        }
        return try QuantizedLinear(p, field)
    }
}
