#!/usr/bin/env python3
"""plot_stats.py: PNG heatmaps (block × step) of every per-layer statistic in a Strata stats file, and the loss
curve.

Usage: tools/plot_stats.py STATS.h5 --out DIR
Writes DIR/loss.png and DIR/<statistic>.png for each dataset under /blocks (log colour scale for the norms and
RMS values, so growth across 96 blocks stays visible).
"""
import argparse
import os
import sys

import h5py
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import LogNorm  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("stats")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    if not os.path.exists(a.stats):
        sys.exit(f"plot_stats.py: {a.stats}: no such file")
    os.makedirs(a.out, exist_ok=True)
    with h5py.File(a.stats, "r") as f:
        steps = f["step"][:]
        if len(steps) == 0:
            sys.exit(f"plot_stats.py: {a.stats}: no rows yet")
        fig, ax = plt.subplots(figsize=(7, 4))
        ax.plot(steps, f["loss"][:], label="train loss")
        ax.set_xlabel("step")
        ax.set_ylabel("loss (nats/token)")
        ax.grid(alpha=0.3)
        ax.set_title(os.path.basename(a.stats))
        fig.tight_layout()
        fig.savefig(os.path.join(a.out, "loss.png"), dpi=110)
        plt.close(fig)
        for name, ds in f["blocks"].items():
            z = np.asarray(ds[:], dtype=np.float64).T  # [L, N]: blocks on the vertical axis
            fig, ax = plt.subplots(figsize=(8, 5))
            finite = z[np.isfinite(z)]
            positive = finite[finite > 0]
            log = name != "attn_entropy" and positive.size > 0 and positive.min() > 0 and \
                positive.max() / positive.min() > 20
            norm = LogNorm(vmin=positive.min(), vmax=positive.max()) if log else None
            im = ax.imshow(np.where(np.isfinite(z), z, np.nan), aspect="auto", origin="lower", norm=norm,
                           extent=[steps[0] - 0.5, steps[-1] + 0.5, -0.5, z.shape[0] - 0.5], cmap="viridis",
                           interpolation="nearest")
            fig.colorbar(im, ax=ax, label=name)
            ax.set_xlabel("step")
            ax.set_ylabel("block")
            ax.set_title(f"{name} ({z.shape[0]} blocks × {z.shape[1]} steps)")
            fig.tight_layout()
            fig.savefig(os.path.join(a.out, f"{name}.png"), dpi=110)
            plt.close(fig)
    print(f"plot_stats.py: wrote {len(os.listdir(a.out))} PNGs to {a.out}")


if __name__ == "__main__":
    main()
