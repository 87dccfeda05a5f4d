#!/usr/bin/env python3
# Converts the FID Inception-v3 weights that pytorch-fid (pt_inception-2015-12-05-6726825d.pth) or
# torch-fidelity (weights-inception-2015-12-05-6726825d.pth) download into the safetensors file
# `xgan eval --extractor inception --weights FILE` loads (models/inception.h). Needs torch
# (Debian's python3-torch: /usr/bin/python3). See docs/metrics.md.
#   /usr/bin/python3 scripts/convert_inception.py pt_inception-2015-12-05-6726825d.pth inception.safetensors
# The names stay the PyTorch state_dict keys; every tensor is checked against the network's list
# (missing, unexpected, wrong shape) before anything is written, and stored as float32.
import argparse
import hashlib
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
GOLDEN = os.path.join(HERE, "..", "tests", "golden")


def expected_tensors():
    """name -> shape of the FID network, from the reference module in tests/golden (the same
    list tests/test_inception.cpp checks the C++ model's against)."""
    sys.path.insert(0, GOLDEN)
    from inception_reference import FidInceptionRef  # noqa: E402 (needs the path above)
    return {k: tuple(v.shape) for k, v in FidInceptionRef().state_dict().items()
            if not k.endswith("num_batches_tracked")}


def load_state_dict(path):
    import torch
    obj = torch.load(path, map_location="cpu")
    if hasattr(obj, "state_dict"):  # a pickled module
        obj = obj.state_dict()
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]  # a training checkpoint
    if not isinstance(obj, dict):
        raise SystemExit(f"{path}: expected a state dict (name -> tensor), found {type(obj).__name__}")
    return {k: v for k, v in obj.items() if hasattr(v, "shape")}


def check_hash(path):
    # Torch hub names files <name>-<first 8 hex digits of the sha256>.pth.
    m = re.search(r"-([0-9a-f]{8})\.pth$", os.path.basename(path))
    if not m:
        return
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    if not h.hexdigest().startswith(m.group(1)):
        print(f"warning: {path}: sha256 {h.hexdigest()[:8]}... does not match the {m.group(1)} in its name "
              "(a damaged or different file?)", file=sys.stderr)


def main():
    ap = argparse.ArgumentParser(description=__doc__ or "Convert the FID Inception weights to safetensors")
    ap.add_argument("input", help="pt_inception-2015-12-05-6726825d.pth (pytorch-fid) or torch-fidelity's .pth")
    ap.add_argument("output", help="the safetensors file to write")
    args = ap.parse_args()
    if not os.path.isfile(args.input):
        raise SystemExit(
            f"{args.input}: no such file. Get pytorch-fid's weights on a machine with internet access:\n"
            "  https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
            "pt_inception-2015-12-05-6726825d.pth\n"
            "and copy the file here.")
    check_hash(args.input)

    sd = load_state_dict(args.input)
    want = expected_tensors()
    problems = []
    for name, shape in want.items():
        if name not in sd:
            problems.append(f"missing {name} {list(shape)}")
        elif tuple(sd[name].shape) != shape:
            problems.append(f"wrong shape {name}: expected {list(shape)}, found {list(sd[name].shape)}")
    for name, t in sd.items():
        if name not in want and not name.endswith("num_batches_tracked"):
            problems.append(f"unexpected {name} {list(t.shape)}")
    if problems:
        raise SystemExit(f"{args.input}: not the FID Inception-v3 ({len(problems)} tensors differ; torchvision's "
                         "ImageNet Inception has other weights, 1000 classes and AuxLogits):\n  " +
                         "\n  ".join(problems))

    sys.path.insert(0, GOLDEN)
    from st_io import write_safetensors  # noqa: E402
    tensors = {name: sd[name].detach().float().contiguous() for name in want}
    write_safetensors(args.output, tensors, {"source": os.path.basename(args.input),
                                             "network": "FID Inception-v3 (TF 2015-12-05 graph)"})
    print(f"{args.output}: {len(tensors)} tensors, {os.path.getsize(args.output)} bytes")


if __name__ == "__main__":
    main()
