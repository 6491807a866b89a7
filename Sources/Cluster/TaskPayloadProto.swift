import Calibration
import Foundation
import Jobs
import KilnProtocol
import ModelIO
import Quantization
import SwiftProtobuf
import Tensor

// Task payloads <-> kiln.v1 messages (Protos/kiln/v1/tasks.proto), for the wire and
// the coordinator's result files. Bulk numbers are raw little-endian blobs, so every
// Float and Double keeps its bit pattern. Decoding trusts nothing: the bytes may come
// from any peer or a damaged file, so every count and length is checked against the
// others before anything is allocated or indexed, and an error names the field.

#if _endian(big)
#error("kiln.v1 payload blobs are little-endian; this host needs byte swapping added")
#endif

/// A payload or spec that does not say what it must; the text names the field.
public struct PayloadError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

public enum TaskPayload {
    /// Largest block, shard or group index accepted (models have tens of blocks).
    static let maxIndex = 1 << 20
    /// Largest input width of a linear (a Hessian of this many columns is 8 TiB).
    static let maxColumns = 1 << 20
    /// Largest output width of a linear.
    static let maxRows = 1 << 24

    public static func encode(_ input: ClusterTaskInput) throws -> Data {
        try Kiln_V1_TaskInput(input).serializedBytes()
    }

    public static func decodeInput(_ data: Data) throws -> ClusterTaskInput {
        let p: Kiln_V1_TaskInput
        do { p = try Kiln_V1_TaskInput(serializedBytes: data) } catch {
            throw PayloadError("task_input: not a kiln.v1.TaskInput (\(error))")
        }
        return try ClusterTaskInput(p)
    }

    public static func encode(_ output: ClusterTaskOutput) throws -> Data {
        try Kiln_V1_TaskOutput(output).serializedBytes()
    }

    public static func decodeOutput(_ data: Data) throws -> ClusterTaskOutput {
        let p: Kiln_V1_TaskOutput
        do { p = try Kiln_V1_TaskOutput(serializedBytes: data) } catch {
            throw PayloadError("task_output: not a kiln.v1.TaskOutput (\(error))")
        }
        return try ClusterTaskOutput(p)
    }
}

// MARK: checked conversions

/// A count or index from a peer, within 0...limit.
func checkedInt(_ v: UInt64, _ field: String, max limit: Int) throws -> Int {
    guard v <= UInt64(limit) else { throw PayloadError("\(field): \(v) exceeds the limit of \(limit)") }
    return Int(v)
}

/// A count or index of a payload being encoded (never negative in a real payload).
func u64(_ v: Int) -> UInt64 { UInt64(max(0, v)) }

/// `count` elements of `T` from a raw little-endian blob whose length must match exactly.
func elements<T>(_ blob: Data, count: Int, as _: T.Type, _ field: String) throws -> [T] {
    let size = MemoryLayout<T>.stride
    guard blob.count % size == 0 else {
        throw PayloadError("\(field): \(blob.count) bytes is not a whole number of \(size)-byte elements")
    }
    guard blob.count / size == count else {
        throw PayloadError("\(field): \(blob.count / size) elements, expected \(count)")
    }
    // T is a plain number type here (Int64, UInt64, Int32, Float, UInt8): every byte is copied over.
    return [T](unsafeUninitializedCapacity: count) { buf, n in
        _ = blob.copyBytes(to: UnsafeMutableRawBufferPointer(buf))
        n = count
    }
}

func blob<T>(_ a: [T]) -> Data { a.withUnsafeBytes { Data($0) } }

// MARK: statistics

extension Kiln_V1_LinearStatistics {
    init(_ s: LinearStatistics) {
        self.init()
        name = s.name
        hessian.columns = u64(s.hessian.columns)
        hessian.samples = u64(s.hessian.samples)
        hessian.tokens = u64(s.hessian.tokens)
        hessian.high = blob(s.hessian.high)
        hessian.low = blob(s.hessian.low)
        channels = Kiln_V1_ChannelStatistics(s.channels)
    }
}

extension LinearStatistics {
    init(_ p: Kiln_V1_LinearStatistics, _ field: String) throws {
        guard p.hasHessian, p.hasChannels else { throw PayloadError("\(field): hessian or channels missing") }
        let h = p.hessian
        let c = p.channels
        let columns = try checkedInt(h.columns, "\(field).hessian.columns", max: TaskPayload.maxColumns)
        guard c.columns == h.columns else {
            throw PayloadError("\(field).channels.columns: \(c.columns), but the Hessian has \(columns)")
        }
        guard c.tokens == h.tokens else {
            throw PayloadError("\(field).channels.tokens: \(c.tokens), but the Hessian saw \(h.tokens)")
        }
        let tokens = try checkedInt(h.tokens, "\(field).hessian.tokens", max: Int.max)
        let samples = try checkedInt(h.samples, "\(field).hessian.samples", max: Int.max)
        let packed = columns * (columns + 1) / 2  // columns <= 2^20: no overflow
        let high = try elements(h.high, count: packed, as: Int64.self, "\(field).hessian.high")
        let low = try elements(h.low, count: packed, as: UInt64.self, "\(field).hessian.low")
        let channels = try ChannelStatistics(c, columns: columns, tokens: tokens, field)
        do {
            try self.init(
                name: p.name,
                hessian: HessianAccumulator(columns: columns, samples: samples, tokens: tokens, high: high, low: low),
                channels: channels)
        } catch {
            throw PayloadError("\(field): \(error)")
        }
    }
}

extension ChannelStatistics {
    /// Decoded and checked against the Hessian's `columns` and `tokens` (already checked).
    init(_ c: Kiln_V1_ChannelStatistics, columns: Int, tokens: Int, _ field: String) throws {
        // The arrays are empty until the first token (see ChannelStatistics).
        let perColumn = tokens > 0 ? columns : 0
        var channel: [[Float]] = []
        for (name, bytes) in [("abs_max", c.absMax), ("min", c.min), ("max", c.max)] {
            let v = try elements(bytes, count: perColumn, as: Float.self, "\(field).channels.\(name)")
            // Channel statistics refuse non-finite activations when they are gathered.
            if let i = v.firstIndex(where: { !$0.isFinite }) {
                throw PayloadError("\(field).channels.\(name)[\(i)]: \(v[i]) is not finite")
            }
            channel.append(v)
        }
        if let i = (0..<perColumn).first(where: { channel[1][$0] > channel[2][$0] }) {
            throw PayloadError("\(field).channels: min \(channel[1][i]) > max \(channel[2][i]) at column \(i)")
        }
        // The |x| sums: absent (an older worker's result) or one 128-bit word pair per column.
        let sumCount = c.absSumHigh.isEmpty && c.absSumLow.isEmpty ? 0 : perColumn
        let sumHigh = try elements(c.absSumHigh, count: sumCount, as: Int64.self, "\(field).channels.abs_sum_high")
        let sumLow = try elements(c.absSumLow, count: sumCount, as: UInt64.self, "\(field).channels.abs_sum_low")
        if let i = sumHigh.firstIndex(where: { $0 < 0 }) {
            throw PayloadError("\(field).channels.abs_sum_high[\(i)]: a sum of |x| cannot be negative")
        }
        do {
            try self.init(
                columns: columns, tokens: tokens, absMax: channel[0], min: channel[1], max: channel[2],
                absSumHigh: sumHigh, absSumLow: sumLow)
        } catch {
            throw PayloadError("\(field).channels: \(error)")
        }
    }
}

extension Kiln_V1_ChannelStatistics {
    init(_ c: ChannelStatistics) {
        self.init()
        columns = u64(c.columns)
        tokens = u64(c.tokens)
        absMax = blob(c.absMax)
        min = blob(c.min)
        max = blob(c.max)
        absSumHigh = blob(c.absSumHigh)
        absSumLow = blob(c.absSumLow)
    }
}

// MARK: quantized linears

extension Kiln_V1_QuantRecipe {
    init(_ r: QuantRecipe) {
        self.init()
        switch r.format {
        case .integer: format = .integer
        case .ggufQ4_0: format = .ggufQ40
        case .ggufQ4_1: format = .ggufQ41
        case .ggufQ8_0: format = .ggufQ80
        case .ggufQ5_0: format = .ggufQ50
        case .ggufQ5_1: format = .ggufQ51
        case .ggufQ2_K: format = .ggufQ2K
        case .ggufQ3_K: format = .ggufQ3K
        case .ggufQ4_K: format = .ggufQ4K
        case .ggufQ5_K: format = .ggufQ5K
        case .ggufQ6_K: format = .ggufQ6K
        }
        bits = UInt32(clamping: r.bits)
        symmetric = r.symmetric
        groupSize = Int64(r.groupSize)
        actOrder = r.actOrder
        staticGroups = r.staticGroups
        percentDamp = r.percentDamp
        blockSize = u64(r.blockSize)
        scaleSearch = r.scaleSearch
    }
}

extension QuantRecipe {
    init(_ p: Kiln_V1_QuantRecipe, _ field: String) throws {
        let format: WeightFormat
        switch p.format {
        case .integer: format = .integer
        case .ggufQ40: format = .ggufQ4_0
        case .ggufQ41: format = .ggufQ4_1
        case .ggufQ80: format = .ggufQ8_0
        case .ggufQ50: format = .ggufQ5_0
        case .ggufQ51: format = .ggufQ5_1
        case .ggufQ2K: format = .ggufQ2_K
        case .ggufQ3K: format = .ggufQ3_K
        case .ggufQ4K: format = .ggufQ4_K
        case .ggufQ5K: format = .ggufQ5_K
        case .ggufQ6K: format = .ggufQ6_K
        case .unspecified, .UNRECOGNIZED: throw PayloadError("\(field).format: \(p.format) is not a weight format")
        }
        guard p.groupSize >= -1, p.groupSize <= Int64(TaskPayload.maxColumns) else {
            throw PayloadError("\(field).group_size: \(p.groupSize) is out of range")
        }
        self.init(
            format: format, bits: Int(p.bits), symmetric: p.symmetric, groupSize: Int(p.groupSize),
            actOrder: p.actOrder, staticGroups: p.staticGroups, percentDamp: p.percentDamp,
            blockSize: try checkedInt(p.blockSize, "\(field).block_size", max: TaskPayload.maxColumns),
            scaleSearch: p.scaleSearch)
        do { try validate() } catch { throw PayloadError("\(field): \(error)") }
    }
}

extension Kiln_V1_QuantizedLinear {
    init(_ q: QuantizedLinear) {
        self.init()
        linear = q.linear
        block = u64(q.block)
        tensor = q.tensor
        let w = q.weight
        rows = u64(w.rows)
        columns = u64(w.columns)
        recipe = Kiln_V1_QuantRecipe(w.recipe)
        groupSize = u64(w.groupSize)
        groupCount = u64(w.groupCount)
        codes = Data(w.codes)
        parameters = blob(w.parameters.flatMap { [$0.scale, $0.zero, $0.inverse, $0.minimum] })
        groupIndex = blob(w.groupIndex)
        if let k = w.kScales {
            kD = blob(k.d)
            kDmin = blob(k.dmin)
            kScales = blob(k.scales)
            kMins = blob(k.mins)
        }
        outputError = q.outputError
        relativeError = q.relativeError
        outputEnergy = q.outputEnergy
        gptqLoss = q.gptqLoss
        deadColumns = u64(q.deadColumns)
        seconds = q.seconds
        if let f = q.foldedInputOp { foldedInputOp = Kiln_V1_FoldedTensor(f) }
        if let m = q.migratedScales { migratedScales = Kiln_V1_FoldedTensor(m) }
        if let e = q.inputSquares { inputSquares = Kiln_V1_InputSquares(e) }
        candidates = q.candidates.map(Kiln_V1_TypeError.init)
    }
}

extension Kiln_V1_TypeError {
    init(_ c: BitAllocation.Candidate) {
        self.init()
        type = c.format.rawValue
        error = c.error
    }
}

extension BitAllocation.Candidate {
    init(_ p: Kiln_V1_TypeError, _ field: String) throws {
        guard let f = WeightFormat(rawValue: p.type), f.bitsPerWeight != nil else {
            throw PayloadError("\(field).type: '\(p.type.prefix(64))' is not a GGUF weight type")
        }
        guard p.error.isFinite, p.error >= 0 else { throw PayloadError("\(field).error: \(p.error) is not finite") }
        self.init(format: f, error: p.error)
    }
}

extension Kiln_V1_InputSquares {
    init(_ e: Imatrix.Entry) {
        self.init()
        sums = blob(e.sums)
        count = e.count
    }
}

extension Imatrix.Entry {
    /// One sum per input column of the linear that carries it, each finite and >= 0.
    init(_ p: Kiln_V1_InputSquares, columns: Int, _ field: String) throws {
        let sums = try elements(p.sums, count: columns, as: Float.self, "\(field).sums")
        if let i = sums.firstIndex(where: { !$0.isFinite || $0 < 0 }) {
            throw PayloadError("\(field).sums[\(i)]: \(sums[i]) is not a finite sum of squares")
        }
        guard p.count.isFinite, p.count >= 0 else { throw PayloadError("\(field).count: \(p.count)") }
        self.init(sums: sums, count: p.count)
    }
}

extension Kiln_V1_FoldedTensor {
    init(_ f: FoldedTensor) {
        self.init()
        name = f.name
        values = blob(f.values)
    }
}

extension Kiln_V1_FoldedTensor {
    init(_ m: MigratedScales) {
        self.init(FoldedTensor(name: m.into, values: m.scales))
    }
}

extension MigratedScales {
    /// One positive finite scale per input column of the linear that carries it.
    init(_ p: Kiln_V1_FoldedTensor, columns: Int, _ field: String) throws {
        let f = try FoldedTensor(p, columns: columns, field)
        if let i = f.values.firstIndex(where: { $0 <= 0 }) {
            throw PayloadError("\(field).values[\(i)]: \(f.values[i]) is not a positive scale")
        }
        self.init(into: f.name, scales: f.values)
    }
}

extension FoldedTensor {
    /// Checked against the columns of the linear that carries it (a norm has one value per
    /// input column of the group after it).
    init(_ p: Kiln_V1_FoldedTensor, columns: Int, _ field: String) throws {
        guard !p.name.isEmpty, p.name.utf8.count <= 4096 else {
            throw PayloadError("\(field).name: \(p.name.utf8.count) bytes, expected 1 to 4096")
        }
        let values = try elements(p.values, count: columns, as: Float.self, "\(field).values")
        if let i = values.firstIndex(where: { !$0.isFinite }) {
            throw PayloadError("\(field).values[\(i)]: \(values[i]) is not finite")
        }
        self.init(name: p.name, values: values)
    }
}

extension QuantizedLinear {
    init(_ p: Kiln_V1_QuantizedLinear, _ field: String) throws {
        guard p.hasRecipe else { throw PayloadError("\(field).recipe: missing") }
        let recipe = try QuantRecipe(p.recipe, "\(field).recipe")
        let rows = try checkedInt(p.rows, "\(field).rows", max: TaskPayload.maxRows)
        let columns = try checkedInt(p.columns, "\(field).columns", max: TaskPayload.maxColumns)
        guard rows > 0, columns > 0 else { throw PayloadError("\(field): \(rows)x\(columns) has no weights") }
        let groupSize = try checkedInt(p.groupSize, "\(field).group_size", max: columns)
        guard groupSize > 0 else { throw PayloadError("\(field).group_size: 0") }
        let groupCount = try checkedInt(p.groupCount, "\(field).group_count", max: columns)
        guard groupCount == (columns + groupSize - 1) / groupSize else {
            throw PayloadError(
                "\(field).group_count: \(groupCount), but \(columns) columns in groups of \(groupSize) make \((columns + groupSize - 1) / groupSize)"
            )
        }
        // rows <= 2^24 and columns <= 2^20: these products do not overflow.
        let codes = try elements(p.codes, count: rows * columns, as: UInt8.self, "\(field).codes")
        let codeLimit = recipe.format == .ggufQ8_0 ? 256 : 1 << recipe.bits
        if codeLimit < 256, let i = codes.firstIndex(where: { Int($0) >= codeLimit }) {
            throw PayloadError("\(field).codes[\(i)]: \(codes[i]) does not fit \(recipe.bits) bits")
        }
        let flat = try elements(p.parameters, count: rows * groupCount * 4, as: Float.self, "\(field).parameters")
        let groupIndex = try elements(p.groupIndex, count: columns, as: Int32.self, "\(field).group_index")
        if let i = groupIndex.firstIndex(where: { $0 < 0 || Int($0) >= groupCount }) {
            throw PayloadError("\(field).group_index[\(i)]: \(groupIndex[i]) is not a group of \(groupCount)")
        }
        let deadColumns = try checkedInt(p.deadColumns, "\(field).dead_columns", max: columns)
        let block = try checkedInt(p.block, "\(field).block", max: TaskPayload.maxIndex)
        let parameters = stride(from: 0, to: flat.count, by: 4).map {
            GroupParameters(scale: flat[$0], zero: flat[$0 + 1], inverse: flat[$0 + 2], minimum: flat[$0 + 3])
        }
        let kScales = try Self.kScales(p, recipe, rows: rows, columns: columns, groupSize: groupSize, field)
        if let k = kScales {
            // The sub-blocks' parameters are a function of the fields: they must agree bit for bit.
            guard k.parameters.elementsEqual(parameters, by: Self.sameBits) else {
                throw PayloadError("\(field).parameters: do not match the K-quant super-block fields")
            }
        }
        let weight = QuantizedTensor(
            rows: rows, columns: columns, recipe: recipe, groupSize: groupSize, groupCount: groupCount, codes: codes,
            parameters: parameters, groupIndex: groupIndex, kScales: kScales)
        self.init(
            linear: p.linear, block: block, tensor: p.tensor, weight: weight, outputError: p.outputError,
            relativeError: p.relativeError, gptqLoss: p.gptqLoss, deadColumns: deadColumns, seconds: p.seconds,
            outputEnergy: p.outputEnergy,
            foldedInputOp: p.hasFoldedInputOp
                ? try FoldedTensor(p.foldedInputOp, columns: columns, "\(field).folded_input_op") : nil,
            inputSquares: p.hasInputSquares
                ? try Imatrix.Entry(p.inputSquares, columns: columns, "\(field).input_squares") : nil,
            migratedScales: p.hasMigratedScales
                ? try MigratedScales(p.migratedScales, columns: columns, "\(field).migrated_scales") : nil)
        guard p.candidates.count <= WeightFormat.allCases.count else {
            throw PayloadError("\(field).candidates: \(p.candidates.count), more than there are types")
        }
        candidates = try p.candidates.enumerated().map { try BitAllocation.Candidate($1, "\(field).candidates[\($0)]") }
    }
}

extension Kiln_V1_QuantizedBlock {
    init(_ linears: [QuantizedLinear]) {
        self.init()
        self.linears = linears.map(Kiln_V1_QuantizedLinear.init)
    }

    func decoded(_ field: String) throws -> [QuantizedLinear] {
        try linears.enumerated().map { try QuantizedLinear($1, "\(field).linears[\($0)]") }
    }
}

// MARK: task input and output

extension Kiln_V1_TaskInput {
    public init(_ i: ClusterTaskInput) {
        self.init()
        if let s = i.statistics { statistics = Kiln_V1_LinearStatistics(s) }
        if let q = i.quantized { quantized = Kiln_V1_QuantizedBlock(q) }
        // Set even when empty: presence tells "no lineage" from "lineage of zero blocks".
        if let l = i.lineage { lineage = .with { $0.blocks = l.map(Kiln_V1_QuantizedBlock.init) } }
        replayAllowed = i.replayAllowed
    }
}

extension ClusterTaskInput {
    public init(_ p: Kiln_V1_TaskInput) throws {
        self.init(
            statistics: p.hasStatistics ? try LinearStatistics(p.statistics, "task_input.statistics") : nil,
            quantized: p.hasQuantized ? try p.quantized.decoded("task_input.quantized") : nil,
            lineage: p.hasLineage
                ? try p.lineage.blocks.enumerated().map { try $1.decoded("task_input.lineage.blocks[\($0)]") } : nil,
            replayAllowed: p.replayAllowed)
        if let l = lineage, l.count > TaskPayload.maxIndex {
            throw PayloadError(
                "task_input.lineage.blocks: \(l.count) blocks exceed the limit of \(TaskPayload.maxIndex)")
        }
    }
}

extension Kiln_V1_TaskOutput {
    public init(_ o: ClusterTaskOutput) {
        self.init()
        switch o {
        case let .collect(c):
            collect.block = u64(c.block)
            collect.shard = u64(c.shard)
            collect.statistics = c.statistics.map(Kiln_V1_LinearStatistics.init)
            collect.tokens = u64(c.tokens)
            if c.shards != [c.shard] { collect.shards = c.shards.map(u64) }
        case let .merge(m):
            merge.block = u64(m.block)
            merge.statistics = m.statistics.map(Kiln_V1_LinearStatistics.init)
        case let .reconstruct(r):
            reconstruct.block = u64(r.block)
            reconstruct.group = u64(r.group)
            reconstruct.linears = r.linears.map(Kiln_V1_QuantizedLinear.init)
        case let .propagate(p):
            propagate.block = u64(p.block)
            propagate.shard = u64(p.shard)
            propagate.tokens = u64(p.tokens)
        }
    }
}

extension ClusterTaskOutput {
    /// A collect result's shards: strictly increasing, bounded, the carrier among them.
    static func shards(_ raw: [UInt64], carrier: Int) throws -> [Int] {
        guard !raw.isEmpty else { return [carrier] }
        let field = "task_output.collect.shards"
        guard raw.count <= TaskPayload.maxIndex else {
            throw PayloadError("\(field): \(raw.count) shards exceed the limit of \(TaskPayload.maxIndex)")
        }
        let shards = try raw.map { try checkedInt($0, field, max: TaskPayload.maxIndex) }
        guard zip(shards, shards.dropFirst()).allSatisfy({ $0 < $1 }) else {
            throw PayloadError("\(field): \(shards) is not strictly increasing")
        }
        guard shards.contains(carrier) else {
            throw PayloadError("\(field): \(shards) does not hold the carrying shard \(carrier)")
        }
        return shards
    }

    public init(_ p: Kiln_V1_TaskOutput) throws {
        let limit = TaskPayload.maxIndex
        func statistics(_ s: [Kiln_V1_LinearStatistics], _ field: String) throws -> [LinearStatistics] {
            try s.enumerated().map { try LinearStatistics($1, "\(field)[\($0)]") }
        }
        switch p.result {
        case .collect(let c)?:
            let shard = try checkedInt(c.shard, "task_output.collect.shard", max: limit)
            self = .collect(
                CollectResult(
                    block: try checkedInt(c.block, "task_output.collect.block", max: limit),
                    shard: shard,
                    statistics: try statistics(c.statistics, "task_output.collect.statistics"),
                    tokens: try checkedInt(c.tokens, "task_output.collect.tokens", max: Int.max),
                    shards: try Self.shards(c.shards, carrier: shard)))
        case .merge(let m)?:
            self = .merge(
                MergeResult(
                    block: try checkedInt(m.block, "task_output.merge.block", max: limit),
                    statistics: try statistics(m.statistics, "task_output.merge.statistics")))
        case .reconstruct(let r)?:
            self = .reconstruct(
                ReconstructResult(
                    block: try checkedInt(r.block, "task_output.reconstruct.block", max: limit),
                    group: try checkedInt(r.group, "task_output.reconstruct.group", max: limit),
                    linears: try r.linears.enumerated().map {
                        try QuantizedLinear($1, "task_output.reconstruct.linears[\($0)]")
                    }))
        case .propagate(let r)?:
            self = .propagate(
                PropagateResult(
                    block: try checkedInt(r.block, "task_output.propagate.block", max: limit),
                    shard: try checkedInt(r.shard, "task_output.propagate.shard", max: limit),
                    tokens: try checkedInt(r.tokens, "task_output.propagate.tokens", max: Int.max)))
        case nil:
            throw PayloadError("task_output.result: missing")
        }
    }
}

extension QuantizedLinear {
    static func sameBits(_ a: GroupParameters, _ b: GroupParameters) -> Bool {
        a.scale.bitPattern == b.scale.bitPattern && a.zero.bitPattern == b.zero.bitPattern
            && a.inverse.bitPattern == b.inverse.bitPattern && a.minimum.bitPattern == b.minimum.bitPattern
    }

    /// The K fields of a K format (sizes and ranges checked), nil (and none sent) for the others.
    static func kScales(
        _ p: Kiln_V1_QuantizedLinear, _ recipe: QuantRecipe, rows: Int, columns: Int, groupSize: Int, _ field: String
    ) throws -> KQuantScales? {
        guard let type = recipe.format.kQuantType else {
            guard p.kD.isEmpty, p.kDmin.isEmpty, p.kScales.isEmpty, p.kMins.isEmpty else {
                throw PayloadError("\(field): K-quant fields for format \(recipe.format.rawValue)")
            }
            return nil
        }
        guard groupSize == type.subBlockSize, columns % KQuantType.superBlockSize == 0 else {
            throw PayloadError(
                "\(field): \(type.rawValue) needs groups of \(type.subBlockSize) and columns a multiple of 256, "
                    + "got \(groupSize) and \(columns)")
        }
        let superBlocks = columns / KQuantType.superBlockSize
        let subBlocks = rows * columns / groupSize
        let d = try elements(p.kD, count: rows * superBlocks, as: UInt16.self, "\(field).k_d")
        let dmin = try elements(p.kDmin, count: rows * superBlocks, as: UInt16.self, "\(field).k_dmin")
        let scales = try elements(p.kScales, count: subBlocks, as: Int8.self, "\(field).k_scales")
        let mins = try elements(p.kMins, count: type.hasMins ? subBlocks : 0, as: UInt8.self, "\(field).k_mins")
        let scaleRange: ClosedRange<Int8> =
            switch type {
            case .q2_K: 0...15
            case .q3_K: -32...31
            case .q4_K, .q5_K: 0...63
            case .q6_K: -128...127
            }
        if let i = scales.firstIndex(where: { !scaleRange.contains($0) }) {
            throw PayloadError("\(field).k_scales[\(i)]: \(scales[i]) is not a \(type.rawValue) scale")
        }
        let minLimit: UInt8 = type == .q2_K ? 15 : 63
        if let i = mins.firstIndex(where: { $0 > minLimit }) {
            throw PayloadError("\(field).k_mins[\(i)]: \(mins[i]) is not a \(type.rawValue) min")
        }
        if !type.hasMins, let i = dmin.firstIndex(where: { $0 != 0 }) {
            throw PayloadError("\(field).k_dmin[\(i)]: \(type.rawValue) has no dmin")
        }
        return KQuantScales(
            type: type, rows: rows, superBlocks: superBlocks, d: d, dmin: dmin, scales: scales, mins: mins)
    }
}
