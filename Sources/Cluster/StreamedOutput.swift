import Calibration
import Foundation
import Jobs
import KilnProtocol
import SwiftProtobuf

extension TaskPayload {
    /// Appends `output`'s encoding to `w`: the bytes of `encode(output)`, but a collect
    /// result's Hessian triangles (1.4 GB per block of a 7B model) go from the accumulators
    /// straight to the file, so a worker holds them once, not three times (the message's
    /// blobs and its serialization). Other outputs are small and encoded in memory.
    public static func write(_ output: ClusterTaskOutput, to w: inout SpoolWriter) throws {
        if case let .reconstruct(r) = output {
            // block, group, then the linears (codes straight from their arrays).
            var head = Kiln_V1_ReconstructResult()
            head.block = u64(r.block)
            head.group = u64(r.group)
            let headBytes: Data = try head.serializedBytes()
            let linears = try r.linears.map(StreamedLinear.init)
            try w.append(
                MergedStatisticsInput.field(3, length: linears.reduce(headBytes.count) { $0 + $1.fieldLength(3) }))
            try w.append(headBytes)
            for l in linears { try l.write(field: 3, to: &w) }
            return
        }
        guard case let .collect(c) = output else {
            try w.append(try encode(output))
            return
        }
        // Field by field as SwiftProtobuf orders them (by number): block and shard, the
        // statistics, then tokens and shards, each part serialized by SwiftProtobuf where small.
        var head = Kiln_V1_CollectResult()
        head.block = u64(c.block)
        head.shard = u64(c.shard)
        var tail = Kiln_V1_CollectResult()
        tail.tokens = u64(c.tokens)
        if c.shards != [c.shard] { tail.shards = c.shards.map(u64) }
        let headBytes: Data = try head.serializedBytes()
        let tailBytes: Data = try tail.serializedBytes()
        let statistics = try c.statistics.map(StreamedStatistics.init)
        let length = statistics.reduce(headBytes.count + tailBytes.count) { $0 + $1.fieldLength(3) }
        try w.append(MergedStatisticsInput.field(1, length: length))
        try w.append(headBytes)
        for s in statistics { try s.write(field: 3, to: &w) }
        try w.append(tailBytes)
    }
}

extension TaskPayload {
    /// Appends `input`'s encoding to `w`: the bytes of `encode(input)`, with Hessians and
    /// codes written from their arrays (a 7B block's quantized linears are ~300 MB), so a
    /// coordinator can send a propagate's quantized block from a file without a second copy.
    public static func write(_ input: ClusterTaskInput, to w: inout SpoolWriter) throws {
        if let s = input.statistics { try StreamedStatistics(s).write(field: 1, to: &w) }
        if let q = input.quantized {
            let linears = try q.map(StreamedLinear.init)
            try w.append(MergedStatisticsInput.field(2, length: linears.reduce(0) { $0 + $1.fieldLength(1) }))
            for l in linears { try l.write(field: 1, to: &w) }
        }
        if let lineage = input.lineage {
            let blocks = try lineage.map { try $0.map(StreamedLinear.init) }
            let lengths = blocks.map { $0.reduce(0) { $0 + $1.fieldLength(1) } }
            let total = lengths.reduce(0) { $0 + MergedStatisticsInput.field(1, length: $1).count + $1 }
            try w.append(MergedStatisticsInput.field(3, length: total))
            for (b, n) in zip(blocks, lengths) {
                try w.append(MergedStatisticsInput.field(1, length: n))
                for l in b { try l.write(field: 1, to: &w) }
            }
        }
        if input.replayAllowed { try w.append(Data([4 << 3, 1])) }
    }
}

extension TaskPayload {
    /// Appends the encoding of `ClusterTaskInput(quantized:)` for the linears of `parts` in
    /// order, each copied as it lies in its reconstruct result file (the same bytes: the
    /// workers encode as `encode` does), a piece at a time, never decoded. A propagate's
    /// quantized block (~300 MB for a 7B block) then goes out without the coordinator
    /// holding it. Each linear is checked first (decoded alone, then dropped).
    public static func writeQuantizedInput(from parts: [ReconstructFile], to w: inout SpoolWriter) throws {
        let linears = parts.flatMap { f in f.tensors.indices.map { (f, $0) } }
        for (f, i) in linears { _ = try f.linear(i) }
        let total = linears.reduce(0) {
            $0 + MergedStatisticsInput.field(1, length: $1.0.range($1.1).count).count + $1.0.range($1.1).count
        }
        try w.append(MergedStatisticsInput.field(2, length: total))
        let piece = 4 << 20
        for (f, i) in linears {
            let r = f.range(i)
            try w.append(MergedStatisticsInput.field(1, length: r.count))
            for lo in stride(from: r.lowerBound, to: r.upperBound, by: piece) {
                try w.append(try f.file.read(at: lo, count: min(piece, r.upperBound - lo)))
            }
        }
    }
}

/// One LinearStatistics message laid out for a streamed write: its small parts serialized,
/// the triangles' lengths known, their words still in the accumulator.
struct StreamedStatistics {
    let statistics: LinearStatistics
    let nameField: Data
    let hessianHead: Data
    let channelField: Data
    let blob: Int

    init(_ s: LinearStatistics) throws {
        statistics = s
        let name = Data(s.name.utf8)
        nameField = name.isEmpty ? Data() : MergedStatisticsInput.field(1, length: name.count) + name
        var h = Kiln_V1_HessianAccumulator()
        h.columns = u64(s.hessian.columns)
        h.samples = u64(s.hessian.samples)
        h.tokens = u64(s.hessian.tokens)
        hessianHead = try h.serializedBytes()
        let channels: Data = try Kiln_V1_ChannelStatistics(s.channels).serializedBytes()
        channelField = MergedStatisticsInput.field(3, length: channels.count) + channels
        blob = s.hessian.high.count * 8
        precondition(s.hessian.low.count == s.hessian.high.count, "HessianAccumulator: high and low differ")
    }

    /// A bytes field's key and length, or nothing when empty (proto3 leaves empty fields out).
    var blobKey: (high: Data, low: Data) {
        blob == 0
            ? (Data(), Data())
            : (MergedStatisticsInput.field(4, length: blob), MergedStatisticsInput.field(5, length: blob))
    }

    var hessianLength: Int { hessianHead.count + blobKey.high.count + blob + blobKey.low.count + blob }

    var length: Int {
        nameField.count + MergedStatisticsInput.field(2, length: hessianLength).count + hessianLength
            + channelField.count
    }

    /// The field's bytes: key, length, message.
    func fieldLength(_ number: Int) -> Int { MergedStatisticsInput.field(number, length: length).count + length }

    func write(field number: Int, to w: inout SpoolWriter) throws {
        try w.append(MergedStatisticsInput.field(number, length: length))
        try w.append(nameField)
        try w.append(MergedStatisticsInput.field(2, length: hessianLength))
        try w.append(hessianHead)
        let key = blobKey
        try w.append(key.high)
        try w.append(contentsOf: statistics.hessian.high)
        try w.append(key.low)
        try w.append(contentsOf: statistics.hessian.low)
        try w.append(channelField)
    }
}

/// One QuantizedLinear message laid out for a streamed write: its small fields serialized
/// by SwiftProtobuf (those before the codes, and those after the group index), the codes and
/// group index written from their arrays, the parameters a piece at a time.
struct StreamedLinear {
    let linear: QuantizedLinear
    let head: Data
    let tail: Data

    init(_ q: QuantizedLinear) throws {
        linear = q
        var h = Kiln_V1_QuantizedLinear()
        h.linear = q.linear
        h.block = u64(q.block)
        h.tensor = q.tensor
        let w = q.weight
        h.rows = u64(w.rows)
        h.columns = u64(w.columns)
        h.recipe = Kiln_V1_QuantRecipe(w.recipe)
        h.groupSize = u64(w.groupSize)
        h.groupCount = u64(w.groupCount)
        head = try h.serializedBytes()
        var t = Kiln_V1_QuantizedLinear()
        t.outputError = q.outputError
        t.relativeError = q.relativeError
        t.gptqLoss = q.gptqLoss
        t.deadColumns = u64(q.deadColumns)
        t.seconds = q.seconds
        t.outputEnergy = q.outputEnergy
        // A K-quant's super-block scales are small: serialized with the tail.
        if let k = w.kScales {
            t.kD = blob(k.d)
            t.kDmin = blob(k.dmin)
            t.kScales = blob(k.scales)
            t.kMins = blob(k.mins)
        }
        if let f = q.foldedInputOp { t.foldedInputOp = Kiln_V1_FoldedTensor(f) }
        if let m = q.migratedScales { t.migratedScales = Kiln_V1_FoldedTensor(m) }
        t.candidates = q.candidates.map(Kiln_V1_TypeError.init)
        if let e = q.inputSquares { t.inputSquares = Kiln_V1_InputSquares(e) }
        tail = try t.serializedBytes()
    }

    /// Key and length of bytes field `number` of `count` bytes; nothing when empty (proto3).
    static func key(_ number: Int, _ count: Int) -> Data {
        count == 0 ? Data() : MergedStatisticsInput.field(number, length: count)
    }

    var sizes: (codes: Int, parameters: Int, groupIndex: Int) {
        (linear.weight.codes.count, linear.weight.parameters.count * 16, linear.weight.groupIndex.count * 4)
    }

    var length: Int {
        let s = sizes
        return head.count + Self.key(9, s.codes).count + s.codes + Self.key(10, s.parameters).count + s.parameters
            + Self.key(11, s.groupIndex).count + s.groupIndex + tail.count
    }

    func fieldLength(_ number: Int) -> Int { MergedStatisticsInput.field(number, length: length).count + length }

    func write(field number: Int, to w: inout SpoolWriter) throws {
        let s = sizes
        try w.append(MergedStatisticsInput.field(number, length: length))
        try w.append(head)
        try w.append(Self.key(9, s.codes))
        try w.append(contentsOf: linear.weight.codes)
        try w.append(Self.key(10, s.parameters))
        // scale, zero, inverse, minimum of each group, as `Kiln_V1_QuantizedLinear.init` lays them out.
        let p = linear.weight.parameters
        var piece: [Float] = []
        piece.reserveCapacity(4 * min(p.count, 1 << 14))
        for start in stride(from: 0, to: p.count, by: 1 << 14) {
            piece.removeAll(keepingCapacity: true)
            for g in p[start..<min(p.count, start + (1 << 14))] {
                piece.append(g.scale)
                piece.append(g.zero)
                piece.append(g.inverse)
                piece.append(g.minimum)
            }
            try w.append(contentsOf: piece)
        }
        try w.append(Self.key(11, s.groupIndex))
        try w.append(contentsOf: linear.weight.groupIndex)
        try w.append(tail)
    }
}
