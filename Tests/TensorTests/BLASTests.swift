import Tensor
import XCTest

final class BLASTests: XCTestCase {
    func testGemmMatchesDefinition() {
        let a = Matrix(rows: 2, cols: 3, data: [1, 2, 3, 4, 5, 6])
        let b = Matrix(rows: 3, cols: 2, data: [7, 8, 9, 10, 11, 12])
        XCTAssertEqual(BLAS.matmul(a, b).data, [58, 64, 139, 154])
        XCTAssertEqual(BLAS.matmul(a, b.transposed(), transB: true).data, [58, 64, 139, 154])
        XCTAssertEqual(BLAS.linear(a, b.transposed()).data, [58, 64, 139, 154])
    }

    func testSyrkIsGram() {
        let x = Matrix(rows: 3, cols: 2, data: [1, 2, 3, 4, 5, 6])
        var h = Matrix(rows: 2, cols: 2)
        BLAS.syrkTransposed(x, into: &h)
        BLAS.symmetrize(&h)
        XCTAssertEqual(h.data, [35, 44, 44, 56])
    }

    func testCholeskyInverse() throws {
        var a = Matrix(rows: 2, cols: 2, data: [4, 2, 2, 3])
        try LAPACK.inverseSPD(&a)
        let expected: [Float] = [3.0 / 8, -2.0 / 8, -2.0 / 8, 4.0 / 8]
        for (x, y) in zip(a.data, expected) { XCTAssertEqual(x, y, accuracy: 1e-6) }
        var bad = Matrix(rows: 2, cols: 2, data: [1, 2, 2, 1])
        XCTAssertThrowsError(try LAPACK.inverseSPD(&bad))
    }

    func testHalfConversions() {
        XCTAssertEqual(HalfConversion.f16ToF32(0x3C00), 1)
        XCTAssertEqual(HalfConversion.f32ToF16(-2), 0xC000)
        XCTAssertEqual(HalfConversion.bf16ToF32(0x3F80), 1)
        XCTAssertEqual(HalfConversion.f32ToBF16(1.00390625), 0x3F80)  // tie rounds to even
    }
}
