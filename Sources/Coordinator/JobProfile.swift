import Cluster
import Foundation
import Jobs

/// Where a job's time went, seen from the scheduler (loop thread only): per worker the
/// time it held a task (assignment to its result's arrival) and the time the task computed
/// (the worker's own measure), and the time workers sat idle before each phase because
/// nothing of it was ready yet (the phase barriers). Logged when the job ends, for
/// `Ops/bench.sh scale`.
struct JobProfile {
    struct WorkerTime {
        var tasks = 0
        var heldMs: Int64 = 0
        var computeMs: Int64 = 0
        var idleMs: Int64 = 0
        /// Since when the worker waits for this job's next task.
        var idleSince: Int64 = 0
    }

    var startedMs: Int64 = 0
    var workers: [String: WorkerTime] = [:]
    /// Worker idle time before a task of each kind ("collect", "reconstruct", ...).
    var waitsMs: [String: Int64] = [:]
    /// Time the coordinator spent in merges (the workers wait for them: "reconstruct").
    var mergeMs: Int64 = 0

    mutating func assigned(_ t: TaskID, to worker: String, nowMs: Int64) {
        if startedMs == 0 { startedMs = nowMs }
        var w = workers[worker] ?? WorkerTime(idleSince: startedMs)
        let idle = max(0, nowMs - w.idleSince)
        w.idleMs += idle
        waitsMs[t.kindName, default: 0] += idle
        w.idleSince = Int64.max  // busy until its result arrives
        workers[worker] = w
    }

    mutating func finished(_ t: TaskID, by worker: String, startedMs: Int64, computeMs: Int64, nowMs: Int64) {
        var w = workers[worker] ?? WorkerTime(idleSince: nowMs)
        w.tasks += 1
        w.heldMs += max(0, nowMs - startedMs)
        w.computeMs += computeMs
        w.idleSince = nowMs
        workers[worker] = w
    }

    /// One JSON object: wall time, per-worker figures, barrier waits, merge time.
    func json(finishedMs: Int64, coordinatorCPUSeconds: Double, traffic: TrafficCounters) -> String {
        let ws = workers.keys.sorted().map { id -> String in
            let w = workers[id]!
            let tail = w.idleSince == Int64.max ? 0 : max(0, finishedMs - w.idleSince)  // the last merges, the writer
            return "\"\(id)\": {\"tasks\": \(w.tasks), \"held_s\": \(Double(w.heldMs) / 1000), "
                + "\"compute_s\": \(Double(w.computeMs) / 1000), \"idle_s\": \(Double(w.idleMs + tail) / 1000)}"
        }
        let waits = waitsMs.keys.sorted().map { "\"\($0)\": \(Double(waitsMs[$0]!) / 1000)" }
        func bytes(_ d: [String: Int]) -> String { d.keys.sorted().map { "\"\($0)\": \(d[$0]!)" }.joined(separator: ", ") }
        return "{\"wall_s\": \(Double(finishedMs - startedMs) / 1000), \"coordinator_cpu_s\": \(coordinatorCPUSeconds), "
            + "\"merge_s\": \(Double(mergeMs) / 1000), \"workers\": {\(ws.joined(separator: ", "))}, "
            + "\"waits_before_s\": {\(waits.joined(separator: ", "))}, "
            + "\"bytes_sent\": {\(bytes(traffic.sent))}, \"bytes_received\": {\(bytes(traffic.received))}}"
    }
}
