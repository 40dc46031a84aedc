"""Writes a tiny legacy-format (non-zip) torch checkpoint that exercises the Rust reader in
crates/rap-vision/src/torch_legacy.rs, plus the values it must read back, as JSON.

Run once by a developer (needs torch):
    python tools/golden/torch_legacy_fixture.py crates/rap-vision/tests/fixtures
"""
import collections
import json
import os
import sys

import torch


def main(out_dir):
    torch.manual_seed(0)
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6) / 8.0 - 1.0
    shared = torch.arange(10, dtype=torch.float32) * 0.5
    sd = collections.OrderedDict()
    # A tensor the reader skips (inside a list), stored first: its storage must still be
    # sized by its own element type for the storages after it to be found.
    sd["skipped_list"] = [torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)]
    sd["f32"] = torch.randn(2, 3)
    sd["f16"] = torch.tensor([1.5, -2.25, 65504.0, 0.0009765625], dtype=torch.float16)
    sd["bf16"] = torch.tensor([[1.0, -3.5], [0.125, 1e10]], dtype=torch.bfloat16)
    sd["f64"] = torch.tensor([3.141592653589793, -1e-300], dtype=torch.float64)
    sd["i64"] = torch.tensor([0, -1, 2**40, -(2**62)], dtype=torch.int64)
    sd["i32"] = torch.tensor([7, -8], dtype=torch.int32)
    sd["u8"] = torch.tensor([0, 255, 17], dtype=torch.uint8)
    sd["scalar"] = torch.tensor(42.0)
    sd["transposed"] = base.t()  # non-contiguous view, stride (1, 6)
    sd["sliced"] = base[1:3, ::2]  # offset 6, stride (6, 2)
    sd["shared_a"] = shared[:4]  # two views of one storage
    sd["shared_b"] = shared[5:].view(1, 5)
    sd["empty"] = torch.zeros(0, 3)
    sd["param"] = torch.nn.Parameter(torch.tensor([[0.25, 0.5]]))
    sd["not_a_tensor"] = 17
    path = os.path.join(out_dir, "legacy_small.pth")
    torch.save(sd, path, _use_new_zipfile_serialization=False)

    expected = {}
    for k, v in sd.items():
        if not isinstance(v, torch.Tensor):
            continue
        v = v.detach()
        expected[k] = {
            "dtype": str(v.dtype).replace("torch.", ""),
            "shape": list(v.shape),
            "values": v.double().flatten().tolist(),
        }
    with open(os.path.join(out_dir, "legacy_small.json"), "w") as f:
        json.dump(expected, f, indent=1)
    print("wrote", path, os.path.getsize(path), "bytes")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else ".")
