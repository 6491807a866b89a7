import Foundation

// Calibration samples: a text file -> token ids -> N windows of L tokens, chosen
// reproducibly from a seed. The tokenizer is passed in as a closure so this layer
// needs no tokenizer types; the choice of windows is a pure function of
// (tokens, count, length, kind, seed), identical on every platform.

/// How windows are chosen from the token stream.
public enum SamplerKind: String, Codable, Sendable, CaseIterable {
    /// Non-overlapping windows from the start: window i is tokens [i*L, (i+1)*L).
    case consecutive
    /// The GPTQ reference's data loader: for each sample a start drawn uniformly from
    /// [0, T - L - 1] (both ends included) by Python's `random.randint` after
    /// `random.seed(seed)` (`PythonRandom`), so the same seed picks the same windows.
    case random
}

public enum SamplerError: Error, CustomStringConvertible, Equatable {
    case unreadable(file: String, reason: String)
    case emptyFile(file: String)
    case tooShort(file: String, tokens: Int, needed: Int, detail: String)
    case invalidRequest(String)

    public var description: String {
        switch self {
        case let .unreadable(file, reason): return "cannot read \(file): \(reason)"
        case let .emptyFile(file):
            return "calibration file \(file) is empty (no tokens); give a text file with some content"
        case let .tooShort(file, tokens, needed, detail):
            return
                "calibration file \(file) has \(tokens) tokens, \(detail) need \(needed); lower --samples or --seqlen, or use a longer text"
        case let .invalidRequest(s): return "sampler: \(s)"
        }
    }
}

public enum Sampler {
    /// Bounds on a request, checked before anything is allocated (the result holds
    /// `count` offsets; the windows `count * length` tokens).
    public static let maxWindows = 1 << 24
    public static let maxWindowLength = 1 << 20

    /// Start offsets of the windows (a pure function of its arguments).
    public static func starts(
        tokenCount: Int, count: Int, length: Int, kind: SamplerKind, seed: UInt64,
        file: String = "calibration text"
    ) throws -> [Int] {
        guard (1...maxWindows).contains(count) else {
            throw SamplerError.invalidRequest("sample count must be 1...\(maxWindows), got \(count)")
        }
        guard (2...maxWindowLength).contains(length) else {
            throw SamplerError.invalidRequest("window length must be 2...\(maxWindowLength) tokens, got \(length)")
        }
        if tokenCount == 0 { throw SamplerError.emptyFile(file: file) }
        switch kind {
        case .consecutive:
            let (needed, overflow) = count.multipliedReportingOverflow(by: length)
            guard !overflow, tokenCount >= needed else {
                throw SamplerError.tooShort(
                    file: file, tokens: tokenCount, needed: needed,
                    detail: "\(count) consecutive windows of \(length) tokens")
            }
            return (0..<count).map { $0 * length }
        case .random:
            // The reference draws from randint(0, T - L - 1): at least L + 1 tokens.
            guard tokenCount >= length + 1 else {
                throw SamplerError.tooShort(
                    file: file, tokens: tokenCount, needed: length + 1,
                    detail: "random windows of \(length) tokens")
            }
            var rng = PythonRandom(seed: seed)
            let upper = UInt64(tokenCount - length - 1)
            return (0..<count).map { _ in Int(rng.int(through: upper)) }
        }
    }

    /// The windows themselves.
    public static func windows(
        tokens: [Int32], count: Int, length: Int, kind: SamplerKind, seed: UInt64,
        file: String = "calibration text"
    ) throws -> [[Int32]] {
        try starts(tokenCount: tokens.count, count: count, length: length, kind: kind, seed: seed, file: file)
            .map { Array(tokens[$0..<($0 + length)]) }
    }

    /// Reads a UTF-8 text file and tokenizes it with `encode`.
    public static func tokens(
        file url: URL, what: String = "calibration file",
        encode: (String) throws -> [Int]
    ) throws -> [Int32] {
        let name = url.lastPathComponent
        let text: String
        do { text = try TextFile.read(url, what: what) } catch let e as TextFile.Error {
            throw SamplerError.unreadable(file: name, reason: e.description)
        }
        if text.isEmpty { throw SamplerError.emptyFile(file: name) }
        let ids = try encode(text)
        if ids.isEmpty { throw SamplerError.emptyFile(file: name) }
        return ids.map { Int32($0) }
    }
}
