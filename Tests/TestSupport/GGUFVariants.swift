import Foundation
import ModelIO

/// Real models with one thing changed, for tests of what Kiln does with damaged or
/// unusual headers: a GGUF rewritten with some metadata overridden or removed and
/// optionally only its first blocks kept (tensor bytes copied as stored, or replaced:
/// `replacing` gives a tensor a new shape and the bytes of that shape, same type).
public enum GGUFVariants {
    public static func write(
        from src: URL, to out: URL, blocks: Int? = nil, overrides: [String: GGUFValue] = [:],
        removing: Set<String> = [], replacing: [String: (shape: [Int], bytes: Data)] = [:]
    ) throws {
        let file = try GGUFFile(src)
        let w = try GGUFWriter(url: out)
        for k in file.metadataKeys where k != "general.alignment" && !removing.contains(k) {
            try w.addMetadata(k, overrides[k] ?? file.metadata[k]!)
        }
        for (k, v) in overrides.sorted(by: { $0.key < $1.key }) where file.metadata[k] == nil {
            try w.addMetadata(k, v)
        }
        func keep(_ name: String) -> Bool {
            guard let blocks, name.hasPrefix("blk.") else { return true }
            return Int(name.split(separator: ".")[1])! < blocks
        }
        let kept = file.tensors.filter { keep($0.name) }
        for t in kept { try w.declareTensor(t.name, type: t.dtype, shape: replacing[t.name]?.shape ?? t.shape) }
        for t in kept { try w.writeTensor(t.name, bytes: replacing[t.name]?.bytes ?? file.rawBytes(t.name)) }
        try w.finish()
    }
}
