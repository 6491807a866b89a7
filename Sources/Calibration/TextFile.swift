import Foundation

/// Reads a user's text file (calibration, evaluation, sentences) with errors that say
/// what is wrong with it: missing, a directory, unreadable, too large, not UTF-8.
public enum TextFile {
    /// Largest text file read into memory (tokenized whole).
    public static let maxBytes = 1 << 31

    public struct Error: Swift.Error, CustomStringConvertible, Equatable {
        public let description: String
    }

    /// `what` names the file's role and flag for the message, e.g. "calibration file (--calib)".
    public static func read(_ url: URL, what: String) throws -> String {
        let path = url.path
        var st = stat()
        guard stat(path, &st) == 0 else {
            throw Error(description: "\(what) \(path): \(String(cString: strerror(errno)))")
        }
        switch st.st_mode & S_IFMT {
        case S_IFDIR: throw Error(description: "\(what) \(path) is a directory; give a text file")
        case S_IFREG: break
        default: throw Error(description: "\(what) \(path) is not a regular file; give a text file")
        }
        guard st.st_size <= maxBytes else {
            throw Error(
                description:
                    "\(what) \(path) is \(st.st_size) bytes; the limit is \(maxBytes) (2 GiB): use a smaller text")
        }
        guard access(path, R_OK) == 0 else { throw Error(description: "\(what) \(path) is not readable by this user") }
        let data: Data
        do { data = try Data(contentsOf: url) } catch {
            throw Error(description: "\(what) \(path): cannot read (\(String(cString: strerror(errno))))")
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw Error(description: "\(what) \(path) is not UTF-8 text")
        }
        return text
    }
}
