import Calibration
import Foundation
import Jobs
import KilnProtocol

/// JobSpec <-> kiln.v1.JobSpec. A client may send Kiln's own JobSpec as JSON
/// (spec_json, every `kiln run` option) or the portable proto fields.
public enum SpecConversion {
    public static func toProto(_ s: JobSpec) throws -> Kiln_V1_JobSpec {
        var p = Kiln_V1_JobSpec()
        p.modelPath = s.model
        var c = Kiln_V1_CalibrationSpec()
        c.textPath = s.calibration
        c.samples = UInt32(clamping: s.samples)
        c.seqlen = UInt32(clamping: s.seqlen)
        c.seed = s.seed
        c.sampler = s.sampler == .random ? .randomWindows : .contiguous
        p.calibration = c
        switch s.method {
        case .rtn: p.method = .rtn
        case .gptq: p.method = .gptq
        case .awq: p.method = .awq
        case .awqGPTQ: p.method = .awqGptq
        }
        p.bits = UInt32(clamping: s.resolvedBits)
        p.groupSize = s.resolvedGroupSize < 0 ? 0 : UInt32(clamping: s.resolvedGroupSize)
        p.symmetric = s.resolvedSymmetric
        p.actOrder = s.actOrder
        p.mode = s.mode == .parallel ? .parallel : .sequential
        switch s.format {
        case .ggufQ4_0: p.format = .ggufQ40
        case .ggufQ4_1: p.format = .ggufQ41
        case .ggufQ8_0: p.format = .ggufQ80
        case .gptqSafetensors: p.format = .gptqSafetensors
        case .ggufQ2_K: p.format = .ggufQ2K
        case .ggufQ3_K: p.format = .ggufQ3K
        case .ggufQ4_K: p.format = .ggufQ4K
        case .ggufQ5_K: p.format = .ggufQ5K
        case .ggufQ6_K: p.format = .ggufQ6K
        case .ggufQ4_K_M: p.format = .ggufQ4KM
        case .ggufQ3_K_M: p.format = .ggufQ3KM
        case .compressedTensorsW8A8: p.format = .compressedTensorsW8A8
        case .compressedTensorsW4A16: p.format = .compressedTensorsW4A16
        }
        p.outputPath = s.output
        p.dampPercent = Float(s.percentDamp)
        if let e = s.errorReport { p.errorReport = e }
        p.specJson = String(decoding: try JSONEncoder().encode(s), as: UTF8.self)
        return p
    }

    public static func fromProto(_ p: Kiln_V1_JobSpec) throws -> JobSpec {
        if !p.specJson.isEmpty {
            do { return try JSONDecoder().decode(JobSpec.self, from: Data(p.specJson.utf8)) } catch {
                throw PayloadError("spec.spec_json: not a Kiln JobSpec: \(error)")
            }
        }
        guard !p.modelPath.isEmpty else { throw PayloadError("spec.model_path: missing") }
        guard !p.outputPath.isEmpty else { throw PayloadError("spec.output_path: missing") }
        let text = p.calibration.textPath
        guard !text.isEmpty else {
            throw PayloadError("spec.calibration.text_path: missing")
        }
        var s = JobSpec(model: p.modelPath, calibration: text, output: p.outputPath)
        if p.calibration.samples > 0 { s.samples = Int(p.calibration.samples) }
        if p.calibration.seqlen > 0 { s.seqlen = Int(p.calibration.seqlen) }
        s.seed = p.calibration.seed
        s.sampler = p.calibration.sampler == .contiguous ? .consecutive : .random
        switch p.method {
        case .rtn: s.method = .rtn
        case .gptq, .unspecified: s.method = .gptq
        case .awq: s.method = .awq
        case .awqGptq: s.method = .awqGPTQ
        case .UNRECOGNIZED(let v): throw PayloadError("spec.method: unknown value \(v)")
        }
        switch p.format {
        case .ggufQ40, .unspecified: s.format = .ggufQ4_0
        case .ggufQ41: s.format = .ggufQ4_1
        case .ggufQ80: s.format = .ggufQ8_0
        case .gptqSafetensors: s.format = .gptqSafetensors
        case .ggufQ2K: s.format = .ggufQ2_K
        case .ggufQ3K: s.format = .ggufQ3_K
        case .ggufQ4K: s.format = .ggufQ4_K
        case .ggufQ5K: s.format = .ggufQ5_K
        case .ggufQ6K: s.format = .ggufQ6_K
        case .ggufQ4KM: s.format = .ggufQ4_K_M
        case .ggufQ3KM: s.format = .ggufQ3_K_M
        case .compressedTensorsW8A8: s.format = .compressedTensorsW8A8
        case .compressedTensorsW4A16: s.format = .compressedTensorsW4A16
        case .UNRECOGNIZED(let v): throw PayloadError("spec.format: unknown value \(v)")
        }
        switch p.mode {
        case .parallel: s.mode = .parallel
        case .sequential, .unspecified: s.mode = .sequential
        case .UNRECOGNIZED(let v): throw PayloadError("spec.mode: unknown value \(v)")
        }
        // GGUF formats fix the bits: keep nil (as `kiln run` does) unless they disagree, so validation names it.
        if p.bits > 0 && (!s.format.isGGUF || Int(p.bits) != s.resolvedBits) { s.bits = Int(p.bits) }
        if !s.format.isGGUF {
            s.groupSize = p.groupSize == 0 ? -1 : Int(p.groupSize)
            s.symmetric = p.symmetric
        }
        s.actOrder = p.actOrder
        if p.dampPercent > 0 { s.percentDamp = Double(p.dampPercent) }
        if p.hasErrorReport { s.errorReport = p.errorReport }
        return s
    }
}
