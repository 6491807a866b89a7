import Calibration
import Foundation
import ModelIO
import Models
import Quantization
import Synchronization
import Tensor
import Tokenizers

/// What every task of a job may read: the job, the model file (block weights are read
/// through the ModelView on demand) and the calibration windows. Each worker builds
/// the same context from the same JobSpec, so task results do not depend on where
/// they run.
public final class JobContext: Sendable {
    public let spec: JobSpec
    public let view: any ModelView
    /// Lazy: holds the embedding and head, reads blocks from the file.
    public let model: LlamaModel
    /// Calibration windows (samples x seqlen tokens), in sample order.
    public let windows: [[Int32]]
    public let calibrationTokens: Int
    /// --imatrix's file (`JobSpec.imatrix`), read from the path as the calibration text is.
    public let imatrix: Imatrix?

    /// The last block loaded (a worker's tasks of one block share it).
    private let cachedBlock = Mutex<LlamaBlock?>(nil)

    public init(
        spec: JobSpec, view: any ModelView, model: LlamaModel, windows: [[Int32]], calibrationTokens: Int,
        imatrix: Imatrix? = nil
    ) {
        self.spec = spec
        self.view = view
        self.model = model
        self.windows = windows
        self.calibrationTokens = calibrationTokens
        self.imatrix = imatrix
    }

    /// Opens the model, tokenizes the calibration text and draws the windows (none when
    /// the job gathers no statistics: RTN without the error report never reads the text).
    /// `outputHead` false: a worker's context, which runs blocks only (the head of a 7B model
    /// is 0.5 GB it never uses).
    public static func open(_ spec: JobSpec, outputHead: Bool = true) throws -> JobContext {
        let view = try spec.openForJob()
        let model = try loadCausalLM(view: view, options: ModelLoadOptions(lazyBlocks: true, outputHead: outputHead))
        let imatrix = try spec.imatrix.map { try Imatrix.read(URL(fileURLWithPath: $0)) }
        guard spec.needsStatistics else {
            return JobContext(spec: spec, view: view, model: model, windows: [], calibrationTokens: 0, imatrix: imatrix)
        }
        let tokenizer = try makeTokenizer(view)
        let url = URL(fileURLWithPath: spec.calibration)
        let tokens = try Sampler.tokens(file: url) { tokenizer.encode($0) }
        let windows = try Sampler.windows(
            tokens: tokens, count: spec.samples, length: spec.seqlen, kind: spec.sampler,
            seed: spec.seed, file: url.lastPathComponent)
        return JobContext(
            spec: spec, view: view, model: model, windows: windows, calibrationTokens: tokens.count, imatrix: imatrix)
    }

    /// Block b with its full-precision weights, in the file's row layout (q/k rows as
    /// stored, so codes map one-to-one onto the file's tensors). One-entry cache: the
    /// executor works block by block.
    public func block(_ b: Int) throws -> LlamaBlock {
        if let c = cachedBlock.withLock({ $0 }), c.index == b { return c }
        let blk = try model.block(b)
        cachedBlock.withLock { $0 = blk }
        return blk
    }

    /// One linear of block b as `block(b)` holds it (the file's row layout), from the cached
    /// block when it is b, else read alone: a reconstruct needs only its group's weights.
    /// Another block's cached weights are dropped first: a reconstruct runs long, and that block
    /// (0.8 GB in Float32 on a 7B model) is cheap to read again for its next collect.
    public func linearWeight(block b: Int, _ name: String) throws -> Matrix {
        let cached = cachedBlock.withLock { c -> LlamaBlock? in
            if c?.index != b { c = nil }
            return c
        }
        if let cached {
            guard let w = cached.weight(name) else { throw JobError("block \(b) has no linear '\(name)'") }
            return w
        }
        return try model.linearWeight(block: b, name)
    }

    public func windows(ofShard s: Int) -> ArraySlice<[Int32]> { windows[spec.shardRange(s)] }
}

func makeTokenizer(_ view: any ModelView) throws -> any Tokenizer {
    guard let source = view.tokenizer else {
        throw JobError(
            "model \(view.url.lastPathComponent) has no tokenizer (GGUF tokenizer.ggml.* keys or tokenizer.json)")
    }
    return try loadTokenizer(source)
}

/// The task functions. Each is a function of the job context, its explicit inputs and
/// (for collect / propagate) the shard's activations in the store.
public enum Tasks {
    /// The linear groups of a Llama block, in execution order.
    public static let groups = LlamaBlock.linearGroups

    static func groupName(_ b: Int, _ g: Int) -> String { "blk.\(b).\(groups[g].joined(separator: "+")).input" }

    /// The shard's input of block b: from the store, or (block 0) the embedding of its windows.
    static func input(_ ctx: JobContext, store: ActivationStore, block b: Int, shard s: Int) throws -> [Matrix] {
        if b == 0 { return ctx.windows(ofShard: s).map { ctx.model.embed($0) } }
        guard let a = try store.get(shard: s) else {
            throw JobError("activations of shard \(s) for block \(b) are not in this worker's store")
        }
        guard a.block == b else {
            throw JobError("shard \(s) holds the input of block \(a.block), task needs block \(b)")
        }
        return a.windows
    }

    /// collect(b, s): runs block b (full-precision weights) over each window of shard s,
    /// gathering statistics of every linear input. Parallel mode: the block's outputs
    /// become the shard's input of block b+1.
    public static func collect(
        _ ctx: JobContext, store: ActivationStore, block b: Int, shard s: Int
    ) throws -> CollectResult {
        let blk = try ctx.block(b)
        let inputs = try input(ctx, store: store, block: b, shard: s)
        var stats = groups.enumerated().map { g, names in
            LinearStatistics(name: groupName(b, g), columns: blk.weight(names[0])!.cols)
        }
        var failure: Error?
        var outputs: [Matrix] = []
        var tokens = 0
        for x in inputs {
            // One window per add: the only non-exact rounding (the per-batch ssyrk) is then
            // a function of the window alone, so any shard partition merges bit-identically.
            let hook: LinearHook = { li in
                guard failure == nil, let g = groups.firstIndex(of: li.linears) else { return }
                do { try stats[g].add(li.input, samples: 1) } catch { failure = error }
            }
            // Sequential mode recomputes the output with quantized weights in propagate.
            let y = blk.forward(
                hidden: x, context: ForwardContext(hook: hook, outputNeeded: ctx.spec.mode == .parallel))
            if let failure { throw failure }
            if ctx.spec.mode == .parallel { outputs.append(y) }
            tokens += x.rows
        }
        if ctx.spec.mode == .parallel { try store.put(shard: s, ShardActivations(block: b + 1, windows: outputs)) }
        return CollectResult(block: b, shard: s, statistics: stats, tokens: tokens)
    }

    /// merge(b): partial statistics summed in shard order (exact, so any order agrees).
    public static func merge(block b: Int, parts: [CollectResult]) throws -> MergeResult {
        let sorted = parts.sorted { $0.shard < $1.shard }
        guard var acc = sorted.first else { throw JobError("merge(\(b)): no shard results") }
        guard acc.block == b else { throw JobError("merge(\(b)): shard \(acc.shard) result is for block \(acc.block)") }
        for p in sorted.dropFirst() { acc = try combine(acc, p) }
        return MergeResult(block: b, statistics: acc.statistics)
    }

    /// Two collect results of one block as one, carried by `b`'s task: statistics summed
    /// (exact fixed-point sums, so any grouping of shards gives the same bits), shards
    /// joined. A shard in both would be counted twice: refused.
    public static func combine(_ a: CollectResult, _ b: CollectResult) throws -> CollectResult {
        guard a.block == b.block, a.statistics.count == b.statistics.count else {
            throw JobError(
                "collect results of shards \(a.shards) and \(b.shards) do not match: blocks \(a.block) and \(b.block), "
                    + "\(a.statistics.count) and \(b.statistics.count) groups")
        }
        let shards = (a.shards + b.shards).sorted()
        guard zip(shards, shards.dropFirst()).allSatisfy({ $0 < $1 }) else {
            throw JobError("collect results of block \(a.block) both hold a shard: \(a.shards) and \(b.shards)")
        }
        var statistics = a.statistics
        for g in statistics.indices { try statistics[g].merge(b.statistics[g]) }
        return CollectResult(
            block: b.block, shard: b.shard, statistics: statistics, tokens: a.tokens + b.tokens, shards: shards)
    }

    /// reconstruct(b, u): quantizes each linear of unit u's group (its row slice, when the job
    /// slices rows: `ReconstructUnits`) from the merged Hessian, and
    /// measures its output error when there are statistics (RTN without them: error 0,
    /// not measured).
    public static func reconstruct(_ ctx: JobContext, _ input: ReconstructInput) throws -> ReconstructResult {
        var owned = input
        return try reconstruct(ctx, taking: &owned)
    }

    /// As `reconstruct`, dropping `input`'s statistics once the Hessians are built from them:
    /// held by no one else, their memory (a 7B down_proj's triangles: 970 MB) goes before GPTQ.
    public static func reconstruct(
        _ ctx: JobContext, taking input: inout ReconstructInput
    ) throws
        -> ReconstructResult
    {
        let units = ReconstructUnits(spec: ctx.spec)
        let part = units.part(input.group)
        // One Hessian: GPTQ's as the reference scales it (2/N, N windows), else the error
        // report's (2/T, T tokens). Both are the same sums scaled, so the per-token error is
        // the one measured with H times N/T (a 7B down_proj's H is 485 MB: not held twice).
        let normalization: HessianNormalization = ctx.spec.method.usesGPTQ ? .referenceSamples : .tokens
        let h = input.statistics?.finalHessian(normalization: normalization)
        let perToken: Double
        if let st = input.statistics?.hessian, normalization == .referenceSamples {
            perToken = st.tokens > 0 ? Double(st.samples) / Double(st.tokens) : 0
        } else {
            perToken = 1
        }
        // AWQ's scales, or SmoothQuant's (compressed-tensors-w8a8), in the same shape.
        let awq = try ctx.spec.method.usesAWQ ? awqGroup(ctx, input, hessian: h) : smoothGroup(ctx, input, hessian: h)
        // Sum of x^2 per column as llama.cpp's imatrix holds it: RTN's importance (without AWQ,
        // whose scaled input has its own), and --imatrix-out's entry (carried by row slice 0).
        let squares = input.statistics.map { Imatrix.Entry(inputSquaresOf: $0.hessian) }
        input.statistics = nil
        var out: [QuantizedLinear] = []
        for name in input.linears {
            let t0 = DispatchTime.now()
            // Only this group's weights are read (a 7B block is 0.8 GB in Float32).
            let whole = try ctx.linearWeight(block: input.block, name)
            let tensor = LlamaTensorNames.linear(name, block: input.block, naming: ctx.view.naming)
            // This unit's rows (all of them unless the job slices rows); errors name the slice.
            let rows = units.rows(part: part, of: whole.rows)
            let w = units.parts == 1 ? whole : whole.rows(rows)
            let label = units.parts == 1 ? tensor : "\(tensor) rows \(rows.lowerBound)..<\(rows.upperBound)"
            let recipe = ctx.spec.recipe(
                linear: name, block: input.block, blocks: ctx.view.config.layerCount, columns: w.cols)
            // AWQ: the quantizer takes W diag(s) (clipped) and the scaled input's Hessian.
            let (wq, hq) =
                awq.map { a in (units.parts == 1 ? a.weights[name]! : a.weights[name]!.rows(rows), a.hessian) }
                ?? (w, h)
            let q: QuantizedWeight
            var loss = 0.0
            var dead = 0
            if ctx.spec.method.usesGPTQ {
                guard let hq else {
                    throw JobError(
                        "reconstruct(\(input.block),\(input.group)): GPTQ needs the group's merged statistics")
                }
                let r = try GPTQ.quantize(wq, hessian: hq, recipe: recipe, name: label)
                q = r.weight
                loss = r.totalLoss
                dead = r.deadColumns.count
            } else {
                q = try RTN.quantize(
                    wq, recipe: recipe,
                    importance: try rtnImportance(
                        ctx, recipe, linear: name, block: input.block, squares, scaled: awq == nil ? nil : hq),
                    name: label)
            }
            var err = 0.0
            var energy = 0.0
            if let h, ctx.spec.resolvedErrorReport {
                // Against the original weight and input: the effective weight is Q diag(1/s).
                let effective = awq?.scales.map { AWQ.unscaleColumns(q.dequantized, by: $0) } ?? q.dequantized
                err = OutputError.fromHessian(weight: w, quantized: effective, hessian: h) * perToken
                energy = OutputError.energy(weight: w, hessian: h) * perToken
            }
            var ql = QuantizedLinear(
                linear: name, block: input.block, tensor: tensor, weight: q.stored, outputError: err,
                relativeError: energy > 0 ? err / energy : 0, gptqLoss: loss, deadColumns: dead,
                seconds: seconds(since: t0), outputEnergy: energy,
                foldedInputOp: name == input.linears.first ? awq?.folded : nil,
                inputSquares: ctx.spec.imatrixOut != nil && part == 0 ? squares : nil,
                migratedScales: smoothMigration(ctx, block: input.block, linear: name, awq))
            // The payload must stand for exactly what the quantizer produced.
            guard ql.weight.dequantized().data.elementsEqual(q.dequantized.data, by: { $0.bitPattern == $1.bitPattern })
            else {
                throw JobError("\(label): codes and parameters do not reproduce the quantizer's weights")
            }
            if ctx.spec.measureTypes, let h {
                ql.candidates = try TypeSensitivity.errors(
                    ctx.spec, weight: w, hessian: h, perToken: perToken, name: label)
            }
            out.append(ql)
        }
        return ReconstructResult(block: input.block, group: input.group, linears: out)
    }

    /// AWQ's scales, fold and clip for reconstruct input's group (`AWQGroup`).
    static func awqGroup(_ ctx: JobContext, _ input: ReconstructInput, hessian h: Matrix?) throws -> AWQGroup {
        let g = ReconstructUnits(spec: ctx.spec).group(input.group)
        let name = input.statistics?.name ?? groupName(input.block, g)
        guard let h, let stats = input.statistics else {
            throw JobError("reconstruct(\(input.block),\(input.group)): AWQ needs the merged statistics of \(name)")
        }
        guard let meanAbs = stats.channels.meanAbs else {
            throw JobError(
                "reconstruct(\(input.block),\(input.group)): the statistics of \(name) carry no mean |x| (collected "
                    + "by a version that did not gather it, or no tokens); AWQ needs it: collect block \(input.block) again"
            )
        }
        return try AWQGroup.prepare(ctx, block: input.block, groupLinears: groups[g], hessian: h, meanAbs: meanAbs)
    }

    /// propagate(b, s): runs block b with its quantized (dequantized) weights over shard
    /// s, and AWQ's folded norms, so the next block sees what the file holds; the outputs
    /// become the shard's input of block b+1.
    public static func propagate(
        _ ctx: JobContext, store: ActivationStore, block b: Int, shard s: Int,
        quantized: [QuantizedLinear]
    ) throws -> PropagateResult {
        var blk = try ctx.block(b)
        // SmoothQuant's scales migrated from down into up, as the file holds them.
        for q in try ScaleMigration.apply(quantized.filter { $0.block == b }) {
            try blk.setWeight(q.linear, q.weight.dequantized())
            if let f = q.foldedInputOp { try blk.setNorm(f.name, f.values, naming: ctx.view.naming) }
        }
        let inputs = try input(ctx, store: store, block: b, shard: s)
        let outputs = inputs.map { blk.forward(hidden: $0, context: ForwardContext()) }
        try store.put(shard: s, ShardActivations(block: b + 1, windows: outputs))
        return PropagateResult(block: b, shard: s, tokens: inputs.reduce(0) { $0 + $1.rows })
    }
}

func seconds(since t0: DispatchTime) -> Double {
    Double(DispatchTime.now().uptimeNanoseconds - t0.uptimeNanoseconds) / 1e9
}
