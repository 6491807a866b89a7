#!/usr/bin/env python3
"""Writes Tests/Fixtures/awq/awq_reference.{safetensors,json}: an independent NumPy
reimplementation of AWQ's scale search and clip search (Lin et al.; the procedure of
AutoAWQ's auto_scale / auto_clip, with the output error measured through the Hessian
instead of a forward pass), for Kiln's AWQ tests to check against.

The case: two linears sharing one input (W1 [24, 64], W2 [16, 64]), activations
X [128, 64] with four outlier channels, H = 2/T X^T X and mean|x| per channel.
Two recipes: the GPTQ reference's integer grid (4-bit, group 16, asymmetric) and
GGUF Q4_0 (ggml's quantize_row_q4_0_ref). The quantizers below are written from the
formulas (gptq quant.py `Quantizer`; ggml-quants.c), not from Kiln's Swift code.

Stored per recipe: the loss of every alpha, the chosen alpha, its scales, the clip
ratio index chosen for every (linear, row, group), and the output errors on X of
plain RTN, AWQ (scales only) and AWQ + clip.

Usage: python3 Ops/gen-awq-fixtures.py   (NumPy only; deterministic: fixed seed)
"""
import json
import os
import struct

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "Tests", "Fixtures", "awq")
f32 = np.float32

N_ALPHA = 20  # alpha = i / 20, i < 20 (AutoAWQ's n_grid)
CLIP_GRID, MAX_SHRINK = 20, 0.5  # ratios 1 - i / 20, i < 10 (AutoAWQ's auto_clip)
SCALE_FLOOR = f32(1e-4)


# ---------------------------------------------------------------- the grids (float32)
def rtn_integer(w, bits, group, sym):
    """The GPTQ reference's Quantizer (perchannel, no MSE search) per (row, group), float32."""
    maxq = f32(2**bits - 1)
    m, n = w.shape
    out = np.empty_like(w)
    for c0 in range(0, n, group):
        x = w[:, c0 : c0 + group]
        xmin = np.minimum(x.min(axis=1), f32(0))
        xmax = np.maximum(x.max(axis=1), f32(0))
        if sym:
            xmax = np.maximum(np.abs(xmin), xmax)
            xmin = np.where(xmin < 0, -xmax, xmin)
        both = (xmin == 0) & (xmax == 0)
        xmin = np.where(both, f32(-1), xmin)
        xmax = np.where(both, f32(1), xmax)
        scale = ((xmax - xmin) / maxq).astype(f32)
        if sym:
            zero = np.full_like(scale, (maxq + 1) / 2)
        else:
            zero = np.round(-xmin / scale).astype(f32)
        q = np.clip(np.round(x / scale[:, None]) + zero[:, None], f32(0), maxq)
        out[:, c0 : c0 + group] = scale[:, None] * (q - zero[:, None])
    return out


def rtn_q4_0(w):
    """ggml's quantize_row_q4_0_ref then dequantize_row_q4_0, float32, blocks of 32."""
    m, n = w.shape
    out = np.empty_like(w)
    rows = np.arange(m)
    for c0 in range(0, n, 32):
        x = w[:, c0 : c0 + 32]
        mx = x[rows, np.argmax(np.abs(x), axis=1)]  # first value of largest magnitude
        d = (mx / f32(-8)).astype(f32)
        with np.errstate(divide="ignore"):
            inv = np.where(d != 0, f32(1) / d, f32(0)).astype(f32)
        t = (x * inv[:, None]).astype(f32) + f32(8.5)
        code = np.trunc(np.clip(t, f32(0), f32(15)))
        dh = d.astype(np.float16).astype(f32)
        out[:, c0 : c0 + 32] = (code - f32(8)) * dh[:, None]
    return out


RECIPES = [
    dict(name="int4_g16_asym", format="integer", bits=4, group=16, sym=False),
    dict(name="q4_0", format="ggufQ4_0", bits=4, group=32, sym=True),
]


def rtn(w, r):
    if r["format"] == "integer":
        return rtn_integer(w, r["bits"], r["group"], r["sym"])
    return rtn_q4_0(w)


# ---------------------------------------------------------------- AWQ, float64 losses
def scales_for(mean_abs, alpha):
    s = np.maximum(np.power(mean_abs, f32(alpha)), SCALE_FLOOR).astype(f32)
    return (s / np.sqrt(s.max() * s.min())).astype(f32)


def group_loss(ws, qs, s, h):
    """sum_k trace(D_k H D_k^T) / 2 with D_k = W_k - Q_k diag(1/s), in float64."""
    total = 0.0
    for w, q in zip(ws, qs):
        d = w.astype(np.float64) - q.astype(np.float64) / s.astype(np.float64)
        total += float(np.sum((d @ h.astype(np.float64)) * d)) / 2
    return total


def search_scales(ws, h, mean_abs, r):
    alphas = [f32(i) / f32(N_ALPHA) for i in range(N_ALPHA)]
    losses = []
    for a in alphas:
        s = scales_for(mean_abs, a)
        losses.append(group_loss(ws, [rtn(w * s, r) for w in ws], s, h))
    best = int(np.argmin(losses))  # first minimum: the smallest alpha on ties
    return best, losses, scales_for(mean_abs, alphas[best])


def search_clip(w, h, r):
    """Per (row, group) of the scaled weight w with its Hessian h: the index i of the
    ratio 1 - i/20 whose clamped-then-quantized group has the least (w - q) H_gg (w - q)^T."""
    m, n = w.shape
    g = r["group"]
    sym = r["sym"]
    ratios = [f32(1) - f32(i) / f32(CLIP_GRID) for i in range(int(MAX_SHRINK * CLIP_GRID))]
    index = np.zeros((m, n // g), dtype=np.int32)
    clipped = w.copy()
    for k, c0 in enumerate(range(0, n, g)):
        x = w[:, c0 : c0 + g]
        hg = h[c0 : c0 + g, c0 : c0 + g].astype(np.float64)
        amax = np.abs(x).max(axis=1)
        lo0, hi0 = (-amax, amax) if sym else (x.min(axis=1), x.max(axis=1))
        best = np.full(m, np.inf)
        for i, ratio in enumerate(ratios):
            lo = (lo0 * ratio).astype(f32)
            hi = (hi0 * ratio).astype(f32)
            xc = np.minimum(np.maximum(x, lo[:, None]), hi[:, None])
            q = rtn(xc, dict(r, group=g))
            e = x.astype(np.float64) - q.astype(np.float64)
            err = np.sum((e @ hg) * e, axis=1)
            better = err < best
            best = np.where(better, err, best)
            index[better, k] = i
            clipped[better, c0 : c0 + g] = xc[better]
    return index, clipped


def output_error(w, q_eff, x):
    e = (w.astype(np.float64) - q_eff.astype(np.float64)) @ x.astype(np.float64).T
    return float(np.sum(e * e)) / x.shape[0]


# ---------------------------------------------------------------- data and output
def write_safetensors(path, tensors):
    header, blobs, off = {}, [], 0
    for name, a in tensors.items():
        a = np.ascontiguousarray(a)
        dtype = {np.dtype(np.float32): "F32", np.dtype(np.int32): "I32"}[a.dtype]
        b = a.astype(a.dtype.newbyteorder("<")).tobytes()
        header[name] = dict(dtype=dtype, shape=list(a.shape), data_offsets=[off, off + len(b)])
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, sort_keys=True).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def main():
    rng = np.random.default_rng(20240611)
    T, n = 128, 64
    channel_scale = np.exp(rng.normal(0, 0.5, n))
    outliers = [5, 17, 40, 58]
    channel_scale[outliers] *= 25
    x = (rng.normal(0, 1, (T, n)) * channel_scale).astype(f32)
    w1 = (rng.normal(0, 0.05, (24, n))).astype(f32)
    w2 = (rng.normal(0, 0.05, (16, n))).astype(f32)
    h = (x.T @ x * f32(2 / T)).astype(f32)
    mean_abs = np.mean(np.abs(x).astype(np.float64), axis=0).astype(f32)
    ws = [w1, w2]

    tensors = {"X": x, "H": h, "mean_abs": mean_abs, "W1": w1, "W2": w2}
    cases = []
    for r in RECIPES:
        best, losses, s = search_scales(ws, h, mean_abs, r)
        hs = (h.astype(np.float64) / np.outer(s, s)).astype(f32)  # H of the scaled input x / s
        rtn_err = sum(output_error(w, rtn(w, r), x) for w in ws)
        awq_err = sum(output_error(w, rtn(w * s, r) / s, x) for w in ws)
        clip_err = 0.0
        for j, w in enumerate(ws):
            index, clipped = search_clip(w * s, hs, r)
            tensors[f"{r['name']}.clip_index.W{j + 1}"] = index
            clip_err += output_error(w, rtn(clipped, r) / s, x)
        tensors[f"{r['name']}.scales"] = s
        cases.append(
            dict(
                r,
                alphas=[float(a) for a in (f32(i) / f32(N_ALPHA) for i in range(N_ALPHA))],
                losses=losses,
                best_alpha_index=best,
                best_alpha=float(f32(best) / f32(N_ALPHA)),
                rtn_output_error=rtn_err,
                awq_output_error=awq_err,
                awq_clip_output_error=clip_err,
            )
        )
        print(f"{r['name']}: alpha {best / N_ALPHA:.2f}  RTN {rtn_err:.6g}  AWQ {awq_err:.6g}  AWQ+clip {clip_err:.6g}")

    os.makedirs(OUT, exist_ok=True)
    write_safetensors(os.path.join(OUT, "awq_reference.safetensors"), tensors)
    meta = dict(
        tokens=T,
        columns=n,
        outlier_channels=outliers,
        alpha_grid=N_ALPHA,
        clip_grid=CLIP_GRID,
        clip_max_shrink=MAX_SHRINK,
        scale_floor=float(SCALE_FLOOR),
        loss="sum over linears of trace((W - Q diag(1/s)) H (W - Q diag(1/s))^T) / 2, float64",
        cases=cases,
    )
    with open(os.path.join(OUT, "awq_reference.json"), "w") as f:
        json.dump(meta, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
