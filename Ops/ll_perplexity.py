#!/usr/bin/env python3
"""Perplexity of a GGUF file as llama.cpp's `llama-perplexity -c CTX --chunks N` computes it,
through llama-cpp-python (run with the venv of Ops/setup-llama-cpp.sh): the LL protocol.

Usage: ll_perplexity.py FILE.gguf [FILE.gguf ...] --text EVAL.txt [--ctx 512] [--chunks 40] [--threads N]

The text is tokenized whole with a BOS token in front; chunk i is tokens [i*ctx, (i+1)*ctx)
with its first token replaced by BOS; only the second half is scored: the logits at
positions ctx/2 .. ctx-2 predict the tokens after them (ctx/2 - 1 per chunk), as
llama-perplexity's `first = n_ctx/2` does. Prints one JSON line per file: ppl, nll sum,
tokens scored, chunks and seconds.
"""
import argparse
import json
import math
import os
import sys
import time

import numpy as np
from llama_cpp import Llama


def perplexity(path, text, ctx, chunks, threads):
    t0 = time.time()
    llm = Llama(model_path=path, n_ctx=ctx, n_batch=ctx, n_threads=threads, logits_all=True, use_mmap=True,
                verbose=False)
    tokens = llm.tokenize(text.encode("utf-8"), add_bos=True, special=False)
    available = len(tokens) // ctx
    if available < chunks:
        raise SystemExit(f"ll_perplexity.py: the text has {len(tokens)} tokens: {available} chunks of {ctx}, "
                         f"{chunks} asked")
    bos = llm.token_bos()
    first = ctx // 2
    nll = 0.0
    count = 0
    for i in range(chunks):
        chunk = list(tokens[i * ctx:(i + 1) * ctx])
        chunk[0] = bos
        llm.reset()
        llm.eval(chunk)
        logits = np.asarray(llm.scores[:ctx], dtype=np.float64)
        rows = logits[first:ctx - 1]
        top = rows.max(axis=1)
        lse = np.log(np.exp(rows - top[:, None]).sum(axis=1)) + top
        targets = np.asarray(chunk[first + 1:ctx])
        nll += float((lse - rows[np.arange(len(targets)), targets]).sum())
        count += len(targets)
    return {"model": path, "ppl": math.exp(nll / count), "nll_sum": nll, "tokens_scored": count,
            "chunks": chunks, "ctx": ctx, "seconds": round(time.time() - t0, 1)}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("models", nargs="+")
    p.add_argument("--text", required=True)
    p.add_argument("--ctx", type=int, default=512)
    p.add_argument("--chunks", type=int, default=40)
    p.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    a = p.parse_args()
    if a.ctx < 4 or a.chunks < 1:
        print("ll_perplexity.py: --ctx must be >= 4 and --chunks >= 1", file=sys.stderr)
        return 2
    try:
        with open(a.text, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        print(f"ll_perplexity.py: {a.text}: {e.strerror}", file=sys.stderr)
        return 2
    for m in a.models:
        if not os.path.isfile(m):
            print(f"ll_perplexity.py: {m}: no such file", file=sys.stderr)
            return 2
        print(json.dumps(perplexity(m, text, a.ctx, a.chunks, a.threads)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
