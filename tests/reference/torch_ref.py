#!/usr/bin/env python3
"""torch_ref.py: the float64 PyTorch reference. Reads a Strata checkpoint's weights and a batch, writes the
mean loss and the gradient of every parameter (same names as /model) to an HDF5 file.

Usage: torch_ref.py --checkpoint CKPT.h5 --batch BATCH.h5 --out OUT.h5
BATCH.h5 holds /tokens and /targets, int32 [B,T]. OUT.h5 gets /loss (float64) and /grad/<name> (float64).
"""
import argparse
import os
import sys

import h5py
import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import strata_torch  # noqa: E402


def read_tensor(f, name):
    """A tensor of a Strata checkpoint by its layout name ("blocks/012/ffn/w_h"): format 2 stacks block tensors
    over the blocks (/model/blocks/ffn/w_h [rows, ...], @blocks = the block of each row); format 1 (no
    strata_checkpoint_format attribute) has one dataset per tensor."""
    if "strata_checkpoint_format" not in f.attrs or not name.startswith("blocks/"):
        return np.asarray(f["model/" + name])
    block, rest = name[len("blocks/"):].split("/", 1)
    ds = f["model/blocks/" + rest]
    return np.asarray(ds[list(ds.attrs["blocks"]).index(int(block))])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--batch", required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    torch.set_num_threads(1)
    with h5py.File(a.checkpoint, "r") as f:
        attrs = f["model"].attrs
        cfg = {k: (v.decode() if isinstance(v, bytes) else v.item() if hasattr(v, "item") else v)
               for k, v in attrs.items()}
        P = {}
        for name in strata_torch.param_shapes(cfg):
            P[name] = torch.tensor(read_tensor(f, name), dtype=torch.float64, requires_grad=True)
    with h5py.File(a.batch, "r") as f:
        tokens = torch.tensor(np.asarray(f["tokens"]), dtype=torch.long)
        targets = torch.tensor(np.asarray(f["targets"]), dtype=torch.long)
    loss = strata_torch.forward(cfg, P, tokens, targets)
    loss.backward()
    with h5py.File(a.out, "w") as f:
        f["loss"] = loss.item()
        for name, t in P.items():
            f["grad/" + name] = t.grad.numpy()


if __name__ == "__main__":
    main()
