import Foundation
import KilnProtocol

// JSON shapes of the client commands' --json output: snake_case keys, states
// as lowercase words, times in milliseconds. Built by hand (not protobuf's JSON
// mapping) so scripts get figures as numbers and a shape that stays put.

extension JobView {
    public func jsonObject(nowUnixMs: Int64) -> [String: Any] {
        var o: [String: Any] = [
            "job_id": jobID,
            "state": state.label,
            "blocks_total": rows.count,
            "blocks_done": blocksDone,
            "elapsed_ms": jobElapsedMs(nowUnixMs: nowUnixMs),
            "submitted_unix_ms": submittedUnixMs,
            "fraction_done": fraction,
            "spec": spec.jsonObject,
            "blocks": rows.map { $0.jsonObject(nowUnixMs: nowUnixMs) },
            "eval_results": evalResults,
        ]
        if let eta = etaMs(nowUnixMs: nowUnixMs) { o["eta_ms"] = eta }
        if let e = error { o["error"] = ["code": "\(e.code)", "message": e.message, "field": e.field] }
        return o
    }
}

extension PhaseCount {
    var jsonObject: [String: Any] { ["done": done, "total": total] }
}

extension BlockRow {
    public func jsonObject(nowUnixMs: Int64) -> [String: Any] {
        var o: [String: Any] = [
            "block": block, "stage": stage.rawValue,
            "statistics": statistics.jsonObject, "merge": merge.jsonObject,
            "reconstruction": reconstruction.jsonObject, "propagation": propagation.jsonObject,
            "workers": workers,
        ]
        if let e = error { o["error"] = e }
        if let el = elapsedMs(nowUnixMs: nowUnixMs) { o["elapsed_ms"] = el }
        if let eta = etaMs(nowUnixMs: nowUnixMs) { o["eta_ms"] = eta }
        return o
    }
}

extension Kiln_V1_JobSpec {
    public var jsonObject: [String: Any] {
        var o: [String: Any] = [
            "name": name, "model": modelPath, "output": outputPath,
            "method": method.label, "bits": bits, "group_size": groupSize, "symmetric": symmetric,
            "act_order": actOrder, "mode": mode.label, "format": format.label, "damp": Double(dampPercent),
            "samples": calibration.samples, "seqlen": calibration.seqlen, "seed": calibration.seed,
        ]
        if !calibration.textPath.isEmpty { o["calibration"] = calibration.textPath }
        if eval.enabled {
            o["eval"] = eval.textPath
            o["eval_windows"] = eval.samples
        }
        return o
    }
}

// The names `kiln run` and `kiln submit` use for these options.
extension Kiln_V1_QuantMethod {
    public var label: String {
        switch self {
        case .rtn: return "rtn"
        case .gptq: return "gptq"
        case .awq: return "awq"
        case .awqGptq: return "awq+gptq"
        case .unspecified: return "unspecified"
        case .UNRECOGNIZED(let v): return "method \(v)"
        }
    }
}

extension Kiln_V1_ScheduleMode {
    public var label: String {
        switch self {
        case .parallel: return "parallel"
        case .sequential: return "sequential"
        case .unspecified: return "unspecified"
        case .UNRECOGNIZED(let v): return "mode \(v)"
        }
    }
}

extension Kiln_V1_OutputFormat {
    public var label: String {
        switch self {
        case .ggufQ40: return "gguf-q4_0"
        case .ggufQ41: return "gguf-q4_1"
        case .ggufQ80: return "gguf-q8_0"
        case .gptqSafetensors: return "gptq-safetensors"
        case .ggufQ2K: return "gguf-q2_k"
        case .ggufQ3K: return "gguf-q3_k"
        case .ggufQ4K: return "gguf-q4_k"
        case .ggufQ5K: return "gguf-q5_k"
        case .ggufQ6K: return "gguf-q6_k"
        case .ggufQ4KM: return "gguf-q4_k_m"
        case .ggufQ3KM: return "gguf-q3_k_m"
        case .compressedTensorsW8A8: return "compressed-tensors-w8a8"
        case .compressedTensorsW4A16: return "compressed-tensors-w4a16"
        case .unspecified: return "unspecified"
        case .UNRECOGNIZED(let v): return "format \(v)"
        }
    }
}

extension Kiln_V1_WorkerState {
    public var label: String {
        switch self {
        case .unspecified: return "unknown"
        case .idle: return "idle"
        case .busy: return "busy"
        case .lost: return "lost"
        case .UNRECOGNIZED(let v): return "state \(v)"
        }
    }
}

extension Kiln_V1_WorkerInfo {
    public func jsonObject(nowUnixMs: Int64) -> [String: Any] {
        var o: [String: Any] = [
            "worker_id": workerID, "hostname": hostname, "state": state.label,
            "threads": capacity.threads, "memory_bytes": capacity.memoryBytes, "cpu_kind": capacity.cpuKind,
            "can_read_model": capacity.canReadModel, "running_task_ids": runningTaskIds,
            "tasks_done": tasksDone, "connected_unix_ms": connectedUnixMs,
            "last_heartbeat_unix_ms": lastHeartbeatUnixMs,
        ]
        if lastHeartbeatUnixMs > 0 { o["heartbeat_age_ms"] = max(0, nowUnixMs - lastHeartbeatUnixMs) }
        return o
    }
}

/// The `kiln workers` table.
public enum WorkerTable {
    public static func lines(_ workers: [Kiln_V1_WorkerInfo], nowUnixMs: Int64) -> [String] {
        var out = [
            JobTable.pad("worker", 24) + "  " + JobTable.pad("host", 16) + "  " + JobTable.pad("state", 6) + "  "
                + JobTable.pad("threads", 7, right: true) + "  " + JobTable.pad("done", 6, right: true) + "  "
                + JobTable.pad("running", 7, right: true) + "  " + JobTable.pad("heartbeat", 9, right: true)
        ]
        for w in workers.sorted(by: { $0.workerID < $1.workerID }) {
            let age = w.lastHeartbeatUnixMs > 0 ? JobTable.duration(nowUnixMs - w.lastHeartbeatUnixMs) + " ago" : "-"
            out.append(
                JobTable.pad(w.workerID, 24) + "  " + JobTable.pad(w.hostname.isEmpty ? "-" : w.hostname, 16) + "  "
                    + JobTable.pad(w.state.label, 6) + "  " + JobTable.pad("\(w.capacity.threads)", 7, right: true)
                    + "  "
                    + JobTable.pad("\(w.tasksDone)", 6, right: true) + "  "
                    + JobTable.pad("\(w.runningTaskIds.count)", 7, right: true) + "  "
                    + JobTable.pad(age, 9, right: true))
        }
        return out
    }
}

/// Wall-clock Unix milliseconds (for elapsed and ETA figures against the coordinator's timestamps).
public enum WallClock {
    public static var nowUnixMs: Int64 { Int64((Date().timeIntervalSince1970 * 1000).rounded()) }
}
