"""same_h5.py A B PREFIX...: every dataset of HDF5 file A under the given prefixes must exist in B with the same
shape, dtype and bits (NaN equal to NaN). Prints "same N datasets" and exits 0, or names the first difference
and exits 1."""
import sys

import h5py
import numpy as np


def datasets(f, prefixes):
    out = []
    f.visititems(lambda name, obj: out.append("/" + name) if isinstance(obj, h5py.Dataset) else None)
    return sorted(n for n in out if any(n.startswith(p) for p in prefixes))


def main():
    a_path, b_path, prefixes = sys.argv[1], sys.argv[2], sys.argv[3:]
    with h5py.File(a_path, "r") as a, h5py.File(b_path, "r") as b:
        names = datasets(a, prefixes)
        if not names:
            print(f"no datasets under {prefixes} in {a_path}")
            return 1
        for n in names:
            if n not in b:
                print(f"{n}: in {a_path}, not in {b_path}")
                return 1
            x, y = a[n][()], b[n][()]
            if x.shape != y.shape or x.dtype != y.dtype:
                print(f"{n}: shape/dtype {x.shape} {x.dtype} vs {y.shape} {y.dtype}")
                return 1
            same = np.array_equal(x, y, equal_nan=True) if x.dtype.kind == "f" else np.array_equal(x, y)
            if not same:
                d = np.abs(x.astype(np.float64) - y.astype(np.float64))
                print(f"{n}: differs, max |a-b| {np.nanmax(d)} at {np.unravel_index(np.nanargmax(d), d.shape)}")
                return 1
        print(f"same {len(names)} datasets")
    return 0


if __name__ == "__main__":
    sys.exit(main())
