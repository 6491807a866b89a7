#!/usr/bin/env python3
"""Bits per weight of a model's block linears (attention q/k/v/o and MLP gate/up/down), from
`kiln inspect --json` of a GGUF file or a GPTQ / compressed-tensors directory: stored bytes
(codes, scales, zeros, group indices) x 8 / weights. Usage: linear_bpw.py MODEL [KILN]"""
import json
import re
import subprocess
import sys

LINEAR = re.compile(r"(blk\.\d+\.(attn_[qkv]|attn_output|ffn_(gate|up|down))\.)|"
                    r"(layers\.\d+\.(self_attn\.[qkvo]_proj|mlp\.(gate|up|down)_proj)\.)")


def main():
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    kiln = sys.argv[2] if len(sys.argv) > 2 else ".build/release/kiln"
    info = json.loads(subprocess.run([kiln, "inspect", sys.argv[1], "--json"], check=True, capture_output=True,
                                     text=True).stdout)
    bits = weights = 0
    for t in info["tensors"]:
        if not LINEAR.search(t["name"]):
            continue
        bits += 8 * t["bytes"]
        if t["name"].endswith(".weight") and t["dtype"] not in ("I32",) or t["name"].endswith(".qweight"):
            n = 1
            for d in t["shape"]:
                n *= d
            # a GPTQ qweight packs 32 / bits codes per int32: its weights are in_features x out_features
            weights += n if not t["name"].endswith(".qweight") else 0
    if weights == 0:  # GPTQ layout: count weights from the scales' out_features x in_features instead
        for t in info["tensors"]:
            if LINEAR.search(t["name"]) and t["name"].endswith(".g_idx"):
                out = next(u for u in info["tensors"] if u["name"] == t["name"][:-5] + "scales")["shape"][-1]
                weights += t["shape"][0] * out
    print(f"{bits / weights:.3f}" if weights else "-")
    return 0


if __name__ == "__main__":
    sys.exit(main())
