#!/usr/bin/env python3
"""scaling_table.py: docs/scaling.md's table: `strata plan --device h100` for 96 blocks at d = 1024, 2048, 4096
(heads of 128, d_ffn = 4d, T = 2048, GPT-2's padded vocabulary 50304, bf16, 1f1b, micro-batches of one sequence,
M = 4P per replica) on P = 8 and 16 stages, two data-parallel replicas, for each recompute and ZeRO setting: the
largest rank's predicted device memory against an H100's 80 GB, and stage 0's stashed activations beside
Megatron-LM's formula (Korthikanti et al. 2022, no tensor parallelism, 16-bit activations): per block and
micro-batch s·b·h·(34 + 5·a·s/h) bytes with nothing recomputed, 34·s·b·h with selective recomputation, 2·s·b·h with
full; under 1F1B stage 0 holds P micro-batches of L/P blocks, so L times that.

Usage: tools/scaling_table.py [--strata build/strata] [--capacity-gb 80]
"""
import argparse
import json
import os
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def plan(strata, d, P, recompute, zero):
    sets = {"train.device": "cuda", "train.precision": "bf16", "model.layers": 96, "model.d_model": d,
            "model.heads": d // 128, "model.d_ffn": 4 * d, "model.seq_len": 2048, "model.vocab": 50304,
            "parallel.pipeline": P, "parallel.data": 2, "parallel.zero": zero, "train.recompute": recompute,
            "train.micro_batch_size": 1, "train.batch_size": 2 * 4 * P}
    cmd = [strata, "plan", "--config", os.path.join(ROOT, "configs", "bench-12L.toml"), "--device", "h100", "--json"]
    for k, v in sets.items():
        cmd += ["--set", f"{k}={v}"]
    return json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--strata", default=os.path.join(ROOT, "build", "strata"))
    ap.add_argument("--capacity-gb", type=float, default=80.0)
    a = ap.parse_args()
    L, s, b = 96, 2048, 1
    print("| d | P | recompute | zero | largest rank (GB) | fits 80 GB | stage 0 activations (GB) | Megatron formula (GB) | "
          "weights, grads, optimizer per rank (GB) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for d in (1024, 2048, 4096):
        a_heads = d // 128
        for P in (8, 16):
            for recompute, zero in (("none", 0), ("none", 1), ("full", 0), ("full", 1)):
                p = plan(a.strata, d, P, recompute, zero)
                peak = max(r["peak_bytes"] for r in p["ranks"]) / 1e9
                r0 = p["ranks"][0]
                per = {"none": 34 + 5 * a_heads * s / d, "full": 2}[recompute]
                mega = L * s * b * d * per / 1e9
                weights = (r0["params_bytes"] + r0["grads_bytes"] + r0["grad_acc_bytes"] + r0["optimizer_bytes"]) / 1e9
                fits = "yes" if peak <= a.capacity_gb else "no"
                note = " (34·sbh with selective: %.1f)" % (L * s * b * d * 34 / 1e9) if recompute == "none" else ""
                print(f"| {d} | {P} | {recompute} | {zero} | {peak:.1f} | {fits} | {r0['activation_bytes'] / 1e9:.1f} | "
                      f"{mega:.1f}{note} | {weights:.1f} |")


if __name__ == "__main__":
    main()
