#!/usr/bin/env python3
"""bench_checkpoint.py: checkpoint write speed against a plain sequential write of the same size on the same
disk (dd with fsync), and the step-time cost of collecting per-layer statistics every step (stats.interval = 1).

Usage: bench/bench_checkpoint.py [--config bench-96L] [--steps 12] [--strata build/strata]
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def train(strata, cfg, steps, tmp, extra):
    cmd = [strata, "train", "--config", os.path.join(ROOT, "configs", cfg + ".toml"), "--set", f"train.steps={steps}",
           "--set", "log.interval=1", "--set", "train.eval_batches=0", "--set", f"checkpoint.dir={tmp}"] + extra
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"bench: {' '.join(cmd)} failed: {out.stderr[-2000:]}")
    return out.stdout


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="bench-96L")
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--strata", default=os.path.join(ROOT, "build", "strata"))
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=ROOT) as tmp:
        # Checkpoint write: the figure Strata logs (size / time from open to rename and latest).
        speeds, size = [], 0
        for i in range(a.repeat):
            log = train(a.strata, a.config, 2, os.path.join(tmp, f"ck{i}"), ["--set", "checkpoint.interval=1"])
            for m in re.finditer(r"checkpoint \S+ \(([\d.]+) MB in ([\d.]+) s, (\d+) MB/s\)", log):
                size = float(m.group(1))
                speeds.append(size / float(m.group(2)))
        ck = statistics.median(speeds)
        # Plain sequential write of the same size, same disk, fsync'd: the median of --repeat writes (this
        # disk's speed varies from minute to minute).
        plains = []
        for i in range(a.repeat):
            dd = subprocess.run(["dd", "if=/dev/zero", f"of={tmp}/plain", "bs=1M", f"count={max(1, int(size))}",
                                 "conv=fsync"], capture_output=True, text=True).stderr
            plains.append(max(1, int(size)) * 1.048576 / float(re.search(r"copied, ([\d.]+) s", dd).group(1)))
            os.remove(f"{tmp}/plain")
        plain_mbs = statistics.median(plains)
        print(f"{a.config}: checkpoint {size:.1f} MB: Strata {ck:.0f} MB/s (median of {len(speeds)}), "
              f"plain dd write {plain_mbs:.0f} MB/s (median of {len(plains)}) -> {100 * ck / plain_mbs:.0f}% of plain "
              f"(runs: Strata {', '.join(f'{x:.0f}' for x in speeds)}; dd {', '.join(f'{x:.0f}' for x in plains)})")
        # Statistics cost: median step time with stats.interval = 1 against none, alternating runs.
        t = {0: [], 1: []}
        for i in range(a.repeat):
            for interval in (0, 1):
                d = os.path.join(tmp, f"st{interval}_{i}")
                train(a.strata, a.config, a.steps, d, ["--set", f"stats.interval={interval}"])
                recs = [json.loads(l) for l in open(os.path.join(d, "metrics.jsonl")) if '"loss"' in l]
                t[interval].append(statistics.median(r["ms_per_step"] for r in recs[2:]))
        base, with_stats = statistics.median(t[0]), statistics.median(t[1])
        print(f"{a.config}: step {base:.1f} ms without statistics, {with_stats:.1f} ms with stats.interval = 1 "
              f"-> cost {100 * (with_stats / base - 1):+.1f}% (runs {t[0]} / {t[1]})")


if __name__ == "__main__":
    main()
