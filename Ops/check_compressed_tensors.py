#!/usr/bin/env python3
"""Loads a compressed-tensors W8A8 directory Kiln wrote the way users will: transformers'
AutoModelForCausalLM.from_pretrained (compressed-tensors reads quantization_config and
decompresses the int8 linears), then checks what it loaded against what the file holds.

Usage: check_compressed_tensors.py DIR > out.json
Needs torch, transformers and compressed-tensors (the peer venv: Ops/setup-peers.sh;
run with /root/.cache/kiln/venv-peer/bin/python).

Checks, reported as JSON {"quantization_config", "scheme", "linears": {prefix: {...}},
"dense": {name: {...}}, "logits_finite", "ok"}:
  - quantization_config parses as compressed-tensors' QuantizationConfig and its group is
    int8 weights per channel and int8 dynamic activations per token, both symmetric;
  - every `<prefix>.weight` stored as I8 has `<prefix>.weight_scale` [out, 1], and the
    module transformers built for it, after decompression, has weight equal to
    int8 * scale exactly: either computed in the scale's dtype (what compressed-tensors'
    dequantize does) or exactly and then rounded to the model's dtype;
  - every other stored tensor is loaded bit for bit (ignored modules such as lm_head);
  - a forward pass on a few tokens gives finite logits (it also triggers the
    decompression hook when the model was loaded compressed).
Exits 1 when anything fails.
"""
import json
import sys

import torch
from compressed_tensors.quantization import QuantizationConfig
from safetensors import safe_open
from transformers import AutoModelForCausalLM


def main(path):
    with open(f"{path}/config.json") as f:
        cfg = json.load(f)
    qc = cfg["quantization_config"]
    parsed = QuantizationConfig.model_validate(
        {k: v for k, v in qc.items() if k not in ("version", "sparsity_config", "transform_config")})
    group = parsed.config_groups["group_0"]
    w, a = group.weights, group.input_activations
    scheme_ok = (
        qc["quant_method"] == "compressed-tensors" and parsed.format == "int-quantized"
        and w.num_bits == 8 and w.type == "int" and w.symmetric and w.strategy == "channel" and not w.dynamic
        and a.num_bits == 8 and a.type == "int" and a.symmetric and a.strategy == "token" and a.dynamic is True
        and group.targets == ["Linear"])

    stored = {}
    with safe_open(f"{path}/model.safetensors", "pt") as f:
        for k in f.keys():
            stored[k] = f.get_tensor(k)

    model = AutoModelForCausalLM.from_pretrained(path)
    with torch.no_grad():
        logits = model(torch.tensor([[1, 2, 3, 4, 5]])).logits
    params = dict(model.named_parameters())
    params.update(dict(model.named_buffers()))

    ok = scheme_ok and bool(torch.isfinite(logits).all())
    linears, dense = {}, {}
    for name, t in stored.items():
        if name.endswith(".weight") and t.dtype == torch.int8:
            prefix = name[: -len(".weight")]
            s = stored.get(prefix + ".weight_scale")
            loaded = params.get(name)
            r = {"shape": list(t.shape)}
            if s is None or list(s.shape) != [t.shape[0], 1] or loaded is None:
                r["error"] = "missing weight_scale [out, 1] or module"
                ok = False
            else:
                r["scale_dtype"] = str(s.dtype)
                r["loaded_dtype"] = str(loaded.dtype)
                in_scale_dtype = (t.to(s.dtype) * s).to(loaded.dtype)
                exact = (t.double() * s.double()).to(loaded.dtype)
                r["equal_in_scale_dtype"] = bool(torch.equal(loaded.detach(), in_scale_dtype))
                r["equal_exact_rounded"] = bool(torch.equal(loaded.detach(), exact))
                r["max_abs_vs_exact"] = float((loaded.detach().double() - t.double() * s.double()).abs().max())
                r["codes_range"] = [int(t.min()), int(t.max())]
                r["ok"] = r["equal_in_scale_dtype"] or r["equal_exact_rounded"]
                ok = ok and r["ok"]
            linears[prefix] = r
        elif not name.endswith(".weight_scale"):
            loaded = params.get(name)
            eq = loaded is not None and loaded.dtype == t.dtype and torch.equal(loaded.detach(), t)
            dense[name] = {"shape": list(t.shape), "dtype": str(t.dtype), "equal": bool(eq)}
            ok = ok and eq
    print(json.dumps({
        "quantization_config": qc, "scheme": scheme_ok, "linears": linears, "dense": dense,
        "logits_finite": bool(torch.isfinite(logits).all()), "ok": ok,
    }, indent=1, sort_keys=True))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
