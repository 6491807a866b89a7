import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// How outputs appear on disk without ever destroying what is already there.
///
/// Every writer builds its output under a fresh temporary sibling (a name no one else
/// uses, created exclusively, so nothing existing is truncated or removed) and moves it
/// into place only when complete:
/// - a file lands with link(2) + unlink(2), which fails if the destination exists; with
///   `replace` it lands with rename(2) over an existing regular file (never a directory);
/// - a directory lands with rename(2), which the kernel refuses over a non-empty
///   directory; with `replace` an existing directory is swapped out only when it holds
///   nothing but the files its Kiln manifest lists, and only those files are removed.
public enum OutputPlacement {
    /// A sibling of `url` no one else uses: ".NAME.kiln-RANDOM.partial".
    static func temporarySibling(of url: URL) -> URL {
        let tag = String(UInt64.random(in: 0...UInt64.max), radix: 36)
        return url.deletingLastPathComponent().appendingPathComponent(".\(url.lastPathComponent).kiln-\(tag).partial")
    }

    /// Creates a new temporary file next to `url` (O_EXCL: never an existing file), locked
    /// (flock) for as long as the writer holds it open, after removing the partials of `url`
    /// that writers no longer alive left behind.
    static func createTemporaryFile(for url: URL) throws -> (url: URL, fd: Int32) {
        removeStalePartials(of: url)
        for _ in 0..<16 {
            let tmp = temporarySibling(of: url)
            let fd = open(tmp.path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
            if fd >= 0 {
                _ = flock(fd, LOCK_EX)
                return (tmp, fd)
            }
            if errno != EEXIST {
                throw ModelIOError(
                    file: url.path, "cannot create a temporary file beside it: \(String(cString: strerror(errno)))")
            }
        }
        throw ModelIOError(file: url.path, "cannot find an unused temporary name beside it")
    }

    /// Removes the partial files of `url` (".NAME.kiln-TAG.partial", regular files) whose
    /// writer is gone: a writer holds its partial locked until it lands, so a lock that can
    /// be taken belongs to a process that was killed mid-write. Nothing else is touched.
    /// Returns the names removed.
    @discardableResult
    public static func removeStalePartials(of url: URL) -> [String] {
        let dir = url.deletingLastPathComponent()
        let prefix = ".\(url.lastPathComponent).kiln-"
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: dir.path) else { return [] }
        var removed: [String] = []
        for name in names.sorted() where name.hasPrefix(prefix) && name.hasSuffix(".partial") {
            let tag = name.dropFirst(prefix.count).dropLast(".partial".count)
            guard !tag.isEmpty, tag.allSatisfy({ $0.isASCII && ($0.isNumber || $0.isLowercase) }) else { continue }
            let path = dir.appendingPathComponent(name).path
            var st = stat()
            guard lstat(path, &st) == 0, st.st_mode & S_IFMT == S_IFREG else { continue }
            let fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)
            guard fd >= 0 else { continue }
            defer { close(fd) }
            if flock(fd, LOCK_EX | LOCK_NB) == 0 && unlink(path) == 0 { removed.append(name) }
        }
        return removed
    }

    /// Creates a new, empty temporary directory next to `url`.
    static func createTemporaryDirectory(for url: URL) throws -> URL {
        for _ in 0..<16 {
            let tmp = temporarySibling(of: url)
            if mkdir(tmp.path, 0o755) == 0 { return tmp }
            if errno != EEXIST {
                throw ModelIOError(
                    file: url.path, "cannot create a temporary directory beside it: \(String(cString: strerror(errno)))"
                )
            }
        }
        throw ModelIOError(file: url.path, "cannot find an unused temporary name beside it")
    }

    /// What is at `path` now (lstat: a symlink is reported as such, not followed).
    public enum Existing: Equatable, Sendable { case none, file, directory, other }

    public static func existing(_ path: String) -> Existing {
        var st = stat()
        guard lstat(path, &st) == 0 else { return .none }
        switch st.st_mode & S_IFMT {
        case S_IFREG: return .file
        case S_IFDIR: return .directory
        default: return .other
        }
    }

    /// Moves the finished temporary file `tmp` onto `dst`. Without `replace` an existing
    /// `dst` is an error and stays as it was.
    static func placeFile(_ tmp: URL, at dst: URL, replace: Bool) throws {
        switch existing(dst.path) {
        case .none: break
        case .file:
            guard replace else { throw exists(dst) }
        case .directory:
            throw ModelIOError(file: dst.path, "exists and is a directory; refusing to replace it with a file")
        case .other:
            throw ModelIOError(file: dst.path, "exists and is not a regular file; refusing to replace it")
        }
        if replace {
            guard rename(tmp.path, dst.path) == 0 else { throw failed("rename from \(tmp.lastPathComponent)", dst) }
            return
        }
        if link(tmp.path, dst.path) == 0 {
            _ = unlink(tmp.path)
            return
        }
        if errno == EEXIST { throw exists(dst) }
        // Filesystems without hard links: the check above already ran; rename is the best left.
        guard [EPERM, ENOTSUP, EOPNOTSUPP, EXDEV].contains(errno), existing(dst.path) == .none,
            rename(tmp.path, dst.path) == 0
        else { throw failed("moving \(tmp.lastPathComponent) into place", dst) }
    }

    /// Moves the finished temporary directory `tmp` onto `dst` (see the type's comment).
    static func placeDirectory(_ tmp: URL, at dst: URL, replace: Bool) throws {
        switch existing(dst.path) {
        case .none:
            guard rename(tmp.path, dst.path) == 0 else { throw failed("rename from \(tmp.lastPathComponent)", dst) }
            return
        case .file, .other:
            throw ModelIOError(file: dst.path, "exists and is not a directory; refusing to replace it")
        case .directory: break
        }
        // rename(2) replaces an empty directory atomically and refuses a non-empty one.
        if rename(tmp.path, dst.path) == 0 { return }
        guard errno == ENOTEMPTY || errno == EEXIST else { throw failed("rename from \(tmp.lastPathComponent)", dst) }
        guard replace else {
            throw ModelIOError(file: dst.path, "exists and is not empty; refusing to replace it")
        }
        let foreign = try OutputManifest.foreignEntries(in: dst)
        guard foreign.isEmpty else { throw OutputManifest.foreignError(dst, foreign) }
        let listed = OutputManifest.files(in: dst) ?? []
        let aside = temporarySibling(of: dst)
        guard rename(dst.path, aside.path) == 0 else { throw failed("moving the previous output aside", dst) }
        if rename(tmp.path, dst.path) != 0 {
            let error = failed("rename from \(tmp.lastPathComponent)", dst)
            _ = rename(aside.path, dst.path)
            throw error
        }
        // Only the files the previous manifest lists (checked above to be all there was).
        for name in listed + [OutputManifest.fileName] { _ = unlink(aside.appendingPathComponent(name).path) }
        _ = rmdir(aside.path)
    }

    static func exists(_ dst: URL) -> ModelIOError {
        ModelIOError(file: dst.path, "already exists; refusing to replace it")
    }

    static func failed(_ what: String, _ dst: URL) -> ModelIOError {
        ModelIOError(file: dst.path, "\(what) failed: \(String(cString: strerror(errno)))")
    }

    /// Writes `data` to `url` through a temporary sibling, synced, then placed as above.
    public static func write(_ data: Data, to url: URL, replace: Bool) throws {
        let o = try WriterOutputFile(url: url, replace: replace)
        try o.write(data)
        try o.commit()
    }
}

/// The list of files Kiln wrote into an output directory, kept in the directory as
/// `kiln-manifest.json`. Replacing a previous output removes exactly these files; any
/// other entry in the directory is the user's and blocks the replacement.
public enum OutputManifest {
    public static let fileName = "kiln-manifest.json"

    static func data(files: [String]) throws -> Data {
        let obj: [String: Any] = ["written_by": "kiln", "files": files.sorted()]
        return try JSONSerialization.data(withJSONObject: obj, options: [.prettyPrinted, .sortedKeys])
    }

    /// The file names a directory's manifest lists; nil without a valid manifest. A name
    /// with a path separator or a dot-dot invalidates the whole manifest.
    public static func files(in dir: URL) -> [String]? {
        let url = dir.appendingPathComponent(fileName)
        guard OutputPlacement.existing(url.path) == .file,
            let attrs = try? FileManager.default.attributesOfItem(atPath: url.path),
            let size = attrs[.size] as? Int, size <= 1 << 20,
            let d = try? Data(contentsOf: url),
            let obj = try? JSONSerialization.jsonObject(with: d) as? [String: Any],
            obj["written_by"] as? String == "kiln", let files = obj["files"] as? [String]
        else { return nil }
        guard files.allSatisfy({ !$0.isEmpty && !$0.contains("/") && $0 != "." && $0 != ".." }) else { return nil }
        return files
    }

    /// Entries of `dir` that its manifest does not list (everything, without a manifest).
    /// Only regular files can be Kiln's; a listed name that is a directory or link is foreign.
    public static func foreignEntries(in dir: URL) throws -> [String] {
        let entries: [String]
        do { entries = try FileManager.default.contentsOfDirectory(atPath: dir.path) } catch {
            throw ModelIOError(file: dir.path, "cannot list the directory: \(error.localizedDescription)")
        }
        let listed = Set((files(in: dir) ?? []) + (files(in: dir) == nil ? [] : [fileName]))
        return entries.filter {
            !listed.contains($0) || OutputPlacement.existing(dir.appendingPathComponent($0).path) != .file
        }.sorted()
    }

    static func foreignError(_ dir: URL, _ foreign: [String]) -> ModelIOError {
        let shown =
            foreign.prefix(5).joined(separator: ", ") + (foreign.count > 5 ? ", ... (\(foreign.count) in all)" : "")
        return ModelIOError(
            file: dir.path,
            "holds files Kiln did not write (\(shown)); refusing to replace it: "
                + "move them away or choose another output")
    }
}
