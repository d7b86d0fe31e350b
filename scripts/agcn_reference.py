#!/usr/bin/env python3
"""Reference fixtures for miga's 2s-AGCN, made by the reference code itself.

Runs lshiwjx/2s-AGCN (`model/agcn.py`, `graph/tools.py`, the bone pairs of
`data_gen/gen_bone_data.py`) from a local checkout given on the command line, on random
weights, and writes what miga's parity tests compare against:

    <out>/<layout>/joint.pt, bone.pt    the two streams' state_dicts, saved as the reference does
    <out>/<layout>/io.safetensors       adjacency, joint and bone inputs, logits, embeddings

Nothing of the checkout is copied or edited. The reference hard-codes `.cuda()` on the graph
inside `unit_gcn.forward`; this script runs on the CPU by making `Tensor.cuda` a no-op for the
duration of the run.

The committed fixtures use the reference's network with narrow channels (8-16-32 instead of
64-128-256, the same ten units, strides and residuals, built from the reference's own
`TCN_GCN_unit`) so that they stay small. The full-width network is checked without weights
files: see `scripts/full_parity.py`, which builds it with `build(.., full=True)` from here.

    python scripts/agcn_reference.py --reference /path/to/2s-AGCN \
        --out crates/miga-backbones/tests/fixtures/agcn
"""

import argparse
import ast
import pathlib
import sys
import tomllib
import types

import numpy as np
import torch
from safetensors.torch import save_file

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import provenance  # noqa: E402
GRAPHS = REPO / "crates" / "miga-backbones" / "src" / "agcn" / "graphs"
# layout -> (name of the reference's bone-pair list or None, persons, classes)
LAYOUTS = {
    "kinetics": ("kinetics", 2, 7),
    "ntu-rgb-d": ("ntu/xsub", 2, 5),
    "imigue-upper-hands": (None, 1, 32),
}
NARROW = [(8, 1), (8, 1), (8, 1), (8, 1), (16, 2), (16, 1), (16, 1), (32, 2), (32, 1), (32, 1)]


def reference_bone_pairs(reference):
    """The `paris` dict of gen_bone_data.py, read with ast (the file runs a job on import)."""
    tree = ast.parse((reference / "data_gen" / "gen_bone_data.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and node.targets[0].id == "paris":
            return ast.literal_eval(node.value)
    raise SystemExit("no `paris` in gen_bone_data.py")


def reference_bones(joints, pairs, one_based):
    """The loop of gen_bone_data.py on one array (N, C, T, V, M)."""
    bones = joints.copy()
    for v1, v2 in pairs:
        if one_based:
            v1 -= 1
            v2 -= 1
        bones[:, :, :, v1, :] = joints[:, :, :, v1, :] - joints[:, :, :, v2, :]
    return bones


def graph_module(layout, spec, tools):
    """A module with a reference-style `Graph` class for `layout`, registered for import_class."""
    inward = [tuple(e) for e in spec["inward"]]
    num_node = len(spec["nodes"])
    self_link = [(i, i) for i in range(num_node)]
    outward = [(j, i) for (i, j) in inward]

    class Graph:
        def __init__(self, labeling_mode="spatial"):
            self.A = tools.get_spatial_graph(num_node, self_link, inward, outward)

    name = "miga_graph_" + layout.replace("-", "_")
    module = types.ModuleType(name)
    module.Graph = Graph
    sys.modules[name] = module
    return name + ".Graph"


def randomise(model, generator):
    """Random weights, BN statistics and a non-trivial PA, all in a moderate range."""
    def uniform(t, bound):
        t.copy_((torch.rand(t.shape, generator=generator) * 2 - 1) * bound)

    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.weight.copy_(torch.rand(module.weight.shape, generator=generator) + 0.5)
                uniform(module.bias, 0.2)
                uniform(module.running_mean, 0.2)
                module.running_var.copy_(torch.rand(module.running_var.shape, generator=generator) + 0.5)
            elif isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)):
                bound = (1.0 / module.weight[0].numel()) ** 0.5
                uniform(module.weight, bound)
                uniform(module.bias, bound)
        for name, p in model.named_parameters():
            if name.endswith("PA"):
                uniform(p, 0.2)


def build(agcn, graph_path, classes, persons, nodes, full):
    model = agcn.Model(num_class=classes, num_point=nodes, num_person=persons, graph=graph_path)
    if not full:
        A = model.graph.A
        channels = 3
        for i, (out, stride) in enumerate(NARROW, start=1):
            unit = agcn.TCN_GCN_unit(channels, out, A, stride=stride, residual=i > 1)
            setattr(model, f"l{i}", unit)
            channels = out
        model.fc = torch.nn.Linear(channels, classes)
    return model.eval()


def run(model, x):
    """Logits and the pooled embedding (the input of fc)."""
    seen = {}

    def keep_input(module, args, output):
        seen["e"] = args[0].clone()  # returns None: the output is left as it is

    hook = model.fc.register_forward_hook(keep_input)
    with torch.no_grad():
        logits = model(x)
    hook.remove()
    return logits, seen["e"]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reference", required=True, type=pathlib.Path, help="checkout of lshiwjx/2s-AGCN")
    ap.add_argument("--out", required=True, type=pathlib.Path, help="fixture folder to write")
    ap.add_argument("--seed", type=int, default=2025)
    ap.add_argument("--frames", type=int, default=20)
    ap.add_argument("--batch", type=int, default=2)
    args = ap.parse_args()

    sys.path.insert(0, str(args.reference))
    torch.Tensor.cuda = lambda self, *a, **k: self  # reference: self.A.cuda(x.get_device())
    from graph import tools  # noqa: E402
    from model import agcn  # noqa: E402
    pairs = reference_bone_pairs(args.reference)
    generator = torch.Generator().manual_seed(args.seed)

    for layout, (pair_set, persons, classes) in LAYOUTS.items():
        spec = tomllib.loads((GRAPHS / f"{layout}.toml").read_text())
        nodes = len(spec["nodes"])
        if pair_set is not None:
            one_based = pair_set != "kinetics"
            ref = [(a - 1, b - 1) if one_based else (a, b) for a, b in pairs[pair_set]]
            ours = [tuple(b) for b in spec["bones"]]
            if sorted(ref) != sorted(ours):
                raise SystemExit(f"{layout}: miga's bones differ from the reference's")
            bone_pairs, bone_one_based = pairs[pair_set], one_based
        else:
            bone_pairs, bone_one_based = [tuple(b) for b in spec["bones"]], False

        graph_path = graph_module(layout, spec, tools)
        joint_model = build(agcn, graph_path, classes, persons, nodes, False)
        bone_model = build(agcn, graph_path, classes, persons, nodes, False)
        randomise(joint_model, generator)
        randomise(bone_model, generator)

        joints = torch.randn(args.batch, 3, args.frames, nodes, persons, generator=generator)
        joints[0, :, :3, :2, :] = 0.0  # missing points are zeros in OpenPose data
        bones = torch.from_numpy(reference_bones(joints.numpy(), bone_pairs, bone_one_based))
        joint_logits, joint_embedding = run(joint_model, joints)
        bone_logits, bone_embedding = run(bone_model, bones)

        out = args.out / layout
        out.mkdir(parents=True, exist_ok=True)
        torch.save(joint_model.state_dict(), out / "joint.pt")
        torch.save(bone_model.state_dict(), out / "bone.pt")
        tensors = {
            "adjacency": torch.from_numpy(joint_model.graph.A.astype(np.float32)),
            "joints": joints,
            "bones": bones.float(),
            "joint_logits": joint_logits,
            "joint_embedding": joint_embedding,
            "bone_logits": bone_logits,
            "bone_embedding": bone_embedding,
            "fused_logits": joint_logits + bone_logits,  # ensemble.py, alpha = 1
        }
        save_file({k: v.detach().clone().contiguous() for k, v in tensors.items()}, out / "io.safetensors")
        provenance.write(out, f"lshiwjx/2s-AGCN {provenance.git_commit(args.reference)}: model/agcn.py "
                         "Model with narrow TCN_GCN_unit layers, graph/tools.py, data_gen/gen_bone_data.py pairs",
                         ["torch.Tensor.cuda made a no-op (unit_gcn.forward calls .cuda() on its graph)"])
        print(f"{layout}: V={nodes} M={persons} classes={classes} -> {out}")


if __name__ == "__main__":
    main()
