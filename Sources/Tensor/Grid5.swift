// GGUF's 5-bit blocks of 32: the fallbacks llama.cpp uses for Q4_K (Q5_0) and Q5_K (Q5_1) when a
// row is not a whole number of 256-value super-blocks. Same structure as Q4_0/Q4_1 (Grid.swift),
// with 32 levels; the fifth bit of each code goes to the block's qh word (GGUFBlocks).

/// GGUF Q5_0 as ggml's quantize_row_q5_0_ref: `GGUFSignedMaxGrid` with 32 levels.
public struct GGUFQ5_0Grid: GGUFSignedMaxGrid {
    @inlinable public init() {}
    @inlinable public var half: Float { 16 }
}

/// GGUF Q5_1 as ggml's quantize_row_q5_1_ref: `GGUFMinMaxGrid` with 32 levels.
public struct GGUFQ5_1Grid: GGUFMinMaxGrid {
    @inlinable public init() {}
    @inlinable public var top: Float { 31 }
}
