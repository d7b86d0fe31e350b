#!/usr/bin/env python3
"""Full-size parity fixtures that need no committed weights: the reference networks at their
released sizes, every parameter filled from the parameter stream, run by the unmodified
reference code; only the inputs' shapes and the reference outputs are committed (kilobytes).

The parameter stream (written once here and once in Rust, `miga_backbones::parity`):

    u(key, i)   = the (i+1)-th draw of SplitMix64 seeded with FNV-1a-64(key), top 24 bits,
                  as k / 2^23 - 1 in float32 (exact: a 2^-23 grid in [-1, 1))
    value(key)  = running_var: 1 + 0.5 u;   running_mean: 0.1 u
                  1-D `...weight`: 1 + 0.1 u;   other 1-D: 0.1 u
                  `relative_position_bias_table`, `rel_pos_*`: 0.5 u
                  otherwise u * sqrt(3 / fan_in), fan_in = the product of all but the first dim
                  (every product and sum in float32, the scale rounded to float32 once)

`key` is the tensor's name in the reference's state_dict; an input is the stream of the key
`input`, unscaled. Every floating-point parameter and BatchNorm running statistic is filled;
other buffers (attention masks, index tables, batch counters) keep what the reference code
computes. miga's tests rebuild the same tensors under the same names, load them through
miga's strict checkpoint loaders, and compare outputs.

    <out>/<case>.json         provenance, the filled tensors' names and shapes, the input shape
    <out>/<case>.safetensors  the reference outputs (a strided sample where an output is large)

Cases: torchvision's `mvit_v2_s` (1 clip of 16x224x224, 400 classes), timm's
`swin_tiny_patch4_window7_224` (1 image of 224x224, 1000 classes), SwinFace at its released
configuration (backbone, FAM with the 2112-channel split, task subnets, 42 heads; 1 face of
112x112), and lshiwjx/2s-AGCN's full-width `Model` on the Kinetics graph (2 persons, 400
classes) and on miga's `imigue-upper-hands` graph (1 person, 32 classes), 64 frames.

Patches to the reference code, all for the duration of the run and nothing else: 2s-AGCN's
`unit_gcn.forward` calls `.cuda()` on its graph: `torch.Tensor.cuda` is made a no-op.
SwinFace's `analysis` package is imported file by file (its `__init__` imports dataset code).

    python -m venv ~/venvs/miga-ref && ~/venvs/miga-ref/bin/pip install torch torchvision timm safetensors numpy
    ~/venvs/miga-ref/bin/python scripts/full_parity.py --agcn PATH/2s-AGCN \\
        --swinface PATH/SwinFace/swinface_project --out crates/miga-backbones/tests/fixtures/full
"""

import argparse
import json
import math
import pathlib
import sys
import tomllib

import numpy as np
import torch
from safetensors.torch import save_file

SCRIPTS = pathlib.Path(__file__).resolve().parent
REPO = SCRIPTS.parent
sys.path.insert(0, str(SCRIPTS))

import provenance  # noqa: E402

PATCHES = ["2s-AGCN: torch.Tensor.cuda made a no-op (unit_gcn.forward calls .cuda() on its graph)",
           "SwinFace: the analysis package imported file by file (its __init__ imports dataset code)"]

GOLDEN = np.uint64(0x9E3779B97F4A7C15)
MIX1 = np.uint64(0xBF58476D1CE4E5B9)
MIX2 = np.uint64(0x94D049BB133111EB)
# Large outputs are committed as every SAMPLE-th element (of the flattened tensor).
LARGE = 4096
SAMPLE = 97


def fnv1a64(key: str) -> np.uint64:
    h = 0xCBF29CE484222325
    for byte in key.encode("utf-8"):
        h ^= byte
        h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return np.uint64(h)


def uniform(key: str, n: int) -> np.ndarray:
    """u(key, 0..n) as float32."""
    with np.errstate(over="ignore"):
        i = np.arange(1, n + 1, dtype=np.uint64)
        z = fnv1a64(key) + i * GOLDEN
        z = (z ^ (z >> np.uint64(30))) * MIX1
        z = (z ^ (z >> np.uint64(27))) * MIX2
        z = z ^ (z >> np.uint64(31))
    k = (z >> np.uint64(40)).astype(np.float32)
    return k / np.float32(1 << 23) - np.float32(1.0)


def value(key: str, shape) -> np.ndarray:
    """The stream's values of the tensor `key` of `shape` (float32)."""
    shape = tuple(int(s) for s in shape)
    u = uniform(key, math.prod(shape))
    f = np.float32
    if key.endswith("running_var"):
        v = f(0.5) * u + f(1.0)
    elif key.endswith("running_mean"):
        v = f(0.1) * u
    elif len(shape) == 1 and key.endswith("weight"):
        v = f(0.1) * u + f(1.0)
    elif len(shape) == 1:
        v = f(0.1) * u
    elif "relative_position_bias_table" in key or "rel_pos_" in key:
        v = f(0.5) * u
    else:
        fan_in = math.prod(shape[1:])
        v = u * f(math.sqrt(3.0 / fan_in))
    return v.reshape(shape)


def fill(model: torch.nn.Module, prefix: str = ""):
    """Every parameter and BatchNorm statistic of `model` from the stream; their names and
    shapes, as the state_dict names them (with `prefix`)."""
    filled = []
    with torch.no_grad():
        for name, tensor in list(model.named_parameters()) + [
            (n, b) for n, b in model.named_buffers() if n.endswith(("running_mean", "running_var"))
        ]:
            key = prefix + name
            tensor.copy_(torch.from_numpy(value(key, tensor.shape)))
            filled.append([key, list(tensor.shape)])
    return filled


def stream_input(shape):
    return torch.from_numpy(uniform("input", math.prod(shape)).reshape(shape))


def committed(outputs: dict) -> dict:
    """Outputs as committed: whole, or every SAMPLE-th element of a large one."""
    out = {}
    for name, t in outputs.items():
        flat = t.detach().reshape(-1).float().contiguous()
        if flat.numel() > LARGE:
            out[f"{name}@{SAMPLE}"] = flat[::SAMPLE].contiguous()
        else:
            out[name] = t.detach().float().contiguous()
    return out


def write(out: pathlib.Path, case: str, filled, input_shape, outputs, reference, extra=None):
    out.mkdir(parents=True, exist_ok=True)
    record = {
        "case": case,
        "reference": reference,
        "versions": provenance.versions(),
        "command": provenance.command(),
        "patches": PATCHES,
        "input": {"key": "input", "shape": list(input_shape)},
        "sample_every": SAMPLE,
        "filled": filled,
    }
    record.update(extra or {})
    (out / f"{case}.json").write_text(json.dumps(record, indent=1) + "\n")
    save_file(committed(outputs), out / f"{case}.safetensors")
    print(f"{case}: {len(filled)} tensors, {sum(math.prod(s) for _, s in filled):,} values")


def mvit(out):
    from torchvision.models.video import mvit_v2_s
    model = mvit_v2_s(num_classes=400).eval()
    filled = fill(model)
    shape = (1, 3, 16, 224, 224)
    captured = {}
    model.norm.register_forward_hook(lambda m, i, o: captured.update(norm=o))
    with torch.no_grad():
        logits = model(stream_input(shape))
    normed = captured["norm"]
    write(out, "mvit_v2_s", filled, shape,
          {"logits": logits, "embedding": normed[:, 0], "tokens": normed[:, 1:]},
          "torchvision.models.video.mvit_v2_s(num_classes=400)")


def swin_t(out):
    import timm
    model = timm.create_model("swin_tiny_patch4_window7_224", pretrained=False).eval()
    filled = fill(model)
    shape = (1, 3, 224, 224)
    with torch.no_grad():
        features = model.forward_features(stream_input(shape))
        outputs = {"logits": model.forward_head(features),
                   "embedding": model.forward_head(features, pre_logits=True)}
    write(out, "swin_t", filled, shape, outputs,
          "timm.create_model('swin_tiny_patch4_window7_224', pretrained=False)")


def swinface(out, root):
    import swin_reference
    swin, subnets = swin_reference.load_swinface(root)
    model = swin_reference.swinface_model(swin, subnets, full=True)
    filled = []
    for section in ["backbone", "fam", "tss", "om"]:
        filled += fill(getattr(model, section), prefix=f"{section}.")
    model.eval()
    shape = (1, 3, 112, 112)
    with torch.no_grad():
        outputs = model(stream_input(shape))
    outputs = {("embedding" if k == "Recognition" else f"head.{k}"): v for k, v in outputs.items()}
    write(out, "swinface", filled, shape, outputs,
          f"lxq1000/SwinFace {provenance.git_commit(root)}: backbones/swin.py SwinTransformer(num_classes=512), "
          "analysis/subnets.py FeatureAttentionModule(in_chans=2112, split, CBAM, max, 11 x 2), "
          "TaskSpecificSubnets(), OutputModule(), ModelBox(feature='all')")


def agcn(out, root):
    import agcn_reference
    sys.path.insert(0, str(root))
    torch.Tensor.cuda = lambda self, *a, **k: self  # the reference: self.A.cuda(x.get_device())
    from graph import tools  # noqa: E402
    from model import agcn as reference  # noqa: E402
    graphs = REPO / "crates" / "miga-backbones" / "src" / "agcn" / "graphs"
    for layout, persons, classes in [("kinetics", 2, 400), ("imigue-upper-hands", 1, 32)]:
        spec = tomllib.loads((graphs / f"{layout}.toml").read_text())
        nodes = len(spec["nodes"])
        graph_path = agcn_reference.graph_module(layout, spec, tools)
        model = agcn_reference.build(reference, graph_path, classes, persons, nodes, full=True)
        filled = fill(model)
        shape = (1, 3, 64, nodes, persons)
        logits, embedding = agcn_reference.run(model, stream_input(shape))
        write(out, f"agcn_{layout.replace('-', '_')}", filled, shape,
              {"logits": logits, "embedding": embedding},
              f"lshiwjx/2s-AGCN {provenance.git_commit(root)}: model/agcn.py Model(num_class={classes}, "
              f"num_point={nodes}, num_person={persons}) on miga's {layout} graph",
              {"graph": layout, "persons": persons, "classes": classes})


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agcn", type=pathlib.Path, required=True, help="a 2s-AGCN checkout")
    parser.add_argument("--swinface", type=pathlib.Path, required=True,
                        help="the swinface_project folder of a SwinFace checkout")
    parser.add_argument("--out", type=pathlib.Path,
                        default=REPO / "crates/miga-backbones/tests/fixtures/full")
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    mvit(args.out)
    swin_t(args.out)
    swinface(args.out, args.swinface.resolve())
    agcn(args.out, args.agcn.resolve())


if __name__ == "__main__":
    main()
