#!/usr/bin/env python3
"""bench_memory.py: activation recomputation at width on this machine. configs/width-96L.toml (96 blocks, d = 256,
T = 512, 8 sequences, one process on every core) with train.recompute = none, selective and full: each run's peak
RSS (measured by the run itself, getrusage) beside strata plan's prediction, and its step time, against none.

Usage: bench/bench_memory.py [--steps 3] [--modes none selective full] [--strata build/strata]
A run's step time is the median of its steps after the first (the first touches every page of its memory).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(strata, mode, steps):
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [strata, "train", "--config", os.path.join(ROOT, "configs", "width-96L.toml"),
               "--set", f"train.steps={steps}", "--set", f"train.recompute={mode}", "--set", f"checkpoint.dir={tmp}"]
        out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        if out.returncode != 0:
            sys.exit(f"bench: {' '.join(cmd)} failed:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
        recs = [json.loads(l) for l in open(os.path.join(tmp, "metrics.jsonl"))]
        ms = statistics.median(r["ms_per_step"] for r in recs if "loss" in r and r["step"] > 1)
        mem = next(r for r in recs if "peak_rss_bytes" in r)
        losses = [r["loss"] for r in recs if "loss" in r]
        return ms, mem["peak_rss_bytes"][0], mem["predicted_peak_bytes"][0], losses


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--modes", nargs="+", default=["none", "selective", "full"])
    ap.add_argument("--strata", default=os.path.join(ROOT, "build", "strata"))
    a = ap.parse_args()
    res = {m: run(a.strata, m, a.steps) for m in a.modes}
    base_ms, base_rss = res[a.modes[0]][0], res[a.modes[0]][1]
    print(f"width-96L (96 blocks, d 256, T 512, 8 sequences), {a.steps} steps; ratios against {a.modes[0]}")
    print(f"{'recompute':>10} {'peak RSS MB':>12} {'plan MB':>9} {'plan err':>9} {'RSS ratio':>10} {'ms/step':>9} "
          f"{'time ratio':>11}  losses")
    for m, (ms, rss, pred, losses) in res.items():
        print(f"{m:>10} {rss / 1e6:12.1f} {pred / 1e6:9.1f} {100 * (pred - rss) / rss:8.1f}% {rss / base_rss:10.3f} "
              f"{ms:9.1f} {ms / base_ms:11.3f}  {' '.join(f'{x:.4f}' for x in losses)}")


if __name__ == "__main__":
    main()
