import Foundation

/// llama.cpp's importance matrix ("imatrix"): per weight tensor (GGUF name, `blk.N.attn_q.weight`),
/// per input column j, the sum over calibration tokens of x_j^2, and the token count. llama-quantize
/// takes `sums / count` (the mean of x^2) as each column's importance; Kiln's scale search does too
/// (`importance(_:)`), so a file moves statistics between the two in either direction.
///
/// Two encodings (`read` tells them apart by the GGUF magic):
/// - GGUF (llama-imatrix's default): `general.type` "imatrix", `imatrix.datasets` (strings),
///   `imatrix.chunk_count` and `imatrix.chunk_size` (uint32); per entry an F32 tensor
///   `<name>.in_sum2` (ne [columns, matrices]) and `<name>.counts` (ne [1, matrices]). Other
///   tensors (`<name>.in_sum`) are ignored, as llama-quantize ignores them.
/// - legacy `.dat`: int32 entry count; per entry int32 name length, the name, int32 ncall, int32
///   value count, float32 values = mean(x^2) * ncall; then optionally int32 chunk count and an
///   int32-length dataset name. Read back as sums = values, count = ncall (so sums / count is
///   the mean, as llama-quantize divides).
///
/// Only dense entries (one matrix) are accepted: Kiln quantizes no mixture-of-experts tensors.
public struct Imatrix: Sendable, Equatable {
    public struct Entry: Sendable, Equatable {
        /// Per input column: the sum of x^2 over `count` tokens.
        public var sums: [Float]
        public var count: Float

        public init(sums: [Float], count: Float) {
            self.sums = sums
            self.count = count
        }
    }

    public var entries: [String: Entry]
    public var datasets: [String]
    public var chunkCount: Int
    public var chunkSize: Int

    public init(entries: [String: Entry], datasets: [String] = [], chunkCount: Int = 0, chunkSize: Int = 0) {
        self.entries = entries
        self.datasets = datasets
        self.chunkCount = chunkCount
        self.chunkSize = chunkSize
    }

    /// Bounds on what a file may declare, checked before anything is allocated.
    static let maxEntries = 1 << 20
    static let maxColumns = 1 << 24
    static let maxNameBytes = 4096
    static let suffixSums = ".in_sum2"
    static let suffixCounts = ".counts"

    /// The importance vector of `tensor` as llama-quantize computes it: sums / count in Float32
    /// (count <= 0: all ones). nil when the file has no entry for it.
    public func importance(_ tensor: String) -> [Float]? {
        guard let e = entries[tensor] else { return nil }
        return Self.importance(sums: e.sums, count: e.count)
    }

    public static func importance(sums: [Float], count: Float) -> [Float] {
        count > 0 ? sums.map { $0 / count } : [Float](repeating: 1, count: sums.count)
    }

    // MARK: Reading

    /// Reads either encoding; every error names the file (and the entry, when one is at fault).
    public static func read(_ url: URL) throws -> Imatrix {
        let data: Data
        do { data = try Data(contentsOf: url, options: .mappedIfSafe) } catch {
            throw ModelIOError(file: url.path, "cannot read the imatrix file: \(error.localizedDescription)")
        }
        return try read(bytes: data, name: url.path)
    }

    /// Reads either encoding from bytes; errors name the file as `name`.
    public static func read(bytes data: Data, name: String) throws -> Imatrix {
        let m =
            try data.starts(with: Data("GGUF".utf8))
            ? readGGUF(GGUFFile(bytes: data, name: name), file: name) : readLegacy(data, file: name)
        try m.check(file: name)
        return m
    }

    /// Every value finite and non-negative, every count finite and non-negative.
    func check(file: String) throws {
        for name in entries.keys.sorted() {
            let e = entries[name]!
            guard e.count.isFinite, e.count >= 0 else {
                throw ModelIOError(file: file, "imatrix entry \(name): count \(e.count) is not a finite count >= 0")
            }
            if let j = e.sums.firstIndex(where: { !$0.isFinite || $0 < 0 }) {
                throw ModelIOError(
                    file: file, "imatrix entry \(name): column \(j) is \(e.sums[j]) (sums of squares are finite, >= 0)")
            }
        }
    }

    static func readGGUF(_ g: GGUFFile, file: String) throws -> Imatrix {
        guard case .string("imatrix")? = g.metadata["general.type"] else {
            throw ModelIOError(file: file, "a GGUF file but not an imatrix (general.type is not \"imatrix\")")
        }
        func u32(_ key: String) throws -> Int {
            guard case let .uint32(v)? = g.metadata[key] else {
                throw ModelIOError(file: file, "imatrix: \(key) is missing or not a uint32")
            }
            return Int(v)
        }
        guard case let .array(items)? = g.metadata["imatrix.datasets"] else {
            throw ModelIOError(file: file, "imatrix: imatrix.datasets is missing or not an array")
        }
        let datasets = try items.map { v -> String in
            guard case let .string(s) = v else {
                throw ModelIOError(file: file, "imatrix: imatrix.datasets holds a value that is not a string")
            }
            return s
        }
        var sums: [String: GGUFFile.Tensor] = [:]
        var counts: [String: GGUFFile.Tensor] = [:]
        for t in g.tensorTable {
            let name = t.info.name
            if name.hasSuffix(suffixSums) {
                sums[String(name.dropLast(suffixSums.count))] = t
            } else if name.hasSuffix(suffixCounts) {
                counts[String(name.dropLast(suffixCounts.count))] = t
            }
        }
        var entries: [String: Entry] = [:]
        for name in Set(sums.keys).union(counts.keys).sorted() {
            guard let s = sums[name], let c = counts[name] else {
                throw ModelIOError(
                    file: file,
                    "imatrix entry \(name): has \(sums[name] == nil ? "counts but no in_sum2" : "in_sum2 but no counts")"
                )
            }
            guard s.type == .f32, c.type == .f32 else {
                throw ModelIOError(file: file, "imatrix entry \(name): in_sum2 and counts must be F32")
            }
            let columns = s.ne.first ?? 0
            let matrices = s.ne.dropFirst().reduce(1, *)
            guard matrices == 1, c.ne.reduce(1, *) == 1 else {
                throw ModelIOError(
                    file: file,
                    "imatrix entry \(name): \(matrices) matrices (in_sum2 ne \(s.ne), counts ne \(c.ne)); Kiln takes dense tensors only"
                )
            }
            guard (1...maxColumns).contains(columns) else {
                throw ModelIOError(file: file, "imatrix entry \(name): \(columns) columns, expected 1 to \(maxColumns)")
            }
            let values = try floats(g, s.info.name, count: columns)
            let count = try floats(g, c.info.name, count: 1)[0]
            entries[name] = Entry(sums: values, count: count)
        }
        return Imatrix(
            entries: entries, datasets: datasets, chunkCount: try u32("imatrix.chunk_count"),
            chunkSize: try u32("imatrix.chunk_size"))
    }

    /// The F32 tensor's `count` values, from its stored bytes (whose range GGUFFile checked).
    static func floats(_ g: GGUFFile, _ name: String, count: Int) throws -> [Float] {
        try g.withRawBytes(name) { raw in
            guard raw.count == count * 4 else {
                throw ModelIOError(
                    file: g.url.path, "imatrix tensor \(name): \(raw.count) bytes, expected \(count * 4)")
            }
            return (0..<count).map {
                Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: $0 * 4, as: UInt32.self)))
            }
        }
    }

    static func readLegacy(_ data: Data, file: String) throws -> Imatrix {
        try data.withUnsafeBytes { buf in
            var c = ByteCursor(buf, file: file)
            func i32(_ what: @autoclosure () -> String) throws -> Int {
                Int(Int32(bitPattern: try c.u32(what())))
            }
            let n = try i32("imatrix entry count")
            // An entry takes at least 13 bytes (three int32 and a 1-byte name).
            guard n >= 1, n <= maxEntries, n <= c.remaining / 13 else {
                throw ModelIOError(
                    file: file,
                    "legacy imatrix: entry count \(n) is not in 1...\(min(maxEntries, c.remaining / 13)) (file size \(buf.count))"
                )
            }
            var entries: [String: Entry] = [:]
            for i in 0..<n {
                let len = try i32("imatrix entry \(i) name length")
                guard (1...maxNameBytes).contains(len) else {
                    throw ModelIOError(
                        file: file, "legacy imatrix entry \(i): name length \(len), expected 1 to \(maxNameBytes)")
                }
                let at = try c.take(len, "imatrix entry \(i) name")
                let name = String(decoding: UnsafeRawBufferPointer(rebasing: buf[at..<(at + len)]), as: UTF8.self)
                let ncall = try i32("imatrix entry \(name) ncall")
                let nval = try i32("imatrix entry \(name) value count")
                guard ncall >= 0 else {
                    throw ModelIOError(file: file, "legacy imatrix entry \(name): ncall \(ncall) < 0")
                }
                guard (1...maxColumns).contains(nval) else {
                    throw ModelIOError(
                        file: file, "legacy imatrix entry \(name): \(nval) values, expected 1 to \(maxColumns)")
                }
                let v = try c.take(nval * 4, "imatrix entry \(name) values")
                guard entries[name] == nil else {
                    throw ModelIOError(file: file, "legacy imatrix entry \(name): twice")
                }
                let sums = (0..<nval).map {
                    Float(
                        bitPattern: UInt32(littleEndian: buf.loadUnaligned(fromByteOffset: v + $0 * 4, as: UInt32.self))
                    )
                }
                // ncall 0: llama-quantize takes the values as they are, which count 1 gives.
                entries[name] = Entry(sums: sums, count: ncall > 0 ? Float(ncall) : 1)
            }
            var chunks = 0
            var datasets: [String] = []
            if c.remaining >= 4 {
                chunks = max(0, try i32("imatrix chunk count"))
                if c.remaining >= 4 {
                    let len = try i32("imatrix dataset name length")
                    guard (0...maxNameBytes).contains(len) else {
                        throw ModelIOError(
                            file: file, "legacy imatrix: dataset name length \(len), expected 0 to \(maxNameBytes)")
                    }
                    let at = try c.take(len, "imatrix dataset name")
                    if len > 0 {
                        datasets = [
                            String(decoding: UnsafeRawBufferPointer(rebasing: buf[at..<(at + len)]), as: UTF8.self)
                        ]
                    }
                }
            }
            guard c.remaining == 0 else {
                throw ModelIOError(file: file, "legacy imatrix: \(c.remaining) bytes after the dataset name")
            }
            return Imatrix(entries: entries, datasets: datasets, chunkCount: chunks)
        }
    }

    // MARK: Writing

    /// Writes llama-imatrix's GGUF encoding (entries in name order). An existing `url` is an
    /// error unless `replace` (see OutputPlacement).
    public func writeGGUF(to url: URL, replace: Bool = false) throws {
        try check(file: url.path)
        let w = try GGUFWriter(url: url, replace: replace)
        try w.addMetadata("general.type", .string("imatrix"))
        try w.addMetadata("imatrix.datasets", .array(datasets.map { .string($0) }))
        try w.addMetadata("imatrix.chunk_count", .uint32(UInt32(clamping: chunkCount)))
        try w.addMetadata("imatrix.chunk_size", .uint32(UInt32(clamping: chunkSize)))
        let names = entries.keys.sorted()
        for name in names {
            try w.declareTensor(name + Self.suffixSums, type: .f32, shape: [1, entries[name]!.sums.count])
            try w.declareTensor(name + Self.suffixCounts, type: .f32, shape: [1, 1])
        }
        for name in names {
            try w.writeTensor(name + Self.suffixSums, floats: entries[name]!.sums)
            try w.writeTensor(name + Self.suffixCounts, floats: [entries[name]!.count])
        }
        try w.finish()
    }

    /// Writes the legacy `.dat` encoding as llama-imatrix does: ncall = ceil(count / chunkSize)
    /// (1 without a chunk size), values mean(x^2) * ncall.
    public func writeLegacy(to url: URL, replace: Bool = false) throws {
        try check(file: url.path)
        var out = Data()
        func i32(_ v: Int) { withUnsafeBytes(of: Int32(clamping: v).littleEndian) { out.append(contentsOf: $0) } }
        i32(entries.count)
        for name in entries.keys.sorted() {
            let e = entries[name]!
            i32(name.utf8.count)
            out.append(contentsOf: Array(name.utf8))
            let ncall = chunkSize > 0 ? max(1, Int((Double(e.count) / Double(chunkSize)).rounded(.up))) : 1
            i32(ncall)
            i32(e.sums.count)
            for v in Self.importance(sums: e.sums, count: e.count) {
                withUnsafeBytes(of: (v * Float(ncall)).bitPattern.littleEndian) { out.append(contentsOf: $0) }
            }
        }
        i32(chunkCount)
        let dataset = datasets.last ?? ""
        i32(dataset.utf8.count)
        out.append(contentsOf: Array(dataset.utf8))
        try OutputPlacement.write(out, to: url, replace: replace)
    }
}
