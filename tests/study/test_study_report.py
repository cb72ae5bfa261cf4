#!/usr/bin/env python3
"""test_study_report.py: runs tools/study_report.py on a runs directory and checks its output against the runs.

Usage: tests/study/test_study_report.py RUNS_DIR DOCS_DIR   (tests/study/run_test.sh trains RUNS_DIR)
RUNS_DIR is the layout run_test.sh writes: grid/L2-post, L2-pre, L4-post, L4-pre, L4-post-lr1e4 (stopped on a
non-finite loss), L2-post-lr1 (loss blown up above its step-1 value, still finite), L4-mix (no study.json: not
run), xiong/L{2,4,8}-{post,pre}. The threshold is L2-pre's train
loss at its middle step, so it is reached mid-run. Every expected value is recomputed here from stats.h5,
metrics.jsonl and study.json with h5py and json; any mismatch is printed and the exit status is 1.
"""
import json
import math
import os
import subprocess
import sys
import tomllib

import h5py
import numpy as np

SRC = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
REPORT = os.path.join(SRC, "tools", "study_report.py")
DIVERGING = "L4-post-lr1e4"
BLOWN_UP = "L2-post-lr1"
NOT_RUN = "L4-mix"
# README table columns, in order, and the summary.json key each one shows.
COLUMNS = ["cell", "norm", "warmup", "init", "final_val_loss", "diverged_step", "steps_to_threshold",
           "resid_rms_last_block_end", "grad_ratio_first_last_step0", "grad_ratio_first_last_end"]
ROW_ORDER = {4: ["L4-post", "L4-pre", NOT_RUN, DIVERGING], 2: ["L2-post", "L2-pre", BLOWN_UP]}
HEATMAP_CELLS = ["L4-post", "L4-pre", DIVERGING]
errors = []


def check(ok, msg):
    if not ok:
        errors.append(msg)
    return ok


def close(a, b, rel=1e-9):
    if a is None or b is None:
        return a is None and b is None
    return math.isclose(a, b, rel_tol=rel, abs_tol=1e-12)


def read_stats(path):
    with h5py.File(path, "r") as f:
        return {k: np.asarray(f[k][:]) for k in ["step", "loss", "grad_norm", "blocks/resid_rms",
                                                  "blocks/attn_grad_norm", "blocks/ffn_grad_norm"]}


def last_val_loss(path):
    with open(path) as f:
        vals = [r["val_loss"] for r in map(json.loads, filter(str.strip, f)) if "val_loss" in r]
    return vals[-1] if vals else None


def expected(cell_dir, total_steps, warmup, threshold):
    """The table values of one finished cell, computed straight from its files."""
    s = read_stats(os.path.join(cell_dir, "stats.h5"))
    steps, loss = s["step"].tolist(), s["loss"].astype(float)
    diverged = next((st for st, lo, g in zip(steps, loss, s["grad_norm"]) if not (np.isfinite(lo) and np.isfinite(g))),
                    None)
    if diverged is None:  # the 10-step mean after max(warmup, 10% of training) above the step-1 loss
        diverged = next((steps[i] for i in range(9, len(steps))
                         if steps[i] > max(warmup, 0.1 * total_steps) and loss[i - 9:i + 1].mean() > loss[0]), None)
    resid = s["blocks/resid_rms"].astype(float)
    grad = np.hypot(s["blocks/attn_grad_norm"].astype(float), s["blocks/ffn_grad_norm"].astype(float))
    r_end = max(i for i in range(len(steps)) if np.isfinite(resid[i]).all())
    g_end = max(i for i in range(len(steps)) if np.isfinite(grad[i]).all())
    val = last_val_loss(os.path.join(cell_dir, "metrics.jsonl"))
    return {
        "final_val_loss": val if diverged is None else None,
        "diverged_step": diverged,
        "steps_to_threshold": next((st for st, lo in zip(steps, loss) if lo <= threshold), None),
        "resid_rms_last_block_end": float(resid[r_end, -1]),
        "grad_ratio_first_last_step0": float(grad[0, 0] / grad[0, -1]),
        "grad_ratio_first_last_end": float(grad[g_end, 0] / grad[g_end, -1]),
        "resid_rms_step0": resid[0].tolist(), "resid_rms_end": resid[r_end].tolist(),
        "block_grad_norm_step0": grad[0].tolist(), "block_grad_norm_end": grad[g_end].tolist(),
        "last_step": steps[-1], "rows": len(steps),
    }


def choose_threshold(runs):
    s = read_stats(os.path.join(runs, "grid", "L2-pre", "stats.h5"))
    return float(s["loss"][len(s["loss"]) // 2 - 1])


def run_report(runs, docs, threshold):
    p = subprocess.run([sys.executable, REPORT, runs, "--out", docs, "--threshold", repr(threshold)],
                       capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"FAIL: study_report.py exited {p.returncode}: {p.stderr.strip()}")
    print(p.stdout.strip())


def load_summary(docs):
    def no_nan(c):
        raise ValueError(f"summary.json holds {c}")
    with open(os.path.join(docs, "summary.json")) as f:
        return json.load(f, parse_constant=no_nan)


def readme_tables(text):
    """{depth: [row cells]} from the '## N blocks' sections of the report."""
    tables, depth = {}, None
    for line in text.splitlines():
        if line.startswith("## "):
            words = line[3:].split()
            depth = int(words[0]) if len(words) == 2 and words[1] == "blocks" and words[0].isdigit() else None
        elif depth is not None and line.startswith("| L"):
            tables.setdefault(depth, []).append([c.strip() for c in line.strip("|").split("|")])
    return tables


def shown_matches(shown, value, key):
    """Whether a README cell shows the summary value (as formatted: numbers to their printed precision)."""
    if key == "diverged_step":
        return shown == ("no" if value is None else f"step {value}")
    if value is None:
        return shown == "—"
    if isinstance(value, str):
        return shown == value
    try:
        return math.isclose(float(shown), value, rel_tol=1e-3, abs_tol=1e-4)
    except ValueError:
        return False


def check_grid(runs, summary, threshold):
    cells = summary["cells"]
    for name in sorted(os.listdir(os.path.join(runs, "grid"))):
        cell_dir = os.path.join(runs, "grid", name)
        got = cells.get(name)
        if not check(got is not None, f"summary.json: no cell {name}"):
            continue
        if name == NOT_RUN:
            check(got["status"] == "not run", f"{name}: status {got['status']!r}, want 'not run'")
            continue
        with open(os.path.join(cell_dir, "study.json")) as f:
            study = json.load(f)
        with open(os.path.join(cell_dir, "config.toml"), "rb") as f:
            train = tomllib.load(f)["train"]
        want = expected(cell_dir, train["steps"], train["warmup_steps"], threshold)
        for key in ["exit_code", "seconds"]:
            check(got[key] == study[key], f"{name}: {key} {got[key]} != study.json's {study[key]}")
        for key, value in want.items():
            if key in ("last_step", "rows"):
                continue
            if isinstance(value, list):
                ok = got[key] is not None and len(got[key]) == len(value) and all(map(close, got[key], value))
            elif isinstance(value, float):
                ok = close(got[key], value)
            else:
                ok = got[key] == value
            check(ok, f"{name}: {key} = {got[key]}, want {value}")
        if name == DIVERGING:
            check(study["exit_code"] == 1, f"{name}: exit code {study['exit_code']}, want 1")
            check(want["diverged_step"] == want["last_step"] and want["rows"] > 1,
                  f"{name}: should stop on a non-finite step after step 1, diverged at {want['diverged_step']}")
        elif name == BLOWN_UP:
            check(study["exit_code"] == 0, f"{name}: exit code {study['exit_code']}, want 0")
            check(want["diverged_step"] is not None and want["diverged_step"] < want["last_step"],
                  f"{name}: should blow up above its step-1 loss before the end, diverged at {want['diverged_step']}")
            check(last_val_loss(os.path.join(cell_dir, "metrics.jsonl")) is not None, f"{name}: no val_loss")
        else:
            check(want["diverged_step"] is None, f"{name}: should not diverge (step {want['diverged_step']})")
            check(want["final_val_loss"] is not None, f"{name}: no val_loss in metrics.jsonl")
    reached = [(c["steps_to_threshold"], c["steps"]) for c in cells.values() if c.get("steps_to_threshold")]
    check(any(1 < s < n for s, n in reached), f"threshold {threshold} not reached mid-run by any cell: {reached}")
    check(cells.get(DIVERGING, {}).get("steps_to_threshold", 0) is None, f"{DIVERGING} should never reach it")
    print(f"checked {len(cells)} grid cells in summary.json (threshold {threshold:.6g})")


def check_readme(docs, summary, runs):
    with open(os.path.join(docs, "README.md")) as f:
        text = f.read()
    tables = readme_tables(text)
    check(sorted(tables) == sorted(ROW_ORDER),
          f"README.md: tables for depths {sorted(tables)}, want {sorted(ROW_ORDER)}")
    for depth, order in ROW_ORDER.items():
        rows = tables.get(depth, [])
        check([r[0] for r in rows] == order, f"README.md: {depth}-block rows {[r[0] for r in rows]}, want {order}")
        for row in rows:
            cell = summary["cells"].get(row[0], {})
            if not check(len(row) == len(COLUMNS), f"README.md: row {row[0]} has {len(row)} columns"):
                continue
            if cell.get("status") == "not run":
                check(row[5] == "not run", f"README.md: {row[0]} should show 'not run', shows {row[5]!r}")
                continue
            for shown, key in zip(row[1:], COLUMNS[1:]):
                check(shown_matches(shown, cell.get(key), key), f"README.md: {row[0]} {key} shows {shown!r}, "
                                                               f"summary.json has {cell.get(key)!r}")
    check("study_report.py" in text.split("\n\n")[1] and summary["runs_dir"] in text.split("\n\n")[1],
          "README.md: the header should name the runs dir and the command line")
    # The totals: cells with a study.json, and the sum of their seconds, read here from the files themselves.
    secs, n_done, n_all = 0.0, 0, 0
    for kind in ("grid", "xiong"):
        for name in os.listdir(os.path.join(runs, kind)):
            n_all += 1
            sj = os.path.join(runs, kind, name, "study.json")
            if os.path.exists(sj):
                n_done += 1
                secs += json.load(open(sj))["seconds"]
    check(summary["cells_done"] == n_done and summary["cells_not_run"] == n_all - n_done,
          f"summary.json: cells_done {summary['cells_done']}, not run {summary['cells_not_run']}; files: {n_done} of {n_all}")
    check(math.isclose(summary["cell_seconds"], secs, abs_tol=0.1), f"summary.json: cell_seconds {summary['cell_seconds']}, "
                                                                    f"study.json files sum to {secs}")
    check(f"{n_done} cells finished ({n_all - n_done} not run), {secs / 3600:.2f} hours" in text,
          "README.md: no line with the cell count and total hours")
    check("10%" in text and "step-1 loss" in text, "README.md: no divergence rule")
    for fit in summary["xiong"]["fit"].values():
        check(f"{fit['fitted_slope']:.4f}" in text, f"README.md: fitted slope {fit['fitted_slope']:.4f} not shown")
    return text


def check_pngs(docs, readme):
    want = {"loss_L2.png", "loss_L4.png", "xiong.png"}
    want |= {f"heat_{kind}_{c}.png" for c in HEATMAP_CELLS for kind in ("grad", "resid")}
    have = {n for n in os.listdir(docs) if n.endswith(".png")}
    check(have == want, f"PNGs {sorted(have)}, want {sorted(want)}")
    for name in sorted(want & have):
        with open(os.path.join(docs, name), "rb") as f:
            data = f.read()
        check(data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 2000, f"{name}: not a non-empty PNG")
        check(f"]({name})" in readme, f"README.md: {name} not embedded")
    print(f"checked {len(have)} PNGs")


def check_xiong(runs, summary):
    fit = summary["xiong"]["fit"]
    check(sorted(fit) == ["post", "pre"], f"summary.json: Xiong fit for {sorted(fit)}, want post and pre")
    for norm, expected_slope in [("post", 0.0), ("pre", -0.5)]:
        layers, grads = [], []
        for L in (2, 4, 8):
            s = read_stats(os.path.join(runs, "xiong", f"L{L}-{norm}", "stats.h5"))
            layers.append(L)
            grads.append(float(s["blocks/ffn_grad_norm"][0, -1]))
        a = np.stack([np.log(layers), np.ones(len(layers))], axis=1)
        slope = float(np.linalg.lstsq(a, np.log(grads), rcond=None)[0][0])
        got = fit.get(norm, {})
        check(got.get("layers") == layers, f"xiong {norm}: layers {got.get('layers')}, want {layers}")
        check(got.get("ffn_grad_norm_last_block_step0") is not None and
              all(map(close, got["ffn_grad_norm_last_block_step0"], grads)),
              f"xiong {norm}: gradients {got.get('ffn_grad_norm_last_block_step0')}, want {grads}")
        check(close(got.get("fitted_slope"), slope, rel=1e-6), f"xiong {norm}: slope {got.get('fitted_slope')}, "
                                                               f"want {slope}")
        check(got.get("expected_slope") == expected_slope,
              f"xiong {norm}: expected slope {got.get('expected_slope')}, want {expected_slope}")
        print(f"xiong {norm}: fitted slope {slope:.4f} (Xiong et al. {expected_slope:g})")


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__.strip().splitlines()[2])
    runs, docs = sys.argv[1:]
    threshold = choose_threshold(runs)
    run_report(runs, docs, threshold)
    summary = load_summary(docs)
    check_grid(runs, summary, threshold)
    readme = check_readme(docs, summary, runs)
    check_pngs(docs, readme)
    check_xiong(runs, summary)
    for e in errors:
        print(f"FAIL: {e}", file=sys.stderr)
    if errors:
        sys.exit(1)
    print("PASS: study_report.py")


if __name__ == "__main__":
    main()
