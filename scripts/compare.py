#!/usr/bin/env python3
"""Joins `miga bench --json` and `scripts/bench_pytorch.py --json` results into a ratio table
(markdown), matching rows on model, mode, batch, frames and precision (f32 where a row has
none).

    python3 scripts/compare.py bench-miga.json bench-pytorch.json [--svg ratios.svg]

`time ratio` is miga's median time over PyTorch's: below 1 means miga is faster.
"""

import argparse
import json
import pathlib


def key(row):
    return (row["model"], row["mode"], row["batch"], row["frames"], row.get("precision", "f32"))


HEADER = ["| model | mode | batch | miga device | PyTorch device | miga ms | PyTorch ms | time ratio | miga GFLOP/s | PyTorch GFLOP/s |",
          "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]


def ratio_table(ours, theirs):
    """The markdown ratio table of miga's rows against PyTorch's (matched by `key`), and the
    ratios drawn by `ratio_chart`: (label, ratio) per matched row."""
    theirs = {key(r): r for r in theirs}
    lines, bars, missing = list(HEADER), [], []
    for r in ours:
        t = theirs.get(key(r))
        if t is None:
            missing.append(key(r))
            continue
        if r["threads"] != t["threads"]:
            lines.append(f"<!-- thread counts differ: miga {r['threads']}, PyTorch {t['threads']} -->")
        ratio = r["median_ms"] / t["median_ms"]
        precision = "" if r.get("precision", "f32") == "f32" else f" {r['precision']}"
        lines.append(f"| {r['model']} | {r['mode']} | {r['batch']} | {r['device']}{precision} | {t['device']} | "
                     f"{r['median_ms']:.1f} | {t['median_ms']:.1f} | {ratio:.2f} | "
                     f"{r['gflop_per_s']:.1f} | {t['gflop_per_s']:.1f} |")
        bars.append((f"{r['model']} {r['mode']} b{r['batch']} ({r['device']}{precision})", ratio))
    lines += [f"<!-- no PyTorch row for {k} -->" for k in missing]
    return lines, bars


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("miga", type=pathlib.Path)
    ap.add_argument("pytorch", type=pathlib.Path)
    ap.add_argument("--svg", type=pathlib.Path, help="also draw the time ratios as a bar chart here")
    args = ap.parse_args()
    lines, bars = ratio_table(json.loads(args.miga.read_text()), json.loads(args.pytorch.read_text()))
    print("\n".join(lines))
    if args.svg:
        args.svg.write_text(ratio_chart(bars))


def ratio_chart(bars):
    """A horizontal bar chart of time ratios (miga / PyTorch) with the parity line at 1."""
    width, left, row, top = 640, 230, 26, 40
    top_ratio = max([1.0] + [r for _, r in bars]) * 1.1
    scale = (width - left - 60) / top_ratio
    height = top + row * len(bars) + 40
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">',
           '<rect width="100%" height="100%" fill="white"/>',
           f'<text x="{width / 2}" y="20" text-anchor="middle" font-size="14">time of miga / time of PyTorch (below 1: miga faster)</text>']
    for i, (label, ratio) in enumerate(bars):
        y = top + i * row
        colour = "#2a9d8f" if ratio <= 1 else "#e76f51"
        out.append(f'<text x="{left - 8}" y="{y + 16}" text-anchor="end">{label}</text>')
        out.append(f'<rect x="{left}" y="{y + 4}" width="{ratio * scale:.1f}" height="{row - 8}" fill="{colour}"/>')
        out.append(f'<text x="{left + ratio * scale + 6:.1f}" y="{y + 16}">{ratio:.2f}x</text>')
    x1 = left + scale
    out.append(f'<line x1="{x1:.1f}" y1="{top - 4}" x2="{x1:.1f}" y2="{height - 30}" stroke="black" stroke-dasharray="4 3"/>')
    out.append(f'<text x="{x1:.1f}" y="{height - 14}" text-anchor="middle">1 (parity)</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    main()
