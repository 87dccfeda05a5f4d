#!/usr/bin/env python3
# Golden data for tests/test_xai.cpp: an independent PyTorch 1.13.1 build of the authors'
# discriminator (guibotazzo/xgan lib/models.py) and its explanations: saliency and input x gradient
# by plain autograd, DeepLIFT's rescale rule against a zero baseline through custom autograd
# Functions on the concatenated batch [x; 0] (what captum's DeepLift does; captum is not installed).
# Run from anywhere:  OMP_NUM_THREADS=2 /usr/bin/python3 tests/golden/xai_reference.py
# Writes xai_sigmoid.safetensors (DCGAN's D) and xai_raw.safetensors (no final sigmoid) next to
# this script; everything is float64 so the C++ test can compare tightly.
#
# Keys: "D.<raw state_dict key>" (the weights, running statistics non-trivial), "x" [3, 1, 16, 16],
# "<bn>.<method>" the maps (bn in eval|captum, method in saliency|inputxgrad|deeplift), and for
# captum "captum.<method>.D.<buffer key>" the running statistics after that one explain call
# (each call starts from the stored statistics).

import collections
import os

import torch
import torch.nn as nn
import torch.nn.functional as F

from generate import write_safetensors

HERE = os.path.dirname(os.path.abspath(__file__))
IMAGE, WIDTH, CHANNELS, BATCH = 16, 4, 1, 3
SLOPE = 0.2
EPS = 1e-10  # captum's DeepLift eps: below it the multiplier falls back to the gradient

# When set, the nonlinearities use DeepLIFT's rescale rule in their backward.
DEEPLIFT = {"on": False}


def rescale_function(f):
    """A torch.autograd.Function computing f with DeepLIFT's rescale backward on a [x; x0] batch:
    m = (f(a) - f(b)) / (a - b), or f'(own row) where |a - b| < EPS (captum's torch.where)."""

    class Rescale(torch.autograd.Function):
        @staticmethod
        def forward(ctx, inp):
            ctx.save_for_backward(inp)
            return f(inp)

        @staticmethod
        def backward(ctx, g):
            (inp,) = ctx.saved_tensors
            with torch.enable_grad():
                i = inp.detach().requires_grad_(True)
                out = f(i)
                (deriv,) = torch.autograd.grad(out.sum(), i)
            out = out.detach()
            n = inp.shape[0] // 2
            d_in = inp[:n] - inp[n:]
            d_out = out[:n] - out[n:]
            ratio = d_out / d_in
            ratio2 = torch.cat([ratio, ratio])
            d_in2 = torch.cat([d_in, d_in])
            m = torch.where(d_in2.abs() < EPS, deriv, ratio2)
            return g * m

    return Rescale.apply


LEAKY_DL = rescale_function(lambda t: F.leaky_relu(t, SLOPE))
SIGMOID_DL = rescale_function(torch.sigmoid)


class Leaky(nn.Module):
    def forward(self, t):
        return LEAKY_DL(t) if DEEPLIFT["on"] else F.leaky_relu(t, SLOPE)


class Sig(nn.Module):
    def forward(self, t):
        return SIGMOID_DL(t) if DEEPLIFT["on"] else torch.sigmoid(t)


class Discriminator(nn.Module):
    """The authors' D: Start Conv + LeakyReLU, Middle Conv + BN + LeakyReLU while the map > 4,
    End Conv (-> 1, k4 s1 p0) [+ Sigmoid]; no biases."""

    def __init__(self, sigmoid):
        super().__init__()
        layers = collections.OrderedDict()
        layers["Start-Conv2d"] = nn.Conv2d(CHANNELS, WIDTH, 4, 2, 1, bias=False)
        layers["Start-LeakyReLU"] = Leaky()
        size, mult, i = IMAGE // 2, 1, 0
        while size > 4:
            layers[f"Middle-Conv2d [{i}]"] = nn.Conv2d(WIDTH * mult, WIDTH * mult * 2, 4, 2, 1, bias=False)
            layers[f"Middle-BatchNorm2d [{i}]"] = nn.BatchNorm2d(WIDTH * mult * 2)
            layers[f"Middle-LeakyReLU [{i}]"] = Leaky()
            size, mult, i = size // 2, mult * 2, i + 1
        layers["End-Conv2d"] = nn.Conv2d(WIDTH * mult, 1, 4, 1, 0, bias=False)
        if sigmoid:
            layers["End-Sigmoid"] = Sig()
        self.main = nn.Sequential(layers)

    def forward(self, x):
        return self.main(x).view(-1)


def randomise(D):
    """Weights large enough that activations are O(1) (the sigmoid and both LeakyReLU slopes
    matter), and non-trivial running statistics so eval mode differs from train mode."""
    with torch.no_grad():
        for name, p in D.named_parameters():
            if "Conv2d" in name:
                p.copy_(torch.randn_like(p) * 0.3)
            elif name.endswith("weight"):
                p.copy_(1 + 0.2 * torch.randn_like(p))
            else:
                p.copy_(0.2 * torch.randn_like(p))
        for name, b in D.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(0.3 * torch.randn_like(b))
            elif name.endswith("running_var"):
                b.copy_(0.5 + torch.rand_like(b))
            elif name.endswith("num_batches_tracked"):
                b.fill_(5)


def explain(D, x, method, bn):
    """The raw map; with bn == 'captum' D runs in train mode and its running statistics change."""
    D.train(bn == "captum")
    if method == "deeplift":
        X2 = torch.cat([x, torch.zeros_like(x)]).requires_grad_(True)
        DEEPLIFT["on"] = True
        try:
            (g,) = torch.autograd.grad(D(X2).sum(), X2)
        finally:
            DEEPLIFT["on"] = False
        return (x * g[: x.shape[0]]).detach()
    xl = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(D(xl).sum(), xl)
    return g.abs() if method == "saliency" else (x * g).detach()


def main():
    torch.set_default_dtype(torch.float64)
    for sigmoid, name in ((True, "xai_sigmoid"), (False, "xai_raw")):
        torch.manual_seed(20240 + sigmoid)
        D = Discriminator(sigmoid).double()
        randomise(D)
        init = {k: v.clone() for k, v in D.state_dict().items()}
        x = torch.tanh(torch.randn(BATCH, CHANNELS, IMAGE, IMAGE) * 1.5)
        tensors = {f"D.{k}": v for k, v in init.items()}
        tensors["x"] = x
        for bn in ("eval", "captum"):
            for method in ("saliency", "inputxgrad", "deeplift"):
                D.load_state_dict(init)
                tensors[f"{bn}.{method}"] = explain(D, x, method, bn)
                if bn == "captum":
                    for k, v in D.state_dict().items():
                        if "running" in k or "num_batches" in k:
                            tensors[f"captum.{method}.D.{k}"] = v.clone()
        # DeepLIFT completeness in eval mode, as a self-check of the reference.
        D.load_state_dict(init)
        D.eval()
        with torch.no_grad():
            diff = D(x) - D(torch.zeros_like(x))
        attr = tensors["eval.deeplift"].sum(dim=(1, 2, 3))
        assert torch.allclose(attr, diff, rtol=1e-10, atol=1e-12), (attr, diff)
        write_safetensors(os.path.join(HERE, f"{name}.safetensors"), tensors,
                          {"case": name, "torch": torch.__version__, "image": IMAGE, "width": WIDTH,
                           "channels": CHANNELS, "sigmoid": int(sigmoid)})
        print(name, "D(x) - D(0) =", diff.tolist())


if __name__ == "__main__":
    main()
