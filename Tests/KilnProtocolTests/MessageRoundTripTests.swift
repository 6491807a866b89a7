import Foundation
import KilnProtocol
import XCTest

/// Every message kind survives encode -> decode unchanged.
final class MessageRoundTripTests: XCTestCase {
    static func header() throws -> Kiln_V1_TensorHeader {
        try TensorFrame(name: "blk.0.attn_q.weight", dtype: .q40, shape: [4, 64], bytes: Data(count: 4 * 2 * 18)).header
    }

    static func jobSpec() -> Kiln_V1_JobSpec {
        .with {
            $0.name = "smollm2-w4"
            $0.modelPath = "/models/m.gguf"
            $0.modelSize = 270_000_000
            $0.calibration = .with {
                $0.textPath = "calib.txt"
                $0.samples = 128
                $0.seqlen = 2048
                $0.seed = 42
                $0.sampler = .randomWindows
            }
            $0.method = .gptq
            $0.bits = 4
            $0.groupSize = 128
            $0.symmetric = true
            $0.actOrder = true
            $0.mode = .sequential
            $0.format = .ggufQ40
            $0.outputPath = "out.gguf"
            $0.dampPercent = 0.01
            $0.eval = .with {
                $0.enabled = true
                $0.textPath = "eval.txt"
                $0.metrics = [.perplexity, .klDivergence]
            }
        }
    }

    static func jobStatus() -> Kiln_V1_JobStatus {
        .with {
            $0.jobID = "job-1"
            $0.state = .running
            $0.spec = jobSpec()
            $0.modules = [
                .with {
                    $0.block = 3
                    $0.module = "attn.qkv"
                    $0.phase = .reconstruct
                    $0.done = 2
                    $0.total = 3
                    $0.error = 0.125
                    $0.workerID = "w1"
                    $0.startedUnixMs = 1_700_000_000_000
                    $0.elapsedMs = 1500
                }
            ]
            $0.blocksTotal = 30
            $0.blocksDone = 3
            $0.submittedUnixMs = 1_699_999_999_000
            $0.evalResults = ["perplexity": 12.5]
        }
    }

    static func capacity() -> Kiln_V1_WorkerCapacity {
        .with {
            $0.threads = 2
            $0.memoryBytes = 8 << 30
            $0.cpuKind = "x86_64/Haswell"
            $0.canReadModel = false
        }
    }

    static func allBodies() throws -> [Kiln_V1_Envelope.OneOf_Body] {
        let h = try header()
        let err = Kiln_V1_Error.with {
            $0.code = .invalidField
            $0.message = "bits: 9 not in 2...8"
            $0.field = "spec.bits"
        }
        return [
            .workerHello(
                .with {
                    $0.workerID = "w1"
                    $0.protocolVersion = .protocolVersion1
                    $0.capacity = capacity()
                    $0.hostname = "h"
                }),
            .workerWelcome(
                .with {
                    $0.workerID = "w1"
                    $0.heartbeatIntervalMs = 1000
                    $0.heartbeatLiveness = 3
                    $0.chunkSize = 1 << 20
                    $0.maxChunksInFlight = 8
                    $0.maxFrameBytes = 256 << 20
                }),
            .heartbeat(
                .with {
                    $0.sequence = 7
                    $0.sentUnixMs = 123
                    $0.runningTaskIds = ["t1", "t2"]
                }),
            .workerGoodbye(
                .with {
                    $0.workerID = "w1"
                    $0.reason = "shutdown"
                }),
            .taskAssignment(
                .with {
                    $0.taskID = "collect-3-1"
                    $0.attempt = 2
                    $0.jobID = "job-1"
                    $0.kind = .collect
                    $0.block = 3
                    $0.shard = 1
                    $0.shardCount = 4
                    $0.linearGroup = "mlp.gate_up"
                    $0.model = .with {
                        $0.path = "/m.gguf"
                        $0.size = 10
                        $0.fetchFromCoordinator = true
                    }
                    $0.inputs = [
                        .with {
                            $0.name = "h"
                            $0.kind = .tensor
                            $0.tensor = h
                        }
                    ]
                }),
            .taskProgress(
                .with {
                    $0.taskID = "t"
                    $0.attempt = 1
                    $0.done = 5
                    $0.total = 9
                    $0.stage = "cholesky"
                    $0.error = 1e-3
                }),
            .taskResult(
                .with {
                    $0.taskID = "t"
                    $0.attempt = 1
                    $0.status = .retryable
                    $0.outputs = [h]
                    $0.metrics = ["error": 0.5, "seconds": 2]
                    $0.error = err
                    $0.elapsedMs = 2000
                    $0.jobID = "job-1"
                }),
            .taskCancel(
                .with {
                    $0.taskID = "t"
                    $0.attempt = 1
                    $0.reason = "reassigned"
                }),
            .rangeFetchRequest(
                .with {
                    $0.requestID = "r1"
                    $0.offset = 1 << 33
                    $0.length = 4096
                }),
            .rangeFetchResponse(
                .with {
                    $0.requestID = "r1"
                    $0.offset = 1 << 33
                    $0.length = 4096
                }),
            .tensorChunk(
                .with {
                    $0.transferID = 5
                    $0.context = "t"
                }),
            .credit(
                .with {
                    $0.transferID = 5
                    $0.grant = 3
                    $0.sequence = 2
                    $0.resend = [4, 9]
                    $0.complete = false
                }),
            .error(err),
            .submitRequest(
                .with {
                    $0.spec = jobSpec()
                    $0.clientToken = "tok"
                }),
            .submitResponse(
                .with {
                    $0.jobID = "job-1"
                    $0.status = jobStatus()
                }),
            .statusRequest(.with { $0.jobID = "job-1" }),
            .statusResponse(.with { $0.status = jobStatus() }),
            .cancelRequest(
                .with {
                    $0.jobID = "job-1"
                    $0.reason = "user"
                }),
            .cancelResponse(
                .with {
                    $0.jobID = "job-1"
                    $0.state = .cancelled
                }),
            .listWorkersRequest(.init()),
            .listWorkersResponse(
                .with {
                    $0.workers = [
                        .with {
                            $0.workerID = "w1"
                            $0.capacity = capacity()
                            $0.state = .busy
                            $0.runningTaskIds = ["t"]
                            $0.tasksDone = 4
                            $0.hostname = "h"
                        }
                    ]
                }),
            .snapshotRequest(.with { $0.jobID = "" }),
            .snapshotResponse(
                .with {
                    $0.sequence = 99
                    $0.jobs = [jobStatus()]
                }),
            .progressUpdate(
                .with {
                    $0.sequence = 100
                    $0.jobID = "job-1"
                    $0.state = .running
                    $0.module = jobStatus().modules[0]
                }),
        ]
    }

    func testEveryBodyRoundTrips() throws {
        let bodies = try Self.allBodies()
        // One case per oneof member of Envelope.body (descriptor field numbers 10...40 in envelope.proto).
        XCTAssertEqual(bodies.count, 24)
        var names = Set<String>()
        for body in bodies {
            let name = String(describing: body).prefix { $0 != "(" }
            names.insert(String(name))
            var m = Message(body, correlationID: "c-\(name)")
            if case .tensorChunk = body {
                // A chunk message always carries its one chunk frame.
                let t = try TensorFrame(name: "c", dtype: .u8, shape: [10], bytes: Data(0..<10))
                var s = try ChunkSender(transferID: 5, tensor: t, chunkSize: 4, window: 1)
                m.tensors = [try XCTUnwrap(s.nextChunk())]
                m.envelope.tensors = m.tensors.map(\.header)
            }
            let decoded = try Message.decode(try m.encode())
            XCTAssertEqual(decoded, m, "\(name)")
            XCTAssertEqual(decoded.envelope.protocolVersion, .protocolVersion1)
            XCTAssertEqual(decoded.correlationID, "c-\(name)")
        }
        XCTAssertEqual(names.count, bodies.count, "duplicate kinds: \(names.sorted())")
    }

    func testRoundTripWithTensorsAttached() throws {
        let data = Data((0..<4096).map { UInt8(truncatingIfNeeded: $0) })
        let bytes = try TensorFrame(name: "range", dtype: .u8, shape: [4096], bytes: data)
        let m = Message(
            .rangeFetchResponse(
                .with {
                    $0.requestID = "r"
                    $0.offset = 0
                    $0.length = 4096
                }), tensors: [bytes])
        let decoded = try Message.decode(try m.encode())
        XCTAssertEqual(decoded.tensors[0].bytes, data)
        XCTAssertEqual(decoded, m.withHeadersInEnvelope())
    }

    func testUnknownBodyKindFromNewerPeerIsRejected() throws {
        // Field 99 (not in our Envelope) stands in for a body kind added later.
        var frames = try Message(.heartbeat(.init())).encode()
        var e = try Kiln_V1_Envelope(serializedBytes: frames[0])
        e.body = nil
        var raw = try e.serializedData()
        raw.append(contentsOf: [0x9A, 0x06, 0x00])  // field 99, wire type 2, length 0
        frames[0] = raw
        XCTAssertThrowsError(try Message.decode(frames)) { XCTAssertEqual($0 as? ProtocolError, .missingField("body")) }
    }
}

extension Message {
    func withHeadersInEnvelope() -> Message {
        var m = self
        m.envelope.tensors = tensors.map(\.header)
        return m
    }
}
