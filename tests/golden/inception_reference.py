#!/usr/bin/env python3
# Golden data for tests/test_inception.cpp: an independent PyTorch 1.13 build of the FID
# Inception-v3 (the TF 2015 graph as ported by pytorch-fid / torch-fidelity), written from the
# architecture, with deterministic "formula weights" (the real ones are ~95 MB and not ours to
# commit), run on a few small uint8 images.
# Regenerate (Debian's python3-torch, not a pyenv `python3`):
#   OMP_NUM_THREADS=2 /usr/bin/python3 tests/golden/inception_reference.py
# Writes tests/golden/inception.safetensors:
#   grey.images [2,1,28,28], rgb.images [1,3,32,32]  float32 with integer values 0..255
#   <set>.64, .192, .768    spatial means after MaxPool_1, MaxPool_2 and Mixed_6e (float64)
#   <set>.2048              pool3, the FID features (float64)
#   <set>.logits_unbiased   pool3 @ fc.weight^T, the IS logits (float64)
#   Sets: grey and rgb resized to 107x107 (the network's code at a size that keeps the test fast
#   under sanitizers; its last stage is 2x2, so every pool rule still matters), rgb299 the rgb
#   image at the real 299x299; __metadata__ "<set>.input_size".
#   resize.x [1,2,5,7], resize.y_8x3, resize.y_13x11: the TF1 bilinear resize alone (float32)
#   __metadata__ "state_dict": the module's [name, shape] list in state_dict order
# The network runs in float64 after a float32 resize (torch-fidelity resizes in float32), so the
# stored features are the exact result to ~1e-13 and the C++ float32 run is judged against them.
#
# Formula weights, tensor `name` (a state_dict key), element i in row-major order:
#   z = fnv1a64(name) + (i + 1) * 0x9E3779B97F4A7C15  (mod 2^64), then splitmix64's finaliser:
#   z = (z ^ z >> 30) * 0xBF58476D1CE4E5B9; z = (z ^ z >> 27) * 0x94D049BB133111EB; z ^= z >> 31
#   v = 2 * (z >> 11) * 2^-53 - 1, uniform in [-1, 1)
#   conv / fc weights: v * sqrt(6 / fan_in) (He-uniform: activations keep their scale through
#   ~50 conv + ReLU layers, so no stage is all zeros or huge); bn.weight 1 + 0.2 v; bn.bias,
#   bn.running_mean, fc.bias 0.1 v; bn.running_var 1 + 0.5 v. Computed in float64, rounded to
#   float32. tests/test_inception.cpp implements the same formula.
import json
import os

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from st_io import write_safetensors

HERE = os.path.dirname(os.path.abspath(__file__))
MASK = (1 << 64) - 1


# ---- the formula weights ------------------------------------------------------------------------

def fnv1a64(text):
    h = 0xCBF29CE484222325
    for b in text.encode():
        h = ((h ^ b) * 0x100000001B3) & MASK
    return h


def formula_uniform(name, n):
    with np.errstate(over="ignore"):
        i = np.arange(1, n + 1, dtype=np.uint64)
        z = np.uint64(fnv1a64(name)) + i * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return 2.0 * ((z >> np.uint64(11)).astype(np.float64) * 2.0 ** -53) - 1.0


def formula_tensor(name, shape):
    v = formula_uniform(name, int(np.prod(shape)))
    if name.endswith("weight") and len(shape) > 1:  # conv.weight, fc.weight
        v = v * np.sqrt(6.0 / float(np.prod(shape[1:])))
    elif name.endswith("bn.weight"):
        v = 1.0 + 0.2 * v
    elif name.endswith("running_var"):
        v = 1.0 + 0.5 * v
    else:  # bn.bias, bn.running_mean, fc.bias
        v = 0.1 * v
    return torch.from_numpy(v.astype(np.float32).reshape(shape))


# ---- the network ------------------------------------------------------------------------------

class ConvBnRelu(nn.Module):
    """Inception's BasicConv2d: conv without bias, batch norm with TF's eps, ReLU."""

    def __init__(self, cin, cout, kernel, stride=1, padding=0):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=0.001)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


def same(cin, cout, kh, kw=None):
    """Stride 1, padded to keep the size (one axis only for 1xk and kx1 kernels)."""
    kw = kh if kw is None else kw
    return ConvBnRelu(cin, cout, (kh, kw), padding=(kh // 2, kw // 2))


def tf_avg_pool(x):
    # TF's average pool divides by the positions inside the image, not by 9.
    return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)


class MixedA(nn.Module):  # 35x35, four branches: 1x1 | 1x1-5x5 | 1x1-3x3-3x3 | avgpool-1x1
    def __init__(self, cin, pool_features):
        super().__init__()
        self.branch1x1 = same(cin, 64, 1)
        self.branch5x5_1, self.branch5x5_2 = same(cin, 48, 1), same(48, 64, 5)
        self.branch3x3dbl_1 = same(cin, 64, 1)
        self.branch3x3dbl_2, self.branch3x3dbl_3 = same(64, 96, 3), same(96, 96, 3)
        self.branch_pool = same(cin, pool_features, 1)

    def forward(self, x):
        a = self.branch1x1(x)
        b = self.branch5x5_2(self.branch5x5_1(x))
        c = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        d = self.branch_pool(tf_avg_pool(x))
        return torch.cat([a, b, c, d], dim=1)


class ReduceB(nn.Module):  # 35 -> 17: 3x3/2 | 1x1-3x3-3x3/2 | maxpool/2
    def __init__(self, cin):
        super().__init__()
        self.branch3x3 = ConvBnRelu(cin, 384, 3, stride=2)
        self.branch3x3dbl_1, self.branch3x3dbl_2 = same(cin, 64, 1), same(64, 96, 3)
        self.branch3x3dbl_3 = ConvBnRelu(96, 96, 3, stride=2)

    def forward(self, x):
        a = self.branch3x3(x)
        b = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([a, b, F.max_pool2d(x, 3, stride=2)], dim=1)


class MixedC(nn.Module):  # 17x17 with factorised 7x7: 1x1 | 1x7-7x1 | 7x1-1x7-7x1-1x7 | pool
    def __init__(self, cin, c7):
        super().__init__()
        self.branch1x1 = same(cin, 192, 1)
        self.branch7x7_1 = same(cin, c7, 1)
        self.branch7x7_2 = same(c7, c7, 1, 7)
        self.branch7x7_3 = same(c7, 192, 7, 1)
        self.branch7x7dbl_1 = same(cin, c7, 1)
        self.branch7x7dbl_2 = same(c7, c7, 7, 1)
        self.branch7x7dbl_3 = same(c7, c7, 1, 7)
        self.branch7x7dbl_4 = same(c7, c7, 7, 1)
        self.branch7x7dbl_5 = same(c7, 192, 1, 7)
        self.branch_pool = same(cin, 192, 1)

    def forward(self, x):
        a = self.branch1x1(x)
        b = x
        for m in [self.branch7x7_1, self.branch7x7_2, self.branch7x7_3]:
            b = m(b)
        c = x
        for m in [self.branch7x7dbl_1, self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4,
                  self.branch7x7dbl_5]:
            c = m(c)
        return torch.cat([a, b, c, self.branch_pool(tf_avg_pool(x))], dim=1)


class ReduceD(nn.Module):  # 17 -> 8: 1x1-3x3/2 | 1x1-1x7-7x1-3x3/2 | maxpool/2
    def __init__(self, cin):
        super().__init__()
        self.branch3x3_1 = same(cin, 192, 1)
        self.branch3x3_2 = ConvBnRelu(192, 320, 3, stride=2)
        self.branch7x7x3_1 = same(cin, 192, 1)
        self.branch7x7x3_2 = same(192, 192, 1, 7)
        self.branch7x7x3_3 = same(192, 192, 7, 1)
        self.branch7x7x3_4 = ConvBnRelu(192, 192, 3, stride=2)

    def forward(self, x):
        a = self.branch3x3_2(self.branch3x3_1(x))
        b = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
        return torch.cat([a, b, F.max_pool2d(x, 3, stride=2)], dim=1)


class MixedE(nn.Module):  # 8x8, the 3x3s split into parallel 1x3 and 3x1 halves
    def __init__(self, cin, max_pool):
        super().__init__()
        self.max_pool = max_pool
        self.branch1x1 = same(cin, 320, 1)
        self.branch3x3_1 = same(cin, 384, 1)
        self.branch3x3_2a, self.branch3x3_2b = same(384, 384, 1, 3), same(384, 384, 3, 1)
        self.branch3x3dbl_1, self.branch3x3dbl_2 = same(cin, 448, 1), same(448, 384, 3)
        self.branch3x3dbl_3a, self.branch3x3dbl_3b = same(384, 384, 1, 3), same(384, 384, 3, 1)
        self.branch_pool = same(cin, 192, 1)

    def forward(self, x):
        a = self.branch1x1(x)
        t = self.branch3x3_1(x)
        b = torch.cat([self.branch3x3_2a(t), self.branch3x3_2b(t)], dim=1)
        u = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        c = torch.cat([self.branch3x3dbl_3a(u), self.branch3x3dbl_3b(u)], dim=1)
        # The TF graph's last block max-pools here (the paper's Inception-v3 average-pools).
        p = F.max_pool2d(x, 3, stride=1, padding=1) if self.max_pool else tf_avg_pool(x)
        return torch.cat([a, b, c, self.branch_pool(p)], dim=1)


class FidInceptionRef(nn.Module):
    def __init__(self):
        super().__init__()
        self.Conv2d_1a_3x3 = ConvBnRelu(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = ConvBnRelu(32, 32, 3)
        self.Conv2d_2b_3x3 = ConvBnRelu(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = ConvBnRelu(64, 80, 1)
        self.Conv2d_4a_3x3 = ConvBnRelu(80, 192, 3)
        self.Mixed_5b, self.Mixed_5c, self.Mixed_5d = MixedA(192, 32), MixedA(256, 64), MixedA(288, 64)
        self.Mixed_6a = ReduceB(288)
        self.Mixed_6b, self.Mixed_6c = MixedC(768, 128), MixedC(768, 160)
        self.Mixed_6d, self.Mixed_6e = MixedC(768, 160), MixedC(768, 192)
        self.Mixed_7a = ReduceD(768)
        self.Mixed_7b, self.Mixed_7c = MixedE(1280, max_pool=False), MixedE(2048, max_pool=True)
        self.fc = nn.Linear(2048, 1008)

    def forward(self, x):
        """x: [N, 3, 299, 299] already normalised; returns the stage features."""
        out = {}
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, 3, stride=2)
        out["64"] = x.mean(dim=(2, 3))
        x = F.max_pool2d(self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x)), 3, stride=2)
        out["192"] = x.mean(dim=(2, 3))
        for m in [self.Mixed_5b, self.Mixed_5c, self.Mixed_5d, self.Mixed_6a, self.Mixed_6b, self.Mixed_6c,
                  self.Mixed_6d, self.Mixed_6e]:
            x = m(x)
        out["768"] = x.mean(dim=(2, 3))
        for m in [self.Mixed_7a, self.Mixed_7b, self.Mixed_7c]:
            x = m(x)
        pool3 = x.mean(dim=(2, 3))
        out["2048"] = pool3
        out["logits_unbiased"] = pool3 @ self.fc.weight.t()
        return out


# ---- preprocessing --------------------------------------------------------------------------------

def resize_tf1(x, out_h, out_w):
    """TF1 bilinear (align_corners=False): source = d * in / out, no half-pixel shift, between
    floor and min(floor + 1, in - 1); float32 arithmetic with the scale rounded to float32."""
    def axis(n_in, n_out):
        scale = torch.tensor(n_in / n_out, dtype=torch.float32)
        src = torch.arange(n_out, dtype=torch.float32) * scale
        lo = src.floor().long()
        return lo, (lo + 1).clamp(max=n_in - 1), src - lo.float()

    ylo, yhi, fy = axis(x.shape[2], out_h)
    xlo, xhi, fx = axis(x.shape[3], out_w)
    top = x[:, :, ylo, :]
    bottom = x[:, :, yhi, :]
    fx = fx.view(1, 1, 1, -1)
    top = top[..., xlo] + (top[..., xhi] - top[..., xlo]) * fx
    bottom = bottom[..., xlo] + (bottom[..., xhi] - bottom[..., xlo]) * fx
    return top + (bottom - top) * fy.view(1, 1, -1, 1)


def features(net, images_u8, size):
    x = resize_tf1(images_u8.float(), size, size)
    if x.shape[1] == 1:
        x = x.repeat(1, 3, 1, 1)
    x = ((x - 128) / 128).double()
    with torch.no_grad():
        return net(x)


def main():
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    net = FidInceptionRef().eval()
    state = {k: formula_tensor(k, tuple(v.shape)) for k, v in net.state_dict().items()
             if not k.endswith("num_batches_tracked")}
    missing, unexpected = net.load_state_dict(state, strict=False)
    assert not unexpected and all(k.endswith("num_batches_tracked") for k in missing), (missing, unexpected)
    net.double()

    rng = np.random.RandomState(2015)
    tensors = {}
    # Random pixels plus a bright square and a dark stripe, so the images are not pure noise.
    grey = rng.randint(0, 256, size=(2, 1, 28, 28))
    grey[0, :, 5:15, 8:20] = 250
    grey[1, :, :, 3:6] = 0
    rgb = rng.randint(0, 256, size=(1, 3, 32, 32))
    rgb[0, 1, 10:30, 2:12] = 255
    meta = {}
    for set_name, img, size in [("grey", grey, 107), ("rgb", rgb, 107), ("rgb299", rgb, 299)]:
        u8 = torch.from_numpy(img.astype(np.uint8))
        if set_name != "rgb299":
            tensors[f"{set_name}.images"] = u8.float()
        for k, v in features(net, u8, size).items():
            tensors[f"{set_name}.{k}"] = v
        meta[f"{set_name}.input_size"] = size
    x = torch.from_numpy(rng.randint(0, 256, size=(1, 2, 5, 7)).astype(np.float32))
    tensors["resize.x"] = x
    tensors["resize.y_8x3"] = resize_tf1(x, 8, 3)
    tensors["resize.y_13x11"] = resize_tf1(x, 13, 11)

    path = os.path.join(HERE, "inception.safetensors")
    # The module's parameter names and shapes in state_dict order: the C++ expected_tensors() must
    # list exactly these.
    names = json.dumps([[k, list(v.shape)] for k, v in state.items()], separators=(",", ":"))
    write_safetensors(path, tensors, {"torch": torch.__version__, "weights": "formula (see script)",
                                      "state_dict": names, **meta})
    print(f"{path}: {len(tensors)} tensors, {os.path.getsize(path)} bytes")
    for s in ["grey", "rgb", "rgb299"]:
        p = tensors[f"{s}.2048"]
        print(s, "pool3 range", float(p.min()), float(p.max()), "logits std", float(tensors[f"{s}.logits_unbiased"].std()))


if __name__ == "__main__":
    main()
