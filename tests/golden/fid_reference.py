#!/usr/bin/env python3
# Golden data for tests/test_metrics.cpp: feature statistics, the FID trace term and the FID as
# torchmetrics 0.11.4 computes them (the version the X-GAN authors used: scipy.linalg.sqrtm of
# sigma1 @ sigma2, real part), plus the eigenvalue form of torchmetrics >= 1.0; the Inception Score
# as torch-fidelity's isc_features_to_metric computes it (numpy RandomState(seed).permutation, split
# i covers rows [i*N//splits, (i+1)*N//splits), population std); and the authors' min-max scaling
# to uint8 (quality_eval.py's _minmax_scaler followed by .to(torch.uint8)).
# Run from anywhere:  OMP_NUM_THREADS=2 /usr/bin/python3 tests/golden/fid_reference.py
# (Debian's python3-numpy, python3-scipy, python3-torch 1.13.1). Writes fid.safetensors next to
# this script; deterministic (fixed seeds); commit the output.

import os

import numpy as np
import scipy.linalg
import torch

from st_io import write_safetensors

HERE = os.path.dirname(os.path.abspath(__file__))


def torchmetrics_stats(x):
    """FrechetInceptionDistance.update/compute: sums of x and x^T x in float64, then
    (sum xx^T - n mu^T mu) / (n - 1)."""
    f = torch.from_numpy(x).double()
    n = f.shape[0]
    s = f.sum(dim=0)
    cov_sum = f.t().mm(f)
    mean = (s / n).unsqueeze(0)
    cov = (cov_sum - n * mean.t().mm(mean)) / (n - 1)
    return mean.squeeze(0).numpy(), cov.numpy()


def trace_sqrtm(s1, s2):
    """torchmetrics 0.11.4's covmean trace: scipy's sqrtm of the (non-symmetric) product, real part;
    with its fallback of eps = 1e-6 on the diagonals when the root is not finite."""
    root, errest = scipy.linalg.sqrtm(s1 @ s2, disp=False)
    if not np.isfinite(root).all():
        off = np.eye(s1.shape[0]) * 1e-6
        root, errest = scipy.linalg.sqrtm((s1 + off) @ (s2 + off), disp=False)
    return float(np.trace(root.real)), float(errest)


def trace_eig(s1, s2):
    """torchmetrics >= 1.0: sum of the square roots of the complex eigenvalues of s1 @ s2, real part."""
    ev = np.linalg.eigvals(s1 @ s2).astype(np.complex128)
    return float(np.sqrt(ev).real.sum())


def fid_of(mu1, s1, mu2, s2, tr):
    d = mu1 - mu2
    return float(d @ d + np.trace(s1) + np.trace(s2) - 2 * tr)


def random_spd(rng, d, lo, hi):
    """Q diag(l) Q^T with l log-uniform in [lo, hi]: a condition number of hi/lo."""
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    lam = np.exp(rng.uniform(np.log(lo), np.log(hi), d))
    s = (q * lam) @ q.T
    return (s + s.T) / 2


def features(rng, n, d, offset, scale):
    """Correlated, skewed features (a ReLU of a mixed Gaussian, like pooled CNN activations)."""
    mix = rng.standard_normal((d, d)) / np.sqrt(d)
    z = rng.standard_normal((n, d)) @ mix * scale + offset
    return np.maximum(z, 0) + 0.1 * z


def numpy_permutation_check(seed, n):
    return np.random.RandomState(seed).permutation(n).astype(np.int64)


def isc_reference(logits, splits, seed):
    """torch-fidelity's isc_features_to_metric, written out in numpy (float64)."""
    n = logits.shape[0]
    perm = np.random.RandomState(seed).permutation(n)
    x = logits[perm].astype(np.float64)
    m = x.max(axis=1, keepdims=True)
    log_p = x - m - np.log(np.exp(x - m).sum(axis=1, keepdims=True))
    p = np.exp(log_p)
    scores = []
    for i in range(splits):
        a, b = i * n // splits, (i + 1) * n // splits
        q = p[a:b].mean(axis=0, keepdims=True)
        kl = (p[a:b] * (log_p[a:b] - np.log(q))).sum(axis=1).mean()
        scores.append(np.exp(kl))
    scores = np.array(scores)
    # torch-fidelity reports np.std (population); torchmetrics' kl.std() is Bessel-corrected.
    sample_std = scores.std(ddof=1) if splits > 1 else float("nan")
    # Cross-check against torch's softmax/log_softmax as torch-fidelity calls them.
    t = torch.from_numpy(logits[perm]).double()
    assert np.allclose(t.softmax(dim=1).numpy(), p, rtol=1e-13, atol=1e-300)
    assert np.allclose(t.log_softmax(dim=1).numpy(), log_p, rtol=1e-13)
    return scores.mean(), scores.std(), sample_std


def main():
    rng = np.random.default_rng(20241203)
    out = {}

    # Random SPD covariances, no features: well conditioned and badly conditioned.
    for name, d, lo in (("spd16", 16, 1e-2), ("spd64", 64, 1e-6)):
        s1, s2 = random_spd(rng, d, lo, 1e2), random_spd(rng, d, lo, 1e2)
        tr, err = trace_sqrtm(s1, s2)
        out[name + ".s1"], out[name + ".s2"] = s1, s2
        out[name + ".trace_sqrtm"] = np.float64(tr)
        out[name + ".trace_eig"] = np.float64(trace_eig(s1, s2))
        out[name + ".sqrtm_errest"] = np.float64(err)

    # Feature sets: full rank (N > D) and rank-deficient (N <= D, covariance rank N - 1) cases; f32
    # features are widened to f64 before any sum, as torchmetrics does.
    # The 64-d sets are float32 and mixed64 stores no covariances, to keep the file small.
    cases = [("full16", 16, 200, 150, np.float64, True), ("rankdef16", 16, 10, 12, np.float64, True),
             ("f32_16", 16, 300, 250, np.float32, True), ("rankdef64", 64, 40, 50, np.float32, True),
             ("mixed64", 64, 100, 30, np.float32, False)]
    for name, d, n1, n2, dt, keep_sigma in cases:
        x1 = features(rng, n1, d, offset=0.5, scale=1.0).astype(dt)
        x2 = features(rng, n2, d, offset=0.8, scale=1.3).astype(dt)
        mu1, s1 = torchmetrics_stats(x1)
        mu2, s2 = torchmetrics_stats(x2)
        # The streaming formula against numpy's two-pass covariance.
        assert np.allclose(s1, np.cov(x1.astype(np.float64), rowvar=False), rtol=1e-10, atol=1e-13)
        tr, err = trace_sqrtm(s1, s2)
        tre = trace_eig(s1, s2)
        for k, v in (("x1", x1), ("x2", x2), ("mu1", mu1), ("sigma1", s1), ("mu2", mu2), ("sigma2", s2)):
            if keep_sigma or not k.startswith("sigma"):
                out[f"{name}.{k}"] = v
        out[name + ".trace_sqrtm"] = np.float64(tr)
        out[name + ".trace_eig"] = np.float64(tre)
        out[name + ".sqrtm_errest"] = np.float64(err)
        out[name + ".fid_torchmetrics"] = np.float64(fid_of(mu1, s1, mu2, s2, tr))
        out[name + ".fid_eig"] = np.float64(fid_of(mu1, s1, mu2, s2, tre))
        print(f"{name}: trace sqrtm {tr:.15g} eig {tre:.15g} (errest {err:.2e}); "
              f"FID {fid_of(mu1, s1, mu2, s2, tr):.15g}")

    # numpy's legacy RandomState(seed).permutation(n), which the C++ side reimplements.
    for seed, n in ((2020, 103), (0, 1000), (4294967295, 7), (12345, 1)):
        out[f"perm.{seed}_{n}"] = numpy_permutation_check(seed, n)

    # Inception Score: float64 logits of 103 samples (not a multiple of 10, so the splits have
    # different sizes), float32 logits, and the probabilities for the _from_probs variant.
    logits = rng.standard_normal((103, 7)) * 3.0
    logits32 = (rng.standard_normal((60, 50)) * 4.0).astype(np.float32)
    out["is.logits"] = logits
    x = logits - logits.max(axis=1, keepdims=True)
    out["is.probs"] = np.exp(x) / np.exp(x).sum(axis=1, keepdims=True)
    out["is32.logits"] = logits32
    for key, lg in (("is", logits), ("is32", logits32)):
        for seed, splits in ((2020, 10), (0, 3), (7, 1)):
            m, s, ss = isc_reference(lg, splits, seed)
            out[f"{key}.{seed}_{splits}.mean"] = np.float64(m)
            out[f"{key}.{seed}_{splits}.std"] = np.float64(s)
            out[f"{key}.{seed}_{splits}.std_sample"] = np.float64(ss)

    # The authors' preprocessing, in float32 (and float64) torch arithmetic.
    for key, dt in (("u8", torch.float32), ("u8_64", torch.float64)):
        g = torch.Generator().manual_seed(5)
        xs = torch.rand((3, 2, 5, 5), generator=g, dtype=dt) * 2.2 - 1.3
        lo, hi = xs.min(), xs.max()
        scaled = ((xs - lo) / (hi - lo)) * (255 - 0) + 0
        out[key + ".x"] = xs
        out[key + ".out"] = scaled.to(torch.uint8).to(torch.float32)

    path = os.path.join(HERE, "fid.safetensors")
    write_safetensors(path, out, {"generator": "tests/golden/fid_reference.py",
                                  "numpy": np.__version__, "scipy": scipy.__version__,
                                  "torch": torch.__version__})
    print("wrote", path, os.path.getsize(path), "bytes")


if __name__ == "__main__":
    main()
