import Quantization
import Tensor
import TestSupport
import XCTest

final class GGUFGridTests: XCTestCase {
    func rtn(_ values: [Float], _ format: WeightFormat) throws -> QuantizedWeight {
        try RTN.quantize(Matrix(rows: 1, cols: values.count, data: values), recipe: .gguf(format))
    }

    func testQ4_0HandComputedBlock() throws {
        // max magnitude -8 (first), so d = -8 / -8 = 1, id = 1, code = MIN(15, (int8)(x + 8.5)):
        // halves round up (-0.5 -> 8, not 7), large values clamp at 15.
        var x = [Float](repeating: 0, count: 32)
        x[0] = -8
        x[1] = 0.5
        x[2] = -0.5
        x[3] = 7.6
        x[4] = 1.49
        x[5] = -7.2
        x[6] = 8
        let q = try rtn(x, .ggufQ4_0)
        let p = q.parameters(row: 0, group: 0)
        XCTAssertEqual(p.scale, 1)
        XCTAssertEqual(p.scaleHalfBits, 0x3C00)
        XCTAssertEqual(Array(q.codes[0..<7]), [0, 9, 8, 15, 9, 1, 15])
        XCTAssertEqual(Array(q.dequantized.data[0..<7]), [-8, 1, 0, 7, 1, -7, 7])
        XCTAssertEqual(Array(q.codes[7...]), [UInt8](repeating: 8, count: 25))
    }

    func testQ4_0PositiveMaxAndHalfRounding() throws {
        // max magnitude +1.1 -> d = -0.1375 (not an fp16 value); codes use the fp32 1/d, values the fp16 d.
        var x = [Float](repeating: 0.25, count: 32)
        x[3] = 1.1
        x[4] = -1.1  // equal magnitude: the first one wins
        let q = try rtn(x, .ggufQ4_0)
        let p = q.parameters(row: 0, group: 0)
        let d: Float = 1.1 / -8
        XCTAssertEqual(p.scale, Float(Float16(d)))
        XCTAssertNotEqual(p.scale, d)
        XCTAssertEqual(p.inverse, 1 / d)
        XCTAssertEqual(q.codes[3], 0)  // 1.1 * id = -8 -> 0.5 -> 0
        XCTAssertEqual(q.codes[4], 15)  // +8 + 8.5 = 16.5 -> 16 -> 15
        XCTAssertEqual(q.codes[0], 6)  // 0.25 * id = -1.818 -> 6.68 -> 6
        XCTAssertEqual(q.dequantized[0, 3], Float(0 - 8) * p.scale)
        XCTAssertEqual(q.dequantized[0, 0], Float(6 - 8) * p.scale)
    }

    func testQ4_1HandComputedBlock() throws {
        // x_j = 1 + j/2: min 1, max 16.5, d = 15.5/15, m = 1.
        let x = (0..<32).map { 1 + Float($0) / 2 }
        let q = try rtn(x, .ggufQ4_1)
        let p = q.parameters(row: 0, group: 0)
        XCTAssertEqual(p.scale, 1.033203125)  // fp16(1.0333334) = 1058 * 2^-10
        XCTAssertEqual(p.zero, 1)
        XCTAssertEqual(p.minimum, 1)
        XCTAssertEqual(p.inverse, 1 / (Float(15.5) / 15))
        // code = (int8)((x - 1) * id + 0.5)
        XCTAssertEqual(Array(q.codes[0..<6]), [0, 0, 1, 1, 2, 2])
        XCTAssertEqual(q.codes[31], 15)
        XCTAssertEqual(q.codes[30], 15)  // 15 * 0.9677 + 0.5 = 15.02
        XCTAssertEqual(q.codes[29], 14)
        for j in 0..<32 { XCTAssertEqual(q.dequantized[0, j], Float(q.codes[j]) * p.scale + p.zero) }
    }

    func testQ8_0HandComputedBlockRoundsHalfAwayFromZero() throws {
        var x = [Float](repeating: 0, count: 32)
        x[0] = 127
        x[1] = 2.5
        x[2] = -2.5
        x[3] = 0.5
        x[4] = -0.5
        x[5] = 1.5
        x[6] = -127
        let q = try rtn(x, .ggufQ8_0)
        let p = q.parameters(row: 0, group: 0)
        XCTAssertEqual(p.scale, 1)
        XCTAssertEqual(Array(q.codes[0..<7]).map { Int8(bitPattern: $0) }, [127, 3, -3, 1, -1, 2, -127])
        XCTAssertEqual(Array(q.dequantized.data[0..<7]), [127, 3, -3, 1, -1, 2, -127])
    }

    func testAllZeroBlocks() throws {
        let zeros = [Float](repeating: 0, count: 32)
        let q40 = try rtn(zeros, .ggufQ4_0)
        XCTAssertEqual(q40.parameters(row: 0, group: 0).scaleHalfBits, 0x8000)  // ggml stores d = 0 / -8 = -0
        XCTAssertEqual(q40.codes, [UInt8](repeating: 8, count: 32))
        let q41 = try rtn(zeros, .ggufQ4_1)
        XCTAssertEqual(q41.parameters(row: 0, group: 0).scaleHalfBits, 0)
        XCTAssertEqual(q41.parameters(row: 0, group: 0).zeroHalfBits, 0)
        XCTAssertEqual(q41.codes, [UInt8](repeating: 0, count: 32))
        let q80 = try rtn(zeros, .ggufQ8_0)
        XCTAssertEqual(q80.parameters(row: 0, group: 0).scaleHalfBits, 0)
        XCTAssertEqual(q80.codes, [UInt8](repeating: 0, count: 32))
        for q in [q40, q41, q80] { XCTAssertTrue(q.dequantized.data.allSatisfy { $0 == 0 }) }
        // the reference grid's all-zero group uses [-1, 1]: asym zero = round(1 / fp32(2/15)) =
        // round(7.4999995) = 7 in Float32 (as torch computes it); sym zero = (maxq + 1) / 2 = 8
        let ref = try RTN.quantize(Matrix(rows: 1, cols: 8, repeating: 0), recipe: QuantRecipe(bits: 4))
        XCTAssertEqual(ref.parameters(row: 0, group: 0), GroupParameters(scale: 2 / 15, zero: 7))
        let sym = try RTN.quantize(
            Matrix(rows: 1, cols: 8, repeating: 0), recipe: QuantRecipe(bits: 4, symmetric: true))
        XCTAssertEqual(sym.parameters(row: 0, group: 0), GroupParameters(scale: 2 / 15, zero: 8))
        XCTAssertTrue(sym.dequantized.data.allSatisfy { $0 == 0 })
        XCTAssertTrue(ref.dequantized.data.allSatisfy { $0 == 0 })
    }

    func testBlocksAreIndependentAndPartialGroupsFit() throws {
        // two blocks per row, two rows: each (row, block) has its own d
        var w = Matrix(rows: 2, cols: 64)
        for r in 0..<2 { for c in 0..<64 { w[r, c] = Float((r + 1) * (c < 32 ? 1 : 3)) * Float(c % 7 - 3) } }
        let q = try RTN.quantize(w, recipe: .gguf(.ggufQ8_0))
        XCTAssertEqual(q.groupCount, 2)
        XCTAssertEqual(q.parameters(row: 0, group: 0).scale, Float(Float16(Float(3) / 127)))
        XCTAssertEqual(q.parameters(row: 1, group: 1).scale, Float(Float16(Float(18) / 127)))
        // a grid fits a partial group from its values only
        let part: [Float] = (0..<20).map { Float($0) - 4 }  // absmax 15
        let p = part.withUnsafeBufferPointer { GGUFQ8_0Grid().fit($0.baseAddress!, count: 20, stride: 1) }
        XCTAssertEqual(p.scale, Float(Float16(Float(15) / 127)))
        // GGUF formats reject rows that are not whole blocks
        XCTAssertThrowsError(
            try RTN.quantize(Matrix(rows: 1, cols: 48, repeating: 1), recipe: .gguf(.ggufQ4_0), name: "t")
        ) {
            XCTAssertEqual($0 as? QuantizationError, .columnsNotMultipleOfBlock(tensor: "t", columns: 48, block: 32))
        }
    }

    func testGPTQOnGGUFGridsStoresExactlyTheGrid() throws {
        let fx = GPTQReferenceTests.self
        let w = fx.matrix("A.W")
        let h = fx.matrix("A.H")
        let x = fx.matrix("A.X")
        for format in [WeightFormat.ggufQ4_0, .ggufQ4_1, .ggufQ8_0] {
            for actOrder in [false, true] {
                let recipe = QuantRecipe.gguf(format, actOrder: actOrder)
                let g = try GPTQ.quantize(w, hessian: h, recipe: recipe, name: "A.W")
                let r = try RTN.quantize(w, recipe: recipe, name: "A.W")
                let qw = g.weight
                XCTAssertEqual(qw.groupSize, 32)
                XCTAssertEqual(qw.groupIndex, (0..<256).map { Int32($0 / 32) })
                let grid = recipe.makeGrid()
                for row in 0..<qw.rows {
                    for k in 0..<qw.groupCount {
                        let p = qw.parameters(row: row, group: k)
                        XCTAssertEqual(Float(Float16(p.scale)), p.scale)  // fp16 values
                        XCTAssertEqual(Float(Float16(p.zero)), p.zero)
                        for c in (k * 32)..<(k * 32 + 32) {
                            XCTAssertEqual(grid.value(qw.codes[row * 256 + c], p), qw.dequantized[row, c])
                        }
                    }
                }
                let eg = OutputError.fromActivations(weight: w, quantized: qw.dequantized, activations: x)
                let er = OutputError.fromActivations(weight: w, quantized: r.dequantized, activations: x)
                print(
                    String(
                        format: "GGUF %@ actOrder=%d: GPTQ error %.5f, RTN error %.5f", format.rawValue,
                        actOrder ? 1 : 0, eg, er))
                XCTAssertLessThan(eg, er, "\(format) actOrder \(actOrder)")
            }
        }
    }
}

final class RecipeTests: XCTestCase {
    func expect(_ recipe: QuantRecipe, _ error: QuantizationError, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try recipe.validate(), file: file, line: line) {
            XCTAssertEqual($0 as? QuantizationError, error, file: file, line: line)
            XCTAssertFalse("\($0)".isEmpty)
        }
    }

    func testBadRecipes() throws {
        expect(QuantRecipe(bits: 9), .invalidBits(bits: 9, format: .integer))
        expect(QuantRecipe(bits: 1), .invalidBits(bits: 1, format: .integer))
        expect(QuantRecipe(bits: 4, groupSize: 0), .invalidGroupSize(0))
        expect(QuantRecipe(bits: 4, groupSize: -2), .invalidGroupSize(-2))
        expect(QuantRecipe(format: .ggufQ4_0, bits: 8, groupSize: 32), .invalidBits(bits: 8, format: .ggufQ4_0))
        expect(
            QuantRecipe(format: .ggufQ8_0, bits: 8, groupSize: 64),
            .formatNeedsGroupSize(format: .ggufQ8_0, required: 32, got: 64))
        expect(QuantRecipe(bits: 4, staticGroups: true), .staticGroupsNeedGroupSize)
        expect(
            QuantRecipe(format: .ggufQ4_1, bits: 4, groupSize: 32, actOrder: true),
            .actOrderNeedsStaticGroups(format: .ggufQ4_1))
        expect(QuantRecipe(bits: 4, blockSize: 0), .invalidBlockSize(0))
        expect(QuantRecipe(bits: 4, percentDamp: -0.1), .invalidDamping(-0.1))
        XCTAssertThrowsError(try QuantRecipe(bits: 4, percentDamp: .nan).validate())
        for bits in 2...8 { XCTAssertNoThrow(try QuantRecipe(bits: bits, groupSize: 128).validate()) }
        for f in [WeightFormat.ggufQ4_0, .ggufQ4_1, .ggufQ8_0] { XCTAssertNoThrow(try QuantRecipe.gguf(f).validate()) }
        XCTAssertEqual(
            "\(QuantizationError.invalidBits(bits: 9, format: .integer))", "recipe: bits must be in 2...8, got 9")
    }

    func testGroupCountsWithPartialLastGroup() {
        let r = QuantRecipe(bits: 4, groupSize: 128)
        XCTAssertEqual(r.groupCount(columns: 576), 5)
        XCTAssertEqual(r.groupCount(columns: 1536), 12)
        XCTAssertEqual(QuantRecipe(bits: 4).groupCount(columns: 576), 1)
    }

    func testNonFiniteWeightNamesTensorAndRow() throws {
        var w = Matrix(rows: 8, cols: 64, repeating: 0.5)
        w[3, 17] = .nan
        let h = Matrix(rows: 64, cols: 64, data: (0..<(64 * 64)).map { $0 % 65 == 0 ? 1 : 0 })
        for run in [
            { _ = try RTN.quantize(w, recipe: QuantRecipe(bits: 4), name: "blk.0.attn_q.weight") },
            { _ = try GPTQ.quantize(w, hessian: h, recipe: QuantRecipe(bits: 4), name: "blk.0.attn_q.weight") },
        ] {
            XCTAssertThrowsError(try run()) { error in
                guard case let .nonFiniteWeight(tensor, row, column, value)? = error as? QuantizationError else {
                    return XCTFail("unexpected \(error)")
                }
                XCTAssertEqual(tensor, "blk.0.attn_q.weight")
                XCTAssertEqual(row, 3)
                XCTAssertEqual(column, 17)
                XCTAssertTrue(value.isNaN)
                XCTAssertTrue("\(error)".contains("blk.0.attn_q.weight") && "\(error)".contains("row 3"), "\(error)")
            }
        }
        w[3, 17] = .infinity
        XCTAssertThrowsError(try RTN.quantize(w, recipe: QuantRecipe(bits: 4), name: "x"))
    }

    func testBadHessians() {
        let w = Matrix(rows: 4, cols: 8, repeating: 0.5)
        XCTAssertThrowsError(
            try GPTQ.quantize(w, hessian: Matrix(rows: 7, cols: 7), recipe: QuantRecipe(bits: 4), name: "w")
        ) {
            guard case .shapeMismatch(tensor: "w", _)? = $0 as? QuantizationError else { return XCTFail("\($0)") }
        }
        var negative = Matrix(rows: 8, cols: 8)
        for i in 0..<8 { negative[i, i] = -1 }
        XCTAssertThrowsError(try GPTQ.quantize(w, hessian: negative, recipe: QuantRecipe(bits: 4), name: "w")) {
            guard case .hessianNotPositiveDefinite(tensor: "w", _)? = $0 as? QuantizationError else {
                return XCTFail("\($0)")
            }
        }
        var nanH = Matrix(rows: 8, cols: 8)
        nanH[2, 5] = .nan
        XCTAssertThrowsError(try GPTQ.quantize(w, hessian: nanH, recipe: QuantRecipe(bits: 4), name: "w")) {
            guard case .nonFiniteHessian(tensor: "w", row: 2, column: 5, _)? = $0 as? QuantizationError else {
                return XCTFail("\($0)")
            }
        }
    }
}
