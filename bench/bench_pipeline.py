#!/usr/bin/env python3
"""bench_pipeline.py: pipeline speedup on this machine. bench-96L with 8 micro-batches of one sequence, one
thread per rank: the step time of P = 2 against P = 1 for every schedule, printed next to the ideal
P·M/(M+P−1), and stage 0's activation memory of each schedule against gpipe's.

Usage: bench/bench_pipeline.py [--steps 14] [--repeat 3] [--pipeline 2] [--strata build/strata]
The first 2 steps of a run are warm-up; a run's figure is the median step time of the rest. Runs are taken in
turns (P=1, then every schedule, then again) so that drifts in this shared machine's speed fall on all rows
alike; each row gives the median over --repeat runs, the median of the paired ratios (run i of P=1 over run i
of the schedule, taken minutes apart, so slow drifts cancel) and the best run (on a shared VM noise only ever
adds time, so the best run is the steadiest estimate of what the schedule can do).
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


def run(strata, P, schedule, steps, M):
    v = 2 if schedule == "interleaved" else 1
    with tempfile.TemporaryDirectory() as tmp:
        cmd = ["mpirun", "-np", str(P), "--bind-to", "core", strata, "train",
               "--config", os.path.join(ROOT, "configs", "bench-96L.toml"),
               "--set", f"train.steps={steps}", "--set", "train.threads=1", "--set", "log.interval=1",
               "--set", "train.batch_size=8", "--set", f"train.micro_batch_size={8 // M}",
               "--set", "train.eval_batches=0", "--set", f"checkpoint.dir={tmp}",
               "--set", f"parallel.pipeline={P}", "--set", f"parallel.schedule={schedule}",
               "--set", f"parallel.virtual_stages={v}"]
        out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=ENV)
        if out.returncode != 0:
            sys.exit(f"bench: {' '.join(cmd)} failed:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
        recs = [json.loads(l) for l in open(os.path.join(tmp, "metrics.jsonl")) if '"loss"' in l]
        return statistics.median(r["ms_per_step"] for r in recs[WARMUP:]), recs[-1]["activation_bytes"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=14)
    ap.add_argument("--pipeline", type=int, default=2)
    ap.add_argument("--microbatches", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--schedules", nargs="+", default=["gpipe", "1f1b", "interleaved", "zb-h1"])
    ap.add_argument("--strata", default=os.path.join(ROOT, "build", "strata"))
    a = ap.parse_args()
    P, M = a.pipeline, a.microbatches
    ideal = P * M / (M + P - 1)
    kinds = a.schedules
    times = {k: [] for k in ["base"] + kinds}
    mems = {}
    for _ in range(a.repeat):
        times["base"].append(run(a.strata, 1, "1f1b", a.steps, M)[0])
        for s in kinds:
            ms, mem = run(a.strata, P, s, a.steps, M)
            times[s].append(ms)
            mems[s] = mem
    base = statistics.median(times["base"])
    best_base = min(times["base"])
    print(f"bench-96L, {M} micro-batches of {8 // M} sequence(s), 1 thread per rank, median of {a.repeat} runs; "
          f"P=1 step {base:.1f} ms (runs: {', '.join(f'{t:.0f}' for t in times['base'])})")
    print(f"{'schedule':<12} {'P=' + str(P) + ' ms':>9} {'speedup':>8} {'ideal':>6} {'of ideal':>9} "
          f"{'paired':>7} {'best-run':>9} {'stage-0 act MiB':>16} {'vs gpipe':>9}  runs (ms)")
    rows = {s: (statistics.median(times[s]), mems[s]) for s in kinds}
    gp_mem = rows["gpipe"][1] if "gpipe" in rows else float("nan")
    for s, (ms, mem) in rows.items():
        sp = base / ms
        best = best_base / min(times[s])
        paired = statistics.median(b / t for b, t in zip(times["base"], times[s]))
        print(f"{s:<12} {ms:>9.1f} {sp:>8.2f} {ideal:>6.2f} {100 * sp / ideal:>8.1f}% {100 * paired / ideal:>6.1f}% "
              f"{100 * best / ideal:>8.1f}% "
              f"{mem / 2**20:>16.2f} {mem / gp_mem:>9.3f}  {', '.join(f'{t:.0f}' for t in times[s])}", flush=True)
    print(f"'of ideal' from medians, 'paired' the median of per-round ratios, 'best-run' from the fastest runs; "
          f"bound for 1f1b's stage-0 memory: P/M = {P / M:.3f} of gpipe's")


if __name__ == "__main__":
    main()
