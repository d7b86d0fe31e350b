#!/usr/bin/env python3
"""Draws each skeleton layout (crates/miga-backbones/src/agcn/graphs/*.toml, or the files
given) as an SVG tree: the centre in the middle, each node placed by a radial tree layout of
the inward edges, bones in grey, nodes coloured by body part. Standard library only.

    python3 scripts/draw_graphs.py --out docs/models/graphs [graph.toml ...]
"""

import argparse
import math
import pathlib
import tomllib

REPO = pathlib.Path(__file__).resolve().parent.parent
GRAPHS = REPO / "crates" / "miga-backbones" / "src" / "agcn" / "graphs"
COLOURS = [("left_hand", "#1f77b4"), ("right_hand", "#d62728"), ("face", "#9467bd"), ("", "#2ca02c")]


def radial_layout(n, inward):
    parent = {i: j for i, j in inward}
    children = {k: [] for k in range(n)}
    for i, j in inward:
        children[j].append(i)
    roots = [k for k in range(n) if k not in parent]
    leaves = {}

    def count(k):
        leaves[k] = max(1, sum(count(c) for c in children[k]))
        return leaves[k]

    total = sum(count(r) for r in roots)
    pos = {}

    def place(k, depth, start, span):
        angle = start + span / 2
        pos[k] = (depth * math.cos(angle), depth * math.sin(angle))
        a = start
        for c in children[k]:
            share = span * leaves[c] / leaves[k]
            place(c, depth + 1, a, share)
            a += share

    a = 0.0
    for r in roots:
        share = 2 * math.pi * leaves[r] / total
        place(r, 0 if len(roots) == 1 else 1, a, share)
        a += share
    return pos


def draw(spec, path):
    nodes, inward = spec["nodes"], [tuple(e) for e in spec["inward"]]
    pos = radial_layout(len(nodes), inward)
    depth = max(math.hypot(x, y) for x, y in pos.values()) or 1
    size, margin = 640, 40
    scale = (size / 2 - margin) / depth

    def xy(k):
        x, y = pos[k]
        return size / 2 + x * scale, size / 2 + 20 + y * scale

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{size}" height="{size + 40}" font-family="sans-serif">',
           '<rect width="100%" height="100%" fill="white"/>',
           f'<text x="10" y="22" font-size="16">{spec["name"]}: {len(nodes)} nodes, {len(inward)} edges</text>']
    for i, j in inward:
        (x1, y1), (x2, y2) = xy(i), xy(j)
        out.append(f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" stroke="#999" stroke-width="1.5"/>')
    for k, name in enumerate(nodes):
        x, y = xy(k)
        colour = next(c for prefix, c in COLOURS if name.startswith(prefix))
        out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="5" fill="{colour}"><title>{k}: {name}</title></circle>')
        if len(nodes) <= 30 or not name.split("_")[-1].isdigit():
            out.append(f'<text x="{x + 6:.1f}" y="{y - 6:.1f}" font-size="9" fill="#333">{k} {name}</text>')
    out.append("</svg>")
    path.write_text("\n".join(out))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=pathlib.Path, required=True)
    ap.add_argument("graphs", nargs="*", type=pathlib.Path)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for file in args.graphs or sorted(GRAPHS.glob("*.toml")):
        spec = tomllib.loads(file.read_text())
        target = args.out / f"{spec['name']}.svg"
        draw(spec, target)
        print(target)


if __name__ == "__main__":
    main()
