#!/usr/bin/env python3
"""Reference fixtures for miga's MViTv2, made by torchvision itself.

Builds torchvision's own `MViT` class (torchvision.models.video.mvit) with MViTv2's switches
(relative positions, residual pooling, projection after attention, as `mvit_v2_s` sets them),
gives every parameter random values from a fixed seed, runs it in eval mode and writes what
miga's parity tests compare against:

    <out>/<case>/config.json            the network as a miga `MvitConfig` (JSON)
    <out>/<case>/weights.pth|.safetensors  the torchvision state_dict
    <out>/<case>/io.safetensors         input, logits, embedding (normalised class token),
                                        tokens (normalised final token grid, B x T x H x W x C)
    <out>/preprocess.safetensors        frames (T, H, W, 3; integers as f32) and the output of
                                        torchvision's VideoClassification preset on them

The committed cases are narrow (8 to 32 channels) but take every code path: stride-q blocks
with skip max-pooling, stride-kv pooling, channel changes, residual pooling, a temporal stride
and odd token grids where torchvision interpolates the relative-position tables. The full-size
`mvit_v2_s` check needs no weights file: see `scripts/full_parity.py`.

    python -m venv /tmp/venv && /tmp/venv/bin/pip install torch torchvision safetensors
    /tmp/venv/bin/python scripts/mvit_reference.py --out crates/miga-backbones/tests/fixtures/mvit
"""

import argparse
import json
import math
import pathlib
import sys

import torch
import torchvision
from safetensors.torch import save_file
from torchvision.models.video import mvit as tv_mvit
from torchvision.transforms._presets import VideoClassification

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import provenance  # noqa: E402

# case -> (temporal size, (H, W), blocks as (heads, in, out, stride_q, stride_kv), classes,
#          weights format)
CASES = {
    # Even grid (2x8x12 tokens after the patch embedding), spatial strides only.
    "tiny": (
        4,
        (32, 48),
        [
            (1, 8, 8, [1, 1, 1], [1, 4, 4]),
            (2, 8, 16, [1, 2, 2], [1, 2, 2]),
            (2, 16, 16, [1, 1, 1], [1, 2, 2]),
            (4, 16, 32, [1, 2, 2], [1, 1, 1]),
            (4, 32, 32, [1, 1, 1], [1, 1, 1]),
        ],
        5,
        "pth",
    ),
    # Odd grid (3x9x13 tokens) and a temporal stride: pooled sizes round up while torchvision
    # sizes the tables by rounding down, so every table is interpolated somewhere.
    "odd": (
        6,
        (36, 52),
        [
            (1, 8, 8, [1, 1, 1], [1, 2, 2]),
            (2, 8, 16, [2, 2, 2], [1, 2, 2]),
            (2, 16, 16, [1, 1, 1], [1, 1, 1]),
            (2, 16, 24, [1, 2, 2], [1, 1, 1]),
        ],
        3,
        "safetensors",
    ),
}


def block_settings(blocks):
    return [
        tv_mvit.MSBlockConfig(
            num_heads=h,
            input_channels=i,
            output_channels=o,
            kernel_q=[3, 3, 3],
            kernel_kv=[3, 3, 3],
            stride_q=sq,
            stride_kv=skv,
        )
        for h, i, o, sq, skv in blocks
    ]


def build(temporal, spatial, settings, classes):
    """torchvision's MViT with the switches `mvit_v2_s` passes."""
    return tv_mvit.MViT(
        spatial_size=spatial,
        temporal_size=temporal,
        block_setting=settings,
        residual_pool=True,
        residual_with_cls_embed=False,
        rel_pos_embed=True,
        proj_after_attn=True,
        stochastic_depth_prob=0.2,
        num_classes=classes,
    )


def randomise(model, seed):
    """Every parameter random and O(1) in effect, so that a wrong mapping shows."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g)
            if "norm" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.2 * noise)
            elif name.endswith("bias"):
                p.copy_(0.1 * noise)
            elif "rel_pos" in name or "class_token" in name:
                p.copy_(0.5 * noise)
            else:
                fan_in = math.prod(p.shape[1:])
                p.copy_(noise / math.sqrt(fan_in))


def miga_config(temporal, spatial, blocks, classes):
    """The same network as miga's `MvitConfig` (field names of crates/miga-backbones)."""
    return {
        "blocks": [
            {
                "num_heads": h,
                "input_channels": i,
                "output_channels": o,
                "kernel_q": [3, 3, 3],
                "kernel_kv": [3, 3, 3],
                "stride_q": sq,
                "stride_kv": skv,
            }
            for h, i, o, sq, skv in blocks
        ],
        "num_classes": classes,
        "temporal_size": temporal,
        "spatial_size": list(spatial),
        "patch_kernel": [3, 7, 7],
        "patch_stride": [2, 4, 4],
        "patch_padding": [1, 3, 3],
        "dropout": 0.5,
        "attention_dropout": 0.0,
        "stochastic_depth_prob": 0.2,
        "norm_eps": 1e-6,
    }


def run(model, x):
    """Logits, and the normalised tokens captured at the final norm."""
    captured = {}
    model.norm.register_forward_hook(lambda m, i, o: captured.update(norm=o))
    model.blocks[-1].register_forward_hook(lambda m, i, o: captured.update(thw=o[1]))
    model.eval()
    with torch.no_grad():
        logits = model(x)
    normed = captured["norm"]
    t, h, w = captured["thw"]
    b, _, c = normed.shape
    return {
        "input": x.contiguous(),
        "logits": logits.contiguous(),
        "embedding": normed[:, 0].contiguous(),
        "tokens": normed[:, 1:].reshape(b, t, h, w, c).contiguous(),
    }


def write_case(out, temporal, spatial, blocks, classes, fmt, seed, batch=2):
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = build(temporal, spatial, block_settings(blocks), classes)
    randomise(model, seed)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    if fmt == "pth":
        torch.save(state, out / "weights.pth")
    else:
        save_file(state, out / "weights.safetensors")
    g = torch.Generator().manual_seed(seed + 1)
    x = torch.randn((batch, 3, temporal) + tuple(spatial), generator=g)
    save_file(run(model, x), out / "io.safetensors")
    config = miga_config(temporal, spatial, blocks, classes)
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    provenance.write(out, f"torchvision {torchvision.__version__}: torchvision.models.video.mvit.MViT")
    print(f"wrote {out}")


def write_preprocess(out):
    """torchvision's video classification preset on small random frames."""
    g = torch.Generator().manual_seed(11)
    frames = torch.randint(0, 256, (2, 45, 80, 3), generator=g, dtype=torch.uint8)
    preset = VideoClassification(
        crop_size=(28, 28), resize_size=(32,), mean=(0.45,) * 3, std=(0.225,) * 3
    )
    clip = preset(frames.permute(0, 3, 1, 2))  # (T, C, H, W) in, (C, T, H, W) out
    save_file(
        {"frames": frames.float().contiguous(), "clip": clip.contiguous()},
        out / "preprocess.safetensors",
    )
    provenance.write(out, f"torchvision {torchvision.__version__}: "
                     "torchvision.transforms._presets.VideoClassification (preprocess.safetensors)")
    print(f"wrote {out / 'preprocess.safetensors'}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=pathlib.Path, required=True,
                        help="fixture folder for the small cases")
    args = parser.parse_args()
    for seed, (name, (t, hw, blocks, classes, fmt)) in enumerate(CASES.items()):
        write_case(args.out / name, t, hw, blocks, classes, fmt, seed=100 + seed)
    write_preprocess(args.out)


if __name__ == "__main__":
    main()
