#!/usr/bin/env python3
"""Writes Tests/Fixtures/gguf/kquants.gguf, the outside references for Kiln's K-quants
(Q2_K, Q3_K, Q4_K, Q5_K, Q6_K):

- "<T>.random" [2, 512]: random valid blocks (random codes and sub-block scales/mins,
  random finite fp16 d/dmin) and "<T>.random.expected" (F32) = gguf.quants.dequantize of them
  (the Python `gguf` package);
- "input" F32 [8, 512] (rows of different shapes: normal, heavy-tailed, all positive,
  tiny, with zero and constant sub-blocks, one all zero) and "importance" F32 [512] (skewed,
  a few zeros);
- "<T>.llama" and "<T>.llama_imatrix": llama.cpp's own quantize_<t>(input, importance=NULL /
  importance) bytes, called through ctypes in the libggml-base.so that llama-cpp-python ships.

Usage: /root/.cache/kiln/venv-peer/bin/python Ops/gen-kquant-fixtures.py [path/to/libggml-base.so]
(deterministic: fixed seed; the library defaults to the one in /root/.cache/kiln/venv-llama).
KQUANT_OUT=/tmp/big.gguf KQUANT_EXTRA_ROWS=2000 writes a larger check file instead (the fixture's
rows plus that many random ones of random scale), which KQuantTests reads when
KILN_KQUANT_CHECK=/tmp/big.gguf is set.
"""
import ctypes
import glob
import os
import sys

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T
from gguf.quants import dequantize

OUT = os.environ.get("KQUANT_OUT") or os.path.join(
    os.path.dirname(__file__), "..", "Tests", "Fixtures", "gguf", "kquants.gguf")
EXTRA_ROWS = int(os.environ.get("KQUANT_EXTRA_ROWS", "0"))
rng = np.random.default_rng(20240521)

# (type, block bytes, offsets of fp16 fields, llama.cpp function)
TYPES = [
    (T.Q2_K, 84, [80, 82], "quantize_q2_K"),
    (T.Q3_K, 110, [108], "quantize_q3_K"),
    (T.Q4_K, 144, [0, 2], "quantize_q4_K"),
    (T.Q5_K, 176, [0, 2], "quantize_q5_K"),
    (T.Q6_K, 210, [208], "quantize_q6_K"),
]
ROWS, COLS = 8, 512

lib_path = sys.argv[1] if len(sys.argv) > 1 else glob.glob(
    "/root/.cache/kiln/venv-llama/lib/python3*/site-packages/llama_cpp/lib/libggml-base.so")[0]
ggml = ctypes.CDLL(lib_path)


def llama_quantize(fn, x, importance):
    f = getattr(ggml, fn)
    f.restype = ctypes.c_size_t
    f.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p]
    size = dict((name, b) for _, b, _, name in TYPES)[fn]
    out = np.zeros((x.shape[0], x.shape[1] // 256 * size), dtype=np.uint8)
    n = f(x.ctypes.data, out.ctypes.data, x.shape[0], x.shape[1],
          None if importance is None else importance.ctypes.data)
    assert n == out.size
    return out


def inputs():
    rows = [
        rng.standard_normal(COLS),
        rng.standard_t(3, COLS) * 0.02,
        rng.uniform(0.0, 1.0, COLS),  # all positive: the min is clamped to 0
        rng.standard_normal(COLS) * 1e-3,
        rng.standard_normal(COLS) * 0.05 + 0.01,
    ]
    r = rng.standard_normal(COLS)
    r[0:32] = 0.0  # zero sub-blocks
    r[64:96] = 0.25  # a constant sub-block
    r[300] = 40.0  # one outlier
    rows.append(r)
    rows.append(-np.abs(rng.standard_normal(COLS)))  # all negative
    rows.append(np.zeros(COLS))
    for _ in range(EXTRA_ROWS):
        kind = rng.integers(0, 3)
        r = rng.standard_normal(COLS) if kind == 0 else rng.standard_t(2, COLS) if kind == 1 else rng.uniform(-1, 3, COLS)
        rows.append(r * 10.0 ** rng.uniform(-4, 1))
    return np.ascontiguousarray(np.array(rows, dtype=np.float32))


w = gguf.GGUFWriter(OUT, "kilntest")
for qtype, size, half_offsets, _ in TYPES:
    nblocks = 2 * COLS // 256
    raw = rng.integers(0, 256, size=(nblocks, size), dtype=np.uint8)
    for off in half_offsets:
        h = (rng.standard_normal(nblocks) * 0.01).astype(np.float16)
        raw[:, off:off + 2] = h.view(np.uint8).reshape(nblocks, 2)
    raw = raw.reshape(2, COLS // 256 * size)
    expected = dequantize(raw, qtype).astype(np.float32)
    assert expected.shape == (2, COLS) and np.isfinite(expected).all()
    w.add_tensor(qtype.name + ".random", raw, raw_dtype=qtype)
    w.add_tensor(qtype.name + ".random.expected", expected)

x = inputs()
importance = np.exp(rng.standard_normal(COLS) * 1.5).astype(np.float32)
importance[rng.choice(COLS, 8, replace=False)] = 0.0
w.add_tensor("input", x)
w.add_tensor("importance", importance)
for qtype, _, _, fn in TYPES:
    w.add_tensor(qtype.name + ".llama", llama_quantize(fn, x, None), raw_dtype=qtype)
    w.add_tensor(qtype.name + ".llama_imatrix", llama_quantize(fn, x, importance), raw_dtype=qtype)

w.write_header_to_file()
w.write_kv_data_to_file()
w.write_tensors_to_file()
w.close()
print("wrote", os.path.normpath(OUT), os.path.getsize(OUT), "bytes")
