#!/usr/bin/env python3
# Golden data for tests/test_step.cpp and `xgan step`: an independent PyTorch 1.13 version of the
# authors' models (guibotazzo/xgan lib/models.py, AlexiaJM's DCGAN arch 0, built as an
# nn.Sequential with the original module names) and of one training iteration of their train.py,
# run in float64 for three consecutive iterations per case.
# Regenerate (Debian's python3-torch, not a pyenv `python3`):
#   OMP_NUM_THREADS=2 /usr/bin/python3 tests/golden/step_reference.py
# Compare an `xgan step` output with step 1 of a case (needs only numpy):
#   /usr/bin/python3 tests/golden/step_reference.py --compare OUT.safetensors tests/golden/step_dcgan_c1_out.safetensors
#
# Files, per case <loss>_c<C>:
#   step_<case>_in.safetensors   an `xgan step` input for iteration 1: G.<key>, D.<key> in the raw
#       PyTorch form ("main.Middle-Conv2d [0].weight", exercising name canonicalisation), real,
#       z_d, z_g, alpha (WGAN-GP); num_batches_tracked is left out in some cases (it is optional).
#   step_<case>_out.safetensors  for iteration k = 1..steps, "s<k>.<name>" with <name> as
#       `xgan step` writes it (canonical names): loss_D, loss_G, gp, fake, dLdimg, grad.D.*,
#       grad.G.*, the updated G.*, D.* with running statistics and num_batches_tracked (int64).
#       Iterations k >= 2 start from iteration k-1's weights and statistics with new inputs
#       "s<k>.real", "s<k>.z_d", "s<k>.z_g", "s<k>.alpha", and a fresh Adam, as `xgan step` does.
# The iteration follows train.py: D step: zero D's grads, D(real), G(z_d), D(fake.detach()),
# backward of each loss term, for WGAN-GP D(x_hat) with x_hat = real*alpha + fake*(1-alpha) and
# lambda * penalty backward; Adam step. G step: D frozen, zero G's grads, G(z_g), D(fake)
# (then D(real) for RaSGAN), errG.backward(); Adam step. dLdimg is the .grad retained on fake.
# Sizes are kept small (the files are committed, < 1 MB in all): image 16, width 4, z 8, batch 4;
# inputs are float32 values (stored as F32, exact in float64), every result is F64.
import argparse
import json
import os
import struct
import sys

import numpy as np

from st_io import write_safetensors

HERE = os.path.dirname(os.path.abspath(__file__))
NP_OF = {"F64": np.float64, "F32": np.float32, "I64": np.int64}

IMAGE, WIDTH, Z, BATCH = 16, 4, 8, 4
GP_LAMBDA = 10.0  # xgan's default --gp-lambda (the authors' code effectively used 1)
# (loss, channels, iterations, seed, whether IN carries num_batches_tracked). Three chained
# iterations for one channel; a single one for three channels keeps the files under 1 MB.
CASES = [
    ("dcgan", 1, 3, 101, True),
    ("wgan-gp", 1, 3, 102, False),
    ("ragan", 1, 3, 103, True),
    ("dcgan", 3, 1, 104, False),
    ("wgan-gp", 3, 1, 105, True),
    ("ragan", 3, 1, 106, False),
]


# ---- safetensors: u64-LE header length, JSON header, little-endian data back to back ----------

def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    meta = header.pop("__metadata__", {})
    base = 8 + n
    arrays = {}
    for name, h in header.items():
        begin, end = h["data_offsets"]
        dt = np.dtype(NP_OF[h["dtype"]]).newbyteorder("<")
        arrays[name] = np.frombuffer(data[base + begin:base + end], dtype=dt).reshape(h["shape"])
    return arrays, meta


def canonical(name):
    return name.replace(" ", "").replace("[", "_").replace("]", "")


# ---- the models, as lib/models.py builds them (args: image_size, z_size, G_h_size, channels) ----

def make_generator(torch, image_size, z, h, channels):
    nn = torch.nn
    main = nn.Sequential()
    mult = image_size // 8
    main.add_module("Start-ConvTranspose2d", nn.ConvTranspose2d(z, h * mult, kernel_size=4, stride=1, padding=0, bias=False))
    main.add_module("Start-BatchNorm2d", nn.BatchNorm2d(h * mult))
    main.add_module("Start-ReLU", nn.ReLU())
    i = 1
    while mult > 1:
        main.add_module("Middle-ConvTranspose2d [%d]" % i,
                        nn.ConvTranspose2d(h * mult, h * (mult // 2), kernel_size=4, stride=2, padding=1, bias=False))
        main.add_module("Middle-BatchNorm2d [%d]" % i, nn.BatchNorm2d(h * (mult // 2)))
        main.add_module("Middle-ReLU [%d]" % i, nn.ReLU())
        mult //= 2
        i += 1
    main.add_module("End-ConvTranspose2d", nn.ConvTranspose2d(h, channels, kernel_size=4, stride=2, padding=1, bias=False))
    main.add_module("End-Tanh", nn.Tanh())

    class Generator(nn.Module):
        def __init__(self):
            super().__init__()
            self.main = main

        def forward(self, x):
            return self.main(x)

    return Generator()


def make_discriminator(torch, image_size, h, channels, sigmoid):
    nn = torch.nn
    main = nn.Sequential()
    main.add_module("Start-Conv2d", nn.Conv2d(channels, h, kernel_size=4, stride=2, padding=1, bias=False))
    main.add_module("Start-LeakyReLU", nn.LeakyReLU(0.2, inplace=True))
    size = image_size // 2
    mult, i = 1, 0
    while size > 4:
        main.add_module("Middle-Conv2d [%d]" % i,
                        nn.Conv2d(h * mult, h * 2 * mult, kernel_size=4, stride=2, padding=1, bias=False))
        main.add_module("Middle-BatchNorm2d [%d]" % i, nn.BatchNorm2d(h * 2 * mult))
        main.add_module("Middle-LeakyReLU [%d]" % i, nn.LeakyReLU(0.2, inplace=True))
        size //= 2
        mult *= 2
        i += 1
    main.add_module("End-Conv2d", nn.Conv2d(h * mult, 1, kernel_size=4, stride=1, padding=0, bias=False))
    if sigmoid:
        main.add_module("End-Sigmoid", nn.Sigmoid())

    class Discriminator(nn.Module):
        def __init__(self):
            super().__init__()
            self.main = main

        def forward(self, x):
            return self.main(x).view(-1)

    return Discriminator()


def randomise(torch, model, gen):
    """DCGAN init (conv N(0, 0.02), BN weight N(1, 0.02)), then non-default BN biases and running
    statistics so that every state_dict entry matters from the first iteration."""
    with torch.no_grad():
        for name, m in model.named_modules():
            if "Conv" in type(m).__name__:
                m.weight.normal_(0.0, 0.02, generator=gen)
            elif "BatchNorm" in type(m).__name__:
                m.weight.normal_(1.0, 0.02, generator=gen)
                m.bias.normal_(0.0, 0.05, generator=gen)
                m.running_mean.normal_(0.0, 0.1, generator=gen)
                m.running_var.uniform_(0.5, 1.5, generator=gen)
                m.num_batches_tracked.fill_(7)
        # Values a float32 file holds exactly: the inputs are written as F32 (half the bytes; a
        # real checkpoint and data set are float32 too), the computation stays float64.
        for t in model.state_dict().values():
            if t.is_floating_point():
                t.copy_(t.float().double())


# ---- one iteration of train.py ----------------------------------------------------------------

def iteration(torch, G, D, loss, real, z_d, z_g, alpha):
    F = torch.nn.functional
    adam = dict(lr=1e-4, betas=(0.5, 0.999))
    opt_G = torch.optim.Adam(G.parameters(), **adam)
    opt_D = torch.optim.Adam(D.parameters(), **adam)
    n = real.size(0)
    ones = torch.full((n,), 1.0, dtype=real.dtype)
    zeros = torch.full((n,), 0.0, dtype=real.dtype)
    out = {}

    # (1) D step
    for p in D.parameters():
        p.requires_grad = True
    D.zero_grad()
    y_pred = D(real)
    if loss in ("dcgan", "wgan-gp"):
        err_real = F.binary_cross_entropy(y_pred, ones) if loss == "dcgan" else -torch.mean(y_pred)
        err_real.backward()
        fake = G(z_d)
        y_pred_fake = D(fake.detach())
        err_fake = F.binary_cross_entropy(y_pred_fake, zeros) if loss == "dcgan" else torch.mean(y_pred_fake)
        err_fake.backward()
        err_D = err_real + err_fake
    else:
        fake = G(z_d)
        y_pred_fake = D(fake.detach())
        err_D = (F.binary_cross_entropy_with_logits(y_pred - torch.mean(y_pred_fake), ones)
                 + F.binary_cross_entropy_with_logits(y_pred_fake - torch.mean(y_pred), zeros)) / 2
        err_D.backward()
    if loss == "wgan-gp":
        b, c, h, w = real.shape
        a = alpha.repeat(1, c, h, w)
        interpolated = real * a + fake * (1 - a)
        mixed = D(interpolated)
        gradient = torch.autograd.grad(inputs=interpolated, outputs=mixed, grad_outputs=torch.ones_like(mixed),
                                       create_graph=True, retain_graph=True)[0]
        gradient = gradient.view(gradient.shape[0], -1)
        gp = torch.mean((gradient.norm(2, dim=1) - 1) ** 2)
        (GP_LAMBDA * gp).backward()
        out["gp"] = gp.detach().clone()
    out["loss_D"] = err_D.detach().clone()
    for name, p in D.named_parameters():
        out["grad.D." + canonical(name)] = p.grad.detach().clone()
    opt_D.step()

    # (2) G step, D frozen
    for p in D.parameters():
        p.requires_grad = False
    G.zero_grad()
    fake = G(z_g)
    fake.retain_grad()
    y_pred_fake = D(fake)
    if loss == "dcgan":
        err_G = F.binary_cross_entropy(y_pred_fake, ones)
    elif loss == "wgan-gp":
        err_G = -torch.mean(y_pred_fake)
    else:
        y_pred = D(real)
        err_G = (F.binary_cross_entropy_with_logits(y_pred - torch.mean(y_pred_fake), zeros)
                 + F.binary_cross_entropy_with_logits(y_pred_fake - torch.mean(y_pred), ones)) / 2
    err_G.backward()
    out["loss_G"] = err_G.detach().clone()
    out["fake"] = fake.detach().clone()
    out["dLdimg"] = fake.grad.detach().clone()
    for name, p in G.named_parameters():
        out["grad.G." + canonical(name)] = p.grad.detach().clone()
    opt_G.step()
    for p in D.parameters():
        p.requires_grad = True

    for prefix, model in (("G.", G), ("D.", D)):
        for name, t in model.state_dict().items():
            out[prefix + canonical(name)] = t.detach().clone()
    return out


def make_case(torch, loss, channels, steps, seed, with_count):
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    G = make_generator(torch, IMAGE, Z, WIDTH, channels).double()
    D = make_discriminator(torch, IMAGE, WIDTH, channels, sigmoid=(loss == "dcgan")).double()
    randomise(torch, G, gen)
    randomise(torch, D, gen)

    def batch():
        # float32 draws (as torch.randn / torch.rand make them in train.py), computed with in float64
        b = {"real": torch.rand(BATCH, channels, IMAGE, IMAGE, generator=gen) * 2 - 1,
             "z_d": torch.randn(BATCH, Z, 1, 1, generator=gen),
             "z_g": torch.randn(BATCH, Z, 1, 1, generator=gen)}
        if loss == "wgan-gp":
            b["alpha"] = torch.rand(BATCH, 1, 1, 1, generator=gen)
        return {k: v.double() for k, v in b.items()}

    def stored(t):  # inputs as F32 (exact, see randomise), results as F64
        return t.float() if t.is_floating_point() else t

    # IN of iteration 1, raw PyTorch keys. Without num_batches_tracked, xgan starts the count at 0,
    # like a PyTorch model loading a state_dict that lacks it (strict=False).
    first = batch()
    inp = {}
    for prefix, model in (("G.", G), ("D.", D)):
        for name, t in model.state_dict().items():
            if name.endswith("num_batches_tracked") and not with_count:
                t.zero_()
                continue
            inp[prefix + name] = stored(t.detach().clone())
    inp.update({k: stored(v) for k, v in first.items()})

    outp = {}
    b = first
    for k in range(1, steps + 1):
        if k > 1:
            b = batch()
            for name, t in b.items():
                outp[f"s{k}.{name}"] = stored(t)
        res = iteration(torch, G, D, loss, b["real"], b["z_d"], b["z_g"], b.get("alpha"))
        for name, t in res.items():
            outp[f"s{k}.{name}"] = t

    meta = {"loss": loss, "gp_lambda": GP_LAMBDA, "steps": steps, "image_size": IMAGE, "width": WIDTH,
            "channels": channels, "z_dim": Z, "batch": BATCH, "seed": seed, "torch": torch.__version__}
    case = f"step_{loss}_c{channels}"
    for suffix, tensors in (("in", inp), ("out", outp)):
        path = os.path.join(HERE, f"{case}_{suffix}.safetensors")
        write_safetensors(path, {n: t.numpy() for n, t in tensors.items()}, meta)
        print(f"{path}: {len(tensors)} tensors, {os.path.getsize(path)} bytes")


# ---- comparing an `xgan step` OUT with iteration 1 of a case ------------------------------------

def compare(got_path, golden_path, step):
    got, _ = read_safetensors(got_path)
    want_all, meta = read_safetensors(golden_path)
    prefix = f"s{step}."
    want = {k[len(prefix):]: v for k, v in want_all.items() if k.startswith(prefix)}
    for name in ("real", "z_d", "z_g", "alpha"):
        want.pop(name, None)
    worst, bad = 0.0, []
    for name in sorted(set(want) | set(got)):
        if name not in got or name not in want:
            bad.append(f"{name}: only in {'golden' if name in want else 'xgan'}")
            continue
        a, b = got[name].astype(np.float64), want[name].astype(np.float64)
        if a.shape != b.shape:
            bad.append(f"{name}: shape {a.shape} vs {b.shape}")
            continue
        scale = max(np.abs(b).max(), 1e-300)
        err = float(np.abs(a - b).max() / scale)
        worst = max(worst, err)
        print(f"{name:55s} {str(got[name].dtype):8s} max|diff|/max|want| = {err:.3e}")
    print(f"worst {worst:.3e} over {len(want)} tensors ({meta.get('loss')}, step {step})")
    for line in bad:
        print("MISMATCH", line)
    return 0 if not bad else 1


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--compare", nargs=2, metavar=("XGAN_OUT", "GOLDEN_OUT"),
                    help="compare an `xgan step` output with iteration --step of a golden file")
    ap.add_argument("--step", type=int, default=1)
    args = ap.parse_args()
    if args.compare:
        sys.exit(compare(args.compare[0], args.compare[1], args.step))
    import torch
    torch.set_num_threads(2)
    for c in CASES:
        make_case(torch, *c)
    total = sum(os.path.getsize(os.path.join(HERE, f)) for f in os.listdir(HERE) if f.startswith("step_")
                and f.endswith(".safetensors"))
    print(f"total {total} bytes")
