#!/usr/bin/env python3
"""Independent check of a Hugging Face GPTQ checkpoint directory, numpy only (no torch).

Usage: check_gptq_safetensors.py DIR > out.json

Parses the safetensors files by hand (validating the header: 8-byte aligned, space
padding, contiguous offsets covering the whole file), unpacks every <prefix>.qweight /
qzeros / scales / g_idx the way AutoGPTQ's reference kernels do (for 3 bits the
3-word groups of 32 values with values 10 and 21 split across words) and
dequantizes  w[o, i] = scales[g, o] * (q[i, o] - (qzeros[g, o] + 1)),  g = g_idx[i]
(checkpoint_format "gptq"; "gptq_v2" stores the zero point without the -1).
Prints JSON: {"quantization_config", "quantize_config", "files", "tensors": {name:
{"dtype", "shape", "file"}}, "linears": {prefix: {"shape": [out, in], "w_bits": float32
bit patterns of w row-major, "bias_bits"?}}, "dense": {name: {"shape", "f32_bits"}}}.
"""
import json
import os
import sys

import numpy as np

DTYPES = {"F32": np.float32, "F16": np.float16, "BF16": None, "I32": np.int32, "I64": np.int64,
          "I8": np.int8, "U8": np.uint8, "I16": np.int16, "F64": np.float64}


def read_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    n = int.from_bytes(raw[:8], "little")
    if (8 + n) % 8 != 0:
        raise SystemExit(f"{path}: header length {n} leaves data unaligned")
    text = raw[8:8 + n]
    if text.rstrip(b" ") != text.rstrip():
        raise SystemExit(f"{path}: header padded with something other than spaces")
    header = json.loads(text)
    header.pop("__metadata__", None)
    data = raw[8 + n:]
    spans = sorted((v["data_offsets"][0], v["data_offsets"][1], k) for k, v in header.items())
    pos = 0
    for a, b, k in spans:
        if a != pos:
            raise SystemExit(f"{path}: {k} starts at {a}, expected {pos}")
        pos = b
    if pos != len(data):
        raise SystemExit(f"{path}: tensors cover {pos} bytes of {len(data)}")
    out = {}
    for k, v in header.items():
        a, b = v["data_offsets"]
        buf = data[a:b]
        if v["dtype"] == "BF16":
            arr = (np.frombuffer(buf, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
        else:
            arr = np.frombuffer(buf, dtype=np.dtype(DTYPES[v["dtype"]]).newbyteorder("<"))
        shape = v["shape"]
        if arr.size != int(np.prod(shape)):
            raise SystemExit(f"{path}: {k} has {arr.size} elements for shape {shape}")
        out[k] = (v["dtype"], shape, arr.reshape(shape))
    return out


def unpack_rows(words, bits):
    """words: uint32 [nwords, cols] packed along axis 0 -> values [nwords*32/bits, cols]."""
    words = words.astype(np.uint32)
    if bits in (2, 4, 8):
        per = 32 // bits
        shifts = np.arange(0, 32, bits, dtype=np.uint32)
        vals = (words[:, None, :] >> shifts[None, :, None]) & np.uint32((1 << bits) - 1)
        return vals.reshape(words.shape[0] * per, words.shape[1])
    assert bits == 3 and words.shape[0] % 3 == 0
    w = words.reshape(words.shape[0] // 3, 3, words.shape[1])
    w0, w1, w2 = w[:, 0], w[:, 1], w[:, 2]
    vals = []
    for j in range(10):
        vals.append((w0 >> np.uint32(3 * j)) & 7)
    vals.append(((w0 >> np.uint32(30)) & 3) | ((w1 & 1) << np.uint32(2)))
    for j in range(10):
        vals.append((w1 >> np.uint32(3 * j + 1)) & 7)
    vals.append(((w1 >> np.uint32(31)) & 1) | ((w2 & 3) << np.uint32(1)))
    for j in range(10):
        vals.append((w2 >> np.uint32(3 * j + 2)) & 7)
    v = np.stack(vals, axis=1)  # [groups, 32, cols]
    return v.reshape(v.shape[0] * 32, words.shape[1])


def bits_of(a):
    return np.ascontiguousarray(a, dtype=np.float32).reshape(-1).view(np.uint32).tolist()


def main():
    d = sys.argv[1]
    cfg = json.load(open(os.path.join(d, "config.json")))
    qcfg = cfg["quantization_config"]
    qc2 = json.load(open(os.path.join(d, "quantize_config.json")))
    bits = qcfg["bits"]
    offset = 1 if qcfg.get("checkpoint_format", "gptq") == "gptq" else 0
    idx = os.path.join(d, "model.safetensors.index.json")
    if os.path.exists(idx):
        wm = json.load(open(idx))["weight_map"]
        files = sorted(set(wm.values()))
    else:
        files = ["model.safetensors"]
    tensors, info = {}, {}
    for fn in files:
        for k, (dt, shape, arr) in read_safetensors(os.path.join(d, fn)).items():
            tensors[k] = arr
            info[k] = {"dtype": dt, "shape": shape, "file": fn}
    linears, dense = {}, {}
    prefixes = [k[: -len(".qweight")] for k in tensors if k.endswith(".qweight")]
    used = set()
    for p in prefixes:
        qw, qz, sc, gi = (tensors[p + s] for s in (".qweight", ".qzeros", ".scales", ".g_idx"))
        used.update(p + s for s in (".qweight", ".qzeros", ".scales", ".g_idx"))
        q = unpack_rows(qw.view(np.uint32), bits).astype(np.int64)             # [in, out]
        z = unpack_rows(qz.view(np.uint32).T, bits).T.astype(np.int64) + offset  # [ngroups, out]
        n_in, n_out = q.shape
        assert sc.shape == (z.shape[0], n_out), (p, sc.shape, z.shape)
        g = gi.astype(np.int64)
        assert g.shape == (n_in,) and g.min() >= 0 and g.max() < z.shape[0]
        s32 = sc.astype(np.float32)
        w = s32[g, :] * (q - z[g, :]).astype(np.float32)                          # [in, out]
        entry = {"shape": [n_out, n_in], "w_bits": bits_of(w.T)}
        if p + ".bias" in tensors:
            used.add(p + ".bias")
            entry["bias_bits"] = bits_of(tensors[p + ".bias"].astype(np.float32))
        linears[p] = entry
    for k, arr in tensors.items():
        if k not in used:
            dense[k] = {"shape": list(arr.shape), "f32_bits": bits_of(arr.astype(np.float32))}
    json.dump({"quantization_config": qcfg, "quantize_config": qc2, "torch_dtype": cfg.get("torch_dtype"),
               "config": {k: v for k, v in cfg.items() if k != "quantization_config"},
               "files": files, "tensors": info, "linears": linears, "dense": dense}, sys.stdout)


if __name__ == "__main__":
    main()
