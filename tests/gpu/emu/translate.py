#!/usr/bin/env python3
"""translate.py SRC DST [SRC DST ...]: each CUDA source of src/backend/cuda as C++ for the CPU emulator (cuda_emu.hpp).

Two rewrites, nothing else (the rest is compiled as written, with cuda_emu.hpp force-included):
  name<<<grid, block[, smem[, stream]]>>>(args)
      -> ::emu::launch("name", [](auto&&... emu_a) { name(emu_a...); }, grid, block[, smem[, stream]])(args)
  extern __shared__ [__align__(n)] T name[];
      -> T* name = reinterpret_cast<T*>(::emu::dynamic_smem());
A launch whose configuration spans lines, or any <<< left over outside a // comment line, is an error naming
the line."""
import os
import re
import sys

LAUNCH = re.compile(r"([A-Za-z_][\w:]*(?:<[^<>;()]*>)?)\s*<<<(.*?)>>>\s*\(")
SHARED = re.compile(r"extern\s+__shared__\s+(?:__align__\(\d+\)\s+)?((?:[\w:]+\s+)*?[\w:]+)\s+(\w+)\s*\[\s*\]\s*;")


def translate(text, path):
    out = []
    for n, line in enumerate(text.split("\n"), 1):
        if line.lstrip().startswith("//"):  # a comment may show launch syntax
            out.append(line)
            continue
        line = LAUNCH.sub(
            lambda m: f'::emu::launch("{m.group(1)}", [](auto&&... emu_a) {{ {m.group(1)}(emu_a...); }}, '
                      f"{m.group(2)})(", line)
        line = SHARED.sub(lambda m: f"{m.group(1)}* {m.group(2)} = reinterpret_cast<{m.group(1)}*>(::emu::dynamic_smem());",
                          line)
        if "<<<" in line or ">>>" in line:
            sys.exit(f"translate.py: {path}:{n}: a kernel launch this script cannot rewrite (keep `name<<<...>>>(` "
                     f"on one line): {line.strip()}")
        out.append(line)
    return f'#line 1 "{path}"\n' + "\n".join(out)


def main():
    args = sys.argv[1:]
    if not args or len(args) % 2:
        sys.exit("usage: translate.py SRC DST [SRC DST ...]")
    for src, dst in zip(args[::2], args[1::2]):
        with open(src, encoding="utf-8") as f:
            text = translate(f.read(), src)
        try:
            with open(dst, encoding="utf-8") as f:
                if f.read() == text:
                    continue  # unchanged: keep the timestamp, no rebuild
        except FileNotFoundError:
            pass
        os.makedirs(os.path.dirname(dst) or ".", exist_ok=True)
        with open(dst, "w", encoding="utf-8") as f:
            f.write(text)


if __name__ == "__main__":
    main()
