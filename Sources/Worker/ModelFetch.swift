import Foundation
import KilnProtocol

/// The model could not be read here nor fetched from the coordinator.
struct ModelFetchError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

/// Range requests to the coordinator from the compute thread: the request goes out
/// through the worker loop (which owns the socket), the response comes back through
/// `deliver`, and the compute thread waits for it.
final class RangeFetcher: @unchecked Sendable {  // state guarded by `cond`
    private let cond = NSCondition()
    private var waiting: Set<String> = []
    private var answers: [String: Result<Data, ModelFetchError>] = [:]
    private var generation = 0

    /// Sends the request with `send` and waits for the answer (or `timeout` seconds).
    func fetch(offset: UInt64, length: UInt64, timeout: Double, send: (Message) -> Void) throws -> Data {
        var r = Kiln_V1_RangeFetchRequest()
        r.requestID = UUID().uuidString
        r.offset = offset
        r.length = length
        cond.lock()
        waiting.insert(r.requestID)
        let gen = generation
        cond.unlock()
        send(Message(.rangeFetchRequest(r)))
        let deadline = Date().addingTimeInterval(timeout)
        cond.lock()
        defer {
            waiting.remove(r.requestID)
            cond.unlock()
        }
        while answers[r.requestID] == nil {
            if generation != gen {
                throw ModelFetchError("range \(offset)+\(length): connection to the coordinator reset")
            }
            guard cond.wait(until: deadline) || answers[r.requestID] != nil else {
                throw ModelFetchError("range \(offset)+\(length): no answer from the coordinator in \(Int(timeout)) s")
            }
        }
        return try answers.removeValue(forKey: r.requestID)!.get()
    }

    /// A response from the coordinator (loop thread). Unknown request ids are dropped.
    func deliver(_ r: Kiln_V1_RangeFetchResponse, bytes: Data?) {
        cond.lock()
        defer { cond.unlock() }
        guard waiting.contains(r.requestID) else { return }
        if r.hasError {
            answers[r.requestID] = .failure(
                ModelFetchError("coordinator refused range \(r.offset)+\(r.length): \(r.error.message)"))
        } else if let b = bytes, UInt64(b.count) == r.length {
            answers[r.requestID] = .success(b)  // CRC-32C checked by Message.decode
        } else {
            answers[r.requestID] = .failure(
                ModelFetchError("range \(r.offset)+\(r.length) came back with \(bytes?.count ?? 0) bytes"))
        }
        cond.broadcast()
    }

    /// Wakes every waiter with an error (reconnect, stop).
    func cancelAll(_ why: String) {
        cond.lock()
        generation += 1
        answers = [:]
        cond.broadcast()
        cond.unlock()
    }
}

/// Where the worker reads a job's model: the coordinator's path when this host sees
/// the same file (readable, same size), else a local copy fetched in ranges from the
/// coordinator into the cache directory (verified by size; every range by CRC-32C).
final class ModelSource: @unchecked Sendable {  // `send` and `cached` under `lock`
    let fetcher: RangeFetcher
    let cacheDirectory: URL
    let alwaysFetch: Bool
    let rangeBytes: Int
    /// Set by the worker: sends a message through its loop.
    var send: (Message) -> Void {
        get { lock.withLock { _send } }
        set { lock.withLock { _send = newValue } }
    }
    private let lock = NSLock()
    private var _send: (Message) -> Void = { _ in }
    private var _cached: [String: String] = [:]  // job id -> local path
    private var cached: [String: String] {
        get { lock.withLock { _cached } }
        set { lock.withLock { _cached = newValue } }
    }

    init(fetcher: RangeFetcher, cacheDirectory: URL, alwaysFetch: Bool, rangeBytes: Int) {
        self.fetcher = fetcher
        self.cacheDirectory = cacheDirectory
        self.alwaysFetch = alwaysFetch
        self.rangeBytes = max(1 << 16, rangeBytes)
    }

    /// Deletes the cached models of other jobs (a worker keeps one job at a time).
    func forget(exceptJob job: String) {
        for (j, p) in cached where j != job {
            try? FileManager.default.removeItem(atPath: p)
            cached[j] = nil
        }
    }

    /// Why `path` cannot serve as the job's model here (nil: it can).
    func unusable(_ path: String, size: UInt64) -> String? {
        if alwaysFetch { return "the worker fetches models from the coordinator (--fetch-model)" }
        guard FileManager.default.isReadableFile(atPath: path) else { return "\(path) is not readable on this host" }
        var isDir: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDir), isDir.boolValue { return nil }
        guard size > 0 else { return nil }
        let here = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? NSNumber)?.uint64Value ?? 0
        return here == size ? nil : "\(path) has \(here) bytes here, the coordinator's has \(size)"
    }

    func path(job: String, spec model: String, location: Kiln_V1_ModelLocation, log: (String) -> Void) throws -> String
    {
        if let p = cached[job] { return p }
        guard let why = unusable(model, size: location.size) else { return model }
        guard location.size > 0 else {
            throw ModelFetchError("cannot use the model here (\(why)) and the coordinator did not say its size")
        }
        let fm = FileManager.default
        try fm.createDirectory(at: cacheDirectory, withIntermediateDirectories: true)
        let name = URL(fileURLWithPath: model).lastPathComponent
        let dst = cacheDirectory.appendingPathComponent("\(job)-\(name)")
        let tmp = cacheDirectory.appendingPathComponent(".part-\(job)-\(name)")
        log("model \(why): fetching \(location.size) bytes from the coordinator into \(dst.path)")
        let t0 = Date()
        try? fm.removeItem(at: tmp)
        guard fm.createFile(atPath: tmp.path, contents: nil) else {
            throw ModelFetchError("cannot create \(tmp.path) for the fetched model")
        }
        do {
            let h = try FileHandle(forWritingTo: tmp)
            defer { try? h.close() }
            var offset: UInt64 = 0
            while offset < location.size {
                let n = min(UInt64(rangeBytes), location.size - offset)
                let bytes = try fetcher.fetch(offset: offset, length: n, timeout: 60, send: send)
                try h.write(contentsOf: bytes)
                offset += n
            }
            try h.synchronize()
        } catch {
            try? fm.removeItem(at: tmp)
            throw error as? ModelFetchError ?? ModelFetchError("fetching the model into \(tmp.path): \(error)")
        }
        let got = (try? fm.attributesOfItem(atPath: tmp.path)[.size] as? NSNumber)?.uint64Value ?? 0
        guard got == location.size else {
            try? fm.removeItem(at: tmp)
            throw ModelFetchError("fetched model has \(got) bytes, the coordinator's has \(location.size)")
        }
        try? fm.removeItem(at: dst)
        try fm.moveItem(at: tmp, to: dst)
        cached[job] = dst.path
        log(
            "model fetched: \(got) bytes in \(String(format: "%.1f", Date().timeIntervalSince(t0))) s, using \(dst.path)"
        )
        return dst.path
    }
}
