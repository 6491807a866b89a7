#!/usr/bin/env python3
"""Reads a quantized model back whole, tensor by tensor (memory-mapped, so a 7B output
fits), and checks every value is finite: a GGUF through the `gguf` package's reader and
dequantizers, or a gptq-safetensors directory through Ops/check_gptq_safetensors.py's
unpacking (AutoGPTQ's layout).

Usage: check_big_output.py OUTPUT.gguf | OUTPUT_DIR [--layers N]

--layers N also checks that every block 0..N-1 has its 7 linears. Prints JSON
(tensor count, bytes read, per-type counts, value range, seconds); exits 1 on a
non-finite value or a missing tensor.
"""
import argparse
import importlib.util
import json
import os
import struct
import sys
import time

import numpy as np

LINEARS = ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down")
HF_LINEARS = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
              "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")


class Stats:
    def __init__(self):
        self.tensors, self.values, self.bytes, self.types = 0, 0, 0, {}
        self.lo, self.hi, self.bad = np.inf, -np.inf, []

    def tensor(self, kind, nbytes):
        self.tensors += 1
        self.bytes += int(nbytes)
        self.types[kind] = self.types.get(kind, 0) + 1

    def values_of(self, name, values):
        """Some (or all) of a tensor's values."""
        v = np.asarray(values, dtype=np.float32)
        self.values += v.size
        if not np.isfinite(v).all():
            if name not in self.bad:
                self.bad.append(name)
            return
        if v.size:
            self.lo, self.hi = min(self.lo, float(v.min())), max(self.hi, float(v.max()))


def check_gguf(path, st):
    from gguf import GGUFReader
    from gguf.quants import dequantize

    r = GGUFReader(path, "r")
    names = set()
    for t in r.tensors:
        data = t.data  # a view of the memory map
        rows = data.reshape(data.shape[0], -1) if data.ndim > 1 else data.reshape(1, -1)
        step = max(1, (1 << 24) // max(1, rows[0].nbytes))
        for r0 in range(0, rows.shape[0], step):  # bounded memory for the large embeddings
            st.values_of(t.name, dequantize(rows[r0:r0 + step], t.tensor_type))
        st.tensor(t.tensor_type.name, t.n_bytes)
        names.add(t.name)
    return names, lambda i, l: f"blk.{i}.{l}.weight", LINEARS


def safetensors_tensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
    header.pop("__metadata__", None)
    mm = np.memmap(path, dtype=np.uint8, mode="r")
    dtypes = {"F32": "<f4", "F16": "<f2", "I32": "<i4", "I64": "<i8", "U8": "u1", "I8": "i1"}
    for k, v in header.items():
        a, b = v["data_offsets"]
        arr = mm[8 + n + a:8 + n + b].view(np.dtype(dtypes[v["dtype"]])).reshape(v["shape"])
        yield k, v["dtype"], arr


def check_gptq_dir(d, st):
    spec = importlib.util.spec_from_file_location(
        "cgs", os.path.join(os.path.dirname(os.path.abspath(__file__)), "check_gptq_safetensors.py"))
    cgs = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cgs)
    qcfg = json.load(open(os.path.join(d, "config.json")))["quantization_config"]
    bits, offset = qcfg["bits"], 1 if qcfg.get("checkpoint_format", "gptq") == "gptq" else 0
    idx = os.path.join(d, "model.safetensors.index.json")
    files = sorted(set(json.load(open(idx))["weight_map"].values())) if os.path.exists(idx) else ["model.safetensors"]
    tensors = {}
    for fn in files:
        for k, dt, arr in safetensors_tensors(os.path.join(d, fn)):
            tensors[k] = (dt, arr)
    used = set()
    for p in sorted(k[: -len(".qweight")] for k in tensors if k.endswith(".qweight")):
        parts = [tensors[p + s][1] for s in (".qweight", ".qzeros", ".scales", ".g_idx")]
        used.update(p + s for s in (".qweight", ".qzeros", ".scales", ".g_idx"))
        qw, qz, sc, gi = parts
        z = cgs.unpack_rows(np.asarray(qz).view(np.uint32).T, bits).T.astype(np.int64) + offset
        g = np.asarray(gi).astype(np.int64)
        s32 = np.asarray(sc).astype(np.float32)
        words = np.asarray(qw).view(np.uint32)
        step = max(3, (1 << 20) // max(1, words.shape[1]) // 3 * 3)  # packed rows at a time (3 | step for 3 bits)
        per = 32 // bits if bits != 3 else 32 / 3
        for r0 in range(0, words.shape[0], step):
            q = cgs.unpack_rows(words[r0:r0 + step], bits).astype(np.int64)
            i0 = int(r0 * per)
            gg = g[i0:i0 + q.shape[0]]
            st.values_of(p, s32[gg, :] * (q - z[gg, :]).astype(np.float32))
        st.tensor(f"gptq{bits}", sum(int(np.asarray(x).nbytes) for x in parts))
    for k, (dt, arr) in tensors.items():
        if k not in used:
            st.values_of(k, arr)
            st.tensor(dt, arr.nbytes)
    names = {k[: -len(".qweight")] for k in tensors if k.endswith(".qweight")}
    return names, lambda i, l: f"model.layers.{i}.{l}", HF_LINEARS


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("output")
    p.add_argument("--layers", type=int)
    a = p.parse_args()
    t0, st = time.time(), Stats()
    if os.path.isdir(a.output):
        names, name_of, linears = check_gptq_dir(a.output, st)
    elif os.path.isfile(a.output):
        names, name_of, linears = check_gguf(a.output, st)
    else:
        print(f"check_big_output.py: {a.output}: no such file or directory", file=sys.stderr)
        return 2
    missing = [name_of(i, l) for i in range(a.layers or 0) for l in linears if name_of(i, l) not in names]
    out = {"output": a.output, "tensors": st.tensors, "values": st.values, "bytes": st.bytes, "types": st.types,
           "min": st.lo, "max": st.hi, "nonfinite_tensors": st.bad, "missing": missing,
           "seconds": round(time.time() - t0, 1)}
    print(json.dumps(out))
    if st.bad or missing or st.tensors == 0:
        print(f"check_big_output.py: {len(st.bad)} tensors with non-finite values, {len(missing)} missing",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
