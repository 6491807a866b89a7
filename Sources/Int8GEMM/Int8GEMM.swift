import CDNNL
import Foundation

/// A failed oneDNN call: which call, and oneDNN's status name.
public struct DNNLError: Error, CustomStringConvertible, Sendable {
    public let call: String
    public let status: String

    public init(call: String, status: String) {
        self.call = call
        self.status = status
    }

    public var description: String { "oneDNN \(call) failed: \(status)" }
}

/// Throws `DNNLError` naming `call` unless oneDNN returned success.
public func check(_ status: dnnl_status_t, _ call: String) throws {
    guard status == dnnl_success else {
        throw DNNLError(call: call, status: String(cString: dnnl_status2str(status)))
    }
}

/// Exact int8 x int8 -> int32 matrix products through oneDNN's matmul primitive
/// (VNNI kernels where the CPU has them). C [M, N] = A [M, K] * B^T, with B given as
/// [N, K] row-major, the layout of a linear layer's weight [out, in]; oneDNN reads B
/// as its [K, N] weights in the transposed ("ba") layout, so nothing is copied here.
///
/// One engine and one stream live as long as the object; primitives are created once
/// per shape (creating one costs far more than running a small one). Calls are
/// serialized by a lock: the stream and the cache are shared, and each product
/// already uses oneDNN's own threads (OpenMP: OMP_NUM_THREADS, or `threads`).
public final class Int8GEMM: @unchecked Sendable {
    private let engine: dnnl_engine_t
    private let stream: dnnl_stream_t
    private let lock = NSLock()
    private var primitives: [Shape: dnnl_primitive_t] = [:]
    private var threadCount: Int?

    struct Shape: Hashable {
        let m: Int
        let n: Int
        let k: Int
        /// oneDNN plans a primitive's work split for the thread count current at creation.
        var threads = 0
    }

    /// OpenMP threads for this object's products; nil leaves OpenMP's default (OMP_NUM_THREADS,
    /// else the core count). OpenMP's setting belongs to the calling thread, so it is applied
    /// on whichever thread runs each product.
    public var threads: Int? {
        get { lock.withLock { threadCount } }
        set { lock.withLock { threadCount = newValue.map { max(1, $0) } } }
    }

    public init() throws {
        var e: dnnl_engine_t?
        try check(dnnl_engine_create(&e, dnnl_cpu, 0), "dnnl_engine_create")
        var s: dnnl_stream_t?
        let status = dnnl_stream_create(&s, e, dnnl_stream_default_flags.rawValue)
        if status != dnnl_success { dnnl_engine_destroy(e) }
        try check(status, "dnnl_stream_create")
        engine = e!
        stream = s!
    }

    deinit {
        for p in primitives.values { dnnl_primitive_destroy(p) }
        dnnl_stream_destroy(stream)
        dnnl_engine_destroy(engine)
    }

    /// The process-wide instance behind the static `multiply` (created on first use).
    public static func shared() throws -> Int8GEMM { try sharedInstance.get() }

    private static let sharedInstance = Result { try Int8GEMM() }

    /// `a` [m, k] times `b`^T for `b` [n, k] (both row-major), exactly, as [m, n] row-major.
    public static func multiply(a: [Int8], b: [Int8], m: Int, n: Int, k: Int) throws -> [Int32] {
        try shared().multiply(a: a, b: b, m: m, n: n, k: k)
    }

    /// `a` [m, k] times `b`^T for `b` [n, k] (both row-major), exactly, as [m, n] row-major.
    /// Sums of k products of at most 128 * 128 fit in Int32 for k below 131072.
    public func multiply(a: [Int8], b: [Int8], m: Int, n: Int, k: Int) throws -> [Int32] {
        precondition(m >= 0 && n >= 0 && k >= 0, "Int8GEMM: negative size \(m)x\(n)x\(k)")
        precondition(a.count == m * k, "Int8GEMM: a has \(a.count) values, expected \(m)x\(k)")
        precondition(b.count == n * k, "Int8GEMM: b has \(b.count) values, expected \(n)x\(k)")
        precondition(k < 131_072, "Int8GEMM: k \(k) could overflow Int32 sums")
        var c = [Int32](repeating: 0, count: m * n)
        if m == 0 || n == 0 || k == 0 { return c }
        try a.withUnsafeBufferPointer { pa in
            try b.withUnsafeBufferPointer { pb in
                try c.withUnsafeMutableBufferPointer { pc in
                    try run(
                        Shape(m: m, n: n, k: k), UnsafeMutableRawPointer(mutating: pa.baseAddress!),
                        UnsafeMutableRawPointer(mutating: pb.baseAddress!), UnsafeMutableRawPointer(pc.baseAddress!))
                }
            }
        }
        return c
    }

    private func run(
        _ s: Shape, _ a: UnsafeMutableRawPointer, _ b: UnsafeMutableRawPointer, _ c: UnsafeMutableRawPointer
    )
        throws
    {
        lock.lock()
        defer { lock.unlock() }
        let s = applyThreads(s)
        let prim = try primitive(s)
        let (srcMD, weightsMD, dstMD) = try descriptors(s)
        var memories: [dnnl_memory_t] = []
        defer { for mem in memories { dnnl_memory_destroy(mem) } }
        func memory(_ md: dnnl_memory_desc_t, _ handle: UnsafeMutableRawPointer) throws -> dnnl_memory_t {
            var md = md
            var mem: dnnl_memory_t?
            try check(dnnl_memory_create(&mem, &md, engine, handle), "dnnl_memory_create")
            memories.append(mem!)
            return mem!
        }
        var args = [
            dnnl_exec_arg_t(arg: DNNL_ARG_SRC, memory: try memory(srcMD, a)),
            dnnl_exec_arg_t(arg: DNNL_ARG_WEIGHTS, memory: try memory(weightsMD, b)),
            dnnl_exec_arg_t(arg: DNNL_ARG_DST, memory: try memory(dstMD, c)),
        ]
        try check(dnnl_primitive_execute(prim, stream, Int32(args.count), &args), "dnnl_primitive_execute")
        try check(dnnl_stream_wait(stream), "dnnl_stream_wait")
    }

    /// Sets the calling thread's OpenMP thread count (when `threads` is set) and keys the shape by it.
    private func applyThreads(_ s: Shape) -> Shape {
        guard let t = threadCount, let setThreads = OpenMP.setNumThreads else { return s }
        setThreads(Int32(t))
        var keyed = s
        keyed.threads = t
        return keyed
    }

    /// src s8 [m, k] row-major, weights s8 [k, n] stored transposed (b [n, k] row-major), dst s32 [m, n].
    private func descriptors(_ s: Shape) throws -> (dnnl_memory_desc_t, dnnl_memory_desc_t, dnnl_memory_desc_t) {
        func md(
            _ rows: Int, _ cols: Int, _ type: dnnl_data_type_t, _ tag: dnnl_format_tag_t
        ) throws
            -> dnnl_memory_desc_t
        {
            var d = dnnl_memory_desc_t()
            let dims: [dnnl_dim_t] = [dnnl_dim_t(rows), dnnl_dim_t(cols)]
            try check(dnnl_memory_desc_init_by_tag(&d, 2, dims, type, tag), "dnnl_memory_desc_init_by_tag")
            return d
        }
        return (
            try md(s.m, s.k, dnnl_s8, dnnl_ab), try md(s.k, s.n, dnnl_s8, dnnl_ba), try md(s.m, s.n, dnnl_s32, dnnl_ab)
        )
    }

    private func primitive(_ s: Shape) throws -> dnnl_primitive_t {
        if let p = primitives[s] { return p }
        var (src, weights, dst) = try descriptors(s)
        var desc = dnnl_matmul_desc_t()
        try check(dnnl_matmul_desc_init(&desc, &src, &weights, nil, &dst), "dnnl_matmul_desc_init")
        var pd: dnnl_primitive_desc_t?
        try check(dnnl_primitive_desc_create(&pd, &desc, nil, engine, nil), "dnnl_primitive_desc_create")
        defer { dnnl_primitive_desc_destroy(pd) }
        var p: dnnl_primitive_t?
        try check(dnnl_primitive_create(&p, pd), "dnnl_primitive_create")
        primitives[s] = p!
        return p!
    }

    /// The oneDNN kernel implementation chosen for a shape (e.g. "brg:avx512_core_vnni"), for reports.
    public func implementation(m: Int, n: Int, k: Int) throws -> String {
        lock.lock()
        defer { lock.unlock() }
        let p = try primitive(applyThreads(Shape(m: m, n: n, k: k)))
        var pd: const_dnnl_primitive_desc_t?
        try check(dnnl_primitive_get_primitive_desc(p, &pd), "dnnl_primitive_get_primitive_desc")
        var name: UnsafePointer<CChar>?
        try check(
            dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &name), "dnnl_primitive_desc_query")
        return name.map { String(cString: $0) } ?? "?"
    }
}

/// libgomp's omp_set_num_threads, looked up at run time: libdnnl already loads libgomp, whose
/// development symlink is not on the default linker path.
enum OpenMP {
    typealias SetNumThreads = @convention(c) (Int32) -> Void
    static let setNumThreads: SetNumThreads? = {
        guard let sym = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "omp_set_num_threads") else { return nil }
        return unsafeBitCast(sym, to: SetNumThreads.self)
    }()
}
