#!/usr/bin/env python3
"""Joins `miga bench --json` and `scripts/bench_pytorch.py --json` results into a ratio table
(markdown), matching rows on model, mode, batch and frames.

    python3 scripts/compare.py bench-miga.json bench-pytorch.json

`time ratio` is miga's median time over PyTorch's: below 1 means miga is faster.
"""

import argparse
import json
import pathlib


def key(row):
    return (row["model"], row["mode"], row["batch"], row["frames"])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("miga", type=pathlib.Path)
    ap.add_argument("pytorch", type=pathlib.Path)
    args = ap.parse_args()
    ours = json.loads(args.miga.read_text())
    theirs = {key(r): r for r in json.loads(args.pytorch.read_text())}
    print("| model | mode | batch | miga device | PyTorch device | miga ms | PyTorch ms | time ratio | miga GFLOP/s | PyTorch GFLOP/s |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    missing = []
    for r in ours:
        t = theirs.get(key(r))
        if t is None:
            missing.append(key(r))
            continue
        if r["threads"] != t["threads"]:
            print(f"<!-- thread counts differ: miga {r['threads']}, PyTorch {t['threads']} -->")
        print(f"| {r['model']} | {r['mode']} | {r['batch']} | {r['device']} | {t['device']} | "
              f"{r['median_ms']:.1f} | {t['median_ms']:.1f} | {r['median_ms'] / t['median_ms']:.2f} | "
              f"{r['gflop_per_s']:.1f} | {t['gflop_per_s']:.1f} |")
    for k in missing:
        print(f"<!-- no PyTorch row for {k} -->")


if __name__ == "__main__":
    main()
