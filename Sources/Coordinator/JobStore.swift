import Cluster
import Foundation
import GRDB
import Jobs

/// A job's row in the store.
public struct StoredJob: Sendable, Equatable {
    public var id: String
    public var spec: JobSpec
    public var state: String
    public var error: String
    public var clientToken: String
    public var submittedMs: Int64
    public var finishedMs: Int64
}

/// The accepted result of one task: a durable file under DIR/results and its CRC-32C.
public struct StoredResult: Sendable, Equatable {
    public var task: TaskID
    public var path: String
    public var checksum: UInt32
    public var bytes: Int
    public var worker: String
}

/// The coordinator's durable state, in SQLite through GRDB (DIR/kiln.sqlite):
/// jobs, tasks, attempts, results. SQLite's default synchronous=FULL makes every
/// committed transaction durable, so a result is recorded before it is acknowledged.
public final class JobStore: @unchecked Sendable {  // GRDB's DatabaseQueue serializes access
    let db: DatabaseQueue

    public init(path: String) throws {
        db = try DatabaseQueue(path: path)
        var m = DatabaseMigrator()
        m.registerMigration("v1") { db in
            try db.execute(
                sql: """
                    CREATE TABLE jobs (id TEXT PRIMARY KEY, spec TEXT NOT NULL, state TEXT NOT NULL, error TEXT NOT NULL DEFAULT '',
                                       client_token TEXT NOT NULL DEFAULT '', submitted_ms INTEGER NOT NULL, finished_ms INTEGER NOT NULL DEFAULT 0);
                    CREATE TABLE tasks (job_id TEXT NOT NULL, task_id TEXT NOT NULL, kind TEXT NOT NULL, block INTEGER NOT NULL,
                                        shard INTEGER, grp INTEGER, state TEXT NOT NULL, attempt INTEGER NOT NULL DEFAULT 0,
                                        worker TEXT NOT NULL DEFAULT '', PRIMARY KEY (job_id, task_id));
                    CREATE TABLE attempts (job_id TEXT NOT NULL, task_id TEXT NOT NULL, attempt INTEGER NOT NULL, worker TEXT NOT NULL,
                                           started_ms INTEGER NOT NULL, finished_ms INTEGER NOT NULL DEFAULT 0, outcome TEXT NOT NULL DEFAULT 'running',
                                           PRIMARY KEY (job_id, task_id, attempt));
                    CREATE TABLE results (job_id TEXT NOT NULL, task_id TEXT NOT NULL, path TEXT NOT NULL, checksum INTEGER NOT NULL,
                                          bytes INTEGER NOT NULL, worker TEXT NOT NULL, PRIMARY KEY (job_id, task_id));
                    """)
        }
        // Result files are removed once a job ends; the rows stay as history, marked so
        // that nothing reads the files again.
        m.registerMigration("v2-retention") { db in
            try db.execute(sql: "ALTER TABLE jobs ADD COLUMN results_removed INTEGER NOT NULL DEFAULT 0")
        }
        try m.migrate(db)
    }

    public func insertJob(_ j: StoredJob, tasks: [TaskID]) throws {
        let spec = String(decoding: try JSONEncoder().encode(j.spec), as: UTF8.self)
        try db.write { db in
            try db.execute(
                sql: "INSERT INTO jobs (id, spec, state, error, client_token, submitted_ms) VALUES (?, ?, ?, ?, ?, ?)",
                arguments: [j.id, spec, j.state, j.error, j.clientToken, j.submittedMs])
            for t in tasks {
                var shard: Int?
                var grp: Int?
                switch t {
                case let .collect(_, s), let .propagate(_, s): shard = s
                case let .reconstruct(_, g): grp = g
                case .merge: break
                }
                try db.execute(
                    sql:
                        "INSERT INTO tasks (job_id, task_id, kind, block, shard, grp, state) VALUES (?, ?, ?, ?, ?, ?, 'pending')",
                    arguments: [j.id, t.wireName, t.kindName, t.block, shard, grp])
            }
        }
    }

    public func jobs() throws -> [StoredJob] {
        try db.read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM jobs ORDER BY submitted_ms, id").map { r in
                let specText: String = r["spec"]
                return StoredJob(
                    id: r["id"], spec: try JSONDecoder().decode(JobSpec.self, from: Data(specText.utf8)),
                    state: r["state"], error: r["error"], clientToken: r["client_token"],
                    submittedMs: r["submitted_ms"], finishedMs: r["finished_ms"])
            }
        }
    }

    public func setJobState(_ id: String, state: String, error: String = "", finishedMs: Int64 = 0) throws {
        try db.write { db in
            try db.execute(
                sql: "UPDATE jobs SET state = ?, error = ?, finished_ms = ? WHERE id = ?",
                arguments: [state, error, finishedMs, id])
        }
    }

    public func startAttempt(job: String, task: TaskID, attempt: Int, worker: String, nowMs: Int64) throws {
        try db.write { db in
            try db.execute(
                sql: "UPDATE tasks SET state = 'running', attempt = ?, worker = ? WHERE job_id = ? AND task_id = ?",
                arguments: [attempt, worker, job, task.wireName])
            try db.execute(
                sql:
                    "INSERT OR REPLACE INTO attempts (job_id, task_id, attempt, worker, started_ms) VALUES (?, ?, ?, ?, ?)",
                arguments: [job, task.wireName, attempt, worker, nowMs])
        }
    }

    public func endAttempt(job: String, task: TaskID, attempt: Int, outcome: String, nowMs: Int64) throws {
        try db.write { db in
            try db.execute(
                sql:
                    "UPDATE attempts SET outcome = ?, finished_ms = ? WHERE job_id = ? AND task_id = ? AND attempt = ?",
                arguments: [outcome, nowMs, job, task.wireName, attempt])
            if outcome != "ok" {
                try db.execute(
                    sql:
                        "UPDATE tasks SET state = 'pending', worker = '' WHERE job_id = ? AND task_id = ? AND state != 'done'",
                    arguments: [job, task.wireName])
            }
        }
    }

    /// Records an accepted result (its file is already fsynced) and marks the task done, in one
    /// transaction. A collect result that sums several shards is recorded for each task it
    /// covers, all naming the one file.
    public func recordResult(
        job: String, _ r: StoredResult, covering covered: [TaskID]? = nil, attempt: Int, nowMs: Int64
    ) throws {
        try db.write { db in
            for task in covered ?? [r.task] {
                try db.execute(
                    sql:
                        "INSERT OR REPLACE INTO results (job_id, task_id, path, checksum, bytes, worker) VALUES (?, ?, ?, ?, ?, ?)",
                    arguments: [job, task.wireName, r.path, Int64(r.checksum), r.bytes, r.worker])
                try db.execute(
                    sql: "UPDATE tasks SET state = 'done', worker = ? WHERE job_id = ? AND task_id = ?",
                    arguments: [r.worker, job, task.wireName])
            }
            try db.execute(
                sql:
                    "UPDATE attempts SET outcome = 'ok', finished_ms = ? WHERE job_id = ? AND task_id = ? AND attempt = ?",
                arguments: [nowMs, job, r.task.wireName, attempt])
            // The collects summed into this result end with it (their own attempt numbers).
            for task in covered ?? [] where task != r.task {
                try db.execute(
                    sql:
                        "UPDATE attempts SET outcome = 'ok', finished_ms = ? WHERE job_id = ? AND task_id = ? AND outcome = 'running'",
                    arguments: [nowMs, job, task.wireName])
            }
        }
    }

    /// The job's recorded results; none once its files are removed.
    public func results(job: String) throws -> [StoredResult] {
        try db.read { db in
            let sql = """
                SELECT results.* FROM results JOIN jobs ON jobs.id = results.job_id
                WHERE results.job_id = ? AND jobs.results_removed = 0
                """
            return try Row.fetchAll(db, sql: sql, arguments: [job]).compactMap { r in
                let name: String = r["task_id"]
                guard let t = TaskID(wireName: name) else { return nil }
                let sum: Int64 = r["checksum"]
                return StoredResult(
                    task: t, path: r["path"], checksum: UInt32(truncatingIfNeeded: sum), bytes: r["bytes"],
                    worker: r["worker"])
            }
        }
    }

    /// Marks a job's result files as removed (before they are unlinked, so a crash in
    /// between leaves files nobody reads, which `kiln gc` collects).
    public func markResultsRemoved(job: String) throws {
        try db.write { db in
            try db.execute(sql: "UPDATE jobs SET results_removed = 1 WHERE id = ?", arguments: [job])
        }
    }

    /// Jobs whose result files are marked removed.
    public func jobsWithResultsRemoved() throws -> Set<String> {
        try db.read { db in Set(try String.fetchAll(db, sql: "SELECT id FROM jobs WHERE results_removed = 1")) }
    }

    /// Bytes of the results recorded so far for a job (for the disk budget of later jobs).
    public func resultBytes(job: String) throws -> Int64 {
        try db.read { db in
            try Int64.fetchOne(
                db,
                // A sum of several shards is one file recorded for each of them.
                sql: "SELECT COALESCE(SUM(bytes), 0) FROM (SELECT DISTINCT path, bytes FROM results WHERE job_id = ?)",
                arguments: [job]) ?? 0
        }
    }

    /// Attempts started so far per task (a restarted coordinator numbers new attempts after them).
    public func attemptCounts(job: String) throws -> [String: Int] {
        try db.read { db in
            var out: [String: Int] = [:]
            for r in try Row.fetchAll(
                db, sql: "SELECT task_id, MAX(attempt) AS a FROM attempts WHERE job_id = ? GROUP BY task_id",
                arguments: [job])
            {
                out[r["task_id"]] = r["a"]
            }
            return out
        }
    }

    /// Tasks left 'running' by a coordinator that stopped: they go back to pending.
    public func resetRunning(job: String) throws {
        try db.write { db in
            try db.execute(
                sql: "UPDATE tasks SET state = 'pending', worker = '' WHERE job_id = ? AND state = 'running'",
                arguments: [job])
            try db.execute(
                sql: "UPDATE attempts SET outcome = 'abandoned' WHERE job_id = ? AND outcome = 'running'",
                arguments: [job])
        }
    }
}
