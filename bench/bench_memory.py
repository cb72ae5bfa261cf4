#!/usr/bin/env python3
"""bench_memory.py: activation recomputation at width on this machine. configs/width-96L.toml (96 blocks, d = 256,
T = 512, 8 sequences, one process on every core) with train.recompute = none, selective and full: each run's peak
RSS (measured by the run itself, getrusage) beside strata plan's prediction, and its step time, against none.

Usage: bench/bench_memory.py [--steps 5] [--repeat 2] [--modes none selective full] [--strata build/strata]
A run's step time is the median of its steps after the first (the first touches every page of its memory); runs
are taken in turns (every mode once, then again) and each row gives the median over --repeat runs, with the time
ratio also as the median of the paired ratios (run i of none against run i of the mode, minutes apart).
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
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--modes", nargs="+", default=["none", "selective", "full"])
    ap.add_argument("--strata", default=os.path.join(ROOT, "build", "strata"))
    a = ap.parse_args()
    runs = {m: [] for m in a.modes}
    for _ in range(a.repeat):
        for m in a.modes:
            runs[m].append(run(a.strata, m, a.steps))
    base = runs[a.modes[0]]
    base_ms = statistics.median(r[0] for r in base)
    base_rss = statistics.median(r[1] for r in base)
    print(f"width-96L (96 blocks, d 256, T 512, 8 sequences), {a.steps} steps, median of {a.repeat} runs; ratios "
          f"against {a.modes[0]}")
    print(f"{'recompute':>10} {'peak RSS MB':>12} {'plan MB':>9} {'plan err':>9} {'RSS ratio':>10} {'ms/step':>9} "
          f"{'time ratio':>11} {'paired':>7}  ms/step of each run; losses of the first")
    for m, rs in runs.items():
        ms = statistics.median(r[0] for r in rs)
        rss = statistics.median(r[1] for r in rs)
        pred = statistics.median(r[2] for r in rs)
        paired = statistics.median(r[0] / b[0] for r, b in zip(rs, base))
        print(f"{m:>10} {rss / 1e6:12.1f} {pred / 1e6:9.1f} {100 * (pred - rss) / rss:8.1f}% {rss / base_rss:10.3f} "
              f"{ms:9.1f} {ms / base_ms:11.3f} {paired:7.3f}  {' '.join(f'{r[0]:.0f}' for r in rs)}; "
              f"{' '.join(f'{x:.4f}' for x in rs[0][3])}")


if __name__ == "__main__":
    main()
