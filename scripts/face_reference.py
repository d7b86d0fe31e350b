#!/usr/bin/env python3
"""Reference fixture for miga's face alignment, computed independently by scikit-image.

For a few sets of five landmarks (random similarity transforms of ArcFace's template plus
noise), scikit-image's `SimilarityTransform` estimate (Umeyama) gives the transforms, and
`skimage.transform.warp` (bilinear, black outside) the 112x112 crops of a random image:

    <out>/align.safetensors   image (H, W, 3; integers as f32), landmarks (N, 5, 2),
                              transforms (N, 2, 3), crops (2, 112, 112, 3; floats, unrounded)

    /tmp/venv/bin/pip install scikit-image safetensors torch
    /tmp/venv/bin/python scripts/face_reference.py
"""

import argparse
import pathlib
import sys

import numpy as np
import torch
from safetensors.torch import save_file
from skimage.transform import SimilarityTransform, warp

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import provenance  # noqa: E402
TEMPLATE = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                     [41.5493, 92.3655], [70.7299, 92.2041]])


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=pathlib.Path,
                        default=REPO / "crates/miga-datasets/tests/fixtures/faces")
    args = parser.parse_args()
    rng = np.random.default_rng(11)
    image = rng.integers(0, 256, size=(72, 96, 3)).astype(np.float64)
    landmarks, transforms, crops = [], [], []
    for i in range(5):
        scale = rng.uniform(0.3, 0.8)
        angle = rng.uniform(-0.6, 0.6)
        rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        points = (TEMPLATE - 56) @ rotation.T * scale + rng.uniform([30, 25], [66, 47])
        points = (points + rng.normal(0, 1.5, points.shape)).astype(np.float32)
        tform = SimilarityTransform.from_estimate(points.astype(np.float64), TEMPLATE)
        assert tform
        landmarks.append(points)
        transforms.append(tform.params[:2])
        if i < 2:
            crop = warp(image, tform.inverse, output_shape=(112, 112), order=1,
                        mode="constant", cval=0, preserve_range=True)
            crops.append(crop)
    tensors = {
        "image": torch.tensor(image, dtype=torch.float32),
        "landmarks": torch.tensor(np.stack(landmarks), dtype=torch.float32),
        "transforms": torch.tensor(np.stack(transforms), dtype=torch.float32),
        "crops": torch.tensor(np.stack(crops), dtype=torch.float32),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    save_file(tensors, args.out / "align.safetensors")
    import skimage
    provenance.write(args.out, f"scikit-image {skimage.__version__}: skimage.transform.SimilarityTransform, warp")
    print(f"wrote {args.out / 'align.safetensors'}")


if __name__ == "__main__":
    main()
