#!/usr/bin/env python3
"""Independent check of a GGUF file with the `gguf` Python package (llama.cpp's).

Usage: check_gguf.py FILE.gguf [--rtn SRC:DST ...] [--only NAME ...] > out.json

--only NAME limits "tensors" to the named tensors (a whole model's f32_bits is too
large for JSON); all tensors are still read and listed by the reader.

--rtn SRC:DST quantizes the F32 tensor SRC with gguf.quants.quantize (the package's
numpy port of ggml's quantize_row_*_ref) to DST's type and reports in "rtn" whether
the bytes equal DST's stored bytes.

Prints JSON: {"alignment", "data_offset", "metadata": {key: {"type", "subtype"?, "value"}},
"tensors": [{"name", "type", "shape" (PyTorch order, outermost first), "data_offset",
"n_bytes", "f32_bits" (dequantized values as float32 bit patterns)}]}.
Numbers in metadata are strings (ints as decimal, floats as repr of the exact value)
so that 64-bit values and floats survive JSON exactly.
"""
import json
import sys

import numpy as np
from gguf import GGUFReader, GGUFValueType
from gguf.quants import dequantize, quantize


def scalar(v, t):
    if t == GGUFValueType.BOOL:
        return bool(v)
    if t in (GGUFValueType.FLOAT32, GGUFValueType.FLOAT64):
        return repr(float(v))
    return str(int(v))


def field_json(f):
    t = f.types[0]
    out = {"type": t.name}
    if t == GGUFValueType.STRING:
        out["value"] = bytes(f.parts[-1]).decode("utf-8")
    elif t == GGUFValueType.ARRAY:
        sub = f.types[-1] if len(f.types) > 1 else None
        out["subtype"] = sub.name if sub is not None else None
        if len(f.types) > 2:  # array of arrays: the package does not decode these
            out["nested"] = True
            out["count"] = len(f.data)
        elif sub == GGUFValueType.STRING:
            out["value"] = [bytes(f.parts[i]).decode("utf-8") for i in f.data]
        else:
            out["value"] = [scalar(f.parts[i][0], sub) for i in f.data]
    else:
        out["value"] = scalar(f.parts[-1][0], t)
    return out


def main():
    args = sys.argv[1:]
    path = args[0]
    pairs = [args[i + 1].split(":") for i in range(1, len(args) - 1) if args[i] == "--rtn"]
    only = {args[i + 1] for i in range(1, len(args) - 1) if args[i] == "--only"}
    r = GGUFReader(path, "r")
    meta = {}
    for name, f in r.fields.items():
        if name.startswith("GGUF."):  # the reader's pseudo-fields (version, counts)
            continue
        meta[name] = field_json(f)
    tensors = []
    for t in r.tensors:
        if only and t.name not in only:
            continue
        deq = dequantize(t.data, t.tensor_type).astype(np.float32, copy=False).reshape(-1)
        tensors.append({
            "name": t.name,
            "type": t.tensor_type.name,
            "shape": [int(x) for x in reversed(t.shape.tolist())],
            "data_offset": int(t.data_offset),
            "n_bytes": int(t.n_bytes),
            "f32_bits": deq.view(np.uint32).tolist(),
        })
    by_name = {t.name: t for t in r.tensors}
    rtn = {}
    for src, dst in pairs:
        a, b = by_name[src], by_name[dst]
        x = np.asarray(a.data, dtype=np.float32).reshape(-1, int(b.shape[0]))
        q = quantize(x, b.tensor_type)
        rtn[dst] = bool(q.tobytes() == np.asarray(b.data).tobytes())
    version = int(r.fields["GGUF.version"].parts[-1][0])
    json.dump({"version": version, "alignment": int(r.alignment), "data_offset": int(r.data_offset),
               "metadata": meta, "tensors": tensors, "rtn": rtn}, sys.stdout)


if __name__ == "__main__":
    main()
