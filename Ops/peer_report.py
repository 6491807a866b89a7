"""The table of `Ops/bench.sh peer`: Kiln and llm-compressor on the same job, from the files in OUT.

  python3 Ops/peer_report.py OUT

Reads OUT/q-peer-{gptq,rtn}.json|.time (kiln run --json, /usr/bin/time -v), OUT/llmc-peer-{gptq,rtn}.json|.time
(Ops/peer_llmcompressor.py) and OUT/peer-load.txt (1/5/15-minute load averages before and after each run).
  quantize   the quantization step alone: Kiln's executor (collect, merge, reconstruct, propagate, wall
             time); llm-compressor's oneshot() call
  +load+write  plus reading the model and tokenizing the texts, and writing the packed checkpoint
             (llm-compressor's Python imports not included: listed below)
  process    the whole process's wall time (includes the 40-window evaluation)
  peak RSS   the whole process's maximum resident set (/usr/bin/time)
"""

import json
import sys


def time_v(path):
    out = {}
    for line in open(path):
        key, _, value = line.strip().rpartition(": ")
        if key == "Maximum resident set size (kbytes)":
            out["rss_mib"] = int(value) / 1024
        elif key.startswith("Elapsed (wall clock) time"):
            seconds = 0.0
            for part in value.split(":"):
                seconds = seconds * 60 + float(part)
            out["wall"] = seconds
    return out


def main(out):
    loads = {}
    for line in open(f"{out}/peer-load.txt"):
        name, when, *avg = line.split()
        loads[(name, when)] = avg
    rows, llmc = {}, {}
    for method in ("gptq", "rtn"):
        r = json.load(open(f"{out}/q-peer-{method}.json"))
        t = r["times"]
        eval_s = t["evalBefore"] + t["evalAfter"]
        rows[("Kiln", method)] = dict(
            quantize=t["total"] - t["load"] - t["write"] - eval_s,
            total=t["total"] - eval_s,
            ppl=r["perplexity"]["after"],
            load=loads[(f"peer-{method}", "before")] + ["->"] + loads[(f"peer-{method}", "after")],
            **time_v(f"{out}/q-peer-{method}.time"),
        )
        r = llmc[method] = json.load(open(f"{out}/llmc-peer-{method}.json"))
        t = r["times"]
        rows[("llm-compressor", method)] = dict(
            quantize=t["quantize"],
            total=t["tokenize"] + t["load"] + t["quantize"] + t["write"],
            ppl=r["perplexity"],
            load=loads[(f"llmc-peer-{method}", "before")] + ["->"] + loads[(f"llmc-peer-{method}", "after")],
            **time_v(f"{out}/llmc-peer-{method}.time"),
        )
    v = llmc["gptq"]["versions"]
    print(
        f"llm-compressor {v['llmcompressor']}, compressed-tensors {v['compressed_tensors']}, transformers "
        f"{v['transformers']}, torch {v['torch']} ({llmc['gptq']['torch_threads']} threads), Python {v['python']}; "
        f"Kiln --threads 2"
    )
    print(f"{'tool':15s} {'method':6s} {'quantize s':>10s} {'+load+write s':>13s} {'process s':>9s} "
          f"{'peak RSS MiB':>12s} {'perplexity':>10s}  load average 1/5/15 min before -> after")
    for (tool, method), r in rows.items():
        print(f"{tool:15s} {method:6s} {r['quantize']:10.1f} {r['total']:13.1f} {r['wall']:9.1f} "
              f"{r['rss_mib']:12.0f} {r['ppl']:10.3f}  {' '.join(r['load'])}")
    k, p = rows[("Kiln", "gptq")], rows[("llm-compressor", "gptq")]
    print(f"GPTQ time ratio llm-compressor / Kiln: quantize {p['quantize'] / k['quantize']:.2f}x, "
          f"with load and write {p['total'] / k['total']:.2f}x, process {p['wall'] / k['wall']:.2f}x "
          f"(full precision perplexity 27.834)")
    print(f"llm-compressor Python imports: {llmc['gptq']['times']['import']:.1f} s (GPTQ run), "
          f"{llmc['rtn']['times']['import']:.1f} s (RTN run); peak RSS after oneshot "
          f"{llmc['gptq']['peak_rss_mib_after_quantize']:.0f} MiB (GPTQ), "
          f"{llmc['rtn']['peak_rss_mib_after_quantize']:.0f} MiB (RTN)")


if __name__ == "__main__":
    main(sys.argv[1])
