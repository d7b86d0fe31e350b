#!/usr/bin/env python3
"""Puts a demo run's numbers into README.md and docs/tasks.md, so that no demo number is typed
by hand.

    scripts/demo_numbers.py RUN [--seeds STUDY] [--machine TEXT] [--write]

RUN is a `miga demo` folder (its summary.json and summary.md), STUDY a `miga demo --seeds N`
folder (seeds.json, seeds.md). Without --write the generated blocks are printed; with it they
replace the text between `<!-- demo-numbers:begin -->` and `<!-- demo-numbers:end -->` in
README.md and between `<!-- demo-table:begin -->` and `<!-- demo-table:end -->` in
docs/tasks.md. The machine defaults to this one's CPU model and thread count: run the script
where the demo ran. Standard library only.
"""
import argparse
import datetime
import json
import os
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def machine():
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} threads"


def pct(x):
    return f"{100 * x:.1f}%"


def readme_block(run, study, where):
    rows = {(r["task"], r["streams"]): r for r in run["rows"]}

    def test(task, streams):
        return pct(rows[(task, streams)]["metrics"][0])

    seeds = run["seeds"]
    text = (
        f"e.g. micro-gesture video-only {test('micro-gesture', 'video')}, skeleton-only "
        f"{test('micro-gesture', 'skeleton')} and fused {test('micro-gesture', 'fusion')} top-1 on "
        f"{round(1 / run['chance'][0])} classes (chance {pct(run['chance'][0])}), and Win/Lose "
        f"accuracy face-only {test('emotion', 'face')}, context-only {test('emotion', 'context')} "
        f"and fused (InterFusion) {test('emotion', 'fusion')} (chance {pct(run['chance'][1])}), "
        f"on the test split (seed "
        f"{seeds['data']}, {where}, {run['seconds']:.0f} s)."
    )
    online = [r for r in run["rows"] if r["task"] == "online"]
    if len(online) == 2 and run.get("online_frames_per_second"):
        fusion, baseline = online
        text += (
            f" Online recognition in the untrimmed test videos: F1 {pct(fusion['metrics'][0])} "
            f"at temporal IoU {run['online_tiou']} ({baseline['streams']}: "
            f"{pct(baseline['metrics'][0])}), detecting at "
            f"{run['online_frames_per_second']:.0f} frames/s."
        )
    if study:
        parts = []
        for p in study["paired"]:
            d = p["differences"]
            mean = sum(d) / len(d)
            above, level, below = p["above_level_below"]
            parts.append(
                f"{p['task']} fusion minus {p['single']} {100 * mean:+.1f} points on average "
                f"(above on {above}, level on {level}, below on {below} seeds)"
            )
        online = [r for r in study["rows"] if r["task"] == "online"]
        if len(online) == 2:
            def mean_sd(row):
                f1 = [m[0] for m in row["test"]]
                mean = sum(f1) / len(f1)
                sd = (sum((x - mean) ** 2 for x in f1) / max(len(f1) - 1, 1)) ** 0.5
                return f"{100 * mean:.1f} ± {100 * sd:.1f}%"
            parts.append(
                f"online F1 {mean_sd(online[0])} against {mean_sd(online[1])} for calling every "
                f"window the most frequent class"
            )
        text += (
            f" Over {len(study['seeds'])} seeds (data, backbones and training all redrawn): "
            + "; ".join(parts)
            + " ([docs/tasks.md](docs/tasks.md#the-demo) has every row's mean and spread)."
        )
    return text


def tasks_block(run_dir, run, study_dir, where):
    out = [
        f"Measured on {where}: {run['seconds']:.0f} s in all (seed {run['seeds']['data']}).",
        "",
        (run_dir / "summary.md").read_text().rstrip(),
    ]
    if study_dir:
        out += ["", (study_dir / "seeds.md").read_text().rstrip()]
    return "\n".join(out)


def replace(path, name, block):
    text = path.read_text()
    pattern = re.compile(
        rf"(<!-- {name}:begin -->\n).*?(<!-- {name}:end -->)", re.DOTALL
    )
    if not pattern.search(text):
        sys.exit(f"{path}: no <!-- {name}:begin --> ... <!-- {name}:end --> block")
    path.write_text(
        pattern.sub(lambda m: m.group(1) + block + "\n" + m.group(2), text, count=1)
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--seeds", type=Path)
    parser.add_argument("--machine", default=machine())
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    run = json.loads((args.run / "summary.json").read_text())
    if any(r["metrics"] is None for r in run["rows"]):
        sys.exit(f"{args.run}: the test split was not scored (--validation-only run)")
    study = json.loads((args.seeds / "seeds.json").read_text()) if args.seeds else None
    date = datetime.date.fromtimestamp((args.run / "summary.json").stat().st_mtime)
    where = f"{args.machine}, release build, {date}"
    readme = readme_block(run, study, where)
    tasks = tasks_block(args.run, run, args.seeds, where)
    if args.write:
        replace(REPO / "README.md", "demo-numbers", readme)
        replace(REPO / "docs" / "tasks.md", "demo-table", tasks)
    else:
        print(readme, tasks, sep="\n\n")


if __name__ == "__main__":
    main()
