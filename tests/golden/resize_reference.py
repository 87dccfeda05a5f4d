#!/usr/bin/env python3
# Golden data for tests/test_data.cpp: PIL's Image.resize(size, BILINEAR) on 8-bit 'L' images (what
# torchvision's Resize does to a PIL image; Resize(32) on a square 28x28 image is resize((32, 32)))
# and the uint8 -> [-1, 1] scaling of ToTensor + Normalize(0.5, 0.5).
# Run from anywhere:  /usr/bin/python3 tests/golden/resize_reference.py   (Debian's python3-pil 9.4)
# It writes resize_u8.safetensors next to this script (F32 tensors holding exact integers, as the
# reader has no U8): "<case>.in" [h, w] and "<case>.out" [out_h, out_w] for every case (the test
# replays every "*.in" key); "scale.u8" [256] and
# "scale.x" [256]. Deterministic (fixed seed); commit the output.

import os

import numpy as np
from PIL import Image

from st_io import write_safetensors

HERE = os.path.dirname(os.path.abspath(__file__))


def pil_resize(img, out_h, out_w):
    # PIL sizes are (width, height).
    return np.asarray(Image.fromarray(img, mode="L").resize((out_w, out_h), Image.BILINEAR))


def main():
    rng = np.random.default_rng(20240315)
    tensors = {}
    # (name, in_h, in_w, out_h, out_w): the training resize, upscaling by more than 2, shrinking
    # (antialiased: support widened by in/out), identity, and a non-square mixed case.
    cases = [("up32", 28, 28, 32, 32), ("up64", 28, 28, 64, 64), ("down16", 32, 32, 16, 16),
             ("same28", 28, 28, 28, 28), ("mixed", 28, 20, 13, 37),
             # Odd ratios, tiny sizes and one-pass cases, where rounding of the window bounds and
             # of the fixed-point weights shows.
             ("tiny1", 1, 1, 4, 4), ("col", 3, 1, 1, 5), ("odd", 5, 7, 11, 3), ("down9", 9, 9, 4, 4),
             ("prime", 17, 13, 29, 7), ("half28", 28, 28, 14, 14), ("down28to10", 28, 28, 10, 10),
             ("hpass", 28, 28, 28, 45), ("vpass", 28, 28, 19, 28), ("strip", 7, 28, 32, 3)]
    for name, h, w, oh, ow in cases:
        img = rng.integers(0, 256, size=(h, w), dtype=np.uint8)
        tensors[name + ".in"] = img.astype(np.float32)
        tensors[name + ".out"] = pil_resize(img, oh, ow).astype(np.float32)
    # Hard edges: a 0/255 checkerboard with a saturated block, where rounding and clipping show.
    img = ((np.indices((28, 28)).sum(axis=0) % 2) * 255).astype(np.uint8)
    img[5:12, 5:12] = 255
    tensors["checker.in"] = img.astype(np.float32)
    tensors["checker.out"] = pil_resize(img, 32, 32).astype(np.float32)

    u8 = np.arange(256, dtype=np.uint8)
    x = (u8.astype(np.float32) / np.float32(255) - np.float32(0.5)) / np.float32(0.5)
    try:  # torchvision's ToTensor is .float().div(255), Normalize is .sub_(mean).div_(std)
        import torch
        t = torch.from_numpy(u8.copy()).float().div(255).sub_(0.5).div_(0.5).numpy()
        assert np.array_equal(t, x), "numpy float32 scaling differs from torch"
    except ImportError:
        pass
    tensors["scale.u8"] = u8.astype(np.float32)
    tensors["scale.x"] = x

    path = os.path.join(HERE, "resize_u8.safetensors")
    write_safetensors(path, {k: np.asarray(v, dtype=np.float32) for k, v in tensors.items()},
                      {"source": "PIL %s Image.resize BILINEAR, mode L" % Image.__version__})
    print("wrote %s (%d bytes)" % (path, os.path.getsize(path)))


if __name__ == "__main__":
    main()
