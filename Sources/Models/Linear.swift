import Tensor

/// The linear layers of a transformer block: the one map of a linear's names, the group
/// of linears that share its input (and so one Hessian) and its place in reports.
/// Declaration order is the forward pass's order, which is also the display order.
public enum Linear: String, CaseIterable, Sendable {
    case attnQ = "attn_q"
    case attnK = "attn_k"
    case attnV = "attn_v"
    case attnOutput = "attn_output"
    case ffnGate = "ffn_gate"
    case ffnUp = "ffn_up"
    case ffnDown = "ffn_down"

    /// Sharing groups per block: attention q/k/v, attention output, ffn gate/up, ffn down.
    public static let groupCount = 4

    /// llama.cpp's name, as in "blk.N.attn_q.weight" (also the name jobs and reports use).
    public var ggufName: String { rawValue }

    /// The module inside a Llama-family Hugging Face layer ("model.layers.N.<name>.weight").
    public var huggingFaceName: String {
        switch self {
        case .attnQ: return "self_attn.q_proj"
        case .attnK: return "self_attn.k_proj"
        case .attnV: return "self_attn.v_proj"
        case .attnOutput: return "self_attn.o_proj"
        case .ffnGate: return "mlp.gate_proj"
        case .ffnUp: return "mlp.up_proj"
        case .ffnDown: return "mlp.down_proj"
        }
    }

    /// The module inside a BERT Hugging Face layer; nil for ffn_gate, which BERT lacks.
    public var bertHuggingFaceName: String? {
        switch self {
        case .attnQ: return "attention.self.query"
        case .attnK: return "attention.self.key"
        case .attnV: return "attention.self.value"
        case .attnOutput: return "attention.output.dense"
        case .ffnGate: return nil
        case .ffnUp: return "intermediate.dense"
        case .ffnDown: return "output.dense"
        }
    }

    /// The linears of one group read the same input, so they share one Hessian.
    public var sharingGroup: Int {
        switch self {
        case .attnQ, .attnK, .attnV: return 0
        case .attnOutput: return 1
        case .ffnGate, .ffnUp: return 2
        case .ffnDown: return 3
        }
    }

    /// Position in reports (the forward pass's order).
    public var displayOrder: Int { Self.allCases.firstIndex(of: self)! }

    /// Attention's linears (before the ffn norm in a Llama layer).
    public var isAttention: Bool { sharingGroup < 2 }

    /// `linears` split into their sharing groups, in group order, as names.
    public static func groups(_ linears: [Linear]) -> [[String]] {
        (0..<groupCount).map { g in linears.filter { $0.sharingGroup == g }.map(\.rawValue) }
    }
}

/// A block's weights whose linears are fields, addressed by `Linear`.
public protocol LinearWeights: Sendable {
    /// Where the linear lives; nil when the architecture has none (BERT's ffn_gate).
    static func keyPath(_ l: Linear) -> WritableKeyPath<Self, Matrix>?
}

extension LinearWeights {
    /// A linear by its llama.cpp name ("attn_q" ... "ffn_down"); nil for unknown names.
    public subscript(linear name: String) -> Matrix? {
        get { Linear(rawValue: name).flatMap(Self.keyPath).map { self[keyPath: $0] } }
        set {
            guard let m = newValue, let kp = Linear(rawValue: name).flatMap(Self.keyPath) else { return }
            self[keyPath: kp] = m
        }
    }
}

/// A block whose linears are the fields of its `weights`: reading and replacing them by
/// name works the same for every architecture.
public protocol LinearWeightsBlock: TransformerBlock {
    associatedtype Weights: LinearWeights
    static var linearNames: [String] { get }
    static var linearGroups: [[String]] { get }
    var weights: Weights { get set }
}

extension LinearWeightsBlock {
    public var linearNames: [String] { Self.linearNames }
    public var linearGroups: [[String]] { Self.linearGroups }
    public func weight(_ linear: String) -> Matrix? { weights[linear: linear] }

    public mutating func setWeight(_ linear: String, _ w: Matrix) throws {
        guard let old = weights[linear: linear] else {
            throw ModelError(
                file: "block \(index)", "no linear named '\(linear)' (have \(Self.linearNames.joined(separator: ", ")))"
            )
        }
        guard old.rows == w.rows && old.cols == w.cols else {
            throw ModelError(
                file: "block \(index)",
                "'\(linear)' is [\(old.rows), \(old.cols)], replacement is [\(w.rows), \(w.cols)]")
        }
        weights[linear: linear] = w
    }
}

/// Computes a block's linears in place of Float32 BLAS: x [tokens, in] -> x W^T [tokens, out]
/// with the kernel's own weights (e.g. int8 codes and scales for W8A8, in Jobs, which links
/// oneDNN; Models does not). nil: this linear runs in Float32 as usual.
public protocol LinearKernel: Sendable {
    func apply(_ linear: Linear, block: Int, _ x: Matrix) -> Matrix?
}
