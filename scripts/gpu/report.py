#!/usr/bin/env python3
"""Writes gpu-report.json and gpu-report.md from what `run` left in REPORT_DIR: the steps and
their times (steps.tsv), `miga info`, the parity checks (check-DEVICE.json), miga's timings
(bench-DEVICE-MODEL.json) and PyTorch's (pytorch-MODEL.json), joined into the ratio table of
docs/benchmarks.md by scripts/compare.py.

    python3 scripts/gpu/report.py REPORT_DIR --pack PACK_DIR

Only the standard library: it runs where PyTorch does not.
"""

import argparse
import datetime
import json
import os
import pathlib
import platform
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))
import compare  # noqa: E402  the ratio table of docs/benchmarks.md


def load(path, default=None):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return default


def rows(report, pattern):
    out = []
    for path in sorted(report.glob(pattern)):
        out += load(path, [])
    return out


def steps(report):
    out = []
    for line in (report / "steps.tsv").read_text().splitlines():
        name, seconds, status, command = (line.split("\t") + ["", "", ""])[:4]
        out.append({"step": name, "seconds": int(seconds or 0), "status": status, "command": command})
    return out


def cpu_name():
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("report", type=pathlib.Path)
    ap.add_argument("--pack", type=pathlib.Path, required=True)
    args = ap.parse_args()
    report = args.report
    gpu = (report / "logs" / "nvidia-smi.log")
    gpu = gpu.read_text().strip() if gpu.exists() else None
    checks = rows(report, "check-*.json")
    ours = rows(report, "bench-*.json")
    theirs = rows(report, "pytorch-*.json")
    all_steps = steps(report)
    lines, bars = compare.ratio_table(ours, theirs)
    machine = {
        "gpu": gpu,
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "host": " ".join(platform.uname()[:3]),
    }
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    out = {
        "date": when,
        "pack": load(args.pack / "MANIFEST.json", {}),
        "machine": machine,
        "info": load(report / "info.json"),
        "steps": all_steps,
        "checks": checks,
        "bench": {"miga": ours, "pytorch": theirs},
        "ratios": [{"row": label, "time_ratio": ratio} for label, ratio in bars],
    }
    (report / "gpu-report.json").write_text(json.dumps(out, indent=2))

    failed = [s for s in all_steps if not s["status"].startswith(("ok", "not run:")) or "budget" in s["status"]]
    not_run = [s for s in all_steps if s["status"].startswith("not run:") and "budget" not in s["status"]]
    passed = sum(c["passed"] for c in checks)
    md = [f"# GPU check, {when}", ""]
    md.append(f"- machine: {gpu or 'no GPU queried'}; {machine['cpu']}, {machine['cores']} cores; {machine['host']}")
    pack = out["pack"]
    md.append(f"- miga: commit `{pack.get('miga_commit', '?')}`{' (with uncommitted changes)' if pack.get('uncommitted_changes') else ''}, "
              f"{pack.get('profile', '?')} build, features {pack.get('features', '?')}, packed {pack.get('packed', '?')}")
    md.append(f"- steps: {len(all_steps)}, {len(failed)} failed or out of time, {len(not_run)} not run here; "
              f"total {sum(s['seconds'] for s in all_steps)} s")
    md.append(f"- parity checks: {passed} of {len(checks)} passed")
    md += ["", "## Steps", "", "| step | seconds | result |", "| --- | --- | --- |"]
    md += [f"| {s['step']} | {s['seconds']} | {s['status'].replace('|', '/')} |" for s in all_steps]
    md += ["", "## Parity (scaled error: max |a - b| / max(1, max |reference|))", "",
           "| check | device | precision | error | tolerance | top-1 | worst at | seconds | result |",
           "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for c in checks:
        error = f"{c['error']:.2e}" if c["error"] is not None else "-"
        top1 = f"{100 * c['top1']:.1f}%" if c.get("top1") is not None else "-"
        result = "ok" if c["passed"] else f"FAILED{': ' + c['failure'] if c['failure'] else ''}"
        md.append(f"| {c['check']} | {c['device']} | {c.get('precision', 'f32')} | {error} | "
                  f"{c['tolerance']:.0e} | {top1} | {c['worst'] or '-'} | "
                  f"{c['seconds']:.1f} | {result.replace('|', '/')} |")
    md += ["", "## Time, miga against PyTorch (time ratio below 1: miga faster)", ""]
    md += lines if bars else ["No row of miga's has a PyTorch row to compare with."]
    unmatched = [r for r in ours if compare.key(r) not in {compare.key(t) for t in theirs}]
    if unmatched:
        md += ["", "miga's rows without a PyTorch row:", "",
               "| model | mode | batch | device | backend | median ms | items/s |", "| --- | --- | --- | --- | --- | --- | --- |"]
        md += [f"| {r['model']} | {r['mode']} | {r['batch']} | {r['device']} | {r['backend']} | {r['median_ms']:.1f} | "
               f"{r['items_per_s']:.1f} |" for r in unmatched]
    (report / "gpu-report.md").write_text("\n".join(md) + "\n")


if __name__ == "__main__":
    main()
