#!/usr/bin/env python3
"""The PyTorch side of `miga bench`: the same models, shapes, thread count and JSON schema.

    python scripts/bench_pytorch.py --model mvit_v2_s,agcn --agcn-reference /path/to/2s-AGCN \
        --batch 1,8 --mode forward,train --threads 2 --json bench-pytorch.json

mvit_v2_s: torchvision's `mvit_v2_s()` (400 classes, random weights), clips of `--frames`
(default 16) x 224 x 224.

cmtf, interfusion: the PyTorch twins of miga's fusion modules (scripts/fusion_reference.py) at
their default configs, on the shapes `miga bench` uses (cmtf: `--frames` (8) video token steps of
7x7x768 plus the class embedding, twice as many skeleton steps of 55x256; interfusion:
4 x `--frames` (32) faces of 512 and `--frames` context windows of 768), batch 32 in the docs.

swinface: SwinFace's own code (lxq1000/SwinFace, a local checkout given by `--swinface`,
its `swinface_project` folder): backbone + FAM + subnets + 42 heads at the released
configuration, random weights, on 112x112 faces; training steps train the expression head.

agcn: the reference `model/agcn.py` (lshiwjx/2s-AGCN, a local checkout; its hard-coded
`.cuda()` is a no-op on the CPU), full width, on miga's `imigue-upper-hands` layout (V = 55,
M = 1), 32 classes, SGD with Nesterov momentum 0.9 for training steps, as `miga bench`.
"""

import argparse
import json
import pathlib
import resource
import statistics
import sys
import time
import tomllib

import torch

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "scripts"))


def agcn_model(reference, device):
    import agcn_reference as ref  # the fixture generator's graph plumbing

    sys.path.insert(0, str(reference))
    if device == "cpu":
        torch.Tensor.cuda = lambda self, *a, **k: self
    from graph import tools
    from model import agcn

    spec = tomllib.loads((ref.GRAPHS / "imigue-upper-hands.toml").read_text())
    path = ref.graph_module("imigue-upper-hands", spec, tools)
    return agcn.Model(num_class=32, num_point=len(spec["nodes"]), num_person=1, graph=path), len(spec["nodes"])


def forward_flops(v, frames, batch, units, classes=32, in_channels=3, coff=4, kernel=9):
    """The same count as AgcnConfig::forward_flops."""
    t, c_in, total = frames, in_channels, 0
    for i, (c_out, stride) in enumerate(units):
        inter = c_out // coff
        t_out = -(-t // stride)
        gcn = 2 * (2 * c_in * inter * t * v) + 2 * v * inter * t * v + 2 * c_in * t * v * v + 2 * c_in * c_out * t * v
        flops = 3 * gcn
        if c_in != c_out:
            flops += 2 * c_in * c_out * t * v
        flops += 2 * c_out * c_out * kernel * t_out * v
        if i > 0 and (c_in != c_out or stride != 1):
            flops += 2 * c_in * c_out * t_out * v
        total += flops
        t, c_in = t_out, c_out
    return batch * (total + 2 * c_in * classes)


UNITS = [(64, 1), (64, 1), (64, 1), (64, 1), (128, 2), (128, 1), (128, 1), (256, 2), (256, 1), (256, 1)]


def mvit_flops(model, frames, batch):
    """The same count as MvitConfig::forward_flops: convolutions, linear layers, attention."""
    grid = [frames // 2, 56, 56]
    c0 = model.conv_proj.out_channels
    total = 2 * grid[0] * grid[1] * grid[2] * 3 * 3 * 7 * 7 * c0
    pooled = lambda g, s: [-(-a // b) for a, b in zip(g, s)]
    prod = lambda g: g[0] * g[1] * g[2]
    for block in model.blocks:
        attn = block.attn
        c_in, c_out = attn.embed_dim, attn.output_dim
        sq, skv = list(attn.pool_q.pool.stride), list(attn.pool_k.pool.stride)
        n = prod(grid) + 1
        q, kv = pooled(grid, sq), pooled(grid, skv)
        nq, nk = prod(q) + 1, prod(kv) + 1
        conv = lambda g: 2 * prod(g) * 27 * c_out
        flops = (2 * n * c_in * 3 * c_out + conv(q) + 2 * conv(kv) + 4 * nq * nk * c_out
                 + 2 * nq * c_out * c_out + 4 * nq * c_out * 4 * c_out)
        if c_in != c_out:
            flops += 2 * n * c_in * c_out
        total += flops
        grid = q
    return batch * (total + 2 * model.head[1].in_features * model.head[1].out_features)


def swinface_flops(batch, dim=96, depths=(2, 2, 6, 2), window=7, res=56, patch=2):
    """The same count as SwinFaceConfig::forward_flops."""
    total = 2 * res * res * 3 * patch * patch * dim
    for i, depth in enumerate(depths):
        c, n = dim << i, (res >> i) ** 2
        w = min(window, res >> i)
        total += depth * (2 * n * c * 3 * c + 4 * n * w * w * c + 2 * n * c * c + 4 * n * c * 4 * c)
        if i + 1 < len(depths):
            total += 2 * (n // 4) * 4 * c * 2 * c
    c = dim << (len(depths) - 1)
    total += 2 * c * c + 2 * c * 512
    parts, splits, feature = [192, 384, 768, 768], [47, 93, 186, 186], 512
    conv = sum(2 * 49 * a * b * 9 for a, b in zip(parts, splits))
    gate = 4 * (2 * feature * (feature // 16))
    subnet = 4 * feature * feature
    outputs = 2 * feature * (1 + 7 + 2 * 34)
    return batch * (total + 11 * (conv + gate + subnet) + outputs)


def sync(device):
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def bench(args, model_name, mode, batch, frames):
    device = args.device
    if model_name in ("cmtf", "interfusion"):
        import fusion_reference as ref  # the PyTorch twins of miga's fusion modules

        if model_name == "cmtf":
            config = ref.CMTF_DEFAULTS
            net = ref.Cmtf(config).to(device)
            inputs = dict(
                video=torch.randn(batch, frames, 7, 7, 768, device=device),
                video_class=torch.randn(batch, 768, device=device),
                skeleton=torch.randn(batch, 2 * frames, 55, 256, device=device),
            )
            forward = ref.cmtf_flops(config, batch, (frames, 7, 7), (2 * frames, 55))
        else:
            config = ref.INTERFUSION_DEFAULTS
            net = ref.InterFusion(config).to(device)
            inputs = dict(
                face=torch.randn(batch, 4 * frames, 512, device=device),
                context=torch.randn(batch, frames, 768, device=device),
            )
            forward = ref.interfusion_flops(config, batch, 4 * frames, frames)
        y = torch.arange(batch, device=device) % config["num_classes"]

        class Logits(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.net = net

            def forward(self, _):
                return self.net(**inputs)["logits"]

        model, x = Logits(), None
    elif model_name == "swinface":
        import swin_reference as ref  # imports SwinFace's modules from the checkout

        swin, subnets = ref.load_swinface(args.swinface.resolve())
        net = ref.swinface_model(swin, subnets, full=True).to(device)

        class Expression(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.net = net

            def forward(self, faces):
                return self.net(faces)["Expression"]

        model = Expression()
        x = torch.randn(batch, 3, 112, 112, device=device)
        y = torch.arange(batch, device=device) % 7
        forward = swinface_flops(batch)
    elif model_name == "mvit_v2_s":
        import mvit_reference as ref  # builds torchvision's MViT with mvit_v2_s's table

        settings = ref.block_settings(ref.mvit_v2_s_blocks())
        model = ref.build(frames, (224, 224), settings, 400).to(device)
        x = torch.randn(batch, 3, frames, 224, 224, device=device)
        y = torch.arange(batch, device=device) % 400
        forward = mvit_flops(model, frames, batch)
    else:
        model, v = agcn_model(args.agcn_reference, device)
        model = model.to(device)
        x = torch.randn(batch, 3, frames, v, 1, device=device)
        y = torch.arange(batch, device=device) % 32
        forward = forward_flops(v, frames, batch, UNITS)
    # Half precision as miga computes it: every weight, input and activation in that type.
    dtype = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}[args.precision]
    model = model.to(dtype)
    if x is not None:
        x = x.to(dtype)
    if model_name in ("cmtf", "interfusion"):
        for name in inputs:
            inputs[name] = inputs[name].to(dtype)
    if mode == "forward":
        model.eval()

        def step():
            with torch.no_grad():
                model(x).cpu()
    else:
        model.train()
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
        loss_fn = torch.nn.CrossEntropyLoss()

        def step():
            opt.zero_grad()
            loss_fn(model(x), y).backward()
            opt.step()

    for _ in range(args.warmup):
        step()
    sync(device)
    times = []
    for _ in range(args.iters):
        start = time.perf_counter()
        step()
        sync(device)
        times.append((time.perf_counter() - start) * 1e3)
    median = statistics.median(times)
    flops = forward * (3 if mode == "train" else 1)
    return {
        "model": model_name,
        "framework": "pytorch",
        "backend": f"torch {torch.__version__}",
        "device": device,
        "precision": args.precision,
        "mode": mode,
        "batch": batch,
        "frames": frames,
        "threads": torch.get_num_threads(),
        "iters": args.iters,
        "median_ms": median,
        "min_ms": min(times),
        "max_ms": max(times),
        "items_per_s": batch / (median / 1e3),
        "gflop_per_iter": flops / 1e9,
        "gflop_per_s": flops / 1e9 / (median / 1e3),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="agcn")
    ap.add_argument("--agcn-reference", type=pathlib.Path, help="checkout of lshiwjx/2s-AGCN")
    ap.add_argument("--swinface", type=pathlib.Path,
                    help="the swinface_project folder of a lxq1000/SwinFace checkout")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--precision", default="f32", choices=["f32", "f16", "bf16"],
                    help="every weight, input and activation in this type (as miga --precision)")
    ap.add_argument("--batch", default="8")
    ap.add_argument("--mode", default="forward")
    ap.add_argument("--frames", type=int, help="default: 16 for mvit_v2_s, 64 for agcn, 8 for cmtf, 32 for interfusion")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--threads", type=int)
    ap.add_argument("--json", type=pathlib.Path)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    results = []
    for model in args.model.split(","):
        if model not in ("mvit_v2_s", "agcn", "swinface", "cmtf", "interfusion"):
            raise SystemExit(f"model {model}: not in this script yet")
        if model == "agcn" and args.agcn_reference is None:
            raise SystemExit("agcn needs --agcn-reference PATH (a checkout of lshiwjx/2s-AGCN)")
        if model == "swinface" and args.swinface is None:
            raise SystemExit("swinface needs --swinface PATH (swinface_project of lxq1000/SwinFace)")
        frames = args.frames or {"mvit_v2_s": 16, "agcn": 64, "swinface": 1, "cmtf": 8,
                                 "interfusion": 32}[model]
        for mode in args.mode.split(","):
            for batch in map(int, args.batch.split(",")):
                r = bench(args, model, mode, batch, frames)
                print(f"{r['model']:<10} {r['device']:<6} {r['mode']:<8} {r['batch']:>5} "
                      f"{r['median_ms']:>10.1f} ms  {r['items_per_s']:>8.1f} items/s  {r['gflop_per_s']:>7.1f} GFLOP/s")
                results.append(r)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
