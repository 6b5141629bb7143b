"""Runs one block of scenarios: one bridge task per block.

    python3 simulate.py --block 7 --scenarios 10000

Block b runs the scenarios seeded b*S .. b*S+S-1 (S = --scenarios) and
writes:

    samples.bin   the outputs of every scenario, float64 little-endian,
                  one row (npv, profit, payback_month) per scenario
    block.json    which seeds, how many, the output names
"""

import argparse
import json
import struct
import sys
import time

from model import OUTPUTS, scenario


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    ap.add_argument("--block", type=int, required=True)
    ap.add_argument("--scenarios", type=int, required=True, help="scenarios per block")
    a = ap.parse_args()
    first = a.block * a.scenarios
    t0 = time.perf_counter()
    rows = [scenario(seed) for seed in range(first, first + a.scenarios)]
    flat = [float(x) for row in rows for x in row]
    with open("samples.bin", "wb") as f:
        f.write(struct.pack(f"<{len(flat)}d", *flat))
    meta = {"block": a.block, "first_seed": first, "scenarios": a.scenarios, "outputs": list(OUTPUTS)}
    with open("block.json", "w") as f:
        f.write(json.dumps(meta, sort_keys=True) + "\n")
    print(f"block {a.block}: seeds {first}..{first + a.scenarios - 1} in {time.perf_counter() - t0:.2f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
