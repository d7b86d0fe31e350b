#!/usr/bin/env python3
"""PyTorch twins of miga's fusion modules, and the fixtures that prove them twins.

miga's Cross-Modal Token Fusion (`Cmtf`) and `InterFusion` are our own designs (the paper
publishes no code; see docs/models/fusion.md), so there is no upstream reference to compare
with. This file writes them again in plain PyTorch, layer for layer and with the same
parameter names, for two uses:

* benchmarks: `scripts/bench_pytorch.py --model cmtf,interfusion` times these twins, so the
  PyTorch side of the comparison runs the same layers on the same shapes;
* parity: `--out DIR` builds small twins with random weights (fixed seed), runs them in eval
  mode and writes, per case,

      <out>/<case>/config.json        the module as a miga config (JSON)
      <out>/<case>/weights.safetensors  the twin's state_dict
      <out>/<case>/io.safetensors     inputs and outputs

  which the backend-agreement tests load into miga and compare on every backend.

    python -m venv /tmp/venv && /tmp/venv/bin/pip install torch safetensors
    /tmp/venv/bin/python scripts/fusion_reference.py --out crates/miga-fusion/tests/fixtures
"""

import argparse
import json
import math
import pathlib
import sys

import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import provenance  # noqa: E402
from torch import nn
from torch.nn import functional as F

MASKED_SCORE = -1.0e4


class MaskedAttention(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.heads = heads
        self.query, self.key, self.value, self.output = (nn.Linear(d, d) for _ in range(4))

    def forward(self, query, context, padding):
        b, nq, d = query.shape
        nk = context.shape[1]
        h, dh = self.heads, d // self.heads
        split = lambda x, n: x.reshape(b, n, h, dh).transpose(1, 2)
        q = split(self.query(query), nq)
        k = split(self.key(context), nk)
        v = split(self.value(context), nk)
        scores = q @ k.transpose(2, 3) * (1.0 / math.sqrt(dh))
        if padding is None:
            probs = scores.softmax(3)
        else:
            mask = padding.reshape(b, 1, 1, nk).expand(b, h, nq, nk)
            probs = scores.masked_fill(mask, MASKED_SCORE).softmax(3).masked_fill(mask, 0.0)
        out = self.output((probs @ v).transpose(1, 2).reshape(b, nq, d))
        if padding is not None:
            # A query with no valid key gets a zero output, bias included.
            out = out * (~padding).any(1).float().reshape(b, 1, 1)
        return out, probs


class AttentionSublayer(nn.Module):
    def __init__(self, d, heads, dropout, cross):
        super().__init__()
        self.norm = nn.LayerNorm(d)
        self.context_norm = nn.LayerNorm(d) if cross else None
        self.attention = MaskedAttention(d, heads)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x, context, padding):
        if self.context_norm is None:
            normed = self.norm(x)
            out, w = self.attention(normed, normed, padding)
        else:
            out, w = self.attention(self.norm(x), self.context_norm(context), padding)
        return x + self.dropout(out), w


class FeedForwardSublayer(nn.Module):
    def __init__(self, d, ff, dropout):
        super().__init__()
        self.norm = nn.LayerNorm(d)
        self.fc1 = nn.Linear(d, ff)
        self.fc2 = nn.Linear(ff, d)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x):
        h = F.gelu(self.fc1(self.norm(x)))
        return x + self.dropout(self.fc2(self.dropout(h)))


class EncoderLayer(nn.Module):
    def __init__(self, d, heads, ff, dropout):
        super().__init__()
        self.attention = AttentionSublayer(d, heads, dropout, False)
        self.feed_forward = FeedForwardSublayer(d, ff, dropout)

    def forward(self, x, padding):
        x, w = self.attention(x, None, padding)
        return self.feed_forward(x), w


class CrossBlock(nn.Module):
    def __init__(self, d, heads, ff, dropout, self_attention):
        super().__init__()
        self.self_a = AttentionSublayer(d, heads, dropout, False) if self_attention else None
        self.self_b = AttentionSublayer(d, heads, dropout, False) if self_attention else None
        self.cross_a = AttentionSublayer(d, heads, dropout, True)
        self.cross_b = AttentionSublayer(d, heads, dropout, True)
        self.feed_forward_a = FeedForwardSublayer(d, ff, dropout)
        self.feed_forward_b = FeedForwardSublayer(d, ff, dropout)

    def forward(self, a, pa, b, pb):
        xa = self.self_a(a, None, pa)[0] if self.self_a is not None else a
        xb = self.self_b(b, None, pb)[0] if self.self_b is not None else b
        ya, _ = self.cross_a(xa, xb, pb)
        yb, _ = self.cross_b(xb, xa, pa)
        return self.feed_forward_a(ya), self.feed_forward_b(yb)


def clock_code(padding, d, scale):
    valid = (~padding).float()
    length = valid.sum(1, keepdim=True).clamp_min(1.0)
    t = (valid.cumsum(1) - 0.5).clamp_min(0.0) / length
    half = d // 2
    freq = (torch.arange(half, dtype=torch.float32) * (-2.0 * math.log(10000.0) / d)).exp() * scale
    angles = t.unsqueeze(2) * freq.reshape(1, 1, half).to(t.device)
    return torch.cat([angles.sin(), angles.cos()], 2)


def embed_steps(projection, x, padding, embedding, scale):
    b, t, r, _ = x.shape
    d = embedding.shape[1]
    clock = clock_code(padding, d, scale).reshape(b, t, 1, d)
    x = x.masked_fill(padding.reshape(b, t, 1, 1).expand_as(x), 0.0)
    tokens = projection(x) + clock + embedding.reshape(1, 1, r, d)
    return tokens.reshape(b, t * r, d), padding.reshape(b, t, 1).expand(b, t, r).reshape(b, t * r)


def masked_mean(x, padding):
    valid = (~padding).float()
    count = valid.sum(1, keepdim=True)
    return (x * valid.unsqueeze(2)).sum(1) / count.clamp_min(1.0), count.reshape(-1) > 0


def grid_regions(h, w, k):
    bins = lambda n: [(i * n // k, -(-((i + 1) * n) // k)) for i in range(k)]
    return [[r * w + c for r in range(r0, r1) for c in range(c0, c1)] for r0, r1 in bins(h) for c0, c1 in bins(w)]


def pool_regions(x, regions):
    m, n, _ = x.shape
    matrix = torch.zeros(1, len(regions), n, device=x.device)
    for r, region in enumerate(regions):
        matrix[0, r, region] = 1.0 / len(region)
    return matrix.expand(m, -1, -1) @ x


def absent(b, d, device):
    return torch.zeros(b, 1, d, device=device), torch.ones(b, 1, dtype=torch.bool, device=device)


def param(*shape):
    return nn.Parameter(torch.randn(*shape) * 0.02)


class Cmtf(nn.Module):
    """miga_fusion::Cmtf, modality dropout in training included."""

    def __init__(self, c):
        super().__init__()
        self.c = c
        d = c["d_model"]
        self.video_projection = nn.Linear(c["video_dim"], d)
        self.skeleton_projection = nn.Linear(c["skeleton_dim"], d)
        self.modality = param(2, d)
        cells = c["video_grid"] ** 2
        self.video_class = param(d) if c["video_class_token"] else None
        self.video_cells = param(cells, d) if cells > 1 else None
        parts = len(c["skeleton_parts"])
        self.skeleton_parts = param(parts, d) if parts > 1 else None
        joint = c["variant"] == "Joint"
        self.cls = param(d) if joint else None
        args = (d, c["heads"], c["ff_dim"], c["dropout"])
        n = c["layers"]
        self.cross_layers = nn.ModuleList([] if joint else [CrossBlock(*args, True) for _ in range(n)])
        self.joint_layers = nn.ModuleList([EncoderLayer(*args) for _ in range(n)] if joint else [])
        fused = d if joint else 2 * d
        self.video_norm, self.skeleton_norm, self.fused_norm = nn.LayerNorm(d), nn.LayerNorm(d), nn.LayerNorm(fused)
        self.head = nn.Linear(fused, c["num_classes"])
        self.video_head, self.skeleton_head = (nn.Linear(d, c["num_classes"]) for _ in range(2))
        self.dropout = nn.Dropout(c["dropout"])

    def video_stream(self, tokens, class_embedding, padding):
        b, t, h, w, ch = tokens.shape
        k = self.c["video_grid"]
        flat = tokens.reshape(b * t, h * w, ch)
        cells = flat.mean(1, keepdim=True) if k == 1 else pool_regions(flat, grid_regions(h, w, k))
        modality = self.modality[0:1]
        embedding = self.video_cells + modality if self.video_cells is not None else modality
        x, p = embed_steps(self.video_projection, cells.reshape(b, t, k * k, ch), padding, embedding, self.c["clock_scale"])
        if class_embedding is not None and self.video_class is not None:
            d = modality.shape[1]
            token = self.video_projection(class_embedding) + self.video_class.reshape(1, d) + modality
            x = torch.cat([token.reshape(b, 1, d), x], 1)
            p = torch.cat([padding.all(1, keepdim=True), p], 1)
        return x, p

    def skeleton_stream(self, tokens, padding):
        b, t, v, ch = tokens.shape
        flat = tokens.reshape(b * t, v, ch)
        parts = self.c["skeleton_parts"]
        pooled = flat.mean(1, keepdim=True) if not parts else pool_regions(flat, parts)
        p = pooled.shape[1]
        modality = self.modality[1:2]
        embedding = self.skeleton_parts + modality if self.skeleton_parts is not None else modality
        return embed_steps(self.skeleton_projection, pooled.reshape(b, t, p, ch), padding, embedding, self.c["clock_scale"])

    def forward(self, video=None, video_class=None, video_padding=None, skeleton=None, skeleton_padding=None):
        some = video if video is not None else skeleton
        b, device, d = some.shape[0], some.device, self.c["d_model"]
        no_padding = lambda x: torch.zeros(b, x.shape[1], dtype=torch.bool, device=device)
        if video is not None and video_padding is None:
            video_padding = no_padding(video)
        if skeleton is not None and skeleton_padding is None:
            skeleton_padding = no_padding(skeleton)
        p = self.c["modality_dropout"]
        if self.training and p > 0 and video is not None and skeleton is not None:
            has_v = (~video_padding).any(1, keepdim=True)
            has_s = (~skeleton_padding).any(1, keepdim=True)
            u = torch.rand(b, 1, device=device)
            drop_v = (u < p) & has_s
            drop_s = (u >= p) & (u < 2 * p) & has_v
            video_padding, skeleton_padding = video_padding | drop_v, skeleton_padding | drop_s
        if video is not None:
            v, pv = self.video_stream(video, video_class, video_padding)
        else:
            v, pv = absent(b, d, device)
        if skeleton is not None:
            s, ps = self.skeleton_stream(skeleton, skeleton_padding)
        else:
            s, ps = absent(b, d, device)
        fused = None
        if self.cls is None:
            for block in self.cross_layers:
                v, s = block(v, pv, s, ps)
        else:
            nv = v.shape[1]
            x = torch.cat([self.cls.reshape(1, 1, d).expand(b, 1, d), v, s], 1)
            padding = torch.cat([torch.zeros(b, 1, dtype=torch.bool, device=device), pv, ps], 1)
            for layer in self.joint_layers:
                x, _ = layer(x, padding)
            fused, v, s = x[:, 0], x[:, 1 : 1 + nv], x[:, 1 + nv :]
        zv, av = masked_mean(self.video_norm(v), pv)
        zs, as_ = masked_mean(self.skeleton_norm(s), ps)
        if fused is None:
            av_, as__ = av.float().reshape(b, 1), as_.float().reshape(b, 1)
            fused = torch.cat([zv * av_, zs * as__], 1)
        embedding = self.fused_norm(fused)
        head = lambda h, x: h(self.dropout(x))
        return {
            "logits": head(self.head, embedding),
            "embedding": embedding,
            "video_logits": head(self.video_head, zv),
            "skeleton_logits": head(self.skeleton_head, zs),
        }


class AttentionPool(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.score = nn.Linear(d, 1, bias=False)

    def forward(self, x, padding):
        b, n, d = x.shape
        scores = self.score(x).reshape(b, n)
        w = scores.masked_fill(padding, MASKED_SCORE).softmax(1).masked_fill(padding, 0.0)
        return (w.unsqueeze(1) @ x).reshape(b, d), w


class SequenceBranch(nn.Module):
    def __init__(self, c, input_dim, expressions, head):
        super().__init__()
        d = c["d_model"]
        self.projection = nn.Linear(input_dim, d)
        self.expression_projection = nn.Linear(expressions, d) if expressions > 0 else None
        self.encoder = nn.ModuleList([EncoderLayer(d, c["heads"], c["ff_dim"], c["dropout"]) for _ in range(c["intra_layers"])])
        self.norm = nn.LayerNorm(d)
        self.pool = AttentionPool(d)
        self.head = nn.Linear(d, c["num_classes"]) if head else None

    def encode(self, tokens, padding, expressions, modality, scale):
        b, n, ch = tokens.shape
        x, p = embed_steps(self.projection, tokens.reshape(b, n, 1, ch), padding, modality, scale)
        if self.expression_projection is not None and expressions is not None:
            x = x + self.expression_projection(expressions)
        for layer in self.encoder:
            x, _ = layer(x, p)
        return x, p


class InterFusion(nn.Module):
    """miga_fusion::InterFusion."""

    def __init__(self, c):
        super().__init__()
        self.c = c
        d = c["d_model"]
        full = c["variant"] == "Full"
        self.face = SequenceBranch(c, c["face_dim"], c["expression_classes"], not full) if c["variant"] != "ContextOnly" else None
        self.context = SequenceBranch(c, c["context_dim"], 0, not full) if c["variant"] != "FaceOnly" else None
        self.modality = param(2, d)
        args = (d, c["heads"], c["ff_dim"], c["dropout"], False)
        self.inter_layers = nn.ModuleList([CrossBlock(*args) for _ in range(c["inter_layers"])] if full else [])
        self.gate = nn.Linear(2 * d, d) if full else None
        self.fused_norm = nn.LayerNorm(d) if full else None
        self.head = nn.Linear(d, c["num_classes"]) if full else None
        self.dropout = nn.Dropout(c["dropout"])

    def forward(self, face=None, face_padding=None, expressions=None, context=None, context_padding=None):
        some = face if face is not None else context
        b, device, d = some.shape[0], some.device, self.c["d_model"]
        scale = self.c["clock_scale"]
        no_padding = lambda x: torch.zeros(b, x.shape[1], dtype=torch.bool, device=device)
        p = self.c.get("modality_dropout", 0.0)
        if (self.training and p > 0 and face is not None and context is not None
                and self.face is not None and self.context is not None):
            face_padding = face_padding if face_padding is not None else no_padding(face)
            context_padding = context_padding if context_padding is not None else no_padding(context)
            has_f = (~face_padding).any(1, keepdim=True)
            has_c = (~context_padding).any(1, keepdim=True)
            u = torch.rand(b, 1, device=device)
            face_padding = face_padding | ((u < p) & has_c)
            context_padding = context_padding | ((u >= p) & (u < 2 * p) & has_f)
        f = c_ = None
        if self.face is not None and face is not None:
            f = self.face.encode(face, face_padding if face_padding is not None else no_padding(face), expressions, self.modality[0:1], scale)
        if self.context is not None and context is not None:
            c_ = self.context.encode(context, context_padding if context_padding is not None else no_padding(context), None, self.modality[1:2], scale)
        if self.face is not None and self.context is not None:
            f = f if f is not None else absent(b, d, device)
            c_ = c_ if c_ is not None else absent(b, d, device)
        if f is not None and c_ is not None:
            for block in self.inter_layers:
                xf, xc = block(f[0], f[1], c_[0], c_[1])
                f, c_ = (xf, f[1]), (xc, c_[1])

        def pooled(branch, s):
            x, p = s
            present = (~p).any(1, keepdim=True).float()
            z, w = branch.pool(branch.norm(x), p)
            logits = branch.head(self.dropout(z)) if branch.head is not None else None
            return z, w, logits, present

        out = {}
        if f is not None and c_ is not None:
            zf, wf, lf, af = pooled(self.face, f)
            zc, wc, lc, ac = pooled(self.context, c_)
            out["face_weights"], out["context_weights"] = wf, wc
            if self.gate is not None:
                g = torch.sigmoid(self.gate(torch.cat([zf, zc], 1)))
                g = g * (af * ac) + af * (1.0 - ac)
                fused = zf * g + zc * (1.0 - g)
                out["embedding"] = self.fused_norm(fused)
                out["logits"] = self.head(self.dropout(out["embedding"]))
                out["gate"] = g
            else:
                n = (af + ac).clamp_min(1.0)
                out["logits"] = (lf * af + lc * ac) / n
                out["embedding"] = (zf * af + zc * ac) / n
        else:
            branch, s, key = (self.face, f, "face_weights") if f is not None else (self.context, c_, "context_weights")
            z, w, logits, _ = pooled(branch, s)
            out.update({"logits": logits, "embedding": z, key: w})
        return out


def attention_flops(nq, nk, d):
    return 4 * nq * d * d + 4 * nk * d * d + 4 * nq * nk * d


def feed_forward_flops(n, d, ff):
    return 4 * n * d * ff


def cmtf_flops(c, batch, video, skeleton):
    """The same count as CmtfConfig::forward_flops."""
    att, ff = attention_flops, feed_forward_flops
    d, f = c["d_model"], c["ff_dim"]
    (tv, h, w), (ts, joints) = video, skeleton
    nv = tv * c["video_grid"] ** 2 + int(c["video_class_token"])
    ns = ts * max(len(c["skeleton_parts"]), 1)
    pooling = tv * h * w * c["video_dim"] + ts * joints * c["skeleton_dim"]
    projections = 2 * (nv * c["video_dim"] + ns * c["skeleton_dim"]) * d
    if c["variant"] == "Cross":
        layer = att(nv, nv, d) + att(ns, ns, d) + att(nv, ns, d) + att(ns, nv, d) + ff(nv, d, f) + ff(ns, d, f)
    else:
        n = 1 + nv + ns
        layer = att(n, n, d) + ff(n, d, f)
    fused = d if c["variant"] == "Joint" else 2 * d
    return batch * (pooling + projections + c["layers"] * layer + 2 * (fused + 2 * d) * c["num_classes"])


def interfusion_flops(c, batch, faces, windows):
    """The same count as InterFusionConfig::forward_flops."""
    att, ff = attention_flops, feed_forward_flops
    d, f, k = c["d_model"], c["ff_dim"], c["num_classes"]
    stream = lambda n, width: 2 * n * width * d + c["intra_layers"] * (att(n, n, d) + ff(n, d, f)) + 2 * n * d
    face = stream(faces, c["face_dim"] + c["expression_classes"])
    context = stream(windows, c["context_dim"])
    head = 2 * d * k
    inter = att(faces, windows, d) + att(windows, faces, d) + ff(faces, d, f) + ff(windows, d, f)
    total = {
        "Full": face + context + c["inter_layers"] * inter + 4 * d * d + head,
        "FaceOnly": face + head,
        "ContextOnly": context + head,
        "LateFusion": face + context + 2 * head,
    }[c["variant"]]
    return batch * total


# Defaults of CmtfConfig / InterFusionConfig (crates/miga-fusion).
CMTF_DEFAULTS = dict(video_dim=768, skeleton_dim=256, num_classes=32, d_model=256, heads=8, layers=2, ff_dim=1024,
                     dropout=0.1, variant="Cross", video_grid=1, video_class_token=True, skeleton_parts=[],
                     clock_scale=64.0, modality_dropout=0.2, aux_loss_weight=0.5)
INTERFUSION_DEFAULTS = dict(face_dim=512, expression_classes=0, context_dim=768, num_classes=2, d_model=256, heads=4,
                            intra_layers=2, inter_layers=1, ff_dim=1024, dropout=0.1, clock_scale=256.0, variant="Full",
                            modality_dropout=0.0)

SMALL = dict(d_model=16, heads=2, ff_dim=32)
CASES = {
    "cmtf_cross": ("cmtf", dict(SMALL, video_dim=12, skeleton_dim=10, num_classes=5, video_grid=2,
                                skeleton_parts=[[0, 1], [2, 3, 4]])),
    "cmtf_joint": ("cmtf", dict(SMALL, video_dim=12, skeleton_dim=10, num_classes=5, variant="Joint",
                                video_class_token=False)),
    "interfusion_full": ("interfusion", dict(SMALL, face_dim=12, context_dim=10, expression_classes=7,
                                             inter_layers=2)),
    "interfusion_late": ("interfusion", dict(SMALL, face_dim=12, context_dim=10, variant="LateFusion")),
}


def tail_padding(padded, n):
    return torch.tensor([[i >= n - p for i in range(n)] for p in padded])


def fixture(case, out):
    from safetensors.torch import save_file

    kind, overrides = CASES[case]
    torch.manual_seed(sum(map(ord, case)))
    if kind == "cmtf":
        config = dict(CMTF_DEFAULTS, **overrides)
        model = Cmtf(config)
    else:
        config = dict(INTERFUSION_DEFAULTS, **overrides)
        model = InterFusion(config)
    # Random weights: LayerNorms and biases too, so that no parameter is the identity.
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * (0.3 if p.dim() > 1 else 0.5))
    model.eval()
    if kind == "cmtf":
        io = {
            "video": torch.randn(3, 4, 3, 3, 12),
            "video_class": torch.randn(3, 12),
            # Sample 1 has no video at all; sample 2 lacks its last video step.
            "video_padding": tail_padding([0, 4, 1], 4),
            "skeleton": torch.randn(3, 6, 5, 10),
            "skeleton_padding": tail_padding([2, 0, 0], 6),
        }
        with torch.no_grad():
            outputs = model(**io)
    else:
        io = {
            "face": torch.randn(3, 9, 12),
            # Sample 2 has no face at all.
            "face_padding": tail_padding([3, 0, 9], 9),
            "context": torch.randn(3, 4, 10),
            "context_padding": tail_padding([0, 1, 0], 4),
        }
        if config["expression_classes"]:
            io["expressions"] = torch.randn(3, 9, config["expression_classes"]).softmax(2)
        with torch.no_grad():
            outputs = model(**io)
    directory = out / case
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, directory / "weights.safetensors")
    tensors = {k: v.float().contiguous() for k, v in io.items()}
    tensors.update({k: v.contiguous() for k, v in outputs.items()})
    save_file(tensors, directory / "io.safetensors")
    provenance.write(directory, f"the PyTorch twin in scripts/fusion_reference.py ({kind})")
    print(f"wrote {directory}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=pathlib.Path, required=True, help="fixture folder")
    args = parser.parse_args()
    for case in CASES:
        fixture(case, args.out)


if __name__ == "__main__":
    main()
