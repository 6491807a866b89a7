import Foundation
import ModelIO
import Tensor

// Shared vocabulary of the Models layer: blocks as modules, the linear-input hook
// the calibration layer gathers statistics through, the forward context and the
// errors. Architecture families live in their own files (Llama*.swift, Bert.swift).

/// One input matrix of one or more linear layers of a block, as the block saw it.
/// Linears that share an input (q, k, v; gate, up) are reported once, together.
public struct LinearInput {
    /// Block index in the model.
    public var block: Int
    /// The linears consuming `input`, llama.cpp-style names: "attn_q", "attn_k", "attn_v",
    /// "attn_output", "ffn_gate", "ffn_up", "ffn_down".
    public var linears: [String]
    /// [tokens, in_features] of those linears.
    public var input: Matrix

    public init(block: Int, linears: [String], input: Matrix) {
        self.block = block
        self.linears = linears
        self.input = input
    }
}

/// Called with the input of every linear (group) during a block's forward pass.
public typealias LinearHook = (LinearInput) -> Void

/// Per-call state of a forward pass over one sequence.
public struct ForwardContext {
    /// Position of the first row (RoPE / position embeddings); 0 for a fresh sequence.
    public var positionOffset: Int
    /// Encoder models: which key positions may be attended (false = padding). nil: all.
    public var keyMask: [Bool]?
    /// Sees every linear's input.
    public var hook: LinearHook?
    /// false: the caller wants only what the hook sees (statistics), so a block may skip
    /// work after its last hook (the Llama block skips ffn_down) and return a partial result.
    public var outputNeeded: Bool

    public init(positionOffset: Int = 0, keyMask: [Bool]? = nil, hook: LinearHook? = nil, outputNeeded: Bool = true) {
        self.positionOffset = positionOffset
        self.keyMask = keyMask
        self.hook = hook
        self.outputNeeded = outputNeeded
    }
}

/// A transformer block as a module: its linear weights can be read and replaced
/// (e.g. by quantized-then-dequantized weights), and it runs over [tokens, hidden].
public protocol TransformerBlock: Sendable {
    var index: Int { get }
    /// Every linear of the block, in execution order.
    var linearNames: [String] { get }
    /// Linears that share one input (and so one Hessian), in execution order.
    var linearGroups: [[String]] { get }
    /// Weight [out, in] of a linear.
    func weight(_ linear: String) -> Matrix?
    /// Replaces a linear's weight; the shape must stay the same.
    mutating func setWeight(_ linear: String, _ weight: Matrix) throws
    /// hidden [tokens, hidden] -> [tokens, hidden].
    func forward(hidden: Matrix, context: ForwardContext) -> Matrix
}

/// A model made of transformer blocks, each available as a module.
public protocol TransformerModel: AnyObject, Sendable {
    var config: ModelConfig { get }
    var blockCount: Int { get }
    /// Block i as a module (weights read on demand if the model is lazy).
    func anyBlock(_ i: Int) throws -> any TransformerBlock
}

/// A decoder-only language model, usable block by block: embed -> blocks -> final norm -> head.
public protocol CausalLM: TransformerModel {
    /// Token ids -> [tokens, hidden] (the residual stream entering block 0).
    func embed(_ ids: [Int32]) -> Matrix
    /// Runs block i (loading its weights if the model is lazy).
    func runBlock(_ i: Int, hidden: Matrix, context: ForwardContext) throws -> Matrix
    /// The final norm.
    func normalize(_ hidden: Matrix) -> Matrix
    /// Output head: normalized hidden [tokens, hidden] -> logits [tokens, vocab].
    func logits(_ normed: Matrix) -> Matrix
}

extension CausalLM {
    /// Full forward pass of one sequence: logits [tokens, vocab]. `observe` sees the
    /// residual stream entering each block (index k) and, with k == blockCount, the
    /// output of the final norm.
    public func forward(
        ids: [Int32], positionOffset: Int = 0, hook: LinearHook? = nil,
        observe: ((Int, Matrix) -> Void)? = nil
    ) throws -> Matrix {
        let normed = try finalHidden(ids: ids, positionOffset: positionOffset, hook: hook, observe: observe)
        return logits(normed)
    }

    /// Forward pass up to and including the final norm: [tokens, hidden].
    public func finalHidden(
        ids: [Int32], positionOffset: Int = 0, hook: LinearHook? = nil,
        observe: ((Int, Matrix) -> Void)? = nil
    ) throws -> Matrix {
        var h = embed(ids)
        let ctx = ForwardContext(positionOffset: positionOffset, hook: hook)
        for i in 0..<blockCount {
            observe?(i, h)
            h = try runBlock(i, hidden: h, context: ctx)
        }
        let normed = normalize(h)
        observe?(blockCount, normed)
        return normed
    }
}

/// Errors from building a model from a file; each names the file and the tensor or field.
/// The same error as reading the file: one type, whichever layer found the problem.
public typealias ModelError = ModelIOError

extension ModelError {
    /// A linear name a Llama block does not have (callers pass the llama.cpp names).
    static func missingLinear(_ name: String, block: Int) -> ModelError {
        ModelError(
            file: "block \(block)",
            "no linear '\(name)' (attn_q, attn_k, attn_v, attn_output, ffn_gate, ffn_up, ffn_down)")
    }

    static func unsupported(_ file: String, _ arch: String, hint: String = "") -> ModelError {
        ModelError(file: file, "architecture '\(arch)' is not supported (supported: \(Architecture.list()))" + hint)
    }
}
