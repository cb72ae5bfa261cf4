#!/usr/bin/env python3
"""fatbin_archs.py LIB.a ARCH…: lists the GPU code in the .nv_fatbin sections of a static library's objects
(fatbin entries: kind 1 = PTX, 2 = ELF cubin; arch as in sm_XX) and fails unless every object that has device
code carries an ELF cubin for each ARCH given (e.g. 80 90). No CUDA binary tools needed: the sections are read
with objcopy and the fatbin headers parsed here."""
import os
import struct
import subprocess
import sys
import tempfile

FATBIN_MAGIC = 0xBA55ED50


def entries(blob):
    out, pos = [], 0
    while pos + 16 <= len(blob):
        magic, _version, hsize, fsize = struct.unpack_from("<IHHQ", blob, pos)
        if magic != FATBIN_MAGIC:
            break
        e, end = pos + hsize, pos + hsize + fsize
        while e + 32 <= end:
            kind, _u, ehsize, payload = struct.unpack_from("<HHIQ", blob, e)
            arch = struct.unpack_from("<I", blob, e + 28)[0]
            out.append(("ELF" if kind == 2 else "PTX" if kind == 1 else f"kind{kind}", arch))
            e += ehsize + payload
        pos = end
    return out


def main():
    lib, want = sys.argv[1], {int(a) for a in sys.argv[2:]}
    with tempfile.TemporaryDirectory() as tmp:
        members = subprocess.run(["ar", "t", lib], capture_output=True, text=True, check=True).stdout.split()
        subprocess.run(["ar", "x", os.path.abspath(lib)], cwd=tmp, check=True)
        bad, seen = [], 0
        for m in members:
            sec = os.path.join(tmp, m + ".fatbin")
            r = subprocess.run(["objcopy", "-O", "binary", "--only-section=.nv_fatbin", os.path.join(tmp, m), sec],
                               capture_output=True)
            if r.returncode != 0 or not os.path.exists(sec) or os.path.getsize(sec) == 0:
                continue
            got = entries(open(sec, "rb").read())
            elf = {a for k, a in got if k == "ELF"}
            seen += 1
            print(f"{m}: " + ", ".join(f"{k} sm_{a}" for k, a in got))
            if not want <= elf:
                bad.append(f"{m} lacks sm_{sorted(want - elf)}")
        if not seen:
            sys.exit(f"fatbin_archs: {lib}: no object has a .nv_fatbin section")
        if bad:
            sys.exit("fatbin_archs: " + "; ".join(bad))
        print(f"fatbin_archs: {seen} objects, each with ELF cubins for " + ", ".join(f"sm_{a}" for a in sorted(want)))


if __name__ == "__main__":
    main()
