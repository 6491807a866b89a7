import Foundation
import Jobs
import KilnProtocol

extension Coordinator {
    /// Largest range served in one response (a worker asks again for more).
    static let maxRangeBytes: UInt64 = 64 << 20

    /// Serves bytes of the active job's model file to workers that cannot read them.
    /// Only files of known jobs are served, and only within their size.
    func onRangeFetch(_ routing: Data, _ r: Kiln_V1_RangeFetchRequest, _ cid: String) {
        var resp = Kiln_V1_RangeFetchResponse()
        resp.requestID = r.requestID
        resp.offset = r.offset
        resp.length = r.length
        func refuse(_ code: Kiln_V1_ErrorCode, _ field: String, _ msg: String) {
            resp.error = Kiln_V1_Error(code, field: field, msg)
            reply(routing, Message(.rangeFetchResponse(resp), correlationID: cid))
        }
        guard workers[routing] != nil else {
            return refuse(.unauthorized, "range_fetch_request", "say worker_hello first")
        }
        // Jobs run one at a time: the range is of the active job's model (model_sha256 is not checked yet).
        guard let run = activeJob else { return refuse(.unknownJob, "range_fetch_request", "no active job") }
        let maxRange = min(Self.maxRangeBytes, UInt64(config.limits.maxFrameBytes))  // one frame, never more
        guard r.length > 0, r.length <= maxRange else {
            return refuse(.tooLarge, "range_fetch_request.length", "\(r.length) is not in 1...\(maxRange)")
        }
        let path = run.spec.model
        guard let h = FileHandle(forReadingAtPath: path) else {
            return refuse(.modelUnreadable, "model_path", "cannot open \(path)")
        }
        defer { try? h.close() }
        do {
            let size = try h.seekToEnd()
            guard r.offset <= size, r.length <= size - r.offset else {
                return refuse(
                    .invalidField, "range_fetch_request.offset",
                    "range \(r.offset)+\(r.length) beyond the file's \(size) bytes")
            }
            try h.seek(toOffset: r.offset)
            let bytes = try h.read(upToCount: Int(r.length)) ?? Data()
            let frame = try TensorFrame(name: "range", dtype: .u8, shape: [bytes.count], bytes: bytes)
            countSent("range", reply(routing, Message(.rangeFetchResponse(resp), correlationID: cid, tensors: [frame])))
        } catch {
            refuse(.modelUnreadable, "model_path", "\(path): \(error)")
        }
    }
}
