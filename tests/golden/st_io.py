"""The safetensors layout for the golden-data scripts (numpy only, so scripts without torch can
use it): u64-LE header length, JSON header space-padded to a multiple of 8, then each tensor's
little-endian bytes back to back in the order given."""
import json
import struct

import numpy as np

_CODES = {np.dtype(np.float64): "F64", np.dtype(np.float32): "F32", np.dtype(np.int64): "I64"}


def write_safetensors(path, arrays, metadata):
    """arrays: name -> numpy array or torch tensor (float32, float64 or int64)."""
    header, blobs, offset = {}, [], 0
    for name, a in arrays.items():
        if hasattr(a, "detach"):  # a torch tensor
            a = a.detach().contiguous().cpu().numpy()
        a = np.array(a, order="C")  # (np.ascontiguousarray would turn a 0-d scalar into [1])
        blob = a.astype(a.dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": _CODES[a.dtype], "shape": list(a.shape),
                        "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    header["__metadata__"] = {k: str(v) for k, v in metadata.items()}
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)
