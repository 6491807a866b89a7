#!/usr/bin/env python3
"""Summary of one Ops/big.sh job: each block's time in each stage, from the polled
`kiln status JOB --json` lines (stage times are as seen by the poll, so accurate to its
interval; a stage shorter than the interval can be missed, shown as "-"), the block's own
elapsed_ms, and each process's peak RSS (VmHWM); with the sampled RSS timeline, each
process's largest anonymous and file-backed resident memory, and the block stages at the
largest sample.

Usage: big_report.py STATUS.jsonl RSS.jsonl WALL_SECONDS [RSS-TIMELINE.jsonl]
"""
import json
import sys

STAGES = ["waiting", "statistics", "merging", "reconstructing", "propagating", "done"]


def main():
    polls = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
    rss = [json.loads(line) for line in open(sys.argv[2]) if line.strip()]
    wall = float(sys.argv[3])
    if not polls:
        print("no status was read")
        return 1
    t0 = polls[0]["t"]
    first = {}  # (block, stage) -> first poll time seen in it
    for p in polls:
        for b in p["status"]["blocks"]:
            first.setdefault((b["block"], b["stage"]), p["t"])
    final = polls[-1]["status"]
    print(f"job {final['job_id']}: {final['state']}, {final['blocks_done']}/{final['blocks_total']} blocks, "
          f"job elapsed {final['elapsed_ms'] / 1000:.1f} s, wall {wall:.0f} s (submit to end), "
          f"{len(polls)} polls")
    shown = STAGES[1:5]
    print(f"{'block':>5} " + " ".join(f"{s:>14}" for s in shown) + f" {'elapsed':>9}  workers")
    for b in final["blocks"]:
        i = b["block"]
        seen = [(s, first[(i, s)]) for s in STAGES if (i, s) in first]
        cells = []
        for s in shown:
            if (i, s) not in first:
                cells.append(f"{'-':>14}")
                continue
            later = [t for st, t in seen if STAGES.index(st) > STAGES.index(s)]
            end = min(later) if later else polls[-1]["t"]
            cells.append(f"{end - first[(i, s)]:13.1f}s")
        el = b.get("elapsed_ms")
        print(f"{i:>5} " + " ".join(cells) + f" {el / 1000 if el is not None else float('nan'):8.1f}s  "
              + ",".join(b.get("workers", [])))
    starts = {b["block"]: first.get((b["block"], "statistics"), t0) - t0 for b in final["blocks"]}
    print("block start offsets (s): " + " ".join(f"{k}:{v:.1f}" for k, v in sorted(starts.items())))
    print("peak RSS (VmHWM): " + ", ".join(
        f"{r['process']} {r['vmhwm_kb'] / 1024:.0f} MiB" if "vmhwm_kb" in r else f"{r['process']} (exited)"
        for r in rss))
    if len(sys.argv) > 4:
        timeline(sys.argv[4], polls)
    return 0


def timeline(path, polls):
    samples = [json.loads(line) for line in open(path) if line.strip()]
    by = {}
    for s in samples:
        by.setdefault(s["process"], []).append(s)
    for name, ss in sorted(by.items()):
        top = max(ss, key=lambda s: s["rss_kb"])
        anon = max(s["anon_kb"] for s in ss)
        file = max(s["file_kb"] for s in ss)
        # The blocks' stages at the poll nearest before the largest sample.
        before = [p for p in polls if p["t"] <= top["t"]]
        stages = ", ".join(f"{b['block']}:{b['stage']}" for b in before[-1]["status"]["blocks"]) if before else "-"
        print(f"{name}: sampled peak {top['rss_kb'] / 1024:.0f} MiB (anon {top['anon_kb'] / 1024:.0f}, "
              f"file {top['file_kb'] / 1024:.0f}) at +{top['t'] - polls[0]['t']:.1f}s [{stages}]; "
              f"largest anon {anon / 1024:.0f} MiB, file {file / 1024:.0f} MiB")


if __name__ == "__main__":
    sys.exit(main())
