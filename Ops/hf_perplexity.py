#!/usr/bin/env python3
"""Perplexity of a quantized Hugging Face directory Kiln wrote, loaded the way users serve it:
transformers' AutoModelForCausalLM.from_pretrained on the directory, on CPU, with the
quantization integration its config.json names (GPTQ: optimum + gptqmodel, the venv of
Ops/setup-gptq-runtime.sh; compressed-tensors: the venv of Ops/setup-peers.sh).

Usage: hf_perplexity.py DIR --ids IDS.json [--ctx 512] [--windows 4] [--threads N]

Protocol of `kiln eval`, on the same tokens: IDS.json is the token list Kiln's tokenizer gave
(tokens of the whole text without special tokens); window w is ids[w*ctx:(w+1)*ctx], and
tokens 1..ctx-1 are scored given the tokens before them in the window. Logits in float32.
Prints one JSON object: ppl, nll sum, per-window sums, tokens scored, the quantization
method, the Linear class transformers used, the versions and seconds. Exits 1 on a
non-finite result.
"""
import argparse
import json
import math
import sys
import time

import torch
import transformers
from transformers import AutoModelForCausalLM


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("model")
    p.add_argument("--ids", required=True)
    p.add_argument("--ctx", type=int, default=512)
    p.add_argument("--windows", type=int, default=4)
    p.add_argument("--threads", type=int, default=2)
    # gptqmodel's "auto" picks its ATen int4 CPU kernel even when in_features is not a
    # multiple of the group size (SmolLM2: 576 with group 128) and then fails in the forward;
    # its plain torch kernel takes any group size.
    p.add_argument("--gptq-backend", default="gptq_torch")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    with open(a.ids) as f:
        ids = json.load(f)
    if not isinstance(ids, list) or len(ids) < a.ctx * a.windows or a.ctx < 2:
        print(f"hf_perplexity.py: {a.ids}: need {a.windows} windows of {a.ctx} token ids", file=sys.stderr)
        return 2
    t0 = time.time()
    with open(f"{a.model}/config.json") as f:
        qc = json.load(f).get("quantization_config", {})
    method = qc.get("quant_method")
    kwargs = {}
    if method == "gptq":
        kwargs = {"dtype": torch.float16,
                  "quantization_config": transformers.GPTQConfig(bits=qc["bits"], backend=a.gptq_backend)}
    model = AutoModelForCausalLM.from_pretrained(a.model, device_map="cpu", **kwargs)
    model.eval()
    q_proj = model.model.layers[0].self_attn.q_proj
    sums = []
    with torch.no_grad():
        for w in range(a.windows):
            x = torch.tensor([ids[w * a.ctx:(w + 1) * a.ctx]])
            logits = model(x).logits[0].float()
            lp = torch.log_softmax(logits[:-1], dim=-1)
            sums.append(float(-lp.gather(1, x[0, 1:, None]).sum()))
    scored = (a.ctx - 1) * a.windows
    ppl = math.exp(sum(sums) / scored)
    out = {"model": a.model, "ppl": ppl, "nll_sum": sum(sums), "window_nll_sums": sums, "tokens_scored": scored,
           "windows": a.windows, "ctx": a.ctx, "quant_method": method,
           "linear_class": f"{type(q_proj).__module__}.{type(q_proj).__name__}",
           "dtype": str(next(model.parameters()).dtype), "transformers": transformers.__version__,
           "torch": torch.__version__, "gptq_backend": a.gptq_backend if method == "gptq" else None, "seconds": round(time.time() - t0, 1)}
    print(json.dumps(out))
    return 0 if math.isfinite(ppl) else 1


if __name__ == "__main__":
    sys.exit(main())
