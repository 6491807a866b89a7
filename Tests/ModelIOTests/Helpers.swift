import Foundation
import ModelIO
import TestSupport
import XCTest

/// Writes a safetensors file from (name, dtype, shape, bytes), data in the given order.
func safetensorsBytes(
    _ tensors: [(String, String, [Int], Data)], metadata: [String: String]? = nil,
    headerOverride: ((inout [String: Any]) -> Void)? = nil
) -> Data {
    var header: [String: Any] = [:]
    var data = Data()
    for (name, dtype, shape, bytes) in tensors {
        header[name] = ["dtype": dtype, "shape": shape, "data_offsets": [data.count, data.count + bytes.count]]
        data.append(bytes)
    }
    if let metadata { header["__metadata__"] = metadata }
    headerOverride?(&header)
    return safetensorsBytes(
        headerJSON: try! JSONSerialization.data(withJSONObject: header, options: [.sortedKeys]), data: data)
}

func safetensorsBytes(headerJSON: Data, data: Data) -> Data {
    var out = Data()
    withUnsafeBytes(of: UInt64(headerJSON.count).littleEndian) { out.append(contentsOf: $0) }
    out.append(headerJSON)
    out.append(data)
    return out
}

func floatBytes(_ v: [Float]) -> Data { v.withUnsafeBytes { Data($0) } }

extension Data {
    mutating func put<T: FixedWidthInteger>(_ v: T, at offset: Int) {
        Swift.withUnsafeBytes(of: v.littleEndian) {
            replaceSubrange(offset..<(offset + MemoryLayout<T>.size), with: $0)
        }
    }

    func get<T: FixedWidthInteger>(_: T.Type, at offset: Int) -> T {
        T(littleEndian: self[offset..<(offset + MemoryLayout<T>.size)].withUnsafeBytes { $0.loadUnaligned(as: T.self) })
    }

    /// Offset just past the length-prefixed GGUF string `s` (where a tensor info's n_dims begins).
    func afterGGUFString(_ s: String) -> Int? {
        var needle = Data()
        Swift.withUnsafeBytes(of: UInt64(s.utf8.count).littleEndian) { needle.append(contentsOf: $0) }
        needle.append(Data(s.utf8))
        return range(of: needle)?.upperBound
    }
}

/// Asserts that `body` throws a ModelIOError whose description contains every string in `mentions`.
func assertModelIOError<T>(
    _ mentions: [String], file: StaticString = #filePath, line: UInt = #line,
    _ body: () throws -> T
) {
    do {
        _ = try body()
        XCTFail("no error; expected one mentioning \(mentions)", file: file, line: line)
    } catch let e as ModelIOError {
        for m in mentions where !e.description.contains(m) {
            XCTFail("error \"\(e.description)\" does not mention \"\(m)\"", file: file, line: line)
        }
    } catch {
        XCTFail("not a ModelIOError: \(error)", file: file, line: line)
    }
}

/// Writes `data` to a fresh temporary file named `name`.
func tempFile(_ name: String, _ data: Data) throws -> URL {
    let url = Paths.tempDir("modelio").appendingPathComponent(name)
    try data.write(to: url)
    return url
}
