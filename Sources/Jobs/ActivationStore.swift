import Foundation
import ModelIO
import Synchronization
import Tensor

/// The hidden states of one shard entering block `block`: one [seqlen, hidden] matrix
/// per calibration window (windows never mix: attention is causal within a window).
public struct ShardActivations: Sendable, Equatable {
    public var block: Int
    public var windows: [Matrix]

    public init(block: Int, windows: [Matrix]) {
        self.block = block
        self.windows = windows
    }
}

/// Where a worker keeps the activations of the shards it owns. They never travel
/// through the coordinator; a lost shard is rebuilt from its tokens (lineage).
public protocol ActivationStore: AnyObject, Sendable {
    func get(shard: Int) throws -> ShardActivations?
    func put(shard: Int, _ activations: ShardActivations) throws
    func remove(shard: Int)
}

/// In-process store (the local executor's default; a worker's).
public final class InMemoryActivationStore: ActivationStore {
    private let shards = Mutex<[Int: ShardActivations]>([:])

    public init() {}

    public func get(shard: Int) -> ShardActivations? { shards.withLock { $0[shard] } }
    public func put(shard: Int, _ a: ShardActivations) { shards.withLock { $0[shard] = a } }
    public func remove(shard: Int) { _ = shards.withLock { $0.removeValue(forKey: shard) } }
    public var shardCount: Int { shards.withLock { $0.count } }
}

/// Spills every shard's activations to its own file in `directory`, so only the
/// shards being worked on are in memory (`kiln run --spill DIR`): calibration sets
/// whose activations exceed RAM. Files are written to a temporary name and renamed;
/// reading checks every count against the file's size and names the file on damage.
///
/// Layout (little-endian): "KACT", u32 version 1, i64 block, u32 windows, then per
/// window u32 rows, u32 cols; then the windows' Float32 data in order.
public final class FileActivationStore: ActivationStore {
    public let directory: URL
    private static let magic = Data("KACT".utf8)

    public init(directory: URL) throws {
        self.directory = directory
        do {
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        } catch {
            throw JobError(
                "activation spill directory \(directory.path) cannot be created: \(error.localizedDescription)")
        }
    }

    func url(_ shard: Int) -> URL { directory.appendingPathComponent("shard-\(shard).act") }

    public func put(shard: Int, _ a: ShardActivations) throws {
        var d = Data()
        d.append(Self.magic)
        func u32(_ v: Int) { withUnsafeBytes(of: UInt32(v).littleEndian) { d.append(contentsOf: $0) } }
        u32(1)
        withUnsafeBytes(of: Int64(a.block).littleEndian) { d.append(contentsOf: $0) }
        u32(a.windows.count)
        for w in a.windows {
            u32(w.rows)
            u32(w.cols)
        }
        for w in a.windows { w.data.withUnsafeBytes { d.append(contentsOf: $0) } }
        let tmp = directory.appendingPathComponent(".tmp-\(shard)-\(UUID().uuidString)")
        do {
            try d.write(to: tmp)
            guard rename(tmp.path, url(shard).path) == 0 else {
                throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO)
            }
        } catch {
            try? FileManager.default.removeItem(at: tmp)
            throw JobError(
                "cannot spill the activations of shard \(shard) to \(url(shard).path): \(error.localizedDescription)")
        }
    }

    public func get(shard: Int) throws -> ShardActivations? {
        let u = url(shard)
        guard FileManager.default.fileExists(atPath: u.path) else { return nil }
        let d: Data
        do { d = try Data(contentsOf: u, options: .alwaysMapped) } catch {
            throw JobError("activation file \(u.path) cannot be read: \(error.localizedDescription)")
        }
        func bad(_ why: String) -> JobError { JobError("activation file \(u.path) is damaged: \(why)") }
        do {
            return try d.withUnsafeBytes { raw in
                var c = ByteCursor(raw, file: u.path)
                guard c.remaining >= 4, raw.prefix(4).elementsEqual(Self.magic) else {
                    throw bad("not an activation file (magic)")
                }
                _ = try c.take(4, "magic")
                let version = try c.u32("version")
                guard version == 1 else { throw bad("version \(version), expected 1") }
                let block = Int64(bitPattern: try c.u64("block"))
                let count = Int(try c.u32("window count"))
                guard block >= 0, count <= c.remaining / 8 else { throw bad("block \(block), \(count) windows") }
                var shapes: [(Int, Int)] = []
                var total = 0
                for w in 0..<count {
                    let (r, cols) = (Int(try c.u32("rows of window \(w)")), Int(try c.u32("columns of window \(w)")))
                    let (n, o1) = r.multipliedReportingOverflow(by: cols)
                    let (t, o2) = total.addingReportingOverflow(n)
                    guard !o1, !o2 else { throw bad("window shape \(r)x\(cols) overflows") }
                    shapes.append((r, cols))
                    total = t
                }
                guard total <= c.remaining / 4, total * 4 == c.remaining else {
                    throw bad("\(c.remaining) data bytes for \(total) floats")
                }
                let windows = try shapes.map { r, cols in
                    let at = try c.take(r * cols * 4, "window data")
                    let data = [Float](unsafeUninitializedCapacity: r * cols) { dst, n in
                        UnsafeMutableRawBufferPointer(dst).copyMemory(
                            from: UnsafeRawBufferPointer(rebasing: raw[at..<(at + r * cols * 4)]))
                        n = r * cols
                    }
                    return Matrix(rows: r, cols: cols, data: data)
                }
                return ShardActivations(block: Int(block), windows: windows)
            }
        } catch let e as JobError {
            throw e
        } catch {
            throw bad("\(error)")
        }
    }

    public func remove(shard: Int) { try? FileManager.default.removeItem(at: url(shard)) }
}
