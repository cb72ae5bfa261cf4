#!/usr/bin/env python3
"""bench_vs_torch.py: Strata against an equivalent PyTorch CPU training loop, same machine, same thread count,
same model, same batch. Prints tokens/s for both, the ratio, and Strata's model FLOP utilisation against this
machine's measured sgemm FLOP/s (OpenBLAS through Strata, n = 2048).

Usage: bench/bench_vs_torch.py [--configs bench-12L bench-96L] [--threads 2] [--steps 12] [--strata build/strata]
The first 2 steps of each side are warm-up; the figure is the median over the remaining steps.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "reference"))
import strata_torch  # noqa: E402

try:
    import tomllib  # Python 3.11
except ImportError:  # pragma: no cover
    tomllib = None

WARMUP = 2


def load_config(name):
    with open(os.path.join(ROOT, "configs", name + ".toml"), "rb") as f:
        return tomllib.load(f)


def torch_tokens_per_s(cfg, steps, threads, data):
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    m, t = cfg["model"], cfg["train"]
    mc = dict(m, ln_eps=1e-5, activation=m.get("activation", "gelu_tanh"),
              init_scheme=cfg.get("init", {}).get("scheme", ""))
    P = {k: torch.nn.Parameter(v) for k, v in strata_torch.init_params(mc).items()}
    decay = [p for k, p in P.items() if p.dim() == 2]
    no_decay = [p for k, p in P.items() if p.dim() != 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=t["lr"], betas=(0.9, 0.95), eps=1e-8)
    B, T = t["batch_size"], m["seq_len"]
    rng = np.random.default_rng(0)
    times = []
    for step in range(steps):
        off = rng.integers(0, len(data) - T - 1, size=B)
        x = torch.from_numpy(np.stack([data[o:o + T] for o in off]).astype(np.int64))
        y = torch.from_numpy(np.stack([data[o + 1:o + T + 1] for o in off]).astype(np.int64))
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = strata_torch.forward(mc, P, x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(list(P.values()), 1.0)
        opt.step()
        times.append(time.perf_counter() - t0)
    return B * T / float(np.median(times[WARMUP:])), float(loss)


def strata_tokens_per_s(cfg_name, steps, threads, strata):
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [strata, "train", "--config", os.path.join(ROOT, "configs", cfg_name + ".toml"),
               "--set", f"train.steps={steps}", "--set", f"train.threads={threads}", "--set", "log.interval=1",
               "--set", "train.eval_batches=0", "--set", f"checkpoint.dir={tmp}"]
        out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        if out.returncode != 0:
            sys.exit(f"bench: strata failed: {out.stderr.strip()}")
        recs = [json.loads(line) for line in open(os.path.join(tmp, "metrics.jsonl")) if '"loss"' in line]
        peak = None
        for line in out.stdout.splitlines():
            if "sgemm peak" in line:
                peak = float(line.split("sgemm peak ")[1].split(" ")[0])
        tps = float(np.median([r["tokens_per_s"] for r in recs[WARMUP:]]))
        mfu = float(np.median([r["mfu"] for r in recs[WARMUP:]]))
        return tps, mfu, peak, recs[-1]["loss"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--configs", nargs="+", default=["bench-12L", "bench-96L"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--strata", default=os.path.join(ROOT, "build", "strata"))
    a = ap.parse_args()
    shard = os.path.join(ROOT, "data", "kjv", "train.bin")
    if not os.path.exists(shard):
        sys.exit(f"bench: {shard} is missing: run `build/strata prepare` (launch/quickstart.sh does) first")
    data = np.fromfile(shard, dtype=np.uint16, offset=1024)
    print(f"threads {a.threads}, {a.steps} steps per side ({WARMUP} warm-up), torch {torch.__version__}")
    print(f"{'config':<10} {'strata tok/s':>13} {'torch tok/s':>12} {'ratio':>6} {'strata MFU':>11} "
          f"{'sgemm GFLOP/s':>14}")
    for name in a.configs:
        cfg = load_config(name)
        s_tps, s_mfu, peak, _ = strata_tokens_per_s(name, a.steps, a.threads, a.strata)
        t_tps, _ = torch_tokens_per_s(cfg, a.steps, a.threads, data)
        print(f"{name:<10} {s_tps:>13.0f} {t_tps:>12.0f} {s_tps / t_tps:>6.2f} {100 * s_mfu:>10.1f}% {peak:>14.0f}",
              flush=True)


if __name__ == "__main__":
    main()
