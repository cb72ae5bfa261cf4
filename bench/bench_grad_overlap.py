#!/usr/bin/env python3
"""bench_grad_overlap.py: data-parallel gradient reduction overlapped with the backward, on this machine.
bench-12L at two replicas (one micro-batch of 4 sequences each, one thread and one core per rank): the exposed
gradient-reduction time per step (what the step waits for after its backward, from the run's
"grad_reduce_exposed_ms" record) with one reduction after the backward (parallel.grad_bucket_mb = 0) and with
buckets started during the backward, side by side, with the step times.

Usage: bench/bench_grad_overlap.py [--steps 16] [--repeat 3] [--buckets 1 2 4 25] [--strata build/strata]
Runs are taken in turns (every setting once, then again) so that drifts in the machine's speed fall on all rows
alike; each row gives medians over --repeat runs (a run's step time: the median of its steps after 2 warm-up steps).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
           OMPI_MCA_rmaps_base_oversubscribe="1", OMPI_MCA_btl_vader_single_copy_mechanism="none")
WARMUP = 2


def run(strata, bucket_mb, steps):
    with tempfile.TemporaryDirectory() as tmp:
        cmd = ["mpirun", "-np", "2", "--bind-to", "core", strata, "train",
               "--config", os.path.join(ROOT, "configs", "bench-12L.toml"),
               "--set", f"train.steps={steps}", "--set", "train.threads=1", "--set", "log.interval=1",
               "--set", "train.micro_batch_size=4", "--set", "parallel.data=2",
               "--set", f"parallel.grad_bucket_mb={bucket_mb}", "--set", "checkpoint.at_end=false",
               "--set", f"checkpoint.dir={tmp}"]
        out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=ENV)
        if out.returncode != 0:
            sys.exit(f"bench: {' '.join(cmd)} failed:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
        recs = [json.loads(l) for l in open(os.path.join(tmp, "metrics.jsonl"))]
        step_ms = statistics.median(r["ms_per_step"] for r in recs if "loss" in r and r["step"] > WARMUP)
        exposed = next(r["grad_reduce_exposed_ms"] for r in recs if "grad_reduce_exposed_ms" in r)
        return exposed, step_ms


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=16)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--buckets", type=float, nargs="+", default=[1, 2, 4, 25])
    ap.add_argument("--strata", default=os.path.join(ROOT, "build", "strata"))
    a = ap.parse_args()
    settings = [0.0] + a.buckets
    res = {b: [] for b in settings}
    for _ in range(a.repeat):
        for b in settings:
            res[b].append(run(a.strata, b, a.steps))
    base = statistics.median(e for e, _ in res[0.0])
    print(f"bench-12L, 2 replicas x 1 thread, {a.steps} steps, median of {a.repeat} runs")
    print(f"{'grad_bucket_mb':>15} {'exposed ms/step':>16} {'of after-backward':>18} {'step ms':>9}  runs (exposed)")
    for b in settings:
        e = statistics.median(x for x, _ in res[b])
        s = statistics.median(y for _, y in res[b])
        runs = " ".join(f"{x:.1f}" for x, _ in res[b])
        label = "0 (after)" if b == 0 else f"{b:g}"
        print(f"{label:>15} {e:16.2f} {100 * e / base:17.0f}% {s:9.1f}  {runs}")


if __name__ == "__main__":
    main()
