// libFuzzer target: multipart ZeroMQ messages -> Message.decode (Envelope,
// tensor headers against their frames, CRC-32C), then what a coordinator or
// worker does with them: announced chunked transfers, tensor_chunk messages
// into IncomingTransfers, credits into an OutgoingTransfers sender.
//
// Input: a sequence of frames, each [flags u8][length u16 LE][bytes]; a length
// past the end takes what remains; flags bit 0 ends the current message.
//
// KILN_FUZZ_MAKE_SEEDS=DIR: writes seeds (real encoded messages) to DIR and exits.
import Foundation
import KilnProtocol

/// Small limits so that an accepted transfer stays cheap (the receiver allocates
/// an announced tensor once); the checks are the same as with the defaults.
let limits: FramingLimits = {
    var l = FramingLimits()
    l.maxEnvelopeBytes = 1 << 16
    l.maxFrameBytes = 1 << 16
    l.maxTensorBytes = 1 << 20
    l.maxChunkCount = 1 << 12
    return l
}()

func messages(_ bytes: [UInt8]) -> [[Data]] {
    var out: [[Data]] = []
    var frames: [Data] = []
    var i = 0
    while i + 3 <= bytes.count {
        let flags = bytes[i]
        let n = min(Int(bytes[i + 1]) | Int(bytes[i + 2]) << 8, bytes.count - i - 3)
        frames.append(Data(bytes[(i + 3)..<(i + 3 + n)]))
        i += 3 + n
        if flags & 1 == 1 {
            out.append(frames)
            frames = []
        }
    }
    if !frames.isEmpty { out.append(frames) }
    return out
}

func frames(_ messages: [[Data]]) -> Data {
    var out = Data()
    for m in messages {
        for (k, f) in m.enumerated() {
            out.append(k == m.count - 1 ? 1 : 0)
            out.append(UInt8(f.count & 0xFF))
            out.append(UInt8(f.count >> 8))
            out.append(f)
        }
    }
    return out
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? []
    receive(messages(bytes))
    return 0
}

func receive(_ input: [[Data]]) {
    var incoming = IncomingTransfers(window: 4, limits: limits, maxBytes: 1 << 16, maxPending: 4)
    var outgoing = OutgoingTransfers(chunkSize: 16, window: 2)
    // A live outgoing transfer (id 1) for the fuzzer's credits to steer.
    let payload = try! TensorFrame(name: "out", dtype: .u8, shape: [100], bytes: Data((0..<100).map { UInt8($0) }))
    _ = try! outgoing.start(payload, context: "fuzz")
    var now: Int64 = 0
    for frames in input {
        now += 1000
        let m: Message
        do {
            m = try Message.decode(frames, limits: limits)
        } catch let e as ProtocolError {
            _ = e.wireError
            if let id = Message.chunkTransferID(frames, limits: limits) { _ = incoming.fail(id, e) }
            continue
        } catch {
            preconditionFailure("Message.decode threw a non-protocol error: \(error)")
        }
        switch m.body {
        case .taskAssignment(let a)?:
            if m.tensors.isEmpty, let h = a.inputs.first?.tensor, h.transferID != 0 {
                try? incoming.announce(h, by: m, nowMs: now)
            }
        case .taskResult(let r)?:
            if m.tensors.isEmpty, let h = r.outputs.first, h.transferID != 0 {
                try? incoming.announce(h, by: m, nowMs: now)
            }
        case .tensorChunk?:
            if case .complete(let done, _) = incoming.accept(m, nowMs: now) {
                _ = try? done.tensors.first?.floats()
            }
        case .credit(let c)?:
            _ = outgoing.apply(c)
        default:
            break
        }
        // What a peer sends must pass our own encoder's checks (checksums aside).
        _ = try? m.encode(limits: limits)
        _ = incoming.expire(nowMs: now, silenceMs: 5000)
    }
}

@_cdecl("LLVMFuzzerInitialize")
public func fuzzInitialize(
    _ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>
) -> CInt {
    guard let env = getenv("KILN_FUZZ_MAKE_SEEDS") else { return 0 }
    do {
        try makeSeeds(URL(fileURLWithPath: String(cString: env)))
        exit(0)
    } catch {
        FileHandle.standardError.write(Data("seed generation failed: \(error)\n".utf8))
        exit(1)
    }
}

/// A task assignment with its payload in one frame; a chunked result (the
/// announcement, then every chunk as the sender makes them); credits; a heartbeat.
func makeSeeds(_ dir: URL) throws {
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    let payload = Data((0..<200).map { UInt8(truncatingIfNeeded: $0 * 31) })
    var a = Kiln_V1_TaskAssignment()
    a.taskID = "reconstruct/0/1"
    a.attempt = 1
    a.jobID = "job-1"
    var input = Kiln_V1_InputRef()
    input.name = "input"
    input.kind = .tensor
    let frame = try TensorFrame(name: "input:job-1", dtype: .u8, shape: [payload.count], bytes: payload)
    input.tensor = frame.header
    a.inputs = [input]
    let single = try Message(.taskAssignment(a), correlationID: "c1", tensors: [frame]).encode(limits: limits)
    try frames([single]).write(to: dir.appendingPathComponent("assignment.bin"))

    var sender = OutgoingTransfers(chunkSize: 64, window: 4)
    let floats = try TensorFrame(name: "result:job-1", shape: [50], floats: (0..<50).map { Float($0) / 7 })
    let (header, chunks) = try sender.start(floats, context: "collect/0/0")
    var r = Kiln_V1_TaskResult()
    r.taskID = "collect/0/0"
    r.attempt = 1
    r.status = .ok
    r.outputs = [header]
    let announce = try Message(.taskResult(r)).encode(limits: limits)
    try frames([announce] + chunks.map { try $0.encode(limits: limits) }).write(
        to: dir.appendingPathComponent("chunked.bin"))

    var credit = Kiln_V1_Credit()
    credit.transferID = 1
    credit.sequence = 1
    credit.grant = 2
    credit.resend = [0]
    var reset = credit
    reset.sequence = 2
    reset.reset = true
    let beat = try Message(.heartbeat(Kiln_V1_Heartbeat())).encode(limits: limits)
    try frames([
        try Message(.credit(credit)).encode(limits: limits), try Message(.credit(reset)).encode(limits: limits), beat,
    ])
    .write(to: dir.appendingPathComponent("credits.bin"))
}
