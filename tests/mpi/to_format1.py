#!/usr/bin/env python3
"""to_format1.py SRC DST: rewrites a format-2 Strata checkpoint (block tensors stacked over the blocks,
/model/blocks/ffn/w_h [rows, ...] with @blocks) as format 1 (one dataset per tensor, /model/blocks/012/ffn/w_h,
no strata_checkpoint_format attribute), so test_checkpoint can check that files of the older format still load."""
import sys

import h5py


def main():
    src, dst = sys.argv[1:3]
    with h5py.File(src, "r") as a, h5py.File(dst, "w") as b:
        def copy(name, obj):
            if isinstance(obj, h5py.Group):
                g = b.require_group(name)
                for k, v in obj.attrs.items():
                    g.attrs[k] = v
                return
            parts = name.split("/")
            if "blocks" in obj.attrs:
                i = parts.index("blocks")
                for row, block in enumerate(obj.attrs["blocks"]):
                    b.create_dataset("/".join(parts[:i + 1] + [f"{block:03d}"] + parts[i + 1:]), data=obj[row],
                                     chunks=True, fletcher32=True)
            else:
                b.create_dataset(name, data=obj[()])
        a.visititems(copy)


if __name__ == "__main__":
    main()
