#!/usr/bin/env python3
# Golden data for tests/test_golden.cpp: PyTorch 1.13.1 (Debian's python3-torch) is the oracle
# for the engine's ops, their gradients, the WGAN-GP double backward and one Adam run.
# Run from anywhere:  OMP_NUM_THREADS=2 /usr/bin/python3 tests/golden/generate.py
# It writes one <case>.safetensors per case next to this script. The outputs are committed, so
# the tests and CI never need torch; rerun only when a case changes, and commit the new files.
#
# Keys are "<variant>.<tensor>", e.g. "f64.s2p1k4.gx"; "gy" is the upstream gradient used and
# "g<name>" the gradient of <name>. Integer parameters of a variant (stride, pad, ...) are in the
# file's __metadata__ as "<variant>.<param>", so the C++ test reads them instead of repeating them.
# float64 variants allow a tight comparison (only summation order differs); float32 variants are
# the dtype training runs in. Every case reseeds, so adding a case never changes the others.

import os

import torch
import torch.nn.functional as F

from st_io import write_safetensors

HERE = os.path.dirname(os.path.abspath(__file__))


class Case:
    """Collects the tensors and metadata of one file."""

    def __init__(self, name, seed):
        self.name, self.tensors = name, {}
        self.metadata = {"case": name, "seed": seed, "torch": torch.__version__}
        torch.manual_seed(seed)

    def put(self, prefix, **tensors):
        for k, v in tensors.items():
            self.tensors[f"{prefix}.{k}"] = v.detach().clone()

    def meta(self, prefix, **params):
        for k, v in params.items():
            self.metadata[f"{prefix}.{k}"] = v

    def write(self):
        path = os.path.join(HERE, f"{self.name}.safetensors")
        write_safetensors(path, self.tensors, self.metadata)
        print(f"{path}: {len(self.tensors)} tensors, {os.path.getsize(path)} bytes")


def randn(*shape, scale=1.0):
    return torch.randn(*shape, dtype=torch.float64) * scale


def leaf(t, dtype):
    return t.to(dtype).clone().requires_grad_(True)


def first_order(case, prefix, fn, inputs, dtype):
    """y = fn(*inputs) in `dtype`, then the input gradients for a random upstream gradient gy."""
    xs = {k: leaf(v, dtype) for k, v in inputs.items()}
    y = fn(**xs)
    gy = randn(*y.shape).to(dtype)
    grads = torch.autograd.grad(y, list(xs.values()), gy)
    case.put(prefix, **{k: v for k, v in xs.items()}, y=y, gy=gy)
    case.put(prefix, **{f"g{k}": g for k, g in zip(xs, grads)})


def conv2d():
    case = Case("conv2d", 1)
    # (name, N, Ci, H, Co, k, stride, pad): the critic's downsampling layer and its last layer.
    for var, n, ci, h, co, k, s, p in [("s2p1k4", 2, 3, 8, 4, 4, 2, 1), ("s1p0k4", 3, 4, 4, 2, 4, 1, 0)]:
        x, w = randn(n, ci, h, h), randn(co, ci, k, k, scale=0.3)
        for dt, tag in [(torch.float64, "f64"), (torch.float32, "f32")]:
            first_order(case, f"{tag}.{var}", lambda x, w: F.conv2d(x, w, stride=s, padding=p),
                        {"x": x, "w": w}, dt)
            case.meta(f"{tag}.{var}", stride=s, pad=p)
    case.write()


def conv_transpose2d():
    case = Case("conv_transpose2d", 2)
    # The generator's upsampling layer (4x4 -> 8x8) and its first layer (1x1 noise -> 4x4).
    for var, n, ci, h, co, k, s, p in [("s2p1k4", 2, 4, 4, 3, 4, 2, 1), ("s1p0k4", 3, 8, 1, 4, 4, 1, 0)]:
        x, w = randn(n, ci, h, h), randn(ci, co, k, k, scale=0.3)
        for dt, tag in [(torch.float64, "f64"), (torch.float32, "f32")]:
            first_order(case, f"{tag}.{var}",
                        lambda x, w: F.conv_transpose2d(x, w, stride=s, padding=p), {"x": x, "w": w}, dt)
            case.meta(f"{tag}.{var}", stride=s, pad=p)
    case.write()


def batch_norm():
    case = Case("batch_norm", 3)
    n, c, h = 4, 3, 8
    x = randn(n, c, h, h) * torch.tensor([1.0, 3.0, 0.2], dtype=torch.float64).view(1, c, 1, 1) \
        + torch.tensor([0.5, -2.0, 1.0], dtype=torch.float64).view(1, c, 1, 1)
    gamma, beta = 1 + randn(c, scale=0.3), randn(c, scale=0.3)
    rm0, rv0 = randn(c, scale=0.5), 0.5 + torch.rand(c, dtype=torch.float64)
    for dt, tag in [(torch.float64, "f64"), (torch.float32, "f32")]:
        for training in [True, False]:
            prefix = f"{tag}.{'train' if training else 'eval'}"
            rm, rv = rm0.to(dt).clone(), rv0.to(dt).clone()
            case.put(prefix, running_mean0=rm, running_var0=rv)
            first_order(case, prefix, lambda x, gamma, beta: F.batch_norm(
                x, rm, rv, gamma, beta, training=training, momentum=0.1, eps=1e-5),
                {"x": x, "gamma": gamma, "beta": beta}, dt)
            case.put(prefix, running_mean=rm, running_var=rv)  # updated in place in train mode
    case.meta("all", momentum=0.1, eps=1e-5)
    case.write()


def activations():
    case = Case("activations", 4)
    x = randn(2, 3, 8, 8, scale=2.0)
    x.view(-1)[:6] = torch.tensor([0.0, -0.0, 50.0, -50.0, 1e-30, -1e-30], dtype=torch.float64)
    fns = {"leaky_relu": lambda x: F.leaky_relu(x, 0.2), "sigmoid": torch.sigmoid, "tanh": torch.tanh}
    for op, fn in fns.items():
        for dt, tag in [(torch.float64, "f64"), (torch.float32, "f32")]:
            first_order(case, f"{tag}.{op}", fn, {"x": x}, dt)
    case.meta("leaky_relu", slope=0.2)
    case.write()


def bce():
    case = Case("bce", 5)
    # Loss only: probabilities at and beyond the -100 clamp of log (log(1e-50) = -115 in f64,
    # log(1e-45) = -103 for an f32 denormal; 1e-40 stays above the clamp).
    extreme = {torch.float64: [0.0, 1.0, 1e-50, 1 - 1e-17, 1e-40, 1 - 1e-12, 0.5, 1e-300],
               torch.float32: [0.0, 1.0, 1e-45, 1 - 1e-9, 1e-40, 1 - 1e-6, 0.5, 1e-38]}
    for dt, tag in [(torch.float64, "f64"), (torch.float32, "f32")]:
        p = torch.tensor(extreme[dt], dtype=torch.float64).repeat(3)
        t = torch.cat([torch.zeros(8), torch.ones(8), torch.rand(8)]).double()
        p, t = p.to(dt), t.to(dt)
        case.put(f"{tag}.clamp", p=p, target=t, loss=F.binary_cross_entropy(p, t))
    # Loss and gradient on the open interval (PyTorch's backward divides by max(p(1-p), 1e-12)),
    # with p near 0 and 1, hard and soft targets.
    p = torch.rand(4, 6, dtype=torch.float64) * 0.98 + 0.01
    p.view(-1)[:6] = torch.tensor([1e-6, 1 - 1e-6, 1e-3, 1 - 1e-3, 0.5, 0.25], dtype=torch.float64)
    t = (torch.rand(4, 6, dtype=torch.float64) > 0.5).double()
    t[3] = torch.rand(6, dtype=torch.float64)
    for dt, tag in [(torch.float64, "f64"), (torch.float32, "f32")]:
        pp, tt = leaf(p, dt), t.to(dt)
        loss = F.binary_cross_entropy(pp, tt)
        gy = torch.tensor(0.7, dtype=dt)
        (gp,) = torch.autograd.grad(loss, pp, gy)
        case.put(f"{tag}.grad", p=pp, target=tt, loss=loss, gy=gy, gp=gp)
    case.write()


def bce_with_logits():
    case = Case("bce_with_logits", 6)
    x = randn(4, 6, scale=3.0)
    x.view(-1)[:8] = torch.tensor([50.0, -50.0, 100.0, -100.0, 0.0, 20.0, -20.0, 1e-8], dtype=torch.float64)
    t = torch.rand(4, 6, dtype=torch.float64)
    t.view(-1)[:12] = torch.tensor([1.0, 0.0] * 3 + [0.0, 1.0] * 3, dtype=torch.float64)
    for dt, tag in [(torch.float64, "f64"), (torch.float32, "f32")]:
        xx, tt = leaf(x, dt), leaf(t, dt)
        loss = F.binary_cross_entropy_with_logits(xx, tt)
        gy = torch.tensor(-1.3, dtype=dt)
        gx, gt = torch.autograd.grad(loss, [xx, tt], gy)
        case.put(tag, x=xx, target=tt, loss=loss, gy=gy, gx=gx, gtarget=gt)
    case.write()


def adam():
    case = Case("adam", 7)
    # Two float32 parameters, three steps with the paper's settings; gradients include zeros,
    # tiny and large values (the update is ~lr whatever the scale, except where g = 0).
    p0 = [randn(4, 3, 4, 4, scale=0.1).float(), (1 + randn(6, scale=0.1)).float()]
    grads = []
    for step in range(3):
        g = [randn(4, 3, 4, 4).float(), randn(6, scale=0.01).float()]
        g[0].view(-1)[:4] = torch.tensor([0.0, 1e-10, 1e3, -1e-3])
        g[1][0] = 0.0
        grads.append(g)
    params = [p.clone().requires_grad_(True) for p in p0]
    lr, b1, b2, eps = 1e-4, 0.5, 0.999, 1e-8
    opt = torch.optim.Adam(params, lr=lr, betas=(b1, b2), eps=eps)
    for i in range(2):
        case.put("init", **{f"p{i}": p0[i]})
    for step, g in enumerate(grads, start=1):
        for i, p in enumerate(params):
            p.grad = g[i].clone()
            case.put(f"step{step}", **{f"g{i}": g[i]})
        opt.step()
        for i, p in enumerate(params):
            st = opt.state[p]
            case.put(f"step{step}", **{f"p{i}": p, f"exp_avg{i}": st["exp_avg"],
                                       f"exp_avg_sq{i}": st["exp_avg_sq"]})
    case.meta("config", lr=lr, beta1=b1, beta2=b2, eps=eps, steps=3, params=2)
    case.write()


def wgan_gp():
    case = Case("wgan_gp", 8)
    # The WGAN-GP path through a tiny critic: conv(k4 s2 p1) -> batch norm (train) ->
    # leaky_relu(0.2) -> conv(k4 s1 p0) to one output per image, penalty on grad_x, then the
    # penalty's gradient w.r.t. every weight and x (a gradient of a gradient).
    n, c, h, f = 4, 2, 8, 4
    x = randn(n, c, h, h)
    w1, w2 = randn(f, c, 4, 4, scale=0.3), randn(1, f, 4, 4, scale=0.3)
    gamma, beta = 1 + randn(f, scale=0.3), randn(f, scale=0.3)
    rm0, rv0 = randn(f, scale=0.5), 0.5 + torch.rand(f, dtype=torch.float64)
    for dt, tag in [(torch.float64, "f64"), (torch.float32, "f32")]:
        xs = {k: leaf(v, dt) for k, v in dict(x=x, w1=w1, gamma=gamma, beta=beta, w2=w2).items()}
        rm, rv = rm0.to(dt).clone(), rv0.to(dt).clone()
        case.put(tag, running_mean0=rm, running_var0=rv)
        hdn = F.conv2d(xs["x"], xs["w1"], stride=2, padding=1)
        hdn = F.batch_norm(hdn, rm, rv, xs["gamma"], xs["beta"], training=True, momentum=0.1, eps=1e-5)
        hdn = F.leaky_relu(hdn, 0.2)
        out = F.conv2d(hdn, xs["w2"], stride=1, padding=0)  # [N, 1, 1, 1]
        (g,) = torch.autograd.grad(out.sum(), xs["x"], create_graph=True)
        penalty = ((g.view(n, -1).norm(2, dim=1) - 1) ** 2).mean()
        grads = torch.autograd.grad(penalty, list(xs.values()))
        case.put(tag, **xs, running_mean=rm, running_var=rv, out=out, grad_x=g, penalty=penalty)
        case.put(tag, **{f"g{k}": v for k, v in zip(xs, grads)})
    case.meta("conv1", stride=2, pad=1)
    case.meta("conv2", stride=1, pad=0)
    case.meta("bn", momentum=0.1, eps=1e-5)
    case.meta("leaky_relu", slope=0.2)
    case.write()


def pool():
    case = Case("pool", 9)
    # The FID Inception's pools (k3 s2, the k3 s1 p1 max pool of Mixed_7c, the k3 s1 p1 average
    # pools with and without count_include_pad) and LeNet's k2 s2. randn has no ties, so every
    # window's argmax is unambiguous in both dtypes.
    x = randn(2, 3, 7, 7)
    for dt, tag in [(torch.float64, "f64"), (torch.float32, "f32")]:
        for var, k, s, p in [("k3s2p0", 3, 2, 0), ("k3s1p1", 3, 1, 1), ("k2s2p0", 2, 2, 0)]:
            first_order(case, f"{tag}.max_{var}",
                        lambda x: F.max_pool2d(x, k, stride=s, padding=p), {"x": x}, dt)
            case.meta(f"{tag}.max_{var}", kernel=k, stride=s, pad=p)
        for var, cip in [("k3s1p1_cip", True), ("k3s1p1_nocip", False)]:
            first_order(case, f"{tag}.avg_{var}",
                        lambda x: F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=cip),
                        {"x": x}, dt)
            case.meta(f"{tag}.avg_{var}", kernel=3, stride=1, pad=1, count_include_pad=int(cip))
    case.write()


def softmax():
    case = Case("softmax", 10)
    # Logits at the scale of a classifier's (and a row with +-60, where a naive exp overflows
    # float32), along the last dim; and a softmax over a middle dim of a 3-D tensor.
    x = randn(4, 10, scale=3.0)
    x[0, :4] = torch.tensor([60.0, -60.0, 59.0, 0.0], dtype=torch.float64)
    x3 = randn(3, 4, 5)
    for dt, tag in [(torch.float64, "f64"), (torch.float32, "f32")]:
        first_order(case, f"{tag}.softmax", lambda x: F.softmax(x, dim=1), {"x": x}, dt)
        first_order(case, f"{tag}.log_softmax", lambda x: F.log_softmax(x, dim=1), {"x": x}, dt)
        first_order(case, f"{tag}.softmax_mid", lambda x: F.softmax(x, dim=1), {"x": x3}, dt)
    case.meta("softmax", dim=1)
    case.meta("log_softmax", dim=1)
    case.meta("softmax_mid", dim=1)
    case.write()


def linear():
    case = Case("linear", 11)
    # torch.nn.Linear's y = x w^T + b, with and without the bias (IS uses the FID Inception's fc
    # without it).
    x, w, b = randn(5, 16), randn(7, 16, scale=0.3), randn(7)
    for dt, tag in [(torch.float64, "f64"), (torch.float32, "f32")]:
        first_order(case, f"{tag}.bias", lambda x, w, b: F.linear(x, w, b), {"x": x, "w": w, "b": b}, dt)
        first_order(case, f"{tag}.nobias", lambda x, w: F.linear(x, w), {"x": x, "w": w}, dt)
    case.write()


if __name__ == "__main__":
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    for make in [conv2d, conv_transpose2d, batch_norm, activations, bce, bce_with_logits, adam, wgan_gp,
                 pool, softmax, linear]:
        make()
