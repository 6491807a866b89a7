// libFuzzer target: imatrix bytes (llama.cpp's GGUF imatrix or legacy .dat) -> Imatrix.
// Every input must either decode or throw; a trap or ASan report is a bug.
//
// KILN_FUZZ_MAKE_SEEDS=DIR: writes seed files of both encodings to DIR and exits.
import Foundation
import ModelIO

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = data.map { Data(bytes: $0, count: size) } ?? Data()
    if let m = try? Imatrix.read(bytes: bytes, name: "fuzz.imatrix") {
        for e in m.entries.values { _ = Imatrix.importance(sums: e.sums, count: e.count) }
    }
    return 0
}

@_cdecl("LLVMFuzzerInitialize")
public func fuzzInitialize(
    _ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>
) -> CInt {
    guard let env = getenv("KILN_FUZZ_MAKE_SEEDS") else { return 0 }
    let dir = URL(fileURLWithPath: String(cString: env))
    do {
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        // Two linears' entries of a small model, as Kiln's export writes them.
        let m = Imatrix(
            entries: [
                "blk.0.attn_q.weight": .init(sums: (0..<32).map { Float($0) * 0.5 }, count: 64),
                "blk.0.ffn_down.weight": .init(sums: (0..<64).map { Float($0 % 7) }, count: 64),
            ], datasets: ["fortunes_calib.txt"], chunkCount: 2, chunkSize: 32)
        try m.writeGGUF(to: dir.appendingPathComponent("small.imatrix.gguf"), replace: true)
        try m.writeLegacy(to: dir.appendingPathComponent("small.imatrix.dat"), replace: true)
        exit(0)
    } catch {
        FileHandle.standardError.write(Data("seed generation failed: \(error)\n".utf8))
        exit(1)
    }
}
