#!/usr/bin/python3
"""The image batch behind docs/img/xai_mnist_*.png: 8 real MNIST digits and 8 digits from the
generator of an xgan training checkpoint, written as `images` [16, 1, s, s] in [-1, 1] for
`xgan explain`. Needs numpy and torch (Debian's python3-torch); see docs/xai.md for the commands.
Usage: /usr/bin/python3 scripts/xai_figure_images.py CKPT.safetensors data/mnist OUT.safetensors
"""
import json
import struct
import sys

import numpy as np
import torch
import torch.nn.functional as F

DTYPES = {"F32": np.float32, "F64": np.float64, "I64": np.int64}


def read_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    body = raw[8 + n:]
    out = {}
    for key, v in header.items():
        if key == "__metadata__":
            continue
        a, b = v["data_offsets"]
        out[key] = np.frombuffer(body[a:b], dtype=DTYPES[v["dtype"]]).reshape(v["shape"])
    return out, header.get("__metadata__", {})


def write_safetensors(path, tensors):
    header, blobs, off = {}, [], 0
    for key, t in tensors.items():
        b = np.ascontiguousarray(t, dtype=np.float32).tobytes()
        header[key] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def generate(w, n, seed):
    """The paper's G in eval mode (batch norm with running statistics), as `xgan sample` runs it."""
    t = {k[2:]: torch.from_numpy(v.astype(np.float32)) for k, v in w.items() if k.startswith("G.")}
    z = torch.Generator().manual_seed(seed)
    x = torch.randn(n, t["main.Start-ConvTranspose2d.weight"].shape[0], 1, 1, generator=z)

    def bn(x, p):
        return F.batch_norm(x, t[p + ".running_mean"], t[p + ".running_var"], t[p + ".weight"], t[p + ".bias"],
                            False, 0.1, 1e-5)

    x = F.relu(bn(F.conv_transpose2d(x, t["main.Start-ConvTranspose2d.weight"]), "main.Start-BatchNorm2d"))
    i = 1
    while f"main.Middle-ConvTranspose2d_{i}.weight" in t:
        x = F.conv_transpose2d(x, t[f"main.Middle-ConvTranspose2d_{i}.weight"], stride=2, padding=1)
        x = F.relu(bn(x, f"main.Middle-BatchNorm2d_{i}"))
        i += 1
    return torch.tanh(F.conv_transpose2d(x, t["main.End-ConvTranspose2d.weight"], stride=2, padding=1))


def real_digits(data_dir, n, size):
    with open(f"{data_dir}/t10k-images-idx3-ubyte", "rb") as f:
        raw = f.read()
    imgs = np.frombuffer(raw[16:], dtype=np.uint8).reshape(-1, 1, 28, 28)[:n]
    x = torch.from_numpy(imgs.astype(np.float32) / 255.0)
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return x * 2 - 1


def main():
    ckpt, data_dir, out = sys.argv[1:4]
    w, _ = read_safetensors(ckpt)
    fake = generate(w, 8, seed=0)
    real = real_digits(data_dir, 8, fake.shape[-1])
    write_safetensors(out, {"images": torch.cat([real, fake]).numpy()})
    print(f"{out}: 8 real + 8 generated digits, {tuple(fake.shape[1:])}")


if __name__ == "__main__":
    main()
