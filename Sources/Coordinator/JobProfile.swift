import Cluster
import Foundation
import Jobs

/// Where a job's time went, seen from the scheduler (loop thread only): per worker the
/// time it held at least one task (from an assignment to the arrival of its last result)
/// and the time its tasks computed (the worker's own measure, summed over lanes), and the
/// time workers held nothing before a task of each kind because nothing was ready (the
/// phase barriers). Logged when the job ends, for `Ops/bench.sh scale`.
struct JobProfile {
    struct WorkerTime {
        var tasks = 0
        var busyMs: Int64 = 0
        var computeMs: Int64 = 0
        var idleMs: Int64 = 0
        /// Since when it holds a task (busy) or holds none (idle).
        var since: Int64 = 0
        var busy = false
    }

    var startedMs: Int64 = 0
    var workers: [String: WorkerTime] = [:]
    /// Worker idle time before a task of each kind ("collect", "reconstruct", ...).
    var waitsMs: [String: Int64] = [:]
    /// Time the coordinator spent in merges (the workers wait for them: "reconstruct").
    var mergeMs: Int64 = 0

    /// `t` was assigned to a worker that held `heldBefore` tasks of this job.
    mutating func assigned(_ t: TaskID, to worker: String, heldBefore: Int, nowMs: Int64) {
        if startedMs == 0 { startedMs = nowMs }
        var w = workers[worker] ?? WorkerTime(since: startedMs)
        if !w.busy || heldBefore == 0 {
            let idle = max(0, nowMs - w.since)
            w.idleMs += idle
            waitsMs[t.kindName, default: 0] += idle
            w.busy = true
            w.since = nowMs
        }
        workers[worker] = w
    }

    /// The result of `t` arrived; the worker still holds `heldAfter` tasks.
    mutating func finished(_ t: TaskID, by worker: String, heldAfter: Int, computeMs: Int64, nowMs: Int64) {
        guard var w = workers[worker] else { return }
        w.tasks += 1
        w.computeMs += computeMs
        if w.busy && heldAfter == 0 {
            w.busyMs += max(0, nowMs - w.since)
            w.busy = false
            w.since = nowMs
        }
        workers[worker] = w
    }

    /// One JSON object: wall time, per-worker figures, barrier waits, merge time, traffic.
    func json(finishedMs: Int64, coordinatorCPUSeconds: Double, traffic: TrafficCounters) -> String {
        let ws = workers.keys.sorted().map { id -> String in
            let w = workers[id]!
            // The tail: waiting for the last merges and the writer.
            let tail = max(0, finishedMs - w.since)
            let busy = w.busyMs + (w.busy ? tail : 0)
            let idle = w.idleMs + (w.busy ? 0 : tail)
            return "\"\(id)\": {\"tasks\": \(w.tasks), \"busy_s\": \(Double(busy) / 1000), "
                + "\"compute_s\": \(Double(w.computeMs) / 1000), \"idle_s\": \(Double(idle) / 1000)}"
        }
        let waits = waitsMs.keys.sorted().map { "\"\($0)\": \(Double(waitsMs[$0]!) / 1000)" }
        func bytes(_ d: [String: Int]) -> String {
            d.keys.sorted().map { "\"\($0)\": \(d[$0]!)" }.joined(separator: ", ")
        }
        return
            "{\"wall_s\": \(Double(finishedMs - startedMs) / 1000), \"coordinator_cpu_s\": \(coordinatorCPUSeconds), "
            + "\"merge_s\": \(Double(mergeMs) / 1000), \"workers\": {\(ws.joined(separator: ", "))}, "
            + "\"waits_before_s\": {\(waits.joined(separator: ", "))}, "
            + "\"bytes_sent\": {\(bytes(traffic.sent))}, \"bytes_received\": {\(bytes(traffic.received))}}"
    }
}
