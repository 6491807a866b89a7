#!/usr/bin/env python3
"""llama.cpp loads a GGUF and computes finite logits for a short prompt (llama-cpp-python;
run with the venv of Ops/setup-llama-cpp.sh).

Usage: check_llama_cpp.py FILE.gguf [--prompt TEXT] [--n-ctx 64] [--threads N]

Tokenizes the prompt with the file's own vocabulary, evaluates it with logits for every
position, and exits 1 unless every logit is finite. Prints JSON: the tokens, the logits'
shape, min, max, mean, the next-token NLL sum, the first logits of the last position and the arg-max tokens.
"""
import argparse
import json
import os
import sys
import time

import numpy as np
from llama_cpp import Llama


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("model")
    p.add_argument("--prompt", default="The quick brown fox jumps over the lazy dog. 1234")
    p.add_argument("--n-ctx", type=int, default=64)
    p.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    a = p.parse_args()
    if not os.path.isfile(a.model):
        print(f"check_llama_cpp.py: {a.model}: no such file", file=sys.stderr)
        return 2
    t0 = time.time()
    llm = Llama(model_path=a.model, n_ctx=a.n_ctx, n_batch=a.n_ctx, n_threads=a.threads, logits_all=True,
                use_mmap=True, verbose=False)
    loaded = time.time() - t0
    tokens = llm.tokenize(a.prompt.encode("utf-8"), add_bos=True, special=False)
    if not 1 < len(tokens) <= a.n_ctx:
        print(f"check_llama_cpp.py: the prompt is {len(tokens)} tokens; n_ctx is {a.n_ctx}", file=sys.stderr)
        return 2
    llm.eval(tokens)
    logits = np.asarray(llm.scores[: len(tokens)], dtype=np.float32)  # (positions, vocab)
    finite = bool(np.isfinite(logits).all())
    # Next-token NLL of tokens 1..n-1, comparable with `kiln eval --ctx n`'s window_nll_sums.
    lse = np.log(np.exp(logits - logits.max(axis=1, keepdims=True)).sum(axis=1)) + logits.max(axis=1)
    nll = float(sum(lse[i] - logits[i, tokens[i + 1]] for i in range(len(tokens) - 1)))
    out = {
        "model": a.model, "n_vocab": llm.n_vocab(), "tokens": tokens, "logits_shape": list(logits.shape),
        "finite": finite, "nonfinite": int((~np.isfinite(logits)).sum()),
        "min": float(np.nanmin(logits)), "max": float(np.nanmax(logits)), "mean": float(np.nanmean(logits)), "nll_sum": nll,
        "last_first8": [round(float(x), 4) for x in logits[-1, :8]],
        "argmax": [int(i) for i in logits.argmax(axis=1)],
        "load_seconds": round(loaded, 2), "eval_seconds": round(time.time() - t0 - loaded, 2),
    }
    print(json.dumps(out))
    if not finite:
        print(f"check_llama_cpp.py: {out['nonfinite']} non-finite logits", file=sys.stderr)
        return 1
    if logits.std() == 0:
        print("check_llama_cpp.py: all logits equal (a dead model?)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
