#!/usr/bin/env python3
"""xgan beside PyTorch 1.13.1 on the same work, in the same run, on the same threads.

For each of the twelve configurations (loss x explainer) this times one full training iteration
(D step + G step, batch 32, z 128, width 128, Adam lr 1e-4 betas (0.5, 0.999)) with `xgan bench`
and with a PyTorch build of the same iteration, in alternating rounds per configuration, so that a
change of machine speed hits both sides alike. It prints the ratio xgan / PyTorch and each explainer's
overhead over its base loss, and can write the table (markdown) and a bar chart (PNG).

The PyTorch side follows the authors' code (guibotazzo/xgan): their models (AlexiaJM's arch 0),
their order of D forwards, and explanations computed on the generated batch with D in train mode
(what their captum call did). captum is not installable here, so saliency and input x gradient use
autograd directly and DeepLIFT the rescale rule through autograd Functions on [x; 0], which is
what captum's DeepLift computes. The generator gradient is weighted elementwise by the map
normalised to [1, 2] (X-GAN's guidance), then back-propagated through G.

PyTorch is never a dependency of xgan: this script is optional and needs Debian's python3-torch.
  OMP_NUM_THREADS=2 /usr/bin/python3 bench/compare_pytorch.py --xgan build/xgan --threads 2 \
      --markdown docs/performance.md --chart docs/img/performance.png
"""
import argparse
import collections
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

LOSSES = ("dcgan", "wgan-gp", "ragan")
XAIS = ("none", "saliency", "inputxgrad", "deeplift")


def build_models(torch, loss, width, channels, z_dim, image_size):
    nn, F = torch.nn, torch.nn.functional
    deeplift = {"on": False}
    eps = 1e-10

    def rescale(f):
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
                ratio = (out[:n] - out[n:]) / d_in
                m = torch.where(torch.cat([d_in, d_in]).abs() < eps, deriv, torch.cat([ratio, ratio]))
                return g * m

        return Rescale.apply

    leaky_dl = rescale(lambda t: F.leaky_relu(t, 0.2))
    sigmoid_dl = rescale(torch.sigmoid)

    class Leaky(nn.Module):
        def forward(self, t):
            return leaky_dl(t) if deeplift["on"] else F.leaky_relu(t, 0.2)

    class Sig(nn.Module):
        def forward(self, t):
            return sigmoid_dl(t) if deeplift["on"] else torch.sigmoid(t)

    g = collections.OrderedDict()
    mult = image_size // 8
    g["Start-ConvTranspose2d"] = nn.ConvTranspose2d(z_dim, width * mult, 4, 1, 0, bias=False)
    g["Start-BatchNorm2d"] = nn.BatchNorm2d(width * mult)
    g["Start-ReLU"] = nn.ReLU()
    i = 1
    while mult > 1:
        g[f"Middle-ConvTranspose2d [{i}]"] = nn.ConvTranspose2d(width * mult, width * mult // 2, 4, 2, 1, bias=False)
        g[f"Middle-BatchNorm2d [{i}]"] = nn.BatchNorm2d(width * mult // 2)
        g[f"Middle-ReLU [{i}]"] = nn.ReLU()
        mult, i = mult // 2, i + 1
    g["End-ConvTranspose2d"] = nn.ConvTranspose2d(width, channels, 4, 2, 1, bias=False)
    g["End-Tanh"] = nn.Tanh()
    G = nn.Sequential(g)

    d = collections.OrderedDict()
    d["Start-Conv2d"] = nn.Conv2d(channels, width, 4, 2, 1, bias=False)
    d["Start-LeakyReLU"] = Leaky()
    size, mult, i = image_size // 2, 1, 0
    while size > 4:
        d[f"Middle-Conv2d [{i}]"] = nn.Conv2d(width * mult, width * mult * 2, 4, 2, 1, bias=False)
        d[f"Middle-BatchNorm2d [{i}]"] = nn.BatchNorm2d(width * mult * 2)
        d[f"Middle-LeakyReLU [{i}]"] = Leaky()
        size, mult, i = size // 2, mult * 2, i + 1
    d["End-Conv2d"] = nn.Conv2d(width * mult, 1, 4, 1, 0, bias=False)
    if loss == "dcgan":
        d["End-Sigmoid"] = Sig()
    D = nn.Sequential(d)

    with torch.no_grad():  # DCGAN init, as the authors' weights_init
        for m in list(G.modules()) + list(D.modules()):
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                m.weight.normal_(0.0, 0.02)
            elif isinstance(m, nn.BatchNorm2d):
                m.weight.normal_(1.0, 0.02)
                m.bias.zero_()
    return G, D, deeplift


def explain(torch, D, x, method, deeplift):
    """The raw map of D on x for the target sum_i D(x_i); D stays in train mode (captum's call)."""
    if method == "deeplift":
        x2 = torch.cat([x, torch.zeros_like(x)]).requires_grad_(True)
        deeplift["on"] = True
        try:
            (g,) = torch.autograd.grad(D(x2).sum(), x2)
        finally:
            deeplift["on"] = False
        return x * g[: x.shape[0]]
    xl = x.detach().requires_grad_(True)
    (g,) = torch.autograd.grad(D(xl).sum(), xl)
    return g.abs() if method == "saliency" else x * g


def torch_iteration(torch, G, D, opt_G, opt_D, loss, xai, real, z_dim, deeplift, gp_lambda=10.0):
    F = torch.nn.functional
    n = real.size(0)
    ones, zeros = torch.ones(n), torch.zeros(n)
    # D step (the authors' order of forwards).
    opt_D.zero_grad(set_to_none=True)
    with torch.no_grad():
        fake = G(torch.randn(n, z_dim, 1, 1))
    y_r = D(real).view(-1)
    y_f = D(fake).view(-1)
    if loss == "dcgan":
        err_D = F.binary_cross_entropy(y_r, ones) + F.binary_cross_entropy(y_f, zeros)
    elif loss == "wgan-gp":
        err_D = -y_r.mean() + y_f.mean()
        a = torch.rand(n, 1, 1, 1)
        x_hat = (a * real + (1 - a) * fake).requires_grad_(True)
        y_hat = D(x_hat).view(-1)
        (gr,) = torch.autograd.grad(y_hat, x_hat, torch.ones_like(y_hat), create_graph=True)
        err_D = err_D + gp_lambda * ((gr.view(n, -1).norm(2, dim=1) - 1) ** 2).mean()
    else:
        err_D = (F.binary_cross_entropy_with_logits(y_r - y_f.mean(), ones)
                 + F.binary_cross_entropy_with_logits(y_f - y_r.mean(), zeros)) / 2
    err_D.backward()
    opt_D.step()
    # G step: dL/d(fake), weighted by the normalised map, then back through G.
    opt_G.zero_grad(set_to_none=True)
    for p in D.parameters():
        p.requires_grad_(False)
    fake = G(torch.randn(n, z_dim, 1, 1))
    leaf = fake.detach().requires_grad_(True)
    y_f = D(leaf).view(-1)
    if loss == "dcgan":
        err_G = F.binary_cross_entropy(y_f, ones)
    elif loss == "wgan-gp":
        err_G = -y_f.mean()
    else:
        y_r = D(real).view(-1)
        err_G = (F.binary_cross_entropy_with_logits(y_r - y_f.mean(), zeros)
                 + F.binary_cross_entropy_with_logits(y_f - y_r.mean(), ones)) / 2
    (g,) = torch.autograd.grad(err_G, leaf)
    if xai != "none":
        m = explain(torch, D, fake.detach(), xai, deeplift).detach()
        lo, hi = m.min(), m.max()
        E = 1 + (m - lo) / (hi - lo) if hi > lo else torch.ones_like(m)
        g = E * g
    fake.backward(g)
    opt_G.step()
    for p in D.parameters():
        p.requires_grad_(True)
    return err_D.item(), err_G.item()


def time_torch(torch, loss, xai, args, channels):
    torch.manual_seed(args.seed)
    G, D, deeplift = build_models(torch, loss, args.width, channels, 128, 32)
    opt_G = torch.optim.Adam(G.parameters(), lr=1e-4, betas=(0.5, 0.999))
    opt_D = torch.optim.Adam(D.parameters(), lr=1e-4, betas=(0.5, 0.999))
    real = torch.rand(args.batch, channels, 32, 32) * 2 - 1
    ms = []
    for i in range(args.warmup + args.iters):
        t0 = time.perf_counter()
        torch_iteration(torch, G, D, opt_G, opt_D, loss, xai, real, 128, deeplift)
        if i >= args.warmup:
            ms.append((time.perf_counter() - t0) * 1e3)
    return ms


def time_xgan(loss, xai, args):
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "bench.json")
        cmd = [args.xgan, "bench", "--loss", loss, "--xai", xai, "--dataset", args.dataset, "--iters",
               str(args.iters), "--warmup", str(args.warmup), "--threads", str(args.threads), "--batch",
               str(args.batch), "--width", str(args.width), "--seed", str(args.seed), "--json", out]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        with open(out) as f:
            return json.load(f)["configs"][0]["ms_per_iter"]


def percentile(v, q):
    v = sorted(v)
    pos = q * (len(v) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (pos - lo)


def write_chart(rows, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    labels = [f"{r['loss']}\n{r['xai']}" for r in rows]
    xs = range(len(rows))
    fig, ax = plt.subplots(figsize=(11, 4.2), dpi=100)
    ax.bar([x - 0.2 for x in xs], [r["xgan_ms"] for r in rows], 0.4, label="xgan")
    ax.bar([x + 0.2 for x in xs], [r["torch_ms"] for r in rows], 0.4, label="PyTorch 1.13.1")
    ax.set_xticks(list(xs))
    ax.set_xticklabels(labels, fontsize=8)
    ax.set_ylabel("ms per training iteration (median)")
    ax.set_title("One training iteration (D step + G step), batch 32, width 128, same machine, same run")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--xgan", default="build/xgan", help="the xgan binary")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3,
                    help="time every configuration this many times on each side, alternating xgan and PyTorch "
                         "(a VM's speed drifts by 10-30%% within minutes; pooling the rounds spreads the drift "
                         "over both sides); the medians are over all rounds' iterations")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--width", type=int, default=128)
    ap.add_argument("--dataset", choices=("mnist", "cifar10"), default="mnist")
    ap.add_argument("--loss", choices=LOSSES + ("all",), default="all")
    ap.add_argument("--xai", choices=XAIS + ("all",), default="all")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--markdown", help="write the table (with machine and command) to this markdown file")
    ap.add_argument("--chart", help="write a bar chart PNG here (needs python3-matplotlib)")
    args = ap.parse_args()
    if args.rounds < 1 or args.iters < 1 or args.warmup < 0:
        sys.exit("compare_pytorch.py: --rounds and --iters must be >= 1, --warmup >= 0")
    if not os.access(args.xgan, os.X_OK):
        sys.exit(f"compare_pytorch.py: {args.xgan} is not an executable xgan binary (build it first)")
    try:
        import torch
    except ImportError:
        sys.exit("compare_pytorch.py: needs PyTorch (Debian: apt-get install python3-torch libopenblas0-openmp)")
    torch.set_num_threads(args.threads)
    channels = 3 if args.dataset == "cifar10" else 1
    losses = LOSSES if args.loss == "all" else (args.loss,)
    xais = XAIS if args.xai == "all" else (args.xai,)
    epoch = (50000 if args.dataset == "cifar10" else 60000) // args.batch

    rows = []
    for loss in losses:
        for xai in xais:
            print(f"  {loss:8s} {xai:11s} ...", end="", flush=True, file=sys.stderr)
            xg, tt = [], []
            for r in range(args.rounds):
                # Alternate which side goes first, so neither always follows the other's warm caches.
                if r % 2 == 0:
                    xg += time_xgan(loss, xai, args)
                    tt += time_torch(torch, loss, xai, args, channels)
                else:
                    tt += time_torch(torch, loss, xai, args, channels)
                    xg += time_xgan(loss, xai, args)
            rows.append({"loss": loss, "xai": xai, "xgan_ms": statistics.median(xg), "torch_ms": statistics.median(tt),
                         "xgan_p10": percentile(xg, 0.1), "xgan_p90": percentile(xg, 0.9),
                         "torch_p10": percentile(tt, 0.1), "torch_p90": percentile(tt, 0.9)})
            print(f" xgan {rows[-1]['xgan_ms']:.1f} ms, PyTorch {rows[-1]['torch_ms']:.1f} ms", file=sys.stderr)
    base = {(r["loss"]): r for r in rows if r["xai"] == "none"}
    for r in rows:
        r["ratio"] = r["xgan_ms"] / r["torch_ms"]
        b = base.get(r["loss"])
        r["xgan_overhead_pct"] = 100 * (r["xgan_ms"] / b["xgan_ms"] - 1) if b and r["xai"] != "none" else None
        r["torch_overhead_pct"] = 100 * (r["torch_ms"] / b["torch_ms"] - 1) if b and r["xai"] != "none" else None

    machine = f"{platform.processor() or platform.machine()}, {args.threads} threads, torch {torch.__version__}"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    machine = line.split(":", 1)[1].strip() + f", {args.threads} threads, torch {torch.__version__}"
                    break
    except OSError:
        pass

    def pct(v):
        return "-" if v is None else f"{v:+.1f}%"

    head = ("| loss | xai | xgan ms/iter | PyTorch ms/iter | xgan / PyTorch | xgan s/epoch | PyTorch s/epoch "
            "| xgan overhead | PyTorch overhead |\n|---|---|---:|---:|---:|---:|---:|---:|---:|\n")
    lines = [f"| {r['loss']} | {r['xai']} | {r['xgan_ms']:.1f} | {r['torch_ms']:.1f} | {r['ratio']:.2f} | "
             f"{r['xgan_ms'] * epoch / 1e3:.0f} | {r['torch_ms'] * epoch / 1e3:.0f} | {pct(r['xgan_overhead_pct'])} | "
             f"{pct(r['torch_overhead_pct'])} |" for r in rows]
    table = head + "\n".join(lines) + "\n"
    print(f"\n{machine}; batch {args.batch}, width {args.width}, {args.rounds} rounds of {args.iters} timed iterations "
          f"after {args.warmup}\n")
    print(table)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": machine, "rows": rows}, f, indent=2)
    if args.chart:
        write_chart(rows, args.chart)
    if args.markdown:
        cmd = ("OMP_NUM_THREADS={t} /usr/bin/python3 bench/compare_pytorch.py --xgan {x} --threads {t} --iters {i} "
               "--warmup {w} --rounds {r}").format(t=args.threads, x=args.xgan, i=args.iters, w=args.warmup, r=args.rounds)
        section = SECTION.format(machine=machine, cmd=cmd, table=table, date=time.strftime("%Y-%m-%d"),
                                 epoch=epoch, batch=args.batch, width=args.width)
        if args.chart:
            chart = os.path.relpath(args.chart, os.path.dirname(os.path.abspath(args.markdown)))
            section += f"\n![ms per iteration, xgan and PyTorch]({chart})\n"
        replace_section(args.markdown, section)


BEGIN, END = "<!-- compare_pytorch.py: begin -->", "<!-- compare_pytorch.py: end -->"

SECTION = """Measured {date} on {machine}: each configuration timed by `xgan bench` and by
PyTorch in alternating rounds of the same run (see `--rounds`). Batch {batch}, width {width}; median
of all rounds' timed iterations; an epoch is {epoch} iterations. Regenerate with:

    {cmd} --markdown docs/performance.md --chart docs/img/performance.png

{table}"""


def replace_section(path, section):
    """Writes `section` between the BEGIN/END markers of `path`, keeping the rest of the file."""
    text = open(path).read() if os.path.exists(path) else f"# Performance\n\n{BEGIN}\n{END}\n"
    if BEGIN not in text or END not in text:
        text = text.rstrip("\n") + f"\n\n{BEGIN}\n{END}\n"
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    with open(path + ".tmp", "w") as f:
        f.write(f"{head}{BEGIN}\n{section}\n{END}{tail}")
    os.replace(path + ".tmp", path)


if __name__ == "__main__":
    main()
