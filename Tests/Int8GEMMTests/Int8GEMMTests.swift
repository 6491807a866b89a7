import CDNNL
import Int8GEMM
import XCTest

/// Small deterministic generator (SplitMix64), so failures reproduce.
struct SplitMix: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Standard normal (Box-Muller).
    mutating func gaussian() -> Float {
        let u1 = Double.random(in: Double.ulpOfOne..<1, using: &self)
        let u2 = Double.random(in: 0..<1, using: &self)
        return Float((-2 * log(u1)).squareRoot() * cos(2 * .pi * u2))
    }
}

/// C = A * B^T in plain integer arithmetic: the reference the oneDNN result must equal.
func referenceProduct(_ a: [Int8], _ b: [Int8], m: Int, n: Int, k: Int) -> [Int32] {
    var c = [Int32](repeating: 0, count: m * n)
    for i in 0..<m {
        for j in 0..<n {
            var s: Int32 = 0
            for p in 0..<k { s += Int32(a[i * k + p]) * Int32(b[j * k + p]) }
            c[i * n + j] = s
        }
    }
    return c
}

final class Int8GEMMTests: XCTestCase {
    func randomCodes(_ count: Int, _ g: inout SplitMix, full: Bool = true) -> [Int8] {
        (0..<count).map { _ in full ? Int8.random(in: .min ... .max, using: &g) : Int8.random(in: -127...127, using: &g)
        }
    }

    func testMatchesIntegerReferenceExactly() throws {
        var g = SplitMix(state: 1)
        // Odd sizes, M = 1 (a single token), and the model-like K = 576, N = 1536.
        let shapes = [(1, 1, 1), (1, 1536, 576), (3, 5, 7), (17, 33, 65), (64, 96, 576), (2, 576, 1536), (5, 1, 129)]
        for (m, n, k) in shapes {
            let a = randomCodes(m * k, &g)
            let b = randomCodes(n * k, &g)
            let c = try Int8GEMM.multiply(a: a, b: b, m: m, n: n, k: k)
            XCTAssertEqual(c, referenceProduct(a, b, m: m, n: n, k: k), "\(m)x\(n)x\(k)")
        }
    }

    func testExtremeCodesDoNotSaturate() throws {
        // All -128 (the VNNI u8*s8 path shifts s8 sources by 128 and compensates; the
        // compensation must be exact at the extremes, and no 16-bit intermediate may saturate).
        let (m, n, k) = (4, 8, 1024)
        for (x, y) in [(Int8.min, Int8.min), (Int8.max, Int8.min), (Int8.max, Int8.max)] {
            let c = try Int8GEMM.multiply(
                a: [Int8](repeating: x, count: m * k), b: [Int8](repeating: y, count: n * k), m: m, n: n, k: k)
            XCTAssertEqual(Set(c), [Int32(k) * Int32(x) * Int32(y)], "\(x) * \(y)")
        }
    }

    func testEmptySizesGiveZeros() throws {
        XCTAssertEqual(try Int8GEMM.multiply(a: [], b: [], m: 0, n: 3, k: 0), [])
        XCTAssertEqual(try Int8GEMM.multiply(a: [], b: [], m: 2, n: 3, k: 0), [Int32](repeating: 0, count: 6))
    }

    func testRepeatedShapeReusesThePrimitive() throws {
        let gemm = try Int8GEMM()
        var g = SplitMix(state: 2)
        for _ in 0..<3 {
            let a = randomCodes(6 * 40, &g)
            let b = randomCodes(10 * 40, &g)
            XCTAssertEqual(
                try gemm.multiply(a: a, b: b, m: 6, n: 10, k: 40), referenceProduct(a, b, m: 6, n: 10, k: 40))
        }
        XCTAssertFalse(try gemm.implementation(m: 6, n: 10, k: 40).isEmpty)
    }

    func testErrorsNameTheCall() {
        let e = DNNLError(call: "dnnl_matmul_desc_init", status: "invalid_arguments")
        XCTAssertEqual("\(e)", "oneDNN dnnl_matmul_desc_init failed: invalid_arguments")
        XCTAssertThrowsError(try check(dnnl_invalid_arguments, "dnnl_memory_create")) { error in
            XCTAssertEqual((error as? DNNLError)?.call, "dnnl_memory_create")
            XCTAssertEqual((error as? DNNLError)?.status, "invalid_arguments")
        }
    }
}
