import Foundation
import Tensor

/// The hidden states of one shard entering block `block`: one [seqlen, hidden] matrix
/// per calibration window (windows never mix: attention is causal within a window).
public struct ShardActivations: Sendable, Equatable {
    public var block: Int
    public var windows: [Matrix]

    public init(block: Int, windows: [Matrix]) { self.block = block; self.windows = windows }
}

/// Where a worker keeps the activations of the shards it owns. They never travel
/// through the coordinator; a lost shard is rebuilt from its tokens (lineage).
public protocol ActivationStore: AnyObject, Sendable {
    func get(shard: Int) -> ShardActivations?
    func put(shard: Int, _ activations: ShardActivations)
    func remove(shard: Int)
}

/// In-process store (the local executor's; a worker's until a spilling store exists).
public final class InMemoryActivationStore: ActivationStore, @unchecked Sendable {
    private var shards: [Int: ShardActivations] = [:]
    private let lock = NSLock()

    public init() {}

    public func get(shard: Int) -> ShardActivations? { lock.withLock { shards[shard] } }
    public func put(shard: Int, _ a: ShardActivations) { lock.withLock { shards[shard] = a } }
    public func remove(shard: Int) { _ = lock.withLock { shards.removeValue(forKey: shard) } }
    public var shardCount: Int { lock.withLock { shards.count } }
}
