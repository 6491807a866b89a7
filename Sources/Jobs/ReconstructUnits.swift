import Quantization

/// Row-split reconstruction. GPTQ's rows are independent given the Hessian (each row's
/// error spreads only along its own columns), so every linear group's output rows are
/// cut into `parts` contiguous slices and each slice is its own reconstruct task:
/// reconstruct(b, u) with unit u = group * parts + part. The split is the job's
/// (`JobSpec.rowParts`), never the worker count's, and the slices join back in unit
/// order, so the output is the same whichever worker ran each slice.
public struct ReconstructUnits: Sendable, Equatable {
    public let parts: Int

    public init(parts: Int) {
        precondition(parts >= 1)
        self.parts = parts
    }

    public init(spec: JobSpec) { self.init(parts: max(1, spec.rowParts)) }

    /// Units per block: every group, each in `parts` slices.
    public var count: Int { Tasks.groups.count * parts }

    public func group(_ unit: Int) -> Int { unit / parts }
    public func part(_ unit: Int) -> Int { unit % parts }
    public func linears(_ unit: Int) -> [String] { Tasks.groups[group(unit)] }

    /// Slice `part` of `rows` output rows: near-equal, contiguous, in order (empty only when
    /// rows < parts, which validation refuses).
    public func rows(part: Int, of rows: Int) -> Range<Int> {
        (rows * part / parts)..<(rows * (part + 1) / parts)
    }

    /// Results of units (any order) as one result per (block, group) with whole linears, in
    /// (block, group) order: what the writers, the report and propagate take.
    public func joinResults(_ results: [ReconstructResult]) throws -> [ReconstructResult] {
        let sorted = results.sorted { ($0.block, $0.group) < ($1.block, $1.group) }
        guard parts > 1 else { return sorted }
        var out: [ReconstructResult] = []
        var start = 0
        while start < sorted.count {
            let (b, g) = (sorted[start].block, group(sorted[start].group))
            var end = start
            while end < sorted.count && sorted[end].block == b && group(sorted[end].group) == g { end += 1 }
            let slices = sorted[start..<end]
            guard slices.map(\.group) == Array(g * parts..<(g + 1) * parts) else {
                throw JobError(
                    "block \(b) group \(g): row slices \(slices.map { part($0.group) }) of 0..<\(parts) are done")
            }
            out.append(ReconstructResult(block: b, group: g, linears: try join(Array(slices))))
            start = end
        }
        return out
    }

    /// Every unit's linears joined per tensor, in unit order (each tensor's slices in
    /// row order). A tensor with a slice missing or out of order is refused.
    public func join(_ results: [ReconstructResult]) throws -> [QuantizedLinear] {
        var slices: [String: [QuantizedLinear]] = [:]
        var order: [String] = []
        for r in results.sorted(by: { ($0.block, $0.group) < ($1.block, $1.group) }) {
            for l in r.linears {
                if slices[l.tensor] == nil { order.append(l.tensor) }
                slices[l.tensor, default: []].append(l)
            }
        }
        return try order.map { try QuantizedLinear(joiningRows: slices[$0]!, parts: parts) }
    }
}

extension QuantizedTensor {
    /// Row slices of one tensor stacked in order: codes and parameters are row-major, so
    /// they concatenate; everything per column (group index, layout) must agree.
    public init(joiningRows slices: [QuantizedTensor], tensor: String) throws {
        guard var out = slices.first else { throw JobError("\(tensor): no row slices to join") }
        out.codes.reserveCapacity(slices.reduce(0) { $0 + $1.codes.count })
        out.parameters.reserveCapacity(slices.reduce(0) { $0 + $1.parameters.count })
        for s in slices.dropFirst() {
            guard s.columns == out.columns, s.recipe == out.recipe, s.groupSize == out.groupSize,
                s.groupCount == out.groupCount, s.groupIndex == out.groupIndex
            else {
                throw JobError("\(tensor): row slices disagree on columns, recipe, groups or group index")
            }
            out.rows += s.rows
            out.codes += s.codes
            out.parameters += s.parameters
            // A K-quant's super-block fields are row-major too.
            switch (out.kScales, s.kScales) {
            case (nil, nil): break
            case (var k?, let more?) where more.type == k.type && more.superBlocks == k.superBlocks:
                k.rows += more.rows
                k.d += more.d
                k.dmin += more.dmin
                k.scales += more.scales
                k.mins += more.mins
                out.kScales = k
            default: throw JobError("\(tensor): row slices disagree on their K-quant super-blocks")
            }
        }
        self = out
    }
}

extension QuantizedLinear {
    /// A linear's row slices (one per part, in order) as the whole linear: errors and
    /// energies add over rows, GPTQ's loss adds, the dead columns are the Hessian's (the
    /// same in every slice), the time is the sum of the slices'.
    public init(joiningRows slices: [QuantizedLinear], parts: Int) throws {
        guard let first = slices.first else { throw JobError("no row slices to join") }
        guard slices.count == parts else {
            throw JobError("\(first.tensor): \(slices.count) row slices of \(parts)")
        }
        guard parts > 1 else {
            self = first
            return
        }
        guard slices.allSatisfy({ $0.linear == first.linear && $0.block == first.block }) else {
            throw JobError("\(first.tensor): row slices of different linears")
        }
        let weight = try QuantizedTensor(joiningRows: slices.map(\.weight), tensor: first.tensor)
        let error = slices.reduce(0) { $0 + $1.outputError }
        let energy = slices.reduce(0) { $0 + $1.outputEnergy }
        self.init(
            linear: first.linear, block: first.block, tensor: first.tensor, weight: weight, outputError: error,
            relativeError: energy > 0 ? error / energy : 0, gptqLoss: slices.reduce(0) { $0 + $1.gptqLoss },
            deadColumns: first.deadColumns, seconds: slices.reduce(0) { $0 + $1.seconds }, outputEnergy: energy,
            foldedInputOp: first.foldedInputOp, inputSquares: first.inputSquares, migratedScales: first.migratedScales)
        // Every slice searched the whole group's scales: they agree, or the task was not pure.
        guard
            slices.allSatisfy({ $0.foldedInputOp == first.foldedInputOp && $0.migratedScales == first.migratedScales })
        else {
            throw JobError(
                "\(first.tensor): row slices disagree on the folded \(first.foldedInputOp?.name ?? "input op")")
        }
    }
}
