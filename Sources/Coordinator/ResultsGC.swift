import Foundation
import Jobs

/// `kiln gc`: collects result files a coordinator left behind (jobs that ended before
/// results were removed automatically, a crash between marking and removing, or
/// directories of jobs the store no longer knows), and stale temporary files.
/// It removes only what Kiln names under DATA_DIR/results (job directories "job-...",
/// result files "<task>.bin", temporaries ".tmp-UUID") and refuses to run while a
/// coordinator holds the data directory.
public enum ResultsGC {
    public struct Entry: Sendable, Equatable {
        public var job: String
        /// The job's state in the store, or "unknown" when the store has no such job.
        public var state: String
        public var removal: ResultFiles.Removal
    }

    public struct Report: Sendable, Equatable {
        public var entries: [Entry] = []
        /// Paths under results/ left in place because Kiln did not name them.
        public var leftAlone: [String] = []
        public var files: Int { entries.reduce(0) { $0 + $1.removal.files } }
        public var bytes: Int64 { entries.reduce(0) { $0 + $1.removal.bytes } }
    }

    static let ended: Set<String> = ["succeeded", "failed", "cancelled"]

    public static func run(dataDir: URL) throws -> Report {
        let storePath = dataDir.appendingPathComponent("kiln.sqlite").path
        guard FileManager.default.fileExists(atPath: storePath) else {
            throw CoordinatorError("\(dataDir.path) is not a Kiln data directory (no kiln.sqlite); nothing removed")
        }
        let lock = try DataDirLock(dataDir: dataDir)
        defer { lock.release() }
        let store = try JobStore(path: storePath)
        let states = Dictionary(try store.jobs().map { ($0.id, $0.state) }, uniquingKeysWith: { a, _ in a })
        let files = try ResultFiles(dataDir: dataDir)
        var report = Report()
        for name in try FileManager.default.contentsOfDirectory(atPath: files.root.path).sorted() {
            var st = stat()
            let isDirectory =
                lstat(files.root.appendingPathComponent(name).path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
            guard isDirectory, ResultFiles.isJobID(name) else {
                report.leftAlone.append(name)
                continue
            }
            let state = states[name]
            let removal: ResultFiles.Removal
            if let state, !ended.contains(state) {
                // An unfinished job resumes from its results; only its temporaries are stale
                // (no coordinator runs, so none is being written).
                removal = try files.removeJob(name, onlyTemporary: true)
            } else {
                if state != nil { try store.markResultsRemoved(job: name) }
                removal = try files.removeJob(name)
            }
            report.leftAlone += removal.foreign.map { "\(name)/\($0)" }
            if removal.files > 0 || state == nil || ended.contains(state!) {
                report.entries.append(Entry(job: name, state: state ?? "unknown", removal: removal))
            }
        }
        return report
    }
}
