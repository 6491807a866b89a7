#!/usr/bin/env python3
"""Writes Tests/Fixtures/gguf/quants.gguf: one small tensor per ggml storage type
Kiln reads, each next to "<name>.expected" (F32) holding the values the Python
`gguf` package (pip install gguf; 0.19.0 used) dequantizes it to, plus metadata
of every GGUF value type. Quantized blocks are random bytes (every bit pattern
of the codes is exercised) with finite random f16 scale fields.

Usage: python3 Ops/gen-gguf-fixtures.py   (deterministic: fixed seed)
"""
import os
import numpy as np
import gguf
from gguf import GGMLQuantizationType as T
from gguf.quants import dequantize

OUT = os.path.join(os.path.dirname(__file__), "..", "Tests", "Fixtures", "gguf", "quants.gguf")
rng = np.random.default_rng(1234)

# (type, byte offsets of f16 scale fields in a block)
QUANTS = [
    (T.Q8_0, [0]), (T.Q4_0, [0]), (T.Q4_1, [0, 2]), (T.Q5_0, [0]), (T.Q5_1, [0, 2]),
    (T.Q4_K, [0, 2]), (T.Q5_K, [0, 2]), (T.Q6_K, [208]),
]
ROWS, COLS = 3, 512  # 512 = two K-quant super-blocks per row

w = gguf.GGUFWriter(OUT, "kilntest")
w.add_uint8("test.u8", 200)
w.add_int8("test.i8", -100)
w.add_uint16("test.u16", 60000)
w.add_int16("test.i16", -30000)
w.add_uint32("test.u32", 4000000000)
w.add_int32("test.i32", -2000000000)
w.add_uint64("test.u64", 2**63 + 5)
w.add_int64("test.i64", -(2**62))
w.add_float32("test.f32", 1.5)
w.add_float64("test.f64", -2.25)
w.add_bool("test.bool", True)
w.add_string("test.string", "héllo")
w.add_array("test.array", [1, 2, 3])
w.add_array("test.strings", ["a", "bc", ""])
w.add_array("test.nested", [[1, 2], [3]])

for qtype, scale_offsets in QUANTS:
    block, size = gguf.GGML_QUANT_SIZES[qtype]
    nblocks = ROWS * COLS // block
    raw = rng.integers(0, 256, size=(nblocks, size), dtype=np.uint8)
    for off in scale_offsets:
        scales = (rng.standard_normal(nblocks) * 0.05).astype(np.float16)
        raw[:, off:off + 2] = scales.view(np.uint8).reshape(nblocks, 2)
    raw = raw.reshape(ROWS, COLS // block * size)
    expected = dequantize(raw, qtype).astype(np.float32)
    assert expected.shape == (ROWS, COLS) and np.isfinite(expected).all()
    w.add_tensor(qtype.name, raw, raw_dtype=qtype)
    w.add_tensor(qtype.name + ".expected", expected)

x = rng.standard_normal((ROWS, 64)).astype(np.float32)
w.add_tensor("F16", x.astype(np.float16), raw_dtype=T.F16)
w.add_tensor("F16.expected", x.astype(np.float16).astype(np.float32))
bf = (x.view(np.uint32) >> 16).astype(np.uint16)  # truncation: any bf16 bits will do
w.add_tensor("BF16", bf.view(np.uint8).reshape(ROWS, 128), raw_dtype=T.BF16)
w.add_tensor("BF16.expected", (bf.astype(np.uint32) << 16).view(np.float32))
w.add_tensor("F32", x)
w.add_tensor("F32.expected", x)
w.add_tensor("vector", np.arange(7, dtype=np.float32))
w.add_tensor("cube", np.arange(2 * 3 * 32, dtype=np.float32).reshape(2, 3, 32))

w.write_header_to_file()
w.write_kv_data_to_file()
w.write_tensors_to_file()
w.close()
print("wrote", os.path.normpath(OUT), os.path.getsize(OUT), "bytes")
