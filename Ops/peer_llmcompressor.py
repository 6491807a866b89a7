"""llm-compressor's side of `Ops/bench.sh peer`: the same job as Kiln's, timed and evaluated the same way.

Run with the venv of Ops/setup-peers.sh:

  python Ops/peer_llmcompressor.py prepare GGUF HF_DIR
      The GGUF as a Hugging Face model: transformers' GGUF loader dequantizes the Q4_1
      weights to float32 (and un-permutes q/k); saved with save_pretrained (not timed).
  python Ops/peer_llmcompressor.py run --method gptq|rtn --model HF_DIR --calib TXT --eval TXT --json OUT
      One quantization and the 40-window perplexity; figures to OUT as JSON.

The job matches `kiln run` in Ops/bench.sh: 4-bit weights, group 64, symmetric, lm_head kept.
GPTQ: 32 windows of 512 tokens, starts drawn by Python's random.seed(0) then randint(0, T - 512 - 1)
per window, which is exactly Kiln's `--sampler random --seed 0` (its PythonRandom is CPython's
MT19937), so both tools calibrate on the same token windows; actorder "static" (compressed-tensors'
alias of "weight": columns in descending diag(H) order, group scales fitted up front on the original
weights, i.e. Kiln's default act-order with static groups); dampening 0.01 of mean(diag(H)); the
sequential pipeline (decoder layer by decoder layer, each layer's inputs from the already quantized
layers before it). RTN: QuantizationModifier, same scheme, data-free (min-max of the weights).
Perplexity: `kiln eval`'s protocol (non-overlapping 512-token windows from the start of the text,
tokens 1..511 of each scored), in float32 on the model oneshot leaves in memory, with each Linear's
weight replaced by its quantized-dequantized value (for GPTQ oneshot already left it so; for RTN the
forward would fake-quantize on each call) and checked on the grid: weight / scale an integer in [-8, 7].
Times: import (Python modules), tokenize (both texts), load, quantize (oneshot alone), eval, write
(save_pretrained of the packed checkpoint into a temporary directory, then removed).
"""

import argparse
import json
import os
import random
import resource
import shutil
import sys
import tempfile
import time

T_START = time.perf_counter()
THREADS = int(os.environ.get("PEER_THREADS", "2"))
os.environ.setdefault("OMP_NUM_THREADS", str(THREADS))

import torch  # noqa: E402

torch.set_num_threads(THREADS)


def peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def prepare(gguf_path, out_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    d, f = os.path.split(os.path.abspath(gguf_path))
    tok = AutoTokenizer.from_pretrained(d, gguf_file=f)
    loaded = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32)
    # The loaded model is marked as GGUF-quantized (not serializable) though its weights are
    # plain float32: copy them into an unmarked model of the same config.
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())
    tmp = out_dir + ".partial"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    shutil.rmtree(out_dir, ignore_errors=True)
    os.rename(tmp, out_dir)
    print(f"prepared {out_dir} from {gguf_path}", file=sys.stderr)


def tokenize(tok, path):
    with open(path, encoding="utf-8") as fh:
        return tok(fh.read(), add_special_tokens=False)["input_ids"]


def calibration_windows(ids, count, length, seed):
    # Kiln's random sampler: random.seed(seed), then one randint(0, T - L - 1) per window.
    rng = random.Random(seed)
    starts = [rng.randint(0, len(ids) - length - 1) for _ in range(count)]
    return starts, [ids[s : s + length] for s in starts]


@torch.no_grad()
def perplexity(model, ids, windows, length):
    sums = []
    for w in range(windows):
        x = torch.tensor([ids[w * length : (w + 1) * length]])
        logits = model(input_ids=x).logits[0, :-1].float()
        nll = torch.nn.functional.cross_entropy(logits, x[0, 1:], reduction="sum")
        sums.append(float(nll))
    return float(torch.exp(torch.tensor(sum(sums) / ((length - 1) * windows), dtype=torch.float64))), sums


@torch.no_grad()
def materialize_and_check(model):
    """Writes each quantized Linear's quantized-dequantized weight into .weight (GPTQ already left
    it there; RTN leaves the original weight, fake-quantized by the forward on each call), then
    returns the count of such layers and the largest distance of weight / scale from an integer in
    [-8, 7]."""
    from compressed_tensors.quantization.lifecycle.forward import forward_quantize

    worst, layers = 0.0, 0
    for _, m in model.named_modules():
        scheme = getattr(m, "quantization_scheme", None)
        if not isinstance(m, torch.nn.Linear) or scheme is None or scheme.weights is None:
            continue
        m.weight.data = forward_quantize(m, m.weight.data, "weight", scheme.weights)
        m.quantization_enabled = False  # the forward's QDQ would now be an identity
        w, s = m.weight.float(), m.weight_scale.float()
        q = w / s.repeat_interleave(w.shape[1] // s.shape[1], dim=1)
        worst = max(worst, float((q - q.round()).abs().max()), float(q.max() - 7), float(-8 - q.min()))
        layers += 1
    return layers, worst


def run(args):
    from compressed_tensors.quantization import QuantizationArgs, QuantizationScheme
    from datasets import Dataset
    from llmcompressor import oneshot
    from llmcompressor.modifiers.gptq import GPTQModifier
    from llmcompressor.modifiers.quantization import QuantizationModifier
    from transformers import AutoModelForCausalLM, AutoTokenizer

    import compressed_tensors
    import llmcompressor
    import transformers

    t_import = time.perf_counter()
    times = {"import": t_import - T_START}

    tok = AutoTokenizer.from_pretrained(args.model)
    calib_ids = tokenize(tok, args.calib)
    eval_ids = tokenize(tok, args.eval)
    t = time.perf_counter()
    times["tokenize"] = t - t_import

    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32)
    model.eval()
    times["load"] = time.perf_counter() - t

    scheme = QuantizationScheme(
        targets=["Linear"],
        weights=QuantizationArgs(num_bits=4, type="int", symmetric=True, strategy="group", group_size=64),
    )
    common = dict(config_groups={"group_0": scheme}, ignore=["lm_head"])
    info = {}
    if args.method == "gptq":
        starts, windows = calibration_windows(calib_ids, args.samples, args.seqlen, args.seed)
        info["calibration_starts"] = starts
        ds = Dataset.from_dict({"input_ids": windows, "attention_mask": [[1] * args.seqlen for _ in windows]})
        recipe = GPTQModifier(actorder="static", dampening_frac=args.damp, **common)
        oneshot_args = dict(
            dataset=ds,
            num_calibration_samples=args.samples,
            max_seq_length=args.seqlen,
            shuffle_calibration_samples=False,
            pipeline="sequential",
        )
    else:
        recipe = QuantizationModifier(**common)
        oneshot_args = dict(pipeline="datafree")

    t = time.perf_counter()
    model = oneshot(model=model, recipe=recipe, **oneshot_args)
    times["quantize"] = time.perf_counter() - t
    rss_after_quantize = peak_rss_mib()

    layers, worst = materialize_and_check(model)
    if layers == 0 or worst > 1e-3:
        raise SystemExit(f"weights not on the 4-bit grid after oneshot ({layers} layers, off by {worst})")

    t = time.perf_counter()
    ppl, sums = perplexity(model, eval_ids, args.eval_windows, args.seqlen)
    times["eval"] = time.perf_counter() - t

    # Writing the packed checkpoint is the counterpart of Kiln's write stage (the output is
    # then removed, like Kiln's in bench.sh); after the evaluation, as it compresses in place.
    out = tempfile.mkdtemp(prefix="peer-llmc-")
    t = time.perf_counter()
    model.save_pretrained(out, save_compressed=True)
    times["write"] = time.perf_counter() - t
    shutil.rmtree(out)

    times["total"] = time.perf_counter() - T_START
    result = {
        "tool": "llm-compressor",
        "method": args.method,
        "versions": {
            "llmcompressor": llmcompressor.__version__,
            "compressed_tensors": compressed_tensors.__version__,
            "transformers": transformers.__version__,
            "torch": torch.__version__,
            "python": sys.version.split()[0],
        },
        "torch_threads": torch.get_num_threads(),
        "perplexity": ppl,
        "window_nll_sums": sums,
        "times": times,
        "peak_rss_mib_after_quantize": rss_after_quantize,
        "peak_rss_mib": peak_rss_mib(),
        "quantized_linear_layers": layers,
        "grid_check_max_error": worst,
        **info,
    }
    with open(args.json, "w") as fh:
        json.dump(result, fh, indent=1)
    print(
        f"llm-compressor {args.method}: ppl {ppl:.3f}, quantize {times['quantize']:.1f} s, "
        f"total {times['total']:.1f} s, peak RSS {result['peak_rss_mib']:.0f} MiB",
        file=sys.stderr,
    )


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    pp = sub.add_parser("prepare")
    pp.add_argument("gguf")
    pp.add_argument("out")
    pr = sub.add_parser("run")
    pr.add_argument("--method", choices=["gptq", "rtn"], required=True)
    pr.add_argument("--model", required=True)
    pr.add_argument("--calib", required=True)
    pr.add_argument("--eval", required=True)
    pr.add_argument("--json", required=True)
    pr.add_argument("--samples", type=int, default=32)
    pr.add_argument("--seqlen", type=int, default=512)
    pr.add_argument("--seed", type=int, default=0)
    pr.add_argument("--damp", type=float, default=0.01)
    pr.add_argument("--eval-windows", type=int, default=40)
    a = p.parse_args()
    if a.cmd == "prepare":
        prepare(a.gguf, a.out)
    else:
        run(a)


if __name__ == "__main__":
    main()
