#!/usr/bin/env python3
"""study_report.py: the report of the norm-placement study (issue 7) from the runs launch/study.sh wrote.

Usage: tools/study_report.py RUNS_DIR --out DOCS_DIR [--threshold LOSS]

Reads RUNS_DIR/grid/<cell>/ and RUNS_DIR/xiong/<cell>/, each the checkpoint.dir of one `strata train` run
(config.toml, metrics.jsonl, stats.h5 written every step, and study.json {"cell", "exit_code", "seconds"}
written by launch/study.sh when the run ended; a cell without study.json is reported as not run), and writes
  DOCS_DIR/README.md      the report: the divergence rule, one table per depth, the Xiong et al. fit, the figures
  DOCS_DIR/summary.json   every number in the tables, each run's inputs, and per-block arrays at step 0 and the end
  DOCS_DIR/loss_L<depth>.png                              train loss per step of every cell of that depth
  DOCS_DIR/heat_grad_<cell>.png, heat_resid_<cell>.png    block × step heatmaps, cells of the deepest grid depth
  DOCS_DIR/xiong.png      step-0 gradient norm of the last block's FFN against depth, post and pre
--threshold LOSS: the train loss (nats/byte) whose first crossing is reported per cell (default 2.5).
Cell names are L<layers>-<norm>[-<variant>]; depths and placements are taken from what is present.
"""
import argparse
import datetime
import json
import math
import os
import re
import shlex
import sys
import tomllib

import h5py
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import LogNorm  # noqa: E402
from matplotlib.ticker import NullFormatter, ScalarFormatter  # noqa: E402

PROG = "study_report.py"
PLACEMENTS = ["post", "res_post", "pre", "peri", "deepnorm", "mix"]
CELL_NAME = re.compile(r"^L(\d+)-([a-z_]+?)(?:-(.+))?$")
OUR_PNG = re.compile(r"^(loss_L\d+|heat_(grad|resid)_.+|xiong)\.png$")
# Xiong et al. 2020, Theorem 1: the last FFN's gradient at init is O(d·sqrt(ln d)) for post-LN (independent of
# L) and O(d·sqrt(ln d / L)) for pre-LN, i.e. slopes 0 and -1/2 of log(gradient) against log(L).
XIONG_SLOPES = {"post": 0.0, "pre": -0.5}
DIVERGENCE_RULE = (
    "A run diverged at the first step whose train loss (`stats.h5` `/loss`) or global gradient norm "
    "(`/grad_norm`) is not finite (under `train.on_nonfinite = \"abort\"` the run stops there with exit 1); if "
    "there is none, at the first step s after the warmup and the first 10% of training (s > max(warmup, 0.1 · "
    "`train.steps`)) where the mean train loss of steps s−9 … s exceeds the step-1 loss: a blow-up back above "
    "where it started, not a one-step spike. A diverged run's final validation "
    "loss is shown as —.")
STATS = ["step", "loss", "grad_norm", "blocks/resid_rms", "blocks/attn_grad_norm", "blocks/ffn_grad_norm"]


def fail(msg):
    sys.exit(f"{PROG}: {msg}")


def require(path):
    if not os.path.isfile(path):
        fail(f"{path}: no such file")
    return path


def read_json(path):
    require(path)
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        fail(f"{path}: {e}")


def read_config(path):
    require(path)
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as e:
        fail(f"{path}: {e}")


def read_val_losses(path):
    """The val_loss records of a metrics.jsonl, in file order."""
    out = []
    require(path)
    try:
        with open(path) as f:
            for n, line in enumerate(f, 1):
                if line.strip():
                    try:
                        rec = json.loads(line)
                    except ValueError as e:
                        fail(f"{path}:{n}: {e}")
                    if "val_loss" in rec:
                        out.append(rec["val_loss"])
    except OSError as e:
        fail(f"{path}: {e}")
    return out


def read_stats(path):
    """The datasets of STATS from a stats.h5, as float64 arrays (step as int)."""
    require(path)
    try:
        with h5py.File(path, "r") as f:
            missing = [k for k in STATS if k not in f]
            if missing:
                fail(f"{path}: no dataset /{missing[0]}")
            s = {k.split("/")[-1]: np.asarray(f[k][:], dtype=np.float64) for k in STATS}
    except OSError as e:
        fail(f"{path}: {e}")
    if len(s["step"]) == 0:
        fail(f"{path}: no rows")
    s["step"] = s["step"].astype(np.int64)
    s["block_grad"] = np.sqrt(s.pop("attn_grad_norm") ** 2 + s.pop("ffn_grad_norm") ** 2)
    return s


def read_xiong_stat(path):
    """blocks/ffn_grad_norm[0, L-1] of a stats.h5: the step-0 gradient norm of the last block's FFN."""
    require(path)
    try:
        with h5py.File(path, "r") as f:
            if "blocks/ffn_grad_norm" not in f or f["blocks/ffn_grad_norm"].shape[0] == 0:
                fail(f"{path}: no rows in /blocks/ffn_grad_norm")
            return float(f["blocks/ffn_grad_norm"][0, -1])
    except OSError as e:
        fail(f"{path}: {e}")


def load_cell(path):
    """One cell directory: its name, status and inputs; None (with a warning) for a name that is no cell's."""
    name = os.path.basename(path)
    m = CELL_NAME.match(name)
    if not m:
        print(f"{PROG}: {path}: not a cell name L<layers>-<norm>[-<variant>], skipped", file=sys.stderr)
        return None
    if not os.path.exists(os.path.join(path, "study.json")):
        return {"cell": name, "status": "not run", "layers": int(m[1]), "norm": m[2], "variant": m[3] is not None}
    run = read_json(os.path.join(path, "study.json"))
    finished = utc(os.path.getmtime(os.path.join(path, "study.json")))
    cfg = read_config(os.path.join(path, "config.toml"))
    try:
        model, train = cfg["model"], cfg["train"]
        cell = {"cell": name, "status": "done", "layers": model["layers"], "norm": model["norm"],
                "d_model": model["d_model"], "mix_post_fraction": model["mix_post_fraction"],
                "warmup": train["warmup_steps"], "steps": train["steps"], "lr": train["lr"],
                "init": cfg["init"]["scheme"] or ("deepnet" if model["norm"] == "deepnorm" else "gpt2"),
                "exit_code": run["exit_code"], "seconds": run["seconds"], "finished": finished}
    except KeyError as e:
        fail(f"{path}: config.toml or study.json has no key {e}")
    cell["variant"] = name != f"L{cell['layers']}-{cell['norm']}"
    return cell


def list_cells(group_dir):
    if not os.path.isdir(group_dir):
        return []
    paths = sorted(os.path.join(group_dir, n) for n in os.listdir(group_dir))
    return [c for c in (load_cell(p) for p in paths if os.path.isdir(p)) if c is not None]


def num(x):
    """A float for JSON and tables; None when not finite."""
    x = float(x)
    return x if math.isfinite(x) else None


def last_finite_row(a):
    rows = np.flatnonzero(np.isfinite(a).all(axis=1))
    return int(rows[-1]) if rows.size else None


BLOWUP_WINDOW = 10


def divergence_step(stats, total_steps, warmup):
    """The step at which the run diverged (DIVERGENCE_RULE), or None."""
    step, loss = stats["step"], stats["loss"].astype(float)
    bad = ~(np.isfinite(loss) & np.isfinite(stats["grad_norm"]))
    if bad.any():
        return int(step[np.argmax(bad)])
    if len(loss) < BLOWUP_WINDOW:
        return None
    mean = np.convolve(loss, np.ones(BLOWUP_WINDOW) / BLOWUP_WINDOW, mode="valid")  # mean[i]: rows i … i+9
    end = step[BLOWUP_WINDOW - 1:]
    above = (end > max(warmup, 0.1 * total_steps)) & (mean > loss[0])  # row 0 is step 1
    return int(end[np.argmax(above)]) if above.any() else None


def steps_to_threshold(stats, threshold):
    reached = stats["loss"] <= threshold
    return int(stats["step"][np.argmax(reached)]) if reached.any() else None


def end_of(a, step):
    """(row values, step) of the last row of a [rows, L] array whose values are all finite."""
    r = last_finite_row(a)
    return (None, None) if r is None else (a[r], int(step[r]))


def ratio(g):
    """First-block over last-block value of one row."""
    return None if g is None else num(g[0] / g[-1])


def summarise(cell, path, threshold):
    """Add a finished cell's table values and per-block arrays to it; returns its stats for the figures."""
    stats = read_stats(os.path.join(path, "stats.h5"))
    val = read_val_losses(os.path.join(path, "metrics.jsonl"))
    diverged = divergence_step(stats, cell["steps"], cell["warmup"])
    resid_end, resid_step = end_of(stats["resid_rms"], stats["step"])
    grad_end, grad_step = end_of(stats["block_grad"], stats["step"])
    step0_grad, step0_resid = stats["block_grad"][0], stats["resid_rms"][0]
    cell.update({
        "final_val_loss": num(val[-1]) if val and diverged is None else None,
        "diverged_step": diverged,
        "steps_to_threshold": steps_to_threshold(stats, threshold),
        "resid_rms_last_block_end": None if resid_end is None else num(resid_end[-1]),
        "grad_ratio_first_last_step0": ratio(step0_grad),
        "grad_ratio_first_last_end": ratio(grad_end),
        "step0_row_step": int(stats["step"][0]),
        "resid_end_step": resid_step,
        "grad_end_step": grad_step,
        "resid_rms_step0": [num(x) for x in step0_resid],
        "resid_rms_end": None if resid_end is None else [num(x) for x in resid_end],
        "block_grad_norm_step0": [num(x) for x in step0_grad],
        "block_grad_norm_end": None if grad_end is None else [num(x) for x in grad_end],
    })
    return stats


def placement_rank(norm):
    return PLACEMENTS.index(norm) if norm in PLACEMENTS else len(PLACEMENTS)


def sort_key(cell):
    """Placements in PLACEMENTS order, then the variants (by placement, warmup, name)."""
    return cell["variant"], placement_rank(cell["norm"]), cell.get("warmup", 0), cell["cell"]


def fmt(x, spec):
    return "—" if x is None else format(x, spec)


def table_row(c):
    if c["status"] == "not run":
        return [c["cell"], c["norm"], "—", "—", "—", "not run", "—", "—", "—", "—"]
    return [c["cell"], c["norm"], str(c["warmup"]), c["init"], fmt(c["final_val_loss"], ".4f"),
            "no" if c["diverged_step"] is None else f"step {c['diverged_step']}",
            fmt(c["steps_to_threshold"], "d"), fmt(c["resid_rms_last_block_end"], ".4g"),
            fmt(c["grad_ratio_first_last_step0"], ".4g"), fmt(c["grad_ratio_first_last_end"], ".4g")]


def markdown_table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(r) + " |" for r in rows]


def save(fig, path):
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_loss(depth, cells, stats, threshold, path):
    """Train loss per step, linear axes cut at 1.5 × the largest step-1 loss; x at each divergence (drawn at the
    last finite loss, or on the top edge when that is above it)."""
    fig, ax = plt.subplots(figsize=(8, 4.5))
    done = [c for c in cells if c["cell"] in stats]
    loss = {c["cell"]: np.where(np.isfinite(stats[c["cell"]]["loss"]), stats[c["cell"]]["loss"], np.nan) for c in done}
    finite = np.concatenate(list(loss.values()))
    finite = finite[np.isfinite(finite)]
    firsts = np.array([y[0] for y in loss.values()])
    top = 1.5 * firsts[np.isfinite(firsts)].max() if np.isfinite(firsts).any() else np.inf
    for c in done:
        s, y = stats[c["cell"]], loss[c["cell"]]
        line, = ax.plot(s["step"], y, lw=1, label=c["cell"])
        if c["diverged_step"] is not None:
            before = y[(s["step"] <= c["diverged_step"]) & np.isfinite(y)]
            mark = min(before[-1], top) if before.size else top
            if np.isfinite(mark):
                ax.plot([c["diverged_step"]], [mark], "x", ms=10, mew=2, color=line.get_color(), clip_on=False)
    ax.axhline(threshold, color="grey", ls=":", lw=1, label=f"threshold {threshold:g}")
    if finite.size and np.isfinite(top):
        ax.set_ylim(min(finite.min(), threshold) * 0.95, top)
    ax.set_xlabel("step")
    ax.set_ylabel("train loss (nats/byte)")
    ax.set_title(f"{depth} blocks (x: divergence)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    save(fig, path)


def plot_heat(values, steps, title, label, path):
    z = np.where(np.isfinite(values), values, np.nan).T  # [L, rows]: blocks on the vertical axis
    positive = z[np.isfinite(z) & (z > 0)]
    norm = LogNorm(vmin=positive.min(), vmax=positive.max()) if positive.size else None
    fig, ax = plt.subplots(figsize=(8, 5))
    im = ax.imshow(z, aspect="auto", origin="lower", norm=norm, cmap="viridis", interpolation="nearest",
                   extent=[steps[0] - 0.5, steps[-1] + 0.5, 0.5, z.shape[0] + 0.5])
    fig.colorbar(im, ax=ax, label=label)
    ax.set_xlabel("step")
    ax.set_ylabel("block (1 = next to the embedding)")
    ax.set_title(title)
    save(fig, path)


def xiong_fit(cells):
    """Per norm: the depths, the step-0 last-FFN gradient norms, the least-squares fit of log(gradient) =
    slope · log(L) + intercept, and Xiong et al.'s slope."""
    fit = {}
    for norm in sorted({c["norm"] for c in cells}, key=placement_rank):
        pts = sorted((c["layers"], c["ffn_grad_norm_last_block_step0"]) for c in cells
                     if c["norm"] == norm and c["ffn_grad_norm_last_block_step0"] is not None)
        layers = [p[0] for p in pts]
        grads = [p[1] for p in pts]
        slope = intercept = None
        if len(set(layers)) >= 2:
            slope, intercept = (float(x) for x in np.polyfit(np.log(layers), np.log(grads), 1))
        fit[norm] = {"layers": layers, "ffn_grad_norm_last_block_step0": grads, "fitted_slope": slope,
                     "fitted_intercept": intercept, "expected_slope": XIONG_SLOPES.get(norm)}
    return fit


def plot_xiong(fit, path):
    """Measured points, the least-squares power law through them, and Xiong et al.'s slope from the first point."""
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for norm, f in fit.items():
        if not f["layers"]:
            continue
        L, g = np.array(f["layers"], float), np.array(f["ffn_grad_norm_last_block_step0"])
        pts, = ax.plot(L, g, "o", label=f"{norm}: measured")
        if f["fitted_slope"] is not None:
            ax.plot(L, np.exp(f["fitted_intercept"]) * L ** f["fitted_slope"], "-", lw=1, color=pts.get_color(),
                    label=f"{norm}: fit, slope {f['fitted_slope']:.3f}")
        if f["expected_slope"] is not None:
            ax.plot(L, g[0] * (L / L[0]) ** f["expected_slope"], "--", color=pts.get_color(),
                    label=f"{norm}: Xiong et al., slope {f['expected_slope']:g}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(sorted({L for f in fit.values() for L in f["layers"]}))
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("blocks L")
    ax.set_ylabel("‖∂loss/∂W‖ of the last block's FFN at step 0")
    ax.set_title("Gradient at initialisation against depth")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    save(fig, path)


def utc(t):
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def readme(meta, grid, xiong_cells, fit, heat_cells, threshold):
    out = [
        "# Norm-placement study: report",
        "",
        f"Generated from `{meta['runs_dir']}` ({meta['generated']}) by "
        f"`{meta['command']}`. Every number below is in [summary.json](summary.json).",
        "",
        f"{meta['cells_done']} cells finished ({meta['cells_not_run']} not run), "
        f"{meta['cell_seconds'] / 3600:.2f} hours of training in all (the sum of the cells' `study.json` seconds).",
        "",
        "## Divergence rule",
        "",
        DIVERGENCE_RULE,
        "",
        "## Columns",
        "",
        f"- **steps to loss ≤ {threshold:g}**: the first step whose train loss (`stats.h5` `/loss`) is at most "
        f"{threshold:g} nats/byte; — if none.",
        "- **resid RMS, last block**: `blocks/resid_rms` of block L at the end (the last row whose values are "
        "all finite).",
        "- **g₁/g_L**: first-block over last-block gradient norm, g_b = sqrt(attn_grad_norm² + ffn_grad_norm²) "
        "(before clipping), at step 0 (the gradients at the initial weights, `stats.h5` row 0) and at the end "
        "(the last row whose values are all finite).",
        "- **final val loss**: the last `val_loss` in `metrics.jsonl` (the evaluation at the final step).",
    ]
    header = ["cell", "placement", "warmup", "init", "final val loss", "diverged", f"steps to loss ≤ {threshold:g}",
              "resid RMS, last block, end", "g₁/g_L step 0", "g₁/g_L end"]
    for depth, cells in grid.items():
        out += ["", f"## {depth} blocks", ""] + markdown_table(header, [table_row(c) for c in cells])
        failed = [f"{c['cell']} (exit {c['exit_code']})" for c in cells
                  if c["status"] == "done" and c["exit_code"] != 0 and c["diverged_step"] is None]
        if failed:
            out += ["", "Exited non-zero without diverging: " + ", ".join(failed) + "."]
        if any(c["status"] == "done" for c in cells):
            out += ["", f"![train loss, {depth} blocks](loss_L{depth}.png)"]
    if heat_cells:
        out += ["", f"## Per-block gradient norm and residual RMS, {heat_cells[0]['layers']} blocks", "",
                "Block × step, log colour scale; blank where a value is not finite."]
        for c in heat_cells:
            out += ["", f"### {c['cell']}", "", f"![block gradient norm, {c['cell']}](heat_grad_{c['cell']}.png)",
                    f"![residual RMS, {c['cell']}](heat_resid_{c['cell']}.png)"]
    out += ["", "## Gradient at initialisation against depth (Xiong et al. 2020, Theorem 1)", ""]
    not_run = [c["cell"] for c in xiong_cells if c["status"] == "not run"]
    if not_run:
        out += ["Not run yet: " + ", ".join(not_run) + ".", ""]
    if not fit:
        return out + ["No finished runs in xiong/."]
    out += ["The step-0 gradient norm of the last block's FFN (`blocks/ffn_grad_norm[0, L-1]`, one training step, "
            "`init.scheme = \"xavier\"`) against depth L. Theorem 1 predicts it independent of L for post-LN "
            "(slope 0 of log gradient against log L) and ∝ 1/√L for pre-LN (slope −0.5); the slopes below are "
            "least-squares fits of log(gradient) on log(L).", ""]
    depths = sorted({L for f in fit.values() for L in f["layers"]})
    rows = [[str(L)] + [fmt(dict(zip(f["layers"], f["ffn_grad_norm_last_block_step0"])).get(L), ".4g")
                        for f in fit.values()] for L in depths]
    out += markdown_table(["L"] + [f"{n}: last FFN gradient norm, step 0" for n in fit], rows) + [""]
    out += markdown_table(["placement", "fitted slope", "Xiong et al. slope"],
                          [[n, fmt(f["fitted_slope"], ".4f"), fmt(f["expected_slope"], "g")] for n, f in fit.items()])
    return out + ["", "![gradient at initialisation against depth](xiong.png)"]


def load_grid(runs_dir, threshold):
    """The grid cells by depth, each depth's rows in table order, and the stats of the finished ones."""
    cells = list_cells(os.path.join(runs_dir, "grid"))
    stats = {c["cell"]: summarise(c, os.path.join(runs_dir, "grid", c["cell"]), threshold)
             for c in cells if c["status"] == "done"}
    depths = sorted({c["layers"] for c in cells})
    grid = {d: sorted((c for c in cells if c["layers"] == d), key=sort_key) for d in depths}
    return grid, stats


def load_xiong(runs_dir):
    cells = list_cells(os.path.join(runs_dir, "xiong"))
    for c in cells:
        if c["status"] == "done":
            c["ffn_grad_norm_last_block_step0"] = num(
                read_xiong_stat(os.path.join(runs_dir, "xiong", c["cell"], "stats.h5")))
    return cells


def remove_old_figures(out):
    """Figures an earlier report left in DOCS_DIR, so a cell that is gone leaves no stale PNG behind."""
    for name in os.listdir(out):
        if OUR_PNG.match(name):
            os.remove(os.path.join(out, name))


def plot_all(grid, stats, fit, threshold, out):
    """Every figure; returns the cells that got heatmaps and the number of PNGs written."""
    n = 0
    for depth, cells in grid.items():
        if any(c["status"] == "done" for c in cells):
            plot_loss(depth, cells, stats, threshold, os.path.join(out, f"loss_L{depth}.png"))
            n += 1
    heat_cells = [c for c in grid[max(grid)] if c["status"] == "done"] if grid else []
    for c in heat_cells:
        s = stats[c["cell"]]
        plot_heat(s["block_grad"], s["step"], f"{c['cell']}: block gradient norm sqrt(attn² + ffn²)",
                  "gradient norm", os.path.join(out, f"heat_grad_{c['cell']}.png"))
        plot_heat(s["resid_rms"], s["step"], f"{c['cell']}: residual-stream RMS leaving each block",
                  "resid_rms", os.path.join(out, f"heat_resid_{c['cell']}.png"))
        n += 2
    if any(f["layers"] for f in fit.values()):
        plot_xiong(fit, os.path.join(out, "xiong.png"))
        n += 1
    return heat_cells, n


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs_dir")
    ap.add_argument("--out", required=True)
    ap.add_argument("--threshold", type=float, default=2.5)
    a = ap.parse_args()
    if not (os.path.isdir(os.path.join(a.runs_dir, "grid")) or os.path.isdir(os.path.join(a.runs_dir, "xiong"))):
        fail(f"{a.runs_dir}: no grid/ or xiong/ directory")
    grid, stats = load_grid(a.runs_dir, a.threshold)
    xiong_cells = load_xiong(a.runs_dir)
    fit = xiong_fit([c for c in xiong_cells if c["status"] == "done"])
    os.makedirs(a.out, exist_ok=True)
    remove_old_figures(a.out)
    heat_cells, n_png = plot_all(grid, stats, fit, a.threshold, a.out)

    grid_cells = [c for cells in grid.values() for c in cells]
    done = [c for c in grid_cells + xiong_cells if c["status"] == "done"]
    finished = [c["finished"] for c in done]
    meta = {"runs_dir": a.runs_dir, "cells_done": len(done), "cells_not_run": len(grid_cells + xiong_cells) - len(done),
            "cell_seconds": round(sum(c["seconds"] for c in done), 1),
            "generated": f"{max(finished)}, when the newest run finished" if finished else
                         f"{utc(datetime.datetime.now().timestamp())}; no run has finished",
            "command": " ".join(shlex.quote(x) for x in sys.argv), "threshold": a.threshold,
            "divergence_rule": DIVERGENCE_RULE}
    summary = dict(meta, depths={str(d): [c["cell"] for c in cells] for d, cells in grid.items()},
                   cells={c["cell"]: c for c in grid_cells},
                   xiong={"cells": {c["cell"]: c for c in xiong_cells}, "fit": fit})
    with open(os.path.join(a.out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1, allow_nan=False)
        f.write("\n")
    with open(os.path.join(a.out, "README.md"), "w") as f:
        f.write("\n".join(readme(meta, grid, xiong_cells, fit, heat_cells, a.threshold)) + "\n")
    print(f"{PROG}: {len(grid_cells)} grid and {len(xiong_cells)} xiong cells → {a.out}/README.md, summary.json, "
          f"{n_png} PNGs")


if __name__ == "__main__":
    main()
