#!/usr/bin/env python3
"""Reference fixtures for miga's Swin Transformer and SwinFace, made by the reference code.

SwinFace (lxq1000/SwinFace) is not on PyPI and is not vendored: give its `swinface_project`
folder from a local checkout with `--swinface`. timm comes from PyPI. Both networks get random
values from a fixed seed for every parameter and BatchNorm statistic, run in eval mode, and the
script writes what miga's parity tests compare against:

    <out>/<case>/config.json        the network as a miga `SwinFaceConfig` / `SwinConfig` (JSON)
    <out>/swinface/weights.pt       SwinFace's checkpoint layout: a dict with
                                    state_dict_backbone/_fam/_tss/_om (+ step counters)
    <out>/swinface/io.safetensors   input (B,3,112,112), embedding, features (the FAM input,
                                    local + global maps), and one `head.<name>` per output head
    <out>/swin_t/weights.safetensors  timm's state_dict (downsample at the start of a stage)
    <out>/swin_t/weights.pth        the same weights in the original Microsoft layout
                                    (downsample at the end of a stage, `head.*`, buffers)
    <out>/swin_t/io.safetensors     input, logits, embedding (pooled normed features)

The committed cases are narrow (8 to 64 channels) but take every code path: shifted windows
with masks on 56/28/14 maps, an unshifted whole-map window at 7x7, patch merging, SwinFace's
multi-level features, split convolutions, channel attention and all 42 heads. SwinFace's FAM
hard-codes its split for 2112 channels, so the narrow case swaps in SwinFace's own `ConvLayer`
with narrow splits. The released configurations (SwinFace with heads, timm's
swin_tiny_patch4_window7_224) are checked without weights files: see `scripts/full_parity.py`,
which builds SwinFace with `swinface_model(.., full=True)` from here.

    /tmp/venv/bin/pip install torch timm safetensors
    /tmp/venv/bin/python scripts/swin_reference.py --swinface ~/SwinFace/swinface_project \
        --out crates/miga-backbones/tests/fixtures/swin
"""

import argparse
import json
import importlib.util
import pathlib
import sys
import types

import torch
from safetensors.torch import save_file

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import provenance  # noqa: E402


def load_swinface(root: pathlib.Path):
    """SwinFace's backbone and subnets modules, imported from their files (the `analysis`
    package's __init__ pulls in dataset code this does not need)."""

    def load(name, path):
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        return module

    package = types.ModuleType("analysis")
    package.__path__ = [str(root / "analysis")]
    sys.modules["analysis"] = package
    load("analysis.cbam", root / "analysis" / "cbam.py")
    subnets = load("analysis.subnets", root / "analysis" / "subnets.py")
    swin = load("swinface_swin", root / "backbones" / "swin.py")
    return swin, subnets


def randomise(model: torch.nn.Module, seed: int):
    """Every parameter and BatchNorm statistic random, at scales that keep activations O(1)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("relative_position_bias_table"):
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
            elif p.dim() == 1:
                base = 1.0 if name.endswith("weight") else 0.0
                p.copy_(base + torch.randn(p.shape, generator=g) * 0.1)
            else:
                fan_in = p[0].numel()
                p.copy_(torch.randn(p.shape, generator=g) / fan_in**0.5)
        for name, b in model.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(torch.randn(b.shape, generator=g) * 0.1)
            elif name.endswith("running_var"):
                b.copy_(0.5 + torch.rand(b.shape, generator=g))
    return model.eval()


def swinface_model(swin, subnets, full: bool):
    if full:
        backbone = swin.SwinTransformer(num_classes=512)
        fam = subnets.FeatureAttentionModule(
            in_chans=2112, kernel_size=3, conv_shared=False, conv_mode="split",
            channel_attention="CBAM", spatial_attention=None, pooling="max",
            la_num_list=[2] * 11)
        tss = subnets.TaskSpecificSubnets()
        om = subnets.OutputModule()
    else:
        backbone = swin.SwinTransformer(img_size=112, patch_size=2, embed_dim=8,
                                        depths=[2, 2, 2, 2], num_heads=[1, 2, 4, 8],
                                        window_size=7, num_classes=16)
        parts, splits, dim = [16, 32, 64, 64], [2, 4, 5, 5], 16
        fam = subnets.FeatureAttentionModule(
            in_chans=sum(parts), feature_dim=dim, kernel_size=3, conv_shared=False,
            conv_mode="normal", channel_attention="CBAM", spatial_attention=None,
            pooling="max", la_num_list=[2] * 11)
        for net in fam.nets:
            net.conv = subnets.ConvLayer(in_chans=parts, out_chans=splits, conv_mode="split",
                                         kernel_size=3)
        tss = subnets.TaskSpecificSubnets()
        tss.nets = torch.nn.ModuleList(subnets.TaskSpecificSubnet(feature_dim=dim)
                                       for _ in range(11))
        om = subnets.OutputModule(feature_dim=dim)
    model = subnets.ModelBox(backbone=backbone, fam=fam, tss=tss, om=om, feature="all")
    return randomise(model, 5)


def swin_config(image, patch, dim, depths, heads, head) -> dict:
    """A miga `SwinConfig` (JSON), every field written."""
    return {"image_size": image, "patch_size": patch, "embed_dim": dim, "depths": depths,
            "num_heads": heads, "window_size": 7, "head": head, "in_channels": 3,
            "mlp_ratio": 4.0, "norm_eps": 1e-5, "dropout": 0.0, "attention_dropout": 0.0,
            "drop_path_rate": 0.1}


def write_config(path: pathlib.Path, config: dict):
    path.write_text(json.dumps(config, indent=2) + "\n")


def write_swinface(swin, subnets, out: pathlib.Path, full: bool):
    out.mkdir(parents=True, exist_ok=True)
    if not full:
        backbone = swin_config(112, 2, 8, [2, 2, 2, 2], [1, 2, 4, 8],
                               {"FaceEmbedding": {"dim": 16}})
        heads = {"split_channels": [2, 4, 5, 5], "kernel_size": 3, "reduction_ratio": 16,
                 "dropout": 0.5}
        write_config(out / "config.json", {"backbone": backbone, "heads": heads})
    model = swinface_model(swin, subnets, full)
    x = torch.randn(2, 3, 112, 112, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        local, global_, _ = model.backbone(x)
        outputs = model(x)
    io = {"input": x, "features": torch.cat([local, global_], 1)}
    io["embedding"] = outputs.pop("Recognition")
    for name, value in outputs.items():
        io[f"head.{name}"] = value
    save_file({k: v.contiguous() for k, v in io.items()}, out / "io.safetensors")
    torch.save({
        "epoch": 0, "global_step": 0, "local_step": 0,
        "state_dict_backbone": model.backbone.state_dict(),
        "state_dict_fam": model.fam.state_dict(),
        "state_dict_tss": model.tss.state_dict(),
        "state_dict_om": model.om.state_dict(),
    }, out / "weights.pt")


def microsoft_layout(model) -> dict:
    """timm's state_dict in the original layout (the inverse of timm's checkpoint_filter_fn),
    with the buffers the original keeps."""
    import re
    state = {}
    for k, v in model.state_dict().items():
        k = re.sub(r"layers\.(\d+)\.downsample",
                   lambda m: f"layers.{int(m.group(1)) - 1}.downsample", k)
        state[k.replace("head.fc.", "head.")] = v
    for i, layer in enumerate(model.layers):
        for j, block in enumerate(layer.blocks):
            prefix = f"layers.{i}.blocks.{j}"
            state[f"{prefix}.attn.relative_position_index"] = block.attn.relative_position_index
            if block.attn_mask is not None:
                state[f"{prefix}.attn_mask"] = block.attn_mask
    return state


def write_swin_t(out: pathlib.Path, full: bool):
    from timm.models.swin_transformer import SwinTransformer
    out.mkdir(parents=True, exist_ok=True)
    if full:
        import timm
        model = timm.create_model("swin_tiny_patch4_window7_224", pretrained=False)
        size = 224
    else:
        model = SwinTransformer(img_size=112, patch_size=4, window_size=7, embed_dim=8,
                                depths=(2, 2, 2), num_heads=(1, 2, 4), num_classes=10)
        size = 112
    randomise(model, 7)
    if not full:
        write_config(out / "config.json", swin_config(112, 4, 8, [2, 2, 2], [1, 2, 4],
                                                      {"Classifier": {"num_classes": 10}}))
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(8))
    with torch.no_grad():
        features = model.forward_features(x)
        io = {
            "input": x,
            "logits": model.forward_head(features),
            "embedding": model.forward_head(features, pre_logits=True),
        }
    save_file({k: v.contiguous() for k, v in io.items()}, out / "io.safetensors")
    save_file({k: v.contiguous() for k, v in model.state_dict().items()},
              out / "weights.safetensors")
    torch.save(microsoft_layout(model), out / "weights.pth")


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--swinface", type=pathlib.Path, required=True,
                        help="the swinface_project folder of a lxq1000/SwinFace checkout")
    parser.add_argument("--out", type=pathlib.Path,
                        default=REPO / "crates/miga-backbones/tests/fixtures/swin")
    args = parser.parse_args()
    torch.manual_seed(0)
    swin, subnets = load_swinface(args.swinface.resolve())
    out = args.out
    write_swinface(swin, subnets, out / "swinface", False)
    write_swin_t(out / "swin_t", False)
    import timm
    provenance.write(out / "swinface", f"lxq1000/SwinFace {provenance.git_commit(args.swinface)}: "
                     "backbones/swin.py, analysis/subnets.py (narrow, SwinFace's own ConvLayer splits)",
                     ["the analysis package imported file by file (its __init__ imports dataset code)"])
    provenance.write(out / "swin_t", f"timm {timm.__version__}: timm.models.swin_transformer.SwinTransformer (narrow)")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
