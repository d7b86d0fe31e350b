#!/usr/bin/env python3
"""Gradient fixtures: one training step's loss and every parameter's gradient, by PyTorch
autograd through the reference code, on the committed narrow fixtures' weights and inputs.

For each case the reference network is built as its fixture script builds it, loaded with the
committed weights, put in training mode with every dropout and drop-path rate at 0 (so the
step is deterministic; BatchNorm then normalises with the batch's statistics, as Burn's does
under autodiff), run on the committed inputs, and differentiated:

    loss = sum over the outputs o of sum(o * W_o),   W_o = u("loss.<output name>", o's size)

(u is the parameter stream of `scripts/full_parity.py`, unscaled). It writes, beside the
fixture:

    grads.safetensors   the state_dict with every parameter replaced by its gradient (buffers,
                        such as BatchNorm statistics, as they were before the step), under the
                        same names as the weights, so miga loads it with the same loader
    grads.json          the loss, the outputs used, provenance (versions, reference commit,
                        command, patches)

Cases: MViTv2 `tiny`, 2s-AGCN `kinetics` (the joint stream), timm Swin `swin_t` (narrow),
SwinFace (narrow, embedding and 42 heads; on four faces of the parameter stream's `input`, as
a BatchNorm1d of a batch of two has no gradient), and the four fusion twins. Patches to the reference
code: 2s-AGCN's `.cuda()` is made a no-op for the run (as in `agcn_reference.py`); dropout
and drop-path probabilities are set to 0 on the built modules.

    ~/venvs/miga-ref/bin/python scripts/gradient_parity.py --agcn PATH/2s-AGCN \\
        --swinface PATH/SwinFace/swinface_project
"""

import argparse
import json
import math
import pathlib
import sys
import tomllib

import torch
from safetensors.torch import load_file, save_file

SCRIPTS = pathlib.Path(__file__).resolve().parent
REPO = SCRIPTS.parent
sys.path.insert(0, str(SCRIPTS))

import full_parity  # noqa: E402
import provenance  # noqa: E402

BACKBONES = REPO / "crates" / "miga-backbones" / "tests" / "fixtures"
FUSION = REPO / "crates" / "miga-fusion" / "tests" / "fixtures"


def no_dropout(model: torch.nn.Module):
    """Every dropout, stochastic depth and drop path at probability 0."""
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
        for attribute in ("p", "drop_prob"):
            if type(module).__name__ in ("StochasticDepth", "DropPath") and hasattr(module, attribute):
                setattr(module, attribute, 0.0)
    return model


def step(model, inputs: dict, outputs_of):
    """The loss of one forward pass and the state_dict with parameters replaced by gradients."""
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    no_dropout(model).train()
    model.zero_grad()
    outputs = {k: v for k, v in outputs_of(model, inputs).items() if v is not None}
    loss = sum((o * torch.from_numpy(full_parity.uniform(f"loss.{name}", o.numel())).reshape(o.shape)).sum()
               for name, o in outputs.items())
    loss.backward()
    grads = dict(before)
    for name, p in model.named_parameters():
        grads[name] = (p.grad if p.grad is not None else torch.zeros_like(p)).detach().clone()
    return float(loss), grads, sorted(outputs)


def write(directory: pathlib.Path, loss, grads, outputs, reference, prefix=""):
    save_file({prefix + k: v.float().contiguous() for k, v in grads.items()
               if v.dtype.is_floating_point}, directory / "grads.safetensors")
    record = {
        "loss": loss,
        "outputs": outputs,
        "reference": reference,
        "versions": provenance.versions(),
        "command": provenance.command(),
        "patches": ["dropout, stochastic depth and drop path probabilities set to 0",
                    "2s-AGCN: torch.Tensor.cuda made a no-op"],
    }
    (directory / "grads.json").write_text(json.dumps(record, indent=1) + "\n")
    print(f"{directory}: loss {loss:.6f}, {len(grads)} tensors")


def mvit():
    import mvit_reference
    t, hw, blocks, classes, _ = mvit_reference.CASES["tiny"]
    model = mvit_reference.build(t, hw, mvit_reference.block_settings(blocks), classes)
    directory = BACKBONES / "mvit" / "tiny"
    model.load_state_dict(torch.load(directory / "weights.pth"))
    io = load_file(directory / "io.safetensors")
    loss, grads, outputs = step(model, io, lambda m, io: {"logits": m(io["input"])})
    write(directory, loss, grads, outputs, "torchvision.models.video.mvit.MViT (mvit_reference.py, tiny)")


def agcn(root):
    import agcn_reference
    sys.path.insert(0, str(root))
    torch.Tensor.cuda = lambda self, *a, **k: self
    from graph import tools  # noqa: E402
    from model import agcn as reference  # noqa: E402
    layout, persons, classes = "kinetics", 2, 7
    spec = tomllib.loads((REPO / "crates/miga-backbones/src/agcn/graphs" / f"{layout}.toml").read_text())
    graph_path = agcn_reference.graph_module(layout, spec, tools)
    model = agcn_reference.build(reference, graph_path, classes, persons, len(spec["nodes"]), False)
    directory = BACKBONES / "agcn" / layout
    model.load_state_dict(torch.load(directory / "joint.pt"))
    io = load_file(directory / "io.safetensors")
    loss, grads, outputs = step(model, io, lambda m, io: {"logits": m(io["joints"])})
    write(directory, loss, grads, outputs,
          f"lshiwjx/2s-AGCN {provenance.git_commit(root)} model/agcn.py (agcn_reference.py, narrow)")


def swin_t():
    from timm.models.swin_transformer import SwinTransformer
    model = SwinTransformer(img_size=112, patch_size=4, window_size=7, embed_dim=8, depths=(2, 2, 2),
                            num_heads=(1, 2, 4), num_classes=10)
    directory = BACKBONES / "swin" / "swin_t"
    model.load_state_dict(load_file(directory / "weights.safetensors"))
    io = load_file(directory / "io.safetensors")
    loss, grads, outputs = step(model, io, lambda m, io: {"logits": m(io["input"])})
    write(directory, loss, grads, outputs, "timm SwinTransformer (swin_reference.py, narrow)")


def swinface(root):
    import swin_reference
    swin, subnets = swin_reference.load_swinface(root)
    model = swin_reference.swinface_model(swin, subnets, False)
    directory = BACKBONES / "swin" / "swinface"
    checkpoint = torch.load(directory / "weights.pt")
    for section in ["backbone", "fam", "tss", "om"]:
        getattr(model, section).load_state_dict(checkpoint[f"state_dict_{section}"])
    # Four faces from the stream, not the fixture's two: a BatchNorm1d over a batch of two maps
    # each feature to -1 and 1 whatever its input, so that every gradient upstream of one
    # (SwinFace's feature layer and subnets have them) is rounding noise.
    io = {"input": full_parity.stream_input((4, 3, 112, 112))}

    def outputs_of(m, io):
        out = m(io["input"])
        return {("embedding" if k == "Recognition" else f"head.{k}"): v for k, v in out.items()}

    loss, grads, outputs = step(model, io, outputs_of)
    # The sections' names, as miga reads a SwinFace safetensors file (`backbone.` ...).
    grads = {k: v for k, v in grads.items()}
    write(directory, loss, grads, outputs,
          f"lxq1000/SwinFace {provenance.git_commit(root)} (swin_reference.py, narrow)")


def fusion():
    import fusion_reference as f
    for case, (kind, overrides) in f.CASES.items():
        directory = FUSION / case
        config = json.loads((directory / "config.json").read_text())
        config.update(dropout=0.0, modality_dropout=0.0)
        model = f.Cmtf(config) if kind == "cmtf" else f.InterFusion(config)
        model.load_state_dict(load_file(directory / "weights.safetensors"))
        io = load_file(directory / "io.safetensors")
        inputs = {k: io[k] for k in (["video", "video_class", "video_padding", "skeleton", "skeleton_padding"]
                                     if kind == "cmtf" else
                                     ["face", "face_padding", "context", "context_padding", "expressions"])
                  if k in io}
        for k in list(inputs):
            if k.endswith("padding"):
                inputs[k] = inputs[k] > 0.5
        loss, grads, outputs = step(model, inputs, lambda m, io: m(**io))
        write(directory, loss, grads, outputs, f"the PyTorch twin in fusion_reference.py ({case})")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agcn", type=pathlib.Path, required=True, help="a 2s-AGCN checkout")
    parser.add_argument("--swinface", type=pathlib.Path, required=True,
                        help="the swinface_project folder of a SwinFace checkout")
    args = parser.parse_args()
    torch.manual_seed(0)
    mvit()
    agcn(args.agcn.resolve())
    swin_t()
    swinface(args.swinface.resolve())
    fusion()


if __name__ == "__main__":
    main()
