"""Provenance of a fixture: what made it, recorded beside it as `provenance.json`.

Every generator in scripts/ calls `write(directory, reference, patches)` for each fixture
folder it writes: the reference code (its package version, or the checkout's commit), the
versions of the Python packages that ran, the command, and every patch applied to the
reference code for the run (none where the list is empty).
"""

import importlib
import json
import pathlib
import subprocess
import sys


def git_commit(path: pathlib.Path) -> str:
    """The commit of the checkout at `path`."""
    try:
        return subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"], check=True,
                              capture_output=True, text=True).stdout.strip()
    except Exception:  # noqa: BLE001 - a plain folder
        return "unknown (not a git checkout)"


def versions() -> dict:
    """Versions of the packages a generator may use (those installed)."""
    out = {"python": sys.version.split()[0]}
    for name, module in [("torch", "torch"), ("torchvision", "torchvision"), ("timm", "timm"),
                         ("numpy", "numpy"), ("scikit-image", "skimage"),
                         ("safetensors", "safetensors")]:
        try:
            out[name] = importlib.import_module(module).__version__
        except Exception:  # noqa: BLE001 - not installed
            pass
    return out


def command() -> str:
    script = pathlib.Path(sys.argv[0]).name
    return " ".join([f"scripts/{script}"] + sys.argv[1:])


def write(directory: pathlib.Path, reference: str, patches=()):
    """`directory/provenance.json`."""
    directory.mkdir(parents=True, exist_ok=True)
    record = {"reference": reference, "versions": versions(), "command": command(),
              "patches": list(patches)}
    (directory / "provenance.json").write_text(json.dumps(record, indent=1) + "\n")
