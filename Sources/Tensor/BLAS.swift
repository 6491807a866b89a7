import CBLAS
import Synchronization

/// Thin, shape-checked wrappers over OpenBLAS and LAPACKE. All math that a BLAS
/// or LAPACK routine does goes through here.
public enum BLAS {
    /// The OpenBLAS kernel family in use (print it with every benchmark).
    public static var coreName: String { String(cString: openblas_get_corename()) }

    /// OpenBLAS's thread count. Process-wide: it applies to every BLAS call from every
    /// thread, so set it once at start-up (a worker's or `kiln run`'s option), not per task.
    /// Setters are serialized, so concurrent sets leave one of the values, never a torn state.
    public static var threads: Int {
        get { Int(openblas_get_num_threads()) }
        set { threadsLock.withLock { _ in openblas_set_num_threads(Int32(newValue)) } }
    }

    private static let threadsLock = Mutex(())

    /// C = alpha * op(A) * op(B) + beta * C (row-major).
    public static func gemm(
        _ a: Matrix, transA: Bool = false, _ b: Matrix, transB: Bool = false,
        alpha: Float = 1, beta: Float = 0, into c: inout Matrix
    ) {
        let m = transA ? a.cols : a.rows
        let k = transA ? a.rows : a.cols
        let kb = transB ? b.cols : b.rows
        let n = transB ? b.rows : b.cols
        precondition(k == kb, "gemm: inner dimensions \(k) and \(kb) differ")
        if c.rows != m || c.cols != n {
            precondition(beta == 0, "gemm: output is \(c.rows)x\(c.cols), expected \(m)x\(n)")
            c = Matrix(rows: m, cols: n)
        }
        if m == 0 || n == 0 { return }
        if k == 0 {
            if beta == 0 { for i in c.data.indices { c.data[i] = 0 } }
            return
        }
        a.data.withUnsafeBufferPointer { pa in
            b.data.withUnsafeBufferPointer { pb in
                c.data.withUnsafeMutableBufferPointer { pc in
                    cblas_sgemm(
                        CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                        Int32(m), Int32(n), Int32(k), alpha,
                        pa.baseAddress, Int32(a.cols), pb.baseAddress, Int32(b.cols),
                        beta, pc.baseAddress, Int32(n))
                }
            }
        }
    }

    /// Returns op(A) * op(B).
    public static func matmul(_ a: Matrix, transA: Bool = false, _ b: Matrix, transB: Bool = false) -> Matrix {
        var c = Matrix(rows: 0, cols: 0)
        gemm(a, transA: transA, b, transB: transB, into: &c)
        return c
    }

    /// A linear layer: x [tokens, in] times W^T for W [out, in] gives [tokens, out].
    public static func linear(_ x: Matrix, _ w: Matrix) -> Matrix {
        matmul(x, w, transB: true)
    }

    /// Upper triangle of C = alpha * A^T A + beta * C, with A [n, k] giving C [k, k].
    /// Only the upper triangle is written; call `symmetrize` to fill the lower one.
    public static func syrkTransposed(_ a: Matrix, alpha: Float = 1, beta: Float = 0, into c: inout Matrix) {
        precondition(c.rows == a.cols && c.cols == a.cols, "syrk: output must be \(a.cols)x\(a.cols)")
        if a.rows == 0 { return }
        a.data.withUnsafeBufferPointer { pa in
            c.data.withUnsafeMutableBufferPointer { pc in
                cblas_ssyrk(
                    CblasRowMajor, CblasUpper, CblasTrans, Int32(a.cols), Int32(a.rows),
                    alpha, pa.baseAddress, Int32(a.cols), beta, pc.baseAddress, Int32(a.cols))
            }
        }
    }

    /// Copies the upper triangle of a square matrix into its lower triangle.
    public static func symmetrize(_ c: inout Matrix) {
        precondition(c.rows == c.cols)
        let n = c.rows
        c.data.withUnsafeMutableBufferPointer { p in
            for i in 0..<n {
                // column i below the diagonal gets row i right of the diagonal
                if i + 1 < n {
                    cblas_scopy(
                        Int32(n - i - 1), p.baseAddress! + i * n + i + 1, 1, p.baseAddress! + (i + 1) * n + i, Int32(n))
                }
            }
        }
    }

    /// y += alpha * x
    public static func axpy(_ alpha: Float, _ x: [Float], _ y: inout [Float]) {
        precondition(x.count == y.count)
        x.withUnsafeBufferPointer { px in
            y.withUnsafeMutableBufferPointer { py in
                cblas_saxpy(Int32(x.count), alpha, px.baseAddress, 1, py.baseAddress, 1)
            }
        }
    }

    public static func dot(_ x: UnsafePointer<Float>, _ y: UnsafePointer<Float>, count: Int) -> Float {
        cblas_sdot(Int32(count), x, 1, y, 1)
    }

    public static func transpose(_ a: Matrix, into out: inout Matrix) {
        precondition(out.rows == a.cols && out.cols == a.rows)
        if a.count == 0 { return }
        a.data.withUnsafeBufferPointer { pa in
            out.data.withUnsafeMutableBufferPointer { po in
                cblas_somatcopy(
                    CblasRowMajor, CblasTrans, Int32(a.rows), Int32(a.cols), 1,
                    pa.baseAddress, Int32(a.cols), po.baseAddress, Int32(a.rows))
            }
        }
    }
}

public enum LAPACKError: Error, CustomStringConvertible {
    case notPositiveDefinite(routine: String, info: Int32)
    public var description: String {
        switch self {
        case let .notPositiveDefinite(routine, info):
            return "\(routine): matrix is not positive definite (leading minor \(info))"
        }
    }
}

public enum LAPACK {
    /// In-place Cholesky factor of a symmetric positive definite matrix (row-major).
    /// `upper`: A = U^T U, the upper triangle holds U; otherwise A = L L^T.
    public static func cholesky(_ a: inout Matrix, upper: Bool) throws {
        precondition(a.rows == a.cols)
        let n = a.rows
        let info = a.data.withUnsafeMutableBufferPointer { p in
            LAPACKE_spotrf(
                LAPACK_ROW_MAJOR, upper ? Int8(UInt8(ascii: "U")) : Int8(UInt8(ascii: "L")),
                Int32(n), p.baseAddress, Int32(n))
        }
        if info != 0 { throw LAPACKError.notPositiveDefinite(routine: "spotrf", info: info) }
        // Zero the other triangle so the matrix is exactly the factor.
        for i in 0..<n {
            for j in 0..<n where upper ? (j < i) : (j > i) { a.data[i * n + j] = 0 }
        }
    }

    /// In-place inverse of a symmetric positive definite matrix (full matrix returned).
    public static func inverseSPD(_ a: inout Matrix) throws {
        precondition(a.rows == a.cols)
        let n = a.rows
        let uplo = Int8(UInt8(ascii: "U"))
        var info = a.data.withUnsafeMutableBufferPointer { p in
            LAPACKE_spotrf(LAPACK_ROW_MAJOR, uplo, Int32(n), p.baseAddress, Int32(n))
        }
        if info != 0 { throw LAPACKError.notPositiveDefinite(routine: "spotrf", info: info) }
        info = a.data.withUnsafeMutableBufferPointer { p in
            LAPACKE_spotri(LAPACK_ROW_MAJOR, uplo, Int32(n), p.baseAddress, Int32(n))
        }
        if info != 0 { throw LAPACKError.notPositiveDefinite(routine: "spotri", info: info) }
        BLAS.symmetrize(&a)
    }
}
