import Foundation

/// Opens a model from a .gguf file, a .safetensors file (config.json beside
/// it), or a Hugging Face directory (config.json + model.safetensors, or shards
/// listed in model.safetensors.index.json). Reads headers only.
public func openModel(_ url: URL) throws -> any ModelView {
    var isDir: ObjCBool = false
    guard FileManager.default.fileExists(atPath: url.path, isDirectory: &isDir) else {
        throw ModelIOError(file: url.lastPathComponent, "no such file or directory (\(url.path))")
    }
    if isDir.boolValue { return try openDirectory(url) }
    switch url.pathExtension.lowercased() {
    case "gguf": return try GGUFModel(url)
    case "safetensors":
        return try PackedCheckpointModel.open(
            SafeTensorsModel(directory: url.deletingLastPathComponent(), files: [url], given: url))
    case "json" where url.lastPathComponent.hasSuffix(".index.json"):
        return try PackedCheckpointModel.open(SafeTensorsModel(index: url, given: url))
    default:
        // Decide by content: GGUF files start with "GGUF".
        let head = try FileHandle(forReadingFrom: url).read(upToCount: 4) ?? Data()
        if head == Data("GGUF".utf8) { return try GGUFModel(url) }
        throw ModelIOError(
            file: url.lastPathComponent, "unknown model format (expected .gguf, .safetensors or a directory)")
    }
}

private func openDirectory(_ dir: URL) throws -> any ModelView {
    let fm = FileManager.default
    let names = (try? fm.contentsOfDirectory(atPath: dir.path)) ?? []
    let index = dir.appendingPathComponent("model.safetensors.index.json")
    if fm.fileExists(atPath: index.path) {
        return try PackedCheckpointModel.open(SafeTensorsModel(index: index, given: dir))
    }
    let single = dir.appendingPathComponent("model.safetensors")
    if fm.fileExists(atPath: single.path) {
        return try PackedCheckpointModel.open(SafeTensorsModel(directory: dir, files: [single], given: dir))
    }
    let shards = names.filter { $0.hasSuffix(".safetensors") }.sorted()
    if !shards.isEmpty {
        return try PackedCheckpointModel.open(
            SafeTensorsModel(directory: dir, files: shards.map { dir.appendingPathComponent($0) }, given: dir))
    }
    let ggufs = names.filter { $0.lowercased().hasSuffix(".gguf") }
    if ggufs.count == 1 { return try GGUFModel(dir.appendingPathComponent(ggufs[0])) }
    throw ModelIOError(
        file: dir.lastPathComponent,
        ggufs.isEmpty
            ? "no model.safetensors, index.json or .gguf file in directory"
            : "several .gguf files in directory; name one")
}
