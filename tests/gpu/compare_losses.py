"""compare_losses.py NAME A/metrics.jsonl B/metrics.jsonl TOL [FIRST_STEP]: the per-step training losses of two
runs (records with "loss" and step >= FIRST_STEP) must cover the same steps and agree within TOL relative.
Prints one line "NAME: N steps, max rel diff X (tol TOL): PASS|FAIL" and exits 0 or 1. Standard library only."""
import json
import sys


def losses(path, first):
    out = {}
    with open(path) as f:
        for line in f:
            r = json.loads(line)
            if "loss" in r and r["step"] >= first:
                out[r["step"]] = r["loss"]
    return out


def main():
    name, a_path, b_path, tol = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
    first = int(sys.argv[5]) if len(sys.argv) > 5 else 0
    a, b = losses(a_path, first), losses(b_path, first)
    if not a or sorted(a) != sorted(b):
        print(f"{name}: steps differ: {sorted(a)} vs {sorted(b)}: FAIL")
        return 1
    worst = max(abs(a[s] - b[s]) / abs(a[s]) for s in a)
    ok = worst <= tol
    print(f"{name}: {len(a)} steps, losses {a[min(a)]:.5f} → {a[max(a)]:.5f} vs {b[min(b)]:.5f} → {b[max(b)]:.5f}, "
          f"max rel diff {worst:.2e} (tol {tol:g}): {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
