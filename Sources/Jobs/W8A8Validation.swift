extension JobSpec {
    /// compressed-tensors-w8a8 stores 8-bit symmetric codes per output channel, and folds
    /// SmoothQuant into the norms: the recipe flags that contradict it, and AWQ (which would
    /// fold its own scales into the same norms), are refused.
    func validateW8A8Options() throws {
        let fixed = "--format \(format.rawValue) stores \(format.gridDescription)"
        if let b = bits, b != 8 { throw JobError("\(fixed); --bits \(b) cannot be stored: drop --bits") }
        if let g = groupSize, g != -1 { throw JobError("\(fixed); --group \(g) cannot be stored: drop --group") }
        if symmetric == false { throw JobError("\(fixed); --no-sym cannot be stored: drop it") }
        if method.usesAWQ {
            throw JobError(
                "--method \(method.rawValue) folds AWQ's scales into the norms that --format \(format.rawValue) "
                    + "folds SmoothQuant into: use --method rtn or gptq")
        }
        if let a = smooth, !(a.isFinite && (0...1).contains(a)) {
            throw JobError("--smooth \(a) must be SmoothQuant's alpha from 0 to 1 (e.g. 0.8)")
        }
    }

    /// compressed-tensors-w4a16 stores 4-bit symmetric codes with the groups in column order.
    func validateW4A16Options() throws {
        let fixed = "--format \(format.rawValue) stores \(format.gridDescription)"
        if let b = bits, b != 4 {
            throw JobError("\(fixed); --bits \(b) cannot be stored: drop --bits or use --format gptq-safetensors")
        }
        if symmetric == false {
            throw JobError("\(fixed); --no-sym cannot be stored: drop it or use --format gptq-safetensors")
        }
        // Act-order with static groups keeps each group's columns together (as GGUF does).
        if actOrder && !resolvedStaticGroups && resolvedGroupSize != -1 {
            throw JobError(
                "\(fixed), in column order; act-order without static groups permutes the groups: drop "
                    + "--no-static-groups, use --no-act-order, or use --format gptq-safetensors")
        }
    }
}
