#!/usr/bin/env python3
"""Perplexity of a GGUF file as llama.cpp's `llama-perplexity -c CTX --chunks N` computes it,
through llama-cpp-python (run with the venv of Ops/setup-llama-cpp.sh): the LL protocol.

Usage: ll_perplexity.py FILE.gguf [FILE.gguf ...] --text EVAL.txt [--ctx 512] [--chunks 40] [--threads N]
       ll_perplexity.py FILE.gguf --ids IDS.json [--ctx 512] [--chunks 4]   (Kiln's protocol)

The text is tokenized whole with a BOS token in front; chunk i is tokens [i*ctx, (i+1)*ctx)
with its first token replaced by BOS; only the second half is scored: the logits at
positions ctx/2 .. ctx-2 predict the tokens after them (ctx/2 - 1 per chunk), as
llama-perplexity's `first = n_ctx/2` does. Prints one JSON line per file: ppl, nll sum,
tokens scored, chunks and seconds.

With --ids, the protocol of `kiln eval` on the tokens Kiln's tokenizer gave (IDS.json, the
whole text without special tokens): chunk i is ids[i*ctx:(i+1)*ctx] as is (no BOS), and
tokens 1..ctx-1 are scored given the tokens before them, as Kiln's job report scores them.
"""
import argparse
import json
import math
import os
import sys
import time

import numpy as np
from llama_cpp import Llama


def perplexity(path, text, ctx, chunks, threads, ids=None):
    t0 = time.time()
    llm = Llama(model_path=path, n_ctx=ctx, n_batch=ctx, n_threads=threads, logits_all=True, use_mmap=True,
                verbose=False)
    kiln = ids is not None
    tokens = ids if kiln else llm.tokenize(text.encode("utf-8"), add_bos=True, special=False)
    available = len(tokens) // ctx
    if available < chunks:
        raise SystemExit(f"ll_perplexity.py: the text has {len(tokens)} tokens: {available} chunks of {ctx}, "
                         f"{chunks} asked")
    bos = llm.token_bos()
    first = 0 if kiln else ctx // 2
    nll = 0.0
    count = 0
    for i in range(chunks):
        chunk = list(tokens[i * ctx:(i + 1) * ctx])
        if not kiln:
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
    return {"model": path, "protocol": "kiln" if kiln else "ll", "ppl": math.exp(nll / count), "nll_sum": nll,
            "tokens_scored": count,
            "chunks": chunks, "ctx": ctx, "seconds": round(time.time() - t0, 1)}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("models", nargs="+")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--text")
    src.add_argument("--ids", help="JSON list of token ids (Kiln's protocol)")
    p.add_argument("--ctx", type=int, default=512)
    p.add_argument("--chunks", "--windows", dest="chunks", type=int, default=40)
    p.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    a = p.parse_args()
    if a.ctx < 4 or a.chunks < 1:
        print("ll_perplexity.py: --ctx must be >= 4 and --chunks >= 1", file=sys.stderr)
        return 2
    text, ids = None, None
    try:
        with open(a.text or a.ids, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        print(f"ll_perplexity.py: {a.text or a.ids}: {e.strerror}", file=sys.stderr)
        return 2
    if a.ids:
        ids = json.loads(text)
        if not isinstance(ids, list) or not all(isinstance(i, int) for i in ids):
            print(f"ll_perplexity.py: {a.ids}: not a JSON list of token ids", file=sys.stderr)
            return 2
    for m in a.models:
        if not os.path.isfile(m):
            print(f"ll_perplexity.py: {m}: no such file", file=sys.stderr)
            return 2
        print(json.dumps(perplexity(m, text, a.ctx, a.chunks, a.threads, ids)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
