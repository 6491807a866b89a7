import Cluster
import Foundation
import KilnProtocol

extension Coordinator {
    /// Task states, queue depth, workers, heartbeat ages and job phases, from the loop's state.
    func recordStateMetrics() {
        assertOnLoop()
        guard metrics.enabled else { return }
        let now = Self.nowMs()
        var values: [(label: String, dims: [(String, String)], value: Double)] = []
        var tasks: [String: [String: Int]] = [:]
        var queued = 0
        for id in jobOrder {
            guard let run = jobs[id] else { continue }
            for state in JobRun.metricStates {
                values.append(("kiln_job_phase", [("job_id", id), ("phase", state)], run.state.label == state ? 1 : 0))
            }
            guard !run.isTerminal else { continue }
            for t in run.graph.tasks {
                let state: String
                if run.done.contains(t) {
                    state = "done"
                } else if run.running[t] != nil {
                    state = "running"
                } else if run.readiness.isReady(t) {
                    state = "ready"
                    queued += 1
                } else {
                    state = "waiting"
                }
                tasks[t.kindName, default: [:]][state, default: 0] += 1
            }
        }
        for (kind, states) in tasks {
            for state in ["waiting", "ready", "running", "done"] {
                values.append(("kiln_tasks", [("kind", kind), ("state", state)], Double(states[state] ?? 0)))
            }
        }
        values.append(("kiln_queue_depth", [], Double(queued)))
        values.append(("kiln_workers_connected", [], Double(workers.count)))
        var oldest = 0.0
        for w in workers.values {
            let age = Double(max(0, now - w.lastSeenMs)) / 1000
            oldest = max(oldest, age)
            values.append(("kiln_worker_heartbeat_age_seconds", [("worker", w.id)], age))
            values.append(("kiln_worker_running_tasks", [("worker", w.id)], Double(w.held.count)))
        }
        values.append(("kiln_heartbeat_age_max_seconds", [], oldest))
        metrics.setState(values)
    }
}

extension JobRun {
    /// `kiln_job_phase`'s phase label values, in job order.
    static let metricStates = [
        "queued", "planning", "running", "writing", "evaluating", "succeeded", "failed", "cancelled",
    ]
}
