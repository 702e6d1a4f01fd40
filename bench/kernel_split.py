#!/usr/bin/env python3
"""kernel_split -- where posternd's kernel time goes, by system call.

    perf script -i profile.perf -F ip,sym | python3 bench/kernel_split.py

Reads `perf record -g` samples (a call chain per sample, leaf first, blank line between
samples) and prints, for the samples whose leaf is in the kernel, the system call (the
`__x64_sys_*` / `__do_sys_*` frame) they were taken under, or "page fault", "interrupt" or
"other kernel" when there is none. Percentages are of all samples. Used by bench/profile
(CALLGRAPH=1).
"""
import collections
import re
import sys

SYSCALL = re.compile(r"^(?:__x64_sys_|__do_sys_|__se_sys_|ksys_)(\w+)")


def classify(frames):
    for _, sym in frames:
        m = SYSCALL.match(sym)
        if m:
            return m.group(1)
    for _, sym in frames:
        if "page_fault" in sym:
            return "page fault"
        if sym.startswith(("asm_sysvec", "sysvec_", "asm_common_interrupt", "common_interrupt")):
            return "interrupt"
    return "other kernel"


def main():
    total = 0
    kernel = collections.Counter()
    frames = []

    def flush():
        nonlocal total
        if not frames:
            return
        total += 1
        if int(frames[0][0], 16) >= 0xffff800000000000:
            kernel[classify(frames)] += 1
        frames.clear()

    for line in sys.stdin:
        parts = line.split(None, 1)
        if not parts:
            flush()
            continue
        if re.fullmatch(r"[0-9a-f]+", parts[0]):
            sym = parts[1].strip() if len(parts) > 1 else "?"
            frames.append((parts[0], re.sub(r"\+0x[0-9a-f]+$", "", sym)))
        # header lines (no call chain) are skipped
    flush()
    if not total:
        print("no samples")
        return
    ksum = sum(kernel.values())
    print("kernel: %.1f%% of %d samples" % (100.0 * ksum / total, total))
    for name, n in kernel.most_common(25):
        print("  %6.2f%%  %s" % (100.0 * n / total, name))


if __name__ == "__main__":
    main()
