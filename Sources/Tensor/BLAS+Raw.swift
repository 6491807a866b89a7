import CBLAS

/// Pointer-level BLAS wrappers with explicit leading dimensions, for algorithms that
/// work on sub-blocks of a matrix in place (GPTQ's lazy block updates) without copying
/// the block out first. Row-major throughout, like the `Matrix` wrappers.
extension BLAS {
    /// C = alpha * op(A) * op(B) + beta * C on raw row-major storage.
    /// op(A) is m x k, op(B) is k x n, C is m x n with leading dimension ldc.
    public static func gemm(
        transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float,
        a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
        beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int
    ) {
        precondition(m >= 0 && n >= 0 && k >= 0, "gemm: negative dimension")
        if m == 0 || n == 0 { return }
        precondition(k > 0, "gemm: raw form needs k >= 1")
        precondition(
            lda >= max(1, transA ? m : k) && ldb >= max(1, transB ? k : n) && ldc >= max(1, n),
            "gemm: leading dimension too small")
        cblas_sgemm(
            CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
            Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    }

    /// A += alpha * x y^T on raw row-major storage: A is m x n with leading dimension lda,
    /// x has m elements, y has n (a rank-1 update, BLAS-2 sger).
    public static func ger(
        m: Int, n: Int, alpha: Float, x: UnsafePointer<Float>, incX: Int = 1,
        y: UnsafePointer<Float>, incY: Int = 1, a: UnsafeMutablePointer<Float>, lda: Int
    ) {
        precondition(m >= 0 && n >= 0, "ger: negative dimension")
        if m == 0 || n == 0 { return }
        precondition(lda >= max(1, n), "ger: leading dimension too small")
        cblas_sger(CblasRowMajor, Int32(m), Int32(n), alpha, x, Int32(incX), y, Int32(incY), a, Int32(lda))
    }

    /// y += alpha * x over `count` elements with strides.
    public static func axpy(
        count: Int, alpha: Float, x: UnsafePointer<Float>, incX: Int = 1,
        y: UnsafeMutablePointer<Float>, incY: Int = 1
    ) {
        if count <= 0 { return }
        cblas_saxpy(Int32(count), alpha, x, Int32(incX), y, Int32(incY))
    }

    /// Copies `count` floats with strides (a strided gather or scatter).
    public static func copy(
        count: Int, x: UnsafePointer<Float>, incX: Int = 1,
        y: UnsafeMutablePointer<Float>, incY: Int = 1
    ) {
        if count <= 0 { return }
        cblas_scopy(Int32(count), x, Int32(incX), y, Int32(incY))
    }

    /// Dot product of two Float32 vectors accumulated in Float64 (cblas_dsdot).
    public static func dotDouble(_ x: [Float], _ y: [Float]) -> Double {
        precondition(x.count == y.count, "dotDouble: lengths \(x.count) and \(y.count) differ")
        if x.isEmpty { return 0 }
        return x.withUnsafeBufferPointer { px in
            y.withUnsafeBufferPointer { py in
                cblas_dsdot(Int32(x.count), px.baseAddress, 1, py.baseAddress, 1)
            }
        }
    }

    /// out = a - b elementwise, through a copy and saxpy.
    public static func difference(_ a: Matrix, _ b: Matrix) -> Matrix {
        precondition(a.rows == b.rows && a.cols == b.cols, "difference: shapes \(a.shape) and \(b.shape) differ")
        var out = a
        axpy(-1, b.data, &out.data)
        return out
    }
}

extension BLAS {
    /// b = a^T on raw row-major storage: a is rows x cols (leading dimension lda), b is
    /// cols x rows (leading dimension ldb).
    public static func transpose(
        rows: Int, cols: Int, a: UnsafePointer<Float>, lda: Int, b: UnsafeMutablePointer<Float>, ldb: Int
    ) {
        if rows == 0 || cols == 0 { return }
        precondition(lda >= cols && ldb >= rows, "transpose: leading dimension too small")
        cblas_somatcopy(CblasRowMajor, CblasTrans, Int32(rows), Int32(cols), 1, a, Int32(lda), b, Int32(ldb))
    }
}

/// LAPACK on raw column-major storage, straight to the Fortran routines (LAPACKE's `_work`
/// entry points): no layout transposes, no NaN scans, no temporary copies. A symmetric
/// row-major matrix is the same matrix read column-major.
extension LAPACK {
    /// In-place Cholesky A = U^T U of an n x n SPD matrix, column-major with leading dimension n:
    /// reads the upper triangle, writes U there; the strict lower triangle is left untouched.
    public static func choleskyUpper(columnMajor a: UnsafeMutablePointer<Float>, n: Int) throws {
        let info = LAPACKE_spotrf_work(LAPACK_COL_MAJOR, Int8(UInt8(ascii: "U")), Int32(n), a, Int32(n))
        if info != 0 { throw LAPACKError.notPositiveDefinite(routine: "spotrf", info: info) }
    }

    /// In place, from the upper Cholesky factor U (as `choleskyUpper` leaves it): the upper
    /// triangle of (U^T U)^-1 (spotri); the strict lower triangle is left untouched.
    public static func inverseFromCholeskyUpper(columnMajor a: UnsafeMutablePointer<Float>, n: Int) throws {
        let info = LAPACKE_spotri_work(LAPACK_COL_MAJOR, Int8(UInt8(ascii: "U")), Int32(n), a, Int32(n))
        if info != 0 { throw LAPACKError.notPositiveDefinite(routine: "spotri", info: info) }
    }
}
