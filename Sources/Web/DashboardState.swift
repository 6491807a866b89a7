import Foundation
import KilnProtocol
import SwiftProtobuf

/// What the dashboard shows: every job's status as the Clone pattern builds it (a
/// snapshot, then the updates after it, applied as the page applies them), and the
/// workers. The page gets this whole (`/api/state`, the first event of `/api/events`),
/// then the same updates the coordinator published, with their sequence numbers.
struct DashboardState {
    var sequence: UInt64 = 0
    var jobs: [String: Kiln_V1_JobStatus] = [:]
    /// Jobs in the order they were first seen (the coordinator's own order in a snapshot).
    var order: [String] = []
    var workers: [Kiln_V1_WorkerInfo] = []
    /// The feed's last failure (the coordinator unreachable ...), shown on the page.
    var feedError: String?
    /// Most modules kept per job: a bound on what a peer can make us hold.
    static let maxModules = 1 << 16

    mutating func apply(_ snapshot: Kiln_V1_SnapshotResponse) {
        sequence = snapshot.sequence
        jobs = [:]
        order = []
        for s in snapshot.jobs where jobs[s.jobID] == nil {
            jobs[s.jobID] = s
            order.append(s.jobID)
        }
    }

    /// One update, merged as JobView merges it: a full status replaces the job's; a module
    /// replaces the one with its (block, module, phase); a state sets the state.
    mutating func apply(_ u: Kiln_V1_ProgressUpdate) {
        sequence = max(sequence, u.sequence)
        guard !u.jobID.isEmpty else { return }
        if jobs[u.jobID] == nil {
            var s = Kiln_V1_JobStatus()
            s.jobID = u.jobID
            jobs[u.jobID] = s
            order.append(u.jobID)
        }
        if u.hasStatus { jobs[u.jobID] = u.status }
        if u.state != .unspecified { jobs[u.jobID]!.state = u.state }
        if u.hasModule {
            let m = u.module
            var modules = jobs[u.jobID]!.modules
            if let i = modules.firstIndex(where: { $0.block == m.block && $0.module == m.module && $0.phase == m.phase }
            ) {
                modules[i] = m
            } else if modules.count < Self.maxModules {
                modules.append(m)
            }
            jobs[u.jobID]!.modules = modules
        }
    }

    static let json: JSONEncodingOptions = {
        var o = JSONEncodingOptions()
        o.preserveProtoFieldNames = true
        return o
    }()

    /// {"sequence": N, "jobs": [JobStatus...], "workers": [WorkerInfo...], "feed_error": ...}
    /// (protobuf's JSON mapping, proto field names).
    func jsonText(nowUnixMs: Int64) -> String {
        let jobsJSON = order.compactMap { jobs[$0].flatMap { try? $0.jsonString(options: Self.json) } }
        var out = "{\"sequence\":\(sequence),\"now_unix_ms\":\(nowUnixMs),\"jobs\":[" + jobsJSON.joined(separator: ",")
        out += "],\"workers\":" + Self.workersJSON(workers)
        out += ",\"feed_error\":" + (feedError.map(Self.quoted) ?? "null") + "}"
        return out
    }

    static func workersJSON(_ workers: [Kiln_V1_WorkerInfo]) -> String {
        "[" + workers.compactMap { try? $0.jsonString(options: json) }.joined(separator: ",") + "]"
    }

    static func quoted(_ s: String) -> String {
        let data = (try? JSONSerialization.data(withJSONObject: [s])) ?? Data("[\"\"]".utf8)
        return String(String(decoding: data, as: UTF8.self).dropFirst().dropLast())
    }
}
